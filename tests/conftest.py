"""Shared fixtures: one local Spark session for the whole run (local[2], few shuffle partitions, UI off), one torch thread."""
from __future__ import annotations

import gc

import pytest

from core.config import SparkConf


@pytest.fixture(scope="session")
def spark():
    from core.spark import spark_session

    session = spark_session(SparkConf(master="local[2]", shuffle_partitions=2, driver_memory="3g",
                                      app_name="mvke-tests"))
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def release_spark_memory():
    """After each module, give back what its tests left in the one driver: cached tables, and the
    broadcasts and shuffles of DataFrames no longer referenced. Spark frees the last two only once
    the driver's garbage collector has seen them go (Python's proxies first, then the JVM's), which
    a long run of small tests otherwise leaves to a heap that is nearly full."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:  # no test has started one yet, or a test stopped its own
        return
    session.catalog.clearCache()
    gc.collect()
    session.sparkContext._jvm.System.gc()


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test: tiny tensors run faster so, and the 2 cores are shared
    with other processes (more threads only oversubscribe them)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
