"""Callbacks: what the pictures callback sends to W&B; the moving average of the weights."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger

from draw_exp.callbacks import ExponentialMovingAverage, SmoothedMetric, send_pictures
from draw_exp.errors import ConfigError
from draw_exp.model import DRAW
from draw_exp.pictures import render_all


class CapturingWandbLogger(WandbLogger):
    """A W&B logger that keeps what it is given instead of starting a W&B run."""

    def __init__(self):
        super().__init__(offline=True)
        self.sent = {}

    def log_metrics(self, metrics, step=None):
        self.sent.update({key: ("metric", value, step) for key, value in metrics.items()})

    def log_image(self, key, images, step=None, **kwargs):
        self.sent[key] = ("image", images, step)

    def log_video(self, key, videos, step=None, **kwargs):
        self.sent[key] = ("video", videos, step)


def test_the_kl_per_step_reaches_wandb_as_a_native_bar_chart_of_its_values(tmp_path):
    torch.manual_seed(0)
    model = DRAW((1, 12, 12), T=5, latent_size=3, lstm_size=8, attention_type="gaussian", read_size=2, write_size=3)
    files = render_all(
        model,
        torch.rand(4, 1, 12, 12),
        torch.randn(5, 4, 3),
        tmp_path,
        animated=2,
        strip_every=2,
        scale=1,
        recon_noise=torch.randn(5, 4, 3),
    )
    logger = CapturingWandbLogger()
    send_pictures(SimpleNamespace(loggers=[logger], global_step=7), files)

    kind, chart, step = logger.sent["charts/kl_per_step_table"]
    assert kind == "metric" and step == 7
    assert chart.table.columns == ["step", "kl_nats"]
    written = [line.split(",") for line in (tmp_path / "kl_per_step.csv").read_text().splitlines()[1:]]
    assert chart.table.data == [[int(t), float(kl)] for t, kl in written] and len(written) == 5
    assert all(kl > 0 for _, kl in chart.table.data)  # KL in nats per step, not placeholders
    assert logger.sent["pictures/kl_per_step"][0] == "image"  # the matplotlib picture stays, for every logger
    assert logger.sent["pictures/drawing_samples"][0] == "video"


class Regression(pl.LightningModule):
    """A linear map fitted by SGD: small enough to follow every weight by hand. Validation and test read the same
    batch, so their losses must agree when they see the same weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(3, 1)
        self.x = torch.randn(16, 3)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3

    def loss(self):
        return torch.nn.functional.mse_loss(self.layer(self.x), self.y)

    def training_step(self, batch, batch_idx):
        return self.loss()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss())

    def test_step(self, batch, batch_idx):
        self.log("test/loss", self.loss())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def loader(self, batches):
        return torch.utils.data.DataLoader(torch.zeros(batches, 1), batch_size=1)

    def train_dataloader(self):
        return self.loader(5)

    def val_dataloader(self):
        return self.loader(1)

    def test_dataloader(self):
        return self.loader(1)


class WeightsAfterEachStep(pl.Callback):
    def __init__(self):
        self.steps = []  # the raw weights after each optimiser step, flattened
        self.validated = []  # the weights each validation saw

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(torch.nn.utils.parameters_to_vector(pl_module.parameters()).detach().clone())

    def on_validation_epoch_end(self, trainer, pl_module):  # before the average's callback (it comes later) swaps back
        if not trainer.sanity_checking:
            self.validated.append(torch.nn.utils.parameters_to_vector(pl_module.parameters()).detach().clone())


def fit_with_average(tmp_path, decay, start_step, save_top_k=1):
    module, seen = Regression(), WeightsAfterEachStep()
    ema = ExponentialMovingAverage(decay=decay, start_step=start_step)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_top_k=save_top_k)
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[seen, ema, best], logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module)
    return module, seen, trainer, best


def moving_average(steps, decay, start_step):
    average = None
    for weights in steps[start_step:]:
        average = weights if average is None else decay * average + (1 - decay) * weights
    return average


def test_the_moving_average_is_what_validation_checkpoints_the_test_and_the_end_of_training_see(tmp_path):
    module, seen, trainer, best = fit_with_average(tmp_path, decay=0.7, start_step=2)
    # 2 epochs of 5 steps; the average takes in steps 2..4 by the first validation, 2..9 by the second
    first, final = moving_average(seen.steps[:5], 0.7, 2), moving_average(seen.steps, 0.7, 2)
    assert torch.allclose(seen.validated[0], first, atol=1e-6) and torch.allclose(seen.validated[1], final, atol=1e-6)
    assert not torch.allclose(final, seen.steps[-1], atol=1e-3)  # the average is not the last step's weights
    kept = torch.nn.utils.parameters_to_vector(module.parameters()).detach()
    assert torch.allclose(kept, final, atol=1e-6)  # training ends holding the average

    checkpoint = torch.load(best.best_model_path, weights_only=True)
    saved = torch.cat([checkpoint["state_dict"][k].flatten() for k in ("layer.weight", "layer.bias")])
    raw = torch.cat([checkpoint["current_model_state"][k].flatten() for k in ("layer.weight", "layer.bias")])
    epoch = checkpoint["epoch"]
    assert torch.allclose(saved, seen.validated[epoch], atol=1e-6)  # the weights its validation score is of
    assert torch.allclose(raw, seen.steps[5 * epoch + 4], atol=1e-6)  # for resumes: the raw weights of that step

    tested = trainer.test(module, ckpt_path=best.best_model_path, weights_only=True, verbose=False)[0]["test/loss"]
    assert tested == pytest.approx(float(best.best_model_score), rel=1e-6)  # the average tested, not the raw weights


