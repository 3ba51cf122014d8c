"""Glue between Hydra and Lightning's DDP launcher on one machine.

Lightning starts DDP ranks 1..N-1 by running the script again. Its Hydra support re-runs the script with the
original command line, which for a multirun (``-m``) would start the whole sweep again in every child. Here the
children get this job's own overrides and its run folder instead, so every rank runs exactly this job's config
(whatever the command line: a plain run, a Hydra multirun, a W&B sweep agent's command) and writes to one folder.
On SLURM, ranks are started by srun and none of this runs.

A local multirun runs its jobs one after another in one process: each job's DDP (its process group and the
launcher's environment variables) must end with it, or the next job would take itself for an existing rank.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch.distributed as dist

# What Lightning's launcher puts in the environment of the process that starts the ranks.
LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def hydra_job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command line and working folder of DDP rank ``local_rank`` for the running Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hydra_cfg = HydraConfig.get()
    cwd = get_original_cwd()
    if __main__.__spec__ is None:
        command = [sys.executable, os.path.join(cwd, sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    # The job's folder as this process resolved it (its time stamp included); no second copy of .hydra/.
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name=ddp_rank_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, cwd


def launch_ddp_ranks_with_job_overrides() -> None:
    """Make Lightning's script launcher start DDP ranks with :func:`hydra_job_command`."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = hydra_job_command


@contextmanager
def one_job_of_ddp() -> Iterator[None]:
    """Undo, when the job ends, the process group and the launcher variables that the job itself created
    (those set by torchrun or SLURM before it began are left as they were)."""
    saved = {key: os.environ.get(key) for key in LAUNCHER_VARIABLES}
    group_before = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        if not group_before and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
