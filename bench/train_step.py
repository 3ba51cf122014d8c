"""Training-step benchmark of DRAW: images/s, ms/step, peak memory, ratio to the textbook baseline, and the
achieved FLOP rate as a fraction of this machine's matrix-multiply rate at the model's shapes.

    python bench/train_step.py                                   # the paper's MNIST models, CPU
    python bench/train_step.py --device cuda --precision bf16
    python bench/train_step.py --attention gaussian --T 64 --batch 100 --lstm 256 --latent 100 --read 2 --write 5

Each mode is one model.engine, run in its own process (so peak memory is its own; --in-process: all in one):
  textbook               DRAW.forward's own loop, the paper's equations (LSTMCell calls, separate filterbanks and
                         glimpses): the baseline of the ratio column
  fused_loop             the step loop with fused projections, eager PyTorch under autograd
  handwritten_bptt       the T steps as one autograd node with a hand-written backward, kernels compiled
                         (draw_exp.model.engines.handwritten_bptt)
  fused_loop_cudagraphs  the fused loop with its body compiled in mode="reduce-overhead" (CUDA graphs on a GPU)
Timings: median of --steps steps after --warmup steps (forward, backward, Adam step). ops/step: the operations an
eager engine dispatches one by one in a step (views excluded): on a GPU each is a kernel launch, and at the paper's
sizes the launches, not the arithmetic, set an eager step's time (24–29 µs each on session 12's H200).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import signal
import statistics
import subprocess
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MODES = ["textbook", "fused_loop", "handwritten_bptt", "fused_loop_cudagraphs"]  # model.engine names


def step_flops(a) -> float:
    """FLOPs of one training step by formula: matrix products only, backward counted as twice the forward."""
    C, H, W = a.shape
    B, T, L, Z = a.batch, a.T, a.lstm, a.latent
    if a.attention == "gaussian":
        reads, heads = 2 * C * a.read * a.read, 10 + C * a.write * a.write
        attention = 2 * 2 * C * (a.read * H * W + a.read * W * a.read) + 2 * C * (
            H * a.write * a.write + H * a.write * W
        )
        once = 0
    else:
        reads, heads, attention = C * H * W, C * H * W, 0  # x's encoder projection is made once per forward
        once = 2 * B * C * H * W * 4 * L
    per_step = 2 * B * ((reads + 2 * L) * 4 * L + L * 2 * Z + (Z + L) * 4 * L + L * heads) + B * attention
    return 3 * (T * per_step + once)


def layer_shapes(a):
    C, H, W = a.shape
    reads = 2 * C * a.read * a.read if a.attention == "gaussian" else C * H * W
    heads = 10 + C * a.write * a.write if a.attention == "gaussian" else C * H * W
    return [(reads + a.lstm, 4 * a.lstm), (a.lstm, 2 * a.latent), (a.latent, 4 * a.lstm), (a.lstm, heads + 8 * a.lstm)]


def matmul_rate(a, device, dtype) -> float:
    """FLOP/s of torch.mm at the model's shapes: each layer's forward, input-gradient and weight-gradient product."""
    products = []
    for k, n in layer_shapes(a):
        products += [(a.batch, k, n), (a.batch, n, k), (n, a.batch, k)]
    tensors = [
        (torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype))
        for m, k, n in products
    ]
    flops = sum(2 * m * k * n for m, k, n in products)
    for _ in range(20):
        for p, q in tensors:
            p @ q
    sync(device)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(10):
            for p, q in tensors:
                p @ q
        sync(device)
        times.append((time.perf_counter() - start) / 10)
    return flops / statistics.median(times)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_mode(a) -> dict:
    from draw_exp.lit_module import DrawModule

    device = torch.device(a.device)
    torch.manual_seed(0)
    attention = (
        {"type": a.attention, "read_size": a.read, "write_size": a.write}
        if a.attention == "gaussian"
        else {"type": "none"}
    )

    def make_module(engine: str) -> DrawModule:
        return DrawModule(tuple(a.shape), a.T, a.latent, a.lstm, attention, engine=engine).to(device)

    module = make_module(a.mode)
    x = torch.rand(a.batch, *a.shape, device=device).bernoulli()
    initial = copy.deepcopy(module.state_dict()) if a.check else None
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")

    def loss_fn():
        with autocast:
            return module.loss_terms(x)["loss"].float().mean()

    def step():
        loss = loss_fn()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss

    start = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - start
    for _ in range(a.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak_bytes = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    error = None
    if a.check:  # the initial weights again, one batch, fixed noise: the shapes timed, so nothing compiles anew
        module.load_state_dict(initial)
        exact = make_module("textbook").double()
        exact.load_state_dict(initial)
        error = gradient_error(module, exact, x, torch.randn(a.T, a.batch, a.latent, device=device))
    return {
        "mode": a.mode,
        "ms_per_step": 1000 * seconds,
        "images_per_s": a.batch / seconds,
        "peak_memory_mb": peak_bytes / 2**20,
        # operations dispatched one by one in a step: what bounds an eager engine on a GPU (a launch each)
        "eager_ops_per_step": None if a.mode in COMPILED else count_ops(step),
        # with --check: the loss's and the gradients' largest error against the textbook loop in float64
        "loss_error": error and error[0],
        "gradient_error": error and error[1],
        "first_step_s": first,
        "achieved_gflops": step_flops(a) / seconds / 1e9,
    }


def loss_and_gradients(module, x: torch.Tensor, noise: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    loss = module.loss_terms(x, noise=noise)["loss"].mean()
    loss.backward()
    return loss.item(), {n: p.grad.detach().double().clone() for n, p in module.named_parameters()}


def gradient_error(module, exact, x: torch.Tensor, noise: torch.Tensor) -> tuple[float, float]:
    """The loss's difference (nats per image) and the largest gradient error (relative to each parameter's largest
    float64 gradient) of ``module``'s engine against ``exact``, the same weights in float64 through the textbook loop,
    on the same batch and noise: what bench/gradient_accuracy.py reports, here for each engine timed, on the device it
    was timed on."""
    loss, grads = loss_and_gradients(module, x, noise)
    exact_loss, exact_grads = loss_and_gradients(exact, x.double(), noise.double())
    return loss - exact_loss, relative_gradient_error(grads, exact_grads)


def relative_gradient_error(grads: dict[str, torch.Tensor], exact: dict[str, torch.Tensor]) -> float:
    """The largest error over all parameters, relative to that parameter's largest exact gradient."""
    return max(((grads[n] - g).abs().max() / g.abs().max().clamp_min(1e-30)).item() for n, g in exact.items())


