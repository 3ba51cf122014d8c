"""The classifier's LightningModule: the error it logs is the paper's percent error, exact over a split."""

import pytest
import torch

from draw_exp.errors import ConfigError
from draw_exp.lit_classifier import ClassifierModule, MulticlassError


def test_error_is_percent_misclassified_over_all_batches():
    metric = MulticlassError(3, average="micro")
    metric.update(torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0]]), torch.tensor([0, 2, 2]))  # 1 wrong of 3
    metric.update(torch.tensor([[0, 1.0, 0]]), torch.tensor([0]))  # 1 wrong of 1
    assert metric.compute().item() == pytest.approx(50.0)


def test_a_classifier_without_gaussian_attention_is_refused():
    with pytest.raises(ConfigError, match=r"^attention.type='none' is not allowed for the classifier"):
        ClassifierModule(image_shape=(1, 16, 16), T=2, lstm_size=8, attention={"type": "none"})


def test_training_step_returns_the_mean_cross_entropy():
    torch.manual_seed(0)
    module = ClassifierModule(image_shape=(1, 16, 16), T=2, lstm_size=8, attention={"type": "gaussian", "read_size": 4})
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    x, labels = torch.rand(5, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4])
    loss = module.training_step((x, labels), 0)
    expected = torch.nn.functional.cross_entropy(module.model(x).logits, labels)
    torch.testing.assert_close(loss, expected)


def test_weight_decay_makes_the_optimiser_adamw_with_that_decay():
    attention = {"type": "gaussian", "read_size": 4}
    small = {"image_shape": (1, 16, 16), "T": 2, "lstm_size": 8, "attention": attention}
    optimizer = ClassifierModule(**small, weight_decay=0.1).configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert type(ClassifierModule(**small).configure_optimizers()) is torch.optim.Adam
