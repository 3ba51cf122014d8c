"""The hand-written backward's batch-last attention forms equal the textbook read and write (float64)."""

import pytest
import torch

from draw_exp.model.attention import GaussianAttention, NoAttention, filterbank
from draw_exp.model.engines.handwritten_bptt import batch_last_attention, filterbank_batch_last

pytestmark = pytest.mark.usefixtures("float64")  # exact comparisons (tests/conftest.py)


@pytest.mark.parametrize("N,length", [(1, 7), (2, 28), (5, 20), (12, 32)])
def test_batch_last_filterbank_equals_the_filterbank(N, length):
    centre, delta, sigma2 = (
        torch.tensor([10.3, 4.0, -300.0]),
        torch.tensor([2.1, 0.7, 1.0]),
        torch.tensor([1.7, 3.2, 0.01]),
    )
    batch_last = filterbank_batch_last(centre, delta, sigma2, N, length)
    assert batch_last.shape == (N, length, 3)
    torch.testing.assert_close(
        batch_last.permute(2, 0, 1), filterbank(centre, delta, sigma2, N, length), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("attention_class", [GaussianAttention, NoAttention])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 20, 30)])
def test_batch_last_read_and_write_equal_the_textbook_ones(shape, attention_class):
    """Images [C, H, W, B], heads [P, B] (the fused projection's rows)."""
    torch.manual_seed(0)
    attention = attention_class(shape, 8, 3, 4) if attention_class is GaussianAttention else NoAttention(shape, 8)
    batch_last = batch_last_attention(attention)
    h_dec, x, canvas = torch.randn(5, 8), torch.rand(5, *shape), torch.randn(5, *shape)
    weight, bias = batch_last.head_weights()
    heads = (h_dec @ weight.t() + bias).t()  # [P, B]
    read, _ = attention.read(x, x - torch.sigmoid(canvas), h_dec)
    got = batch_last.read(x.permute(1, 2, 3, 0), canvas.permute(1, 2, 3, 0), heads)
    if attention_class is NoAttention:  # the step reads x̂ alone: x's half is step-invariant, added once
        read = read[:, read.shape[1] // 2 :]
    torch.testing.assert_close(got, read.t())
    write, _ = attention.write(h_dec)
    torch.testing.assert_close(batch_last.write(heads), write.permute(1, 2, 3, 0))
