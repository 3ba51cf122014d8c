"""Engines: faster ways to run :meth:`draw_exp.model.draw.DRAW.forward`, each computing the textbook loop's function
(the loss and every gradient to 1e-5 relative, tests/model/engines/). ``model.engine`` chooses one by name.

Each engine module has ``forward(model, x, noise, return_steps, return_log_ratio) -> DrawOutput``;
:data:`ATTENTION_TYPES` says which attention types each runs (the textbook loop runs any), and ``auto`` falls back
to the textbook loop for the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from draw_exp.model.attention import Attention, GaussianAttention, NoAttention

if TYPE_CHECKING:  # draw.py imports this package
    from draw_exp.model.draw import DRAW, DrawOutput

ENGINES = {
    "auto": "the fastest engine measured for the device the batch is on (see auto_engine)",
    "textbook": "DRAW.forward's own loop, the paper's equations step by step: the specification, slowest",
    "fused_loop": "the step loop with fused projections, eager PyTorch under autograd (engines/fused_loop.py)",
    "fused_loop_cudagraphs": "the fused step loop, its step compiled by torch.compile in CUDA-graph mode",
    "handwritten_bptt": "the T steps as one autograd node with a hand-written backward, kernels compiled "
    "(engines/handwritten_bptt.py)",
}
# The attention classes each engine runs, exactly (a subclass may change read or write).
BUILT_IN = (NoAttention, GaussianAttention)
ATTENTION_TYPES = {
    "textbook": None,
    "fused_loop": BUILT_IN,
    "fused_loop_cudagraphs": BUILT_IN,
    "handwritten_bptt": BUILT_IN,
}


def supports(engine: str, attention: Attention) -> bool:
    """Whether ``engine`` runs ``attention`` (``auto`` runs anything: it falls back to the textbook loop)."""
    types = ATTENTION_TYPES.get(engine)
    return types is None or type(attention) in types


def auto_engine(device_type: str, attention: Attention) -> str:
    """What ``engine=auto`` runs on ``device_type``. On a CPU the hand-written backward: 1.5–1.8x the textbook loop
    (RESULTS.md). On a GPU the eager fused loop, the faster of the two engines timed on one so far (1.09x the
    textbook loop on an H200, both launch-bound: docs/results.md, "On a GPU"); the compiled engines are not yet
    timed on a GPU. An attention type that engine does not run takes the textbook loop."""
    fastest = "handwritten_bptt" if device_type == "cpu" else "fused_loop"
    return fastest if supports(fastest, attention) else "textbook"


def run(
    engine: str, model: DRAW, x: torch.Tensor, noise: torch.Tensor, return_steps: bool, return_log_ratio: bool
) -> DrawOutput:
    """``model.forward`` by ``engine`` (not ``auto`` or ``textbook``, which ``DRAW.forward`` resolves itself)."""
    # Imported here: the engine modules build on draw.py, which imports this package.
    from draw_exp.model.engines import fused_loop, handwritten_bptt

    forward = {
        "fused_loop": fused_loop.forward,
        "fused_loop_cudagraphs": fused_loop.forward_cudagraphs,
        "handwritten_bptt": handwritten_bptt.forward,
    }[engine]
    return forward(model, x, noise, return_steps, return_log_ratio)
