"""Shared fixtures: one local Spark session for the whole run (local[2], few shuffle partitions, UI off), one torch thread."""
from __future__ import annotations

import pytest

from core.config import SparkConf


@pytest.fixture(scope="session")
def spark():
    from core.spark import spark_session

    session = spark_session(SparkConf(master="local[2]", shuffle_partitions=2, driver_memory="3g",
                                      app_name="mvke-tests"))
    yield session
    session.stop()


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test: tiny tensors run faster so, and the 2 cores are shared
    with other processes (more threads only oversubscribe them)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
