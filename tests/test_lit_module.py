"""The LightningModule: the loss in nats, aggregated metrics, optimisation and checkpoints."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from draw_exp.errors import ConfigError
from draw_exp.likelihoods import bernoulli_nll
from draw_exp.lit_module import DrawModule

GAUSSIAN = {"type": "gaussian", "read_size": 2, "write_size": 5}


def blobs(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    for k in range(n):
        r, c = torch.randint(4, 20, (2,), generator=g)
        x[k, 0, r : r + 8, c : c + 4] = 1
    return x


def tiny(**kw):
    args = {
        "image_shape": (1, 28, 28),
        "T": 4,
        "latent_size": 8,
        "lstm_size": 64,
        "attention": GAUSSIAN,
        "lr": 1e-2,
        "engine": "fused_loop",
    }
    return DrawModule(**{**args, **kw})


def two_step(module_class=DrawModule, **kw):
    """A DRAW module of two steps and 16 units, for tests that train through Lightning."""
    return module_class(
        image_shape=(1, 28, 28), T=2, latent_size=4, lstm_size=16, attention=GAUSSIAN, engine="fused_loop", **kw
    )


def quiet_trainer(**kw) -> pl.Trainer:
    """A CPU trainer that prints and writes nothing of its own."""
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **kw)


def test_loss_terms_are_recon_plus_summed_step_kl_in_nats():
    module = tiny()
    x = blobs(5)
    torch.manual_seed(0)
    terms = module.loss_terms(x)
    torch.manual_seed(0)
    out = module.model(x)
    torch.testing.assert_close(terms["recon"], bernoulli_nll(out.canvas_logits, x))
    torch.testing.assert_close(terms["kl"], out.kl.sum(1))
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"])
    assert terms["loss"].shape == (5,)


def test_an_untrained_model_scores_about_log2_per_pixel():
    # canvas0 = 0 and small writes: σ(c_T) ≈ ½, so the reconstruction term is near 784 ln 2 = 543.4 nats.
    recon = tiny().loss_terms(blobs(8))["recon"]
    assert ((recon - 784 * math.log(2)).abs() < 60).all()


@pytest.mark.parametrize("attention", [GAUSSIAN, {"type": "none"}])
def test_a_small_model_overfits_32_images(attention):
    torch.manual_seed(0)
    module = tiny(attention=attention)
    optimiser = module.configure_optimizers()
    x = blobs()
    first = None
    for _ in range(150):
        loss = module.loss_terms(x)["loss"].mean()
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert first > 500
    assert loss.item() < 0.25 * first, (first, loss.item())


def test_same_seed_same_loss():
    def run():
        pl.seed_everything(3)
        module = tiny()
        optimiser = module.configure_optimizers()
        for _ in range(3):
            loss = module.loss_terms(blobs(16))["loss"].mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return loss.item()

    assert run() == run()


def test_validation_metrics_are_means_over_the_whole_split(tmp_path):
    """35 images in batches of 10: the logged bound is the mean over 35 images, not a mean of batch means."""
    module = tiny()
    x = blobs(35)
    seen = []
    loss_terms = module.loss_terms

    def recording(batch, noise=None):
        terms = loss_terms(batch, noise)
        seen.append(terms["loss"].detach())
        return terms

    module.loss_terms = recording
    trainer = quiet_trainer(default_root_dir=tmp_path)
    result = trainer.validate(module, DataLoader(x, batch_size=10), verbose=False)[0]
    per_image = torch.cat(seen)
    assert [len(s) for s in seen] == [10, 10, 10, 5]
    batch_means = torch.stack([s.mean() for s in seen]).mean().item()
    assert abs(batch_means - per_image.mean().item()) > 1e-3  # the two means differ here, so the test can tell
    assert result["val/nll_bound"] == pytest.approx(per_image.mean().item(), rel=1e-5)
    assert result["val/loss"] == pytest.approx(result["val/recon"] + result["val/kl"], rel=1e-5)


def test_load_from_checkpoint_alone_restores_the_model(tmp_path):
    module = tiny(attention={"type": "gaussian", "read_size": 3, "write_size": 4}, T=2)
    trainer = quiet_trainer(max_steps=1, default_root_dir=tmp_path, enable_checkpointing=False)
    trainer.fit(module, DataLoader(blobs(8), batch_size=4))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    # weights_only: the checkpoint holds plain containers, nothing to execute
    assert torch.load(path, weights_only=True)["hyper_parameters"]["attention"]["read_size"] == 3
    restored = DrawModule.load_from_checkpoint(path)
    assert restored.model.attention.read_size == 3 and restored.model.T == 2
    noise = torch.randn(2, 3, 8)
    torch.testing.assert_close(restored.model.sample(3, noise=noise), module.model.sample(3, noise=noise))


@pytest.mark.parametrize("lr", [0, -1e-3])
def test_non_positive_learning_rate_is_refused(lr):
    with pytest.raises(ConfigError, match=r"^model\.lr="):
        tiny(lr=lr)


def test_colour_likelihood_reports_bits_per_dim(tmp_path):
    module = tiny(image_shape=(3, 8, 8), attention={"type": "none"}, likelihood={"type": "discretized_logistic"})
    x = torch.randint(0, 256, (12, 3, 8, 8)) / 255
    trainer = quiet_trainer(default_root_dir=tmp_path)
    result = trainer.validate(module, DataLoader(x, batch_size=5), verbose=False)[0]
    assert result["val/bits_per_dim"] == pytest.approx(result["val/nll_bound"] / (3 * 8 * 8 * math.log(2)), rel=1e-5)
    assert "val/bits_per_dim" not in trainer.validate(tiny(), DataLoader(blobs(4), batch_size=4), verbose=False)[0]


def test_unknown_likelihood_is_refused():
    with pytest.raises(ConfigError, match=r"^likelihood\.type='gaussian'"):
        tiny(likelihood={"type": "gaussian"})


class PlantedNaN(DrawModule):
    """Plants a NaN in the reconstruction term of the second training batch (of every batch from the second on,
    with ``diverge``)."""

    diverge = False

    def loss_terms(self, x, noise=None):
        terms = super().loss_terms(x, noise)
        batch_idx = self.trainer.fit_loop.epoch_loop.batch_idx if self.training else -1
        if batch_idx == 1 or (self.diverge and batch_idx >= 1):
            terms["recon"] = terms["recon"] * torch.nan
            terms["loss"] = terms["recon"] + terms["kl"]
        return terms


def fit_planted(nonfinite: str, tmp_path, **kw) -> tuple[PlantedNaN, pl.Trainer, dict]:
    module = two_step(PlantedNaN, nonfinite=nonfinite, **kw)
    trainer = quiet_trainer(max_epochs=1, default_root_dir=tmp_path, enable_checkpointing=False)
    changed = []  # per batch: did it change the weights?
    before = {}

    def snapshot(batch, batch_idx):
        before["weights"] = torch.cat([p.detach().flatten().clone() for p in module.parameters()])

    def compare(outputs, batch, batch_idx):
        after = torch.cat([p.detach().flatten() for p in module.parameters()])
        changed.append(not torch.equal(before["weights"], after))

    module.on_train_batch_start, module.on_train_batch_end = snapshot, compare
    trainer.fit(module, DataLoader(blobs(16), batch_size=4))
    return module, trainer, changed


def test_a_nan_loss_stops_training_naming_the_step_and_the_terms(tmp_path):
    from draw_exp.lit_module import NonFiniteLossError

    with pytest.raises(NonFiniteLossError) as raised:
        fit_planted("error", tmp_path)
    message = str(raised.value)
    assert "global step 1" in message and "batch 1" in message and "recon nan" in message and "kl " in message
    assert "model.nonfinite=skip" in message


def test_nonfinite_skip_skips_that_batch_only(tmp_path):
    module, _trainer, changed = fit_planted("skip", tmp_path)
    assert changed == [True, False, True, True]  # no update from batch 1
    assert module.skipped_batches == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_nonfinite_skip_stops_once_more_batches_than_allowed_were_skipped(tmp_path):
    """A diverged run (every batch from the second on NaN) must not skip its way to a 'finished' run."""
    from draw_exp.lit_module import NonFiniteLossError

    PlantedNaN.diverge = True
    try:
        with pytest.raises(NonFiniteLossError, match=r"3 batches skipped.*model.max_skipped_batches=2"):
            fit_planted("skip", tmp_path, max_skipped_batches=2)
    finally:
        PlantedNaN.diverge = False


def test_learning_rate_schedule_warms_up_then_halves_every_half_life():
    module = tiny(lr=1e-3, lr_warmup_steps=4, lr_half_life_steps=100)
    factors = [module.lr_factor(step) for step in (0, 1, 3, 100, 200)]
    assert factors == pytest.approx([0.25 * 1, 0.5 * 0.5**0.01, 0.5**0.03, 0.5, 0.25])
    assert tiny().configure_optimizers().__class__.__name__ == "Adam"  # no schedule unless asked
    scheduled = tiny(lr_half_life_steps=10).configure_optimizers()
    assert scheduled["lr_scheduler"]["interval"] == "step"
    with pytest.raises(ConfigError, match=r"model.lr_half_life_steps=0"):
        tiny(lr_half_life_steps=0)


def test_weight_decay_shrinks_each_weight_by_rate_times_decay_apart_from_the_gradient_step():
    """AdamW's decoupled decay: with zero gradients Adam's own step is 0, so one step leaves exactly
    p × (1 − lr × weight_decay); plain Adam (weight_decay 0, the default) leaves p as it is."""
    for weight_decay, factor in ((0.0, 1.0), (0.5, 1 - 1e-2 * 0.5)):
        module = tiny(lr=1e-2, weight_decay=weight_decay)
        optimizer = module.configure_optimizers()
        before = [p.detach().clone() for p in module.parameters()]
        for p in module.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        for old, new in zip(before, module.parameters(), strict=True):
            torch.testing.assert_close(new.detach(), old * factor)
    assert module.hparams.weight_decay == 0.5  # kept in the checkpoint's settings


class RecordsObjective(DrawModule):
    """Records each training step's KL weight, its ELBO terms and the objective it returned."""

    steps: list

    def loss_terms(self, x, noise=None):
        terms = super().loss_terms(x, noise)
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return terms

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.steps.append((self.kl_weight(self.global_step), self.last_terms, loss.detach()))
        return loss


