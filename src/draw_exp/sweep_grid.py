"""A W&B sweep's grid as a Hydra multirun, without a W&B server or account.

    python -m draw_exp.sweep_grid sweeps/attention_T.yaml [extra overrides ...]         # print the command
    python -m draw_exp.sweep_grid sweeps/attention_T.yaml --run [extra overrides ...]   # run it

The sweep file's fixed overrides and its parameters' values become one `python train.py -m ...` command: one job
(and one run folder under outputs/multirun/) per combination, as `wandb agent` would run them. `logger=wandb` in
the file becomes `logger=csv` unless an extra override names a logger (W&B offline also works: logger=wandb).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml


def multirun_command(sweep_file: str | Path, extra: list[str] = ()) -> list[str]:
    spec = yaml.safe_load(Path(sweep_file).read_text())
    if spec.get("method") != "grid":
        raise SystemExit(f"{sweep_file}: method {spec.get('method')!r}: only grid sweeps map onto a Hydra multirun")
    fixed = [a for a in spec["command"] if not a.startswith("${")]
    if any(o.startswith("logger=") for o in extra):
        fixed = [a for a in fixed if not a.startswith("logger=")]
    else:
        fixed = ["logger=csv" if a == "logger=wandb" else a for a in fixed]
    swept = [f"{name}={','.join(str(v) for v in p['values'])}" for name, p in spec["parameters"].items()]
    return [sys.executable, spec.get("program", "train.py"), "-m", *fixed, *swept, *extra]


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    run = "--run" in argv
    args = [a for a in argv if a != "--run"]
    command = multirun_command(args[0], args[1:])
    print(shlex.join(command))
    return subprocess.call(command) if run else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