COMPILED = {"handwritten_bptt", "fused_loop_cudagraphs"}  # their kernels are fused: no count of eager operations


class CountOps(TorchDispatchMode):
    """Counts the ATen operations that run kernels (views excluded), forward, backward and optimiser alike."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def count_ops(step) -> int:
    with CountOps() as counter:
        step()
    return counter.count


class ModeTimeout(BaseException):
    # Not an Exception: the alarm may fire inside library code (compilation) whose `except Exception` would
    # swallow it and let the mode run on past its limit.
    pass


def measure(a, attention: str, mode: str) -> dict | str:
    """One mode's row, or why there is none: in a child process (its peak memory its own), or with ``--in-process``
    in this one (one start-up for all modes, where starting Python costs much: about 40 s on the lent GPU machine)."""
    timed_out = f"timed out after {a.mode_timeout or 0:g} s (--mode-timeout)"  # reported only when one is set
    if a.in_process:
        child = argparse.Namespace(**{**vars(a), "mode": mode, "attention": attention})

        def alarm(signum, frame):
            raise ModeTimeout

        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, a.mode_timeout or 0)
        start = time.perf_counter()
        try:
            row = run_mode(child)
            # The alarm's exception can still be lost where Python ignores exceptions (a __del__, a weakref or
            # garbage-collection callback): a mode that returns after its limit has run past it all the same.
            return timed_out if a.mode_timeout and time.perf_counter() - start > a.mode_timeout else row
        except ModeTimeout:
            return timed_out
        except Exception as e:  # a mode that fails on this device is reported; the others still run
            return f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if a.device.startswith("cuda"):
                torch.cuda.empty_cache()
    argv = (
        [sys.executable, __file__, "--mode", mode, "--attention", attention]
        + [
            f"--{k}={v}"
            for k, v in (
                ("device", a.device),
                ("precision", a.precision),
                ("batch", a.batch),
                ("T", a.T),
                ("lstm", a.lstm),
                ("latent", a.latent),
                ("read", a.read),
                ("write", a.write),
                ("steps", a.steps),
                ("warmup", a.warmup),
            )
        ]
        + (["--check"] if a.check else [])
        + ["--shape", *map(str, a.shape)]
    )
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=a.mode_timeout)
    except subprocess.TimeoutExpired:
        return timed_out
    if result.returncode != 0:
        return f"failed: {result.stderr.strip().splitlines()[-1] if result.stderr else result.returncode}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch and model sizes, the paper's MNIST model by default (shared with bench/gradient_accuracy.py)."""
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--T", type=int, default=64)
    parser.add_argument("--lstm", type=int, default=256)
    parser.add_argument("--latent", type=int, default=100)
    parser.add_argument("--read", type=int, default=2)
    parser.add_argument("--write", type=int, default=5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attention", nargs="+", default=["gaussian", "none"], choices=["gaussian", "none"])
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="32: float32; bf16: autocast")
    add_model_arguments(parser)
    parser.add_argument("--shape", type=int, nargs=3, default=[1, 28, 28], metavar=("C", "H", "W"))
    parser.add_argument("--steps", type=int, default=15, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # one mode, in a child process
    parser.add_argument("--json", help="also write the rows to this file (rewritten after each mode)")
    parser.add_argument(
        "--mode-timeout",
        type=float,
        help="seconds each mode may take, its compilation included; a mode past it is reported and skipped "
        "(on a lent GPU, so one slow compile cannot take the others' time)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also each engine's loss and gradient error against the textbook loop in float64, on the device timed",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every mode in this process (one start-up; peak memory is then exact on a GPU alone)",
    )
    a = parser.parse_args()
    if a.mode:
        a.attention = a.attention[0]
        print(json.dumps(run_mode(a)))
        return

    def save(rows: list[dict]) -> None:
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=2)

    device = torch.device(a.device)
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, batch {a.batch}, T {a.T}, LSTM {a.lstm}, z {a.latent}, "
        f"image {tuple(a.shape)}, precision {a.precision}"
    )
    rows = []
    for attention in a.attention:
        a.attention = attention
        rate = matmul_rate(a, device, torch.bfloat16 if a.precision == "bf16" else torch.float32)
        flops = step_flops(a)
        print(
            f"\n== attention {attention}"
            + (f" (read {a.read}x{a.read}, write {a.write}x{a.write})" if attention == "gaussian" else "")
        )
        print(
            f"training step: {flops / 1e9:.1f} GFLOP (matrix products, by formula); "
            f"matrix-multiply rate at the model's shapes: {rate / 1e9:.1f} GFLOP/s"
        )
        print(
            f"{'mode':<22} {'images/s':>9} {'ms/step':>9} {'peak MB':>9} {'vs textbook':>12} {'GFLOP/s':>8} "
            f"{'of matmul':>10} {'1st step s':>11} {'ops/step':>9}"
            + (f" {'loss err':>9} {'grad err':>9}" if a.check else "")
        )
        baseline = None
        for mode in a.modes:
            row = measure(a, attention, mode)
            if isinstance(row, str):
                print(f"{mode:<22} {row}")
                continue
            baseline = baseline or (row["images_per_s"] if mode == "textbook" else None)
            ratio = row["images_per_s"] / baseline if baseline else None  # None: textbook not (yet) run
            row.update(
                attention=attention,
                vs_baseline=ratio,
                matmul_gflops=rate / 1e9,
                fraction_of_matmul=row["achieved_gflops"] * 1e9 / rate,
                step_gflop=flops / 1e9,
            )
            rows.append(row)
            versus = f"{ratio:>11.2f}x" if ratio else f"{'(later)' if 'textbook' in a.modes else '(not run)':>12}"
            print(
                f"{mode:<22} {row['images_per_s']:>9.1f} {row['ms_per_step']:>9.1f} {row['peak_memory_mb']:>9.0f} "
                f"{versus} {row['achieved_gflops']:>8.1f} {row['fraction_of_matmul']:>9.0%} "
                f"{row['first_step_s']:>11.1f} {row['eager_ops_per_step'] or '—':>9}"
                + (f" {row['loss_error']:>+9.1e} {row['gradient_error']:>9.1e}" if a.check else "")
            )
            save(rows)  # after each mode, so a run stopped part-way keeps what it measured
        late = [row for row in rows if row["attention"] == attention and row["vs_baseline"] is None]
        if baseline and late:  # modes timed before the textbook loop get their ratio now
            for row in late:
                row["vs_baseline"] = row["images_per_s"] / baseline
            print("vs textbook: " + ", ".join(f"{row['mode']} {row['vs_baseline']:.2f}x" for row in late))
            save(rows)


if __name__ == "__main__":
    main()