def test_kl_warm_up_weighs_the_kl_in_the_training_objective_only():
    """With model.kl_warmup_steps the objective is reconstruction + w·KL, w = (step + 1) / warm-up up to 1; the
    logged terms (and so every bound) stay the unweighted ELBO."""
    assert [tiny(kl_warmup_steps=4).kl_weight(step) for step in (0, 1, 3, 10)] == [0.25, 0.5, 1.0, 1.0]
    assert tiny().kl_weight(0) == 1.0
    with pytest.raises(ConfigError, match=r"model.kl_warmup_steps=-1"):
        tiny(kl_warmup_steps=-1)
    torch.manual_seed(0)
    module = two_step(RecordsObjective, kl_warmup_steps=3)
    module.steps = []
    quiet_trainer(max_steps=4, enable_checkpointing=False).fit(module, DataLoader(blobs(16), batch_size=4))
    assert [weight for weight, _, _ in module.steps] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    for weight, terms, loss in module.steps:
        torch.testing.assert_close(loss, (terms["recon"] + weight * terms["kl"]).mean())
        torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"])  # what is logged
    assert module.steps[0][1]["kl"].mean() > 0.01  # a KL to weigh: the first two objectives are not the ELBO


def test_checkpoints_of_the_model_compile_era_load_with_their_engine():
    """Before model.engine, hyperparameters named the engine by torch.compile's mode."""
    assert tiny(compile="default").model.engine == "handwritten_bptt"
    assert tiny(compile="reduce-overhead").model.engine == "fused_loop_cudagraphs"
    with pytest.raises(ConfigError, match=r"model.engine='max-autotune' is not allowed"):
        tiny(compile="max-autotune")


