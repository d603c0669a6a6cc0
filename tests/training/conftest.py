"""Fixtures of the training tests: one torch thread, the toy batches of `toy.py`."""
from __future__ import annotations

import pytest
import torch

from tests.training.toy import learnable_batches


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Two cores shared by several test runs: more threads only oversubscribe them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batches() -> list[dict]:
    return learnable_batches(256, 32)
