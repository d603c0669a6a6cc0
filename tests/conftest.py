"""One local Spark session for the whole run: local[2], few shuffle partitions, UI off."""
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
