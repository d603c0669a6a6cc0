"""Fixtures of the training tests: one torch thread, the toy batches of `toy.py`."""
from __future__ import annotations

import pytest

from tests.training.toy import learnable_batches


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs with one torch thread (`one_torch_thread` in tests/conftest.py)."""


@pytest.fixture
def batches() -> list[dict]:
    return learnable_batches(256, 32)
