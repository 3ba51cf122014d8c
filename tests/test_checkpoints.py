"""Checkpoint files: atomic writes that a kill cannot truncate, and reads that run no code and name a bad file."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from draw_exp.checkpoints import AtomicCheckpointIO, CheckpointError, read_checkpoint, save_atomically


def test_a_failure_mid_save_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_atomically({"step": 1, "w": torch.ones(1000)}, path)
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"\0" * 100)  # the start of a zip archive, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert read_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind


SAVER = """
import sys, torch
from draw_exp.checkpoints import AtomicCheckpointIO
io, step = AtomicCheckpointIO(), 0
while True:
    step += 1
    io.save_checkpoint({"step": step, "w": torch.full((8_000_000,), float(step))}, sys.argv[1])
    print(step, flush=True)
"""


def test_sigkill_during_saves_never_leaves_a_truncated_checkpoint(tmp_path):
    """A process saves 32 MB checkpoints over one path in a loop and is killed at moments spread over a save."""
    path = tmp_path / "last.ckpt"
    for delay in (0.0, 0.02, 0.05, 0.1):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one save has completed
        assert first.strip(), "the saver died before its first save"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoint = read_checkpoint(path)
        assert torch.equal(checkpoint["w"], torch.full((8_000_000,), float(checkpoint["step"])))


def test_a_truncated_checkpoint_is_named_in_a_clear_error(tmp_path):
    path = tmp_path / "epoch003-step1200.ckpt"
    save_atomically({"state_dict": {"w": torch.ones(10_000)}}, path)
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path, key="ckpt_path")
    message = str(raised.value)
    assert f"ckpt_path='{path}'" in message and "truncated or corrupt" in message and "20000 bytes" in message


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nothing.ckpt")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_reading_a_checkpoint_never_runs_code_from_it(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        torch.save({"state_dict": {}, "extra": Payload()}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="holds objects other than tensors") as raised:
        read_checkpoint(path)
    message = str(raised.value)
    assert "refused: posix.system" in message or "refused: os.system" in message, message
    assert "weights_only" not in message and "corrupt" not in message  # no hint to disable the check


def test_a_slim_copy_keeps_the_model_and_its_data_settings_only(tmp_path):
    from draw_exp.checkpoint_tasks import load_checkpoint
    from draw_exp.checkpoints import slim_checkpoint
    from draw_exp.lit_module import DrawModule

    module = DrawModule(
        image_shape=(1, 6, 6), T=2, latent_size=3, lstm_size=8, attention={"type": "none"}, engine="fused_loop"
    )
    full = {
        "hyper_parameters": dict(module.hparams),
        "state_dict": module.state_dict(),
        "global_step": 7,
        "epoch": 1,
        "optimizer_states": [{"state": {0: torch.zeros(1000)}}],
        "rng_states": {"torch": b"x"},
        "datamodule_hyper_parameters": {"_target_": "draw_exp.data.MNISTDataModule", "data_dir": "/home/a/data"},
    }
    torch.save(full, tmp_path / "full.ckpt")
    slim_checkpoint(tmp_path / "full.ckpt", tmp_path / "slim.ckpt")
    slim = read_checkpoint(tmp_path / "slim.ckpt")
    assert set(slim) == {"hyper_parameters", "state_dict", "datamodule_hyper_parameters", "global_step", "epoch"}
    assert slim["datamodule_hyper_parameters"]["data_dir"] == "data" and slim["global_step"] == 7
    restored, _ = load_checkpoint(str(tmp_path / "slim.ckpt"), "cpu")
    for name, tensor in module.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_a_slim_copy_of_a_classifier_is_still_a_classifier(tmp_path):
    from draw_exp.checkpoint_tasks import load_checkpoint
    from draw_exp.checkpoints import slim_checkpoint
    from draw_exp.lit_classifier import ClassifierModule

    module = ClassifierModule(image_shape=(1, 12, 12), T=2, lstm_size=8, attention={"type": "gaussian", "read_size": 3})
    full = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "optimizer_states": []}
    module.on_save_checkpoint(full)  # as Lightning calls it: the checkpoint says which module wrote it
    torch.save(full, tmp_path / "full.ckpt")
    slim_checkpoint(tmp_path / "full.ckpt", tmp_path / "slim.ckpt")
    restored, _ = load_checkpoint(str(tmp_path / "slim.ckpt"), "cpu")
    assert isinstance(restored, ClassifierModule) and restored.model.T == 2


def test_the_shipped_checkpoint_of_the_old_layout_loads_and_every_engine_agrees_on_it():
    """docs/checkpoints/mnist_gaussian_cpu.ckpt was written before the model core moved to draw.py and engines/:
    it loads strictly (every parameter name unchanged) and the textbook loop and the engines give it one bound."""
    from draw_exp.checkpoint_tasks import load_checkpoint

    path = Path(__file__).resolve().parents[1] / "docs" / "checkpoints" / "mnist_gaussian_cpu.ckpt"
    module, checkpoint = load_checkpoint(str(path), torch.device("cpu"))
    assert checkpoint["hyper_parameters"]["T"] == 64 and module.model.attention.write_size == 5
    torch.manual_seed(0)
    x = (torch.rand(4, 1, 28, 28) < 0.1).float()
    noise = torch.randn(64, 4, 100)
    bounds = {}
    for engine in ("textbook", "fused_loop"):
        module.model.set_engine(engine)
        with torch.no_grad():
            bounds[engine] = module.loss_terms(x, noise)["loss"]
    torch.testing.assert_close(bounds["fused_loop"], bounds["textbook"], rtol=1e-5, atol=1e-3)
    assert ((bounds["textbook"] > 0) & torch.isfinite(bounds["textbook"])).all()


def test_a_plain_state_dict_given_as_a_checkpoint_is_refused_with_what_it_holds(tmp_path):
    """torch.save(model.state_dict()) is not a train.py checkpoint: evaluate.py and sample.py say so, naming the
    file and the keys it holds, instead of a KeyError."""
    from draw_exp.checkpoint_tasks import load_checkpoint

    path = tmp_path / "weights.pt"
    save_atomically({"encoder.weight": torch.ones(3), "decoder.weight": torch.ones(3)}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(str(path), torch.device("cpu"))
    message = str(raised.value)
    assert str(path) in message and "not a checkpoint of train.py" in message and "encoder.weight" in message


def test_every_shipped_checkpoint_has_its_sha256_in_the_docs():
    """docs/checkpoints/*.ckpt: the docs name each file and give its sha256 after the name in the same paragraph,
    and every sha256 so given is the file's."""
    import hashlib
    import re

    docs = Path(__file__).resolve().parents[1] / "docs"
    paragraphs = [p for page in sorted(docs.glob("*.md")) for p in re.split(r"\n\s*\n", page.read_text())]
    shipped = sorted((docs / "checkpoints").glob("*.ckpt"))
    assert shipped
    for path in shipped:
        mention = f"checkpoints/{path.name}`"
        stated = [
            found.group()
            for p in paragraphs
            if mention in p and (found := re.search(r"\b[0-9a-f]{64}\b", p[p.index(mention) :]))
        ]
        assert stated, f"no sha256 after {path.name} in a paragraph of docs/*.md"
        assert set(stated) == {hashlib.sha256(path.read_bytes()).hexdigest()}, path.name
