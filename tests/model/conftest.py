"""Fixtures of the model's tests."""

import pytest
import torch


@pytest.fixture
def float64():
    """Exact comparisons: the test runs in float64, and the default dtype is restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
