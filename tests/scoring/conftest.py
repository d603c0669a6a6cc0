"""Fixtures of the scoring tests: a fresh warehouse (see `warehouse.py`) per test."""
from __future__ import annotations

import pytest

from tests.scoring.warehouse import World


@pytest.fixture
def world(tmp_path) -> World:
    w = World(tmp_path)
    w.write_fields()
    return w
