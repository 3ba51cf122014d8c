"""W&B sweep specs: they parse, every value composes with the Hydra config, and a sampled command line runs."""

import itertools
from pathlib import Path

import pytest
import yaml
from conftest import run_train, write_binarized_mnist
from omegaconf import DictConfig, OmegaConf
from test_config import compose_config

from draw_exp.training import build

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


def fixed_overrides(spec):
    return [a for a in spec["command"] if not a.startswith("${")]


def grid(spec):
    names = list(spec["parameters"])
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(spec["parameters"][n]["values"] for n in names))
    ]


def test_the_sweeps_cover_the_questions():
    assert {p.stem for p in SWEEPS} >= {"attention_T", "latent_lstm", "read_write", "learning_rate"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_configuration_composes_and_instantiates(path, tmp_path):
    spec = yaml.safe_load(path.read_text())
    assert spec["program"] == "train.py" and spec["metric"] == {"name": "val/nll_bound", "goal": "minimize"}
    assert (
        spec["command"][:3] == ["${env}", "${interpreter}", "${program}"]
        and spec["command"][-1] == "${args_no_hyphens}"
    )
    for params in grid(spec):
        overrides = fixed_overrides(spec) + [f"{k}={v}" for k, v in params.items()]
        cfg = compose_config(*overrides, tmp_path=tmp_path)
        for key, value in params.items():
            node = OmegaConf.select(cfg, key)
            assert (node.type if isinstance(node, DictConfig) else node) == value, key  # a group: its chosen type
        build(cfg)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
@pytest.mark.slow
def test_a_sampled_command_line_trains(path, tmp_path):
    spec = yaml.safe_load(path.read_text())
    params = grid(spec)[-1]  # the largest corner of the grid
    write_binarized_mnist(tmp_path / "data")
    tiny = [
        f"paths.data_dir={tmp_path / 'data'}",
        "data.verify=false",
        "data.batch_size=10",
        "data.num_workers=0",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.pictures=null",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    shrink = [] if "T" in params else ["T=2"]
    result = run_train(*fixed_overrides(spec), *[f"{k}={v}" for k, v in params.items()], *shrink, *tiny, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_a_sweep_file_maps_onto_a_hydra_multirun_of_the_same_grid(path):
    from draw_exp.sweep_grid import multirun_command

    spec = yaml.safe_load(path.read_text())
    command = multirun_command(path, ["paths.data_dir=/data"])
    assert command[1:3] == ["train.py", "-m"] and command[-1] == "paths.data_dir=/data"
    swept = {a.split("=", 1)[0]: a.split("=", 1)[1].split(",") for a in command[3:-1] if "," in a}
    combos = [dict(zip(swept, values, strict=True)) for values in itertools.product(*swept.values())]
    assert combos == [{k: str(v) for k, v in g.items()} for g in grid(spec)]  # the same runs, in the same order
    assert "logger=csv" in command and "logger=wandb" not in command