def test_before_its_start_step_the_average_stays_out_of_validation_and_checkpoints(tmp_path):
    _, seen, _, _ = fit_with_average(tmp_path, decay=0.5, start_step=7, save_top_k=-1)
    assert torch.allclose(seen.validated[0], seen.steps[4])  # step 7 not reached by the first validation
    assert torch.allclose(seen.validated[1], moving_average(seen.steps, 0.5, 7), atol=1e-6)
    first = torch.load(tmp_path / "epoch=0-step=5.ckpt", weights_only=True)
    assert "current_model_state" not in first  # nothing averaged yet: the raw weights, as without the callback
    assert torch.allclose(first["state_dict"]["layer.bias"], seen.steps[4][-1:])
    assert "current_model_state" in torch.load(tmp_path / "epoch=1-step=10.ckpt", weights_only=True)


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, True, "0.9"])
def test_a_decay_outside_zero_to_one_is_refused_naming_the_key(decay):
    with pytest.raises(ConfigError, match=r"callbacks\.ema\.decay=.*must be a number in \(0, 1\)"):
        ExponentialMovingAverage(decay=decay)


def test_a_run_resumed_from_a_checkpoint_keeps_averaging_as_the_uninterrupted_run_does(tmp_path):
    whole, _, _, _ = fit_with_average(tmp_path / "whole", decay=0.6, start_step=1)

    module, ema = Regression(), ExponentialMovingAverage(decay=0.6, start_step=1)
    first = ModelCheckpoint(dirpath=tmp_path / "split", save_last=True)
    options = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                   default_root_dir=tmp_path)  # fmt: skip
    pl.Trainer(max_epochs=1, callbacks=[ema, first], num_sanity_val_steps=0, **options).fit(module)
    module, ema = Regression(), ExponentialMovingAverage(decay=0.6, start_step=1)
    resumed = pl.Trainer(max_epochs=2, callbacks=[ema], num_sanity_val_steps=0, enable_checkpointing=False, **options)
    resumed.fit(module, ckpt_path=tmp_path / "split" / "last.ckpt", weights_only=True)

    vector = torch.nn.utils.parameters_to_vector
    assert torch.allclose(vector(module.parameters()), vector(whole.parameters()), atol=1e-6)


class ScriptedValidation(Regression):
    """Validation logs a scripted ``val/error`` per epoch, so the checkpoint each selection rule picks is known."""

    def __init__(self, errors):
        super().__init__()
        self.errors = errors

    def validation_step(self, batch, batch_idx):
        self.log("val/error", float(self.errors[min(self.current_epoch, len(self.errors) - 1)]))


ERRORS = [9.0, 4.0, 1.0, 6.0, 3.0, 2.5, 2.8]  # one lucky dip (epoch 2), then a better stretch (epochs 4-6)


def fit_smoothed(tmp_path, epochs, window=3, ckpt_path=None, errors=ERRORS):
    smoothing = SmoothedMetric("val/error", window)
    best = ModelCheckpoint(dirpath=tmp_path / "best", monitor="val/error_smoothed", save_last=True)
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[smoothing, best], logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path, limit_train_batches=1,
    )  # fmt: skip
    trainer.fit(ScriptedValidation(errors), ckpt_path=ckpt_path, weights_only=True)
    return best, smoothing


def test_the_smoothed_figure_is_the_mean_of_the_last_window_validations_and_chooses_the_checkpoint(tmp_path):
    best, smoothing = fit_smoothed(tmp_path, epochs=len(ERRORS))
    means = {e: sum(ERRORS[e - 2 : e + 1]) / 3 for e in range(2, len(ERRORS))}  # full windows only
    assert smoothing.values == pytest.approx(ERRORS[-3:])  # the sanity check's validation is not counted
    assert float(best.best_model_score) == pytest.approx(min(means.values()))
    # the raw minimum is epoch 2's lucky 1.0; the mean of the last three is lowest at epoch 6 (2.77)
    assert torch.load(best.best_model_path, weights_only=True)["epoch"] == min(means, key=means.get) == 6


def test_before_the_window_is_full_no_checkpoint_is_chosen_on_the_smoothed_figure(tmp_path):
    # epoch 0's single 0.5 would be the best mean of "the last ones" by far; full windows: 6.17, 7.0, 5.0
    best, _ = fit_smoothed(tmp_path, epochs=5, errors=[0.5, 9.0, 9.0, 3.0, 3.0])
    assert float(best.best_model_score) == pytest.approx(5.0)
    assert torch.load(best.best_model_path, weights_only=True)["epoch"] == 4


def test_a_resumed_run_smooths_over_the_validations_before_the_stop(tmp_path):
    fit_smoothed(tmp_path / "split", epochs=4)
    best, smoothing = fit_smoothed(tmp_path / "split", epochs=5, ckpt_path=tmp_path / "split" / "best" / "last.ckpt")
    assert smoothing.values == pytest.approx(ERRORS[2:5])  # epochs 2 and 3 came from the checkpoint
    assert float(best.current_score) == pytest.approx(sum(ERRORS[2:5]) / 3)


def test_a_metric_the_validation_does_not_log_is_refused_naming_the_key(tmp_path):
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[SmoothedMetric("val/nll_bound")], logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path, enable_checkpointing=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"callbacks\.smoothing\.metric='val/nll_bound'.*logs val/error"):
        trainer.fit(ScriptedValidation(ERRORS))
    assert trainer.global_step == 0  # refused at the sanity check, before any training step


@pytest.mark.parametrize("window", [0, -1, 2.5, True])
def test_a_window_below_one_is_refused_naming_the_key(window):
    with pytest.raises(ConfigError, match=r"callbacks\.smoothing\.window=.*must be an integer >= 1"):
        SmoothedMetric(window=window)
