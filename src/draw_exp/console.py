"""What the console shows: other libraries' lines that a user of draw-exp cannot act on are filtered out."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig

# (logger, start of the message) pairs that are dropped.
DROPPED_LOG_LINES = (
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip:"),  # advertising for Lightning's cloud products
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip:"),
    ("torch.utils.cpp_extension", "No CUDA runtime is found"),  # a CUDA build of torch on a machine without a GPU
)


class _DropLines(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_noise() -> None:
    """Filter the lines of :data:`DROPPED_LOG_LINES` and Lightning's use of a torch API that torch deprecates
    (Lightning's own to fix). Warnings about the user's settings or data are kept."""
    for name, prefix in DROPPED_LOG_LINES:
        logging.getLogger(name).addFilter(_DropLines(prefix))
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # The training order goes on mid-epoch through the DataModule's state (draw_exp.data.order), which Lightning's
    # check of the DataLoader does not see.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    # conf/hydra/launcher/submitit_slurm.yaml replaces the plugin's own config of that name, keys and all; Hydra
    # still checks it against the plugin's schema and warns that it will stop doing so, which changes nothing here.
    warnings.filterwarnings(
        "ignore", message=r"\s*'hydra/launcher/submitit_slurm' is validated against", category=UserWarning
    )


@contextmanager
def expected_errors_in_one_line() -> Iterator[None]:
    """Errors the user can act on (a bad value, a missing or damaged data file or checkpoint, a diverged run) end
    the command with their message alone, ``error: ...``, and exit status 1; HYDRA_FULL_ERROR=1 shows the
    traceback instead. Anything else is a bug, and keeps its traceback. A run folder that the error left with
    nothing but Hydra's own files is removed."""
    from draw_exp.checkpoints import CheckpointError
    from draw_exp.errors import ConfigError
    from draw_exp.lit_module import NonFiniteLossError
    from draw_exp.run_folder import remove_if_unused
    from draw_exp.training import RunFailedError

    try:
        yield
    except (ConfigError, CheckpointError, FileNotFoundError, OSError, NonFiniteLossError, RunFailedError) as err:
        if HydraConfig.initialized():  # refused before any work: no empty run folder
            remove_if_unused(HydraConfig.get().runtime.output_dir)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
