"""evaluate.py and sample.py on a checkpoint that train.py wrote."""

import json

import pytest
from conftest import run_script, run_train, write_binarized_mnist
from PIL import Image

pytestmark = pytest.mark.slow  # runs train.py, evaluate.py or sample.py as the user does


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    write_binarized_mnist(root / "data")
    data = [f"paths.data_dir={root / 'data'}", "data.verify=false", "data.num_workers=0"]
    result = run_train(
        "data=binarized_mnist",
        "T=3",
        "lstm_size=16",
        "latent_size=4",
        "attention.write_size=3",
        *data,
        "data.batch_size=10",
        "trainer.max_epochs=1",
        "logger=csv",
        "callbacks.pictures=null",
        f"hydra.run.dir={root / 'run'}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, root / "run" / "checkpoints" / "last.ckpt", data


def test_evaluate_takes_the_checkpoints_data_and_adds_its_results_beside_it(trained):
    """No data= and no data folder on the command line: the run's own data set and folder; a second evaluation
    adds its rows to the same file instead of replacing the first's."""
    root, ckpt, _data = trained
    result = run_script(
        "evaluate.py",
        f"ckpt_path={ckpt}",
        "iw_samples=[2,20]",
        "max_batch=64",
        f"hydra.run.dir={root / 'eval'}",
        cwd=root / "run",
    )  # another folder: data/ is not here
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NLL bound (nats)" in result.stdout and "data: BinarizedMNISTDataModule in " in result.stdout
    rows = json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert [(r["bound"], r["K"]) for r in rows] == [("elbo", 1), ("iw", 2), ("iw", 20)]
    for row in rows:
        assert row["images"] == 30 and row["split"] == "test" and row["data"] == "BinarizedMNISTDataModule"
        assert row["nll_bound"] > 0 and row["stderr"] > 0 and row["seconds"] >= 0 and row["global_step"] == 6
    assert rows[2]["nll_bound"] < rows[0]["nll_bound"]  # 20 samples: tighter than the ELBO
    logged = json.loads((root / "run" / "metrics.json").read_text())
    assert logged["best_checkpoint"].endswith("step6.ckpt")  # the run tested the weights last.ckpt holds
    assert rows[0]["nll_bound"] == pytest.approx(logged["test"]["test/nll_bound"], rel=1e-6)  # the same noise too

    first = rows
    for run in ("eval2", "eval3"):  # the same seed twice: the same bound, to the last digit
        again = run_script(
            "evaluate.py",
            f"ckpt_path={ckpt}",
            "split=val",
            "limit_images=7",
            "iw_samples=5",
            "seed=3",
            f"hydra.run.dir={root / run}",
            cwd=root,
        )
        assert again.returncode == 0, again.stderr[-3000:]
    rows = json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert len(rows) == 7 and rows[:3] == first
    assert [(r["split"], r["images"], r["seed"]) for r in rows[3:]] == [("val", 7, 3)] * 4
    assert rows[4]["K"] == rows[6]["K"] == 5 and rows[4]["nll_bound"] == rows[6]["nll_bound"]


def test_limit_images_spreads_over_the_split(trained):
    """A split sorted by class would give one class in its first N images: the N are spread evenly instead."""
    from omegaconf import OmegaConf

    from draw_exp.checkpoint_tasks import load_checkpoint, load_split

    _root, ckpt, _ = trained
    module, checkpoint = load_checkpoint(str(ckpt), "cpu")
    cfg = OmegaConf.create({"data": None, "num_workers": 0, "paths": {"data_dir": "unused"}})
    _, loader = load_split(cfg, module, checkpoint, "test", limit_images=4)
    indices = [i for batch in loader for i in batch[1].tolist()]
    assert loader.dataset.indices == [0, 10, 19, 29] and indices == [0, 10, 19, 29]  # each image's place in the split


def test_sample_writes_the_pictures(trained):
    root, ckpt, _data = trained
    out = root / "pictures"
    result = run_script("sample.py", f"ckpt_path={ckpt}", "n=9", "reconstruct=4", f"hydra.run.dir={out}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(out / "drawing_samples.gif").n_frames == 3
    assert Image.open(out / "drawing_reconstructions.gif").n_frames == 3
    assert (out / "samples.png").is_file() and (out / "kl_per_step.png").is_file()


def test_sample_without_the_data_set_still_draws_samples(trained):
    root, ckpt, _ = trained
    out = root / "no-data"
    result = run_script(
        "sample.py", f"ckpt_path={ckpt}", "n=4", f"paths.data_dir={root / 'nowhere'}", f"hydra.run.dir={out}", cwd=root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reconstructions skipped: they need the data set" in result.stdout
    assert (out / "samples.png").is_file() and not (out / "reconstructions.png").exists()


def test_a_missing_checkpoint_is_named(tmp_path):
    result = run_script("evaluate.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", cwd=tmp_path)
    assert result.returncode != 0 and "nope.ckpt" in result.stderr


def test_evaluating_on_the_wrong_data_set_is_refused(trained):
    root, ckpt, _data = trained
    result = run_script("evaluate.py", f"ckpt_path={ckpt}", "data=svhn", f"paths.data_dir={root / 'data'}", cwd=root)
    assert result.returncode != 0 and "(3, 32, 32)" in result.stderr and "(1, 28, 28)" in result.stderr