def test_a_skipped_batch_logs_no_loss_of_its_own(tmp_path):
    """The skipped step's loss is NaN in the log, not the previous batch's value repeated."""
    import csv

    from pytorch_lightning.loggers import CSVLogger

    module = two_step(PlantedNaN, nonfinite="skip")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, DataLoader(blobs(16), batch_size=4))
    rows = [r for r in csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()) if r["train/loss_step"]]
    losses = [float(r["train/loss_step"]) for r in rows]
    assert len(losses) == 4 and math.isnan(losses[1]) and all(math.isfinite(v) for i, v in enumerate(losses) if i != 1)
    assert rows[1]["train/skipped_batches"] == "1.0"


def test_nonfinite_must_be_error_or_skip():
    with pytest.raises(ConfigError, match=r"model.nonfinite='ignore' is not allowed"):
        tiny(nonfinite="ignore")


def test_evaluation_noise_depends_on_the_image_index_only():
    module = tiny(eval_noise_seed=3)
    noise = module.eval_noise(torch.tensor([5, 9, 5]))
    assert noise.shape == (4, 3, 8)
    torch.testing.assert_close(noise[:, 0], noise[:, 2])  # the same image, the same draws, in any batch
    assert not torch.allclose(noise[:, 0], noise[:, 1])
    torch.testing.assert_close(module.eval_noise(torch.tensor([9]))[:, 0], noise[:, 1])
    assert not torch.allclose(tiny(eval_noise_seed=4).eval_noise(torch.tensor([5]))[:, 0], noise[:, 0])
    assert abs(module.eval_noise(torch.arange(2000)).std().item() - 1) < 0.01  # standard normal
