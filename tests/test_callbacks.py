"""Callbacks: what the pictures callback sends to W&B."""

from types import SimpleNamespace

import torch
from pytorch_lightning.loggers import WandbLogger

from draw_exp.callbacks import send_pictures
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
