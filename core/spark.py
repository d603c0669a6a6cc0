"""The one place a SparkSession is built."""
from __future__ import annotations

import os
import sys
from typing import TypeVar

from pyspark.sql import SparkSession

from core.config import SparkConf

E = TypeVar("E", bound=Exception)


def prepare_environment() -> None:
    """Defaults every Spark process on this machine needs: loopback, the venv's python."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def launched_by_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def spark_session(conf: SparkConf) -> SparkSession:
    """A session with the project's settings.

    Under spark-submit the master and resources come from its command line; a plain
    Python process (tests, notebooks) gets `conf.master`.
    """
    prepare_environment()
    builder = SparkSession.builder.appName(conf.app_name)
    if not launched_by_spark_submit():
        builder = builder.master(conf.master)
        if conf.driver_memory:
            builder = builder.config("spark.driver.memory", conf.driver_memory)
    settings = {
        "spark.sql.shuffle.partitions": str(conf.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(conf.arrow_batch_size),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # With the UI off nobody reads the finished jobs, stages and queries Spark keeps for it;
        # by default a long driver (a night, a test run) holds the last 1000 of each, plans and
        # metrics included, in its heap.
        "spark.ui.retainedJobs": "50",
        "spark.ui.retainedStages": "50",
        "spark.ui.retainedTasks": "1000",
        "spark.sql.ui.retainedExecutions": "20",
        "spark.sql.adaptive.enabled": "true",
        "spark.executorEnv.PYSPARK_PYTHON": os.environ["PYSPARK_PYTHON"],
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        **conf.extra,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def raised_on_executor(exc: Exception, error: type[E]) -> E | None:
    """The `error` an executor's Python code raised, rebuilt from the Spark exception that carries it.

    Spark hands the driver a PythonException holding the worker's traceback as text; a job that
    raises its own error on an executor gets it back here, to report in one line. None when
    `exc` did not come from an `error` raised in a Python worker.
    """
    from pyspark.errors import PythonException

    if not isinstance(exc, PythonException):
        return None
    prefix = f"{error.__module__}.{error.__qualname__}: "
    for line in str(exc).splitlines():
        if line.startswith(prefix):
            return error(line[len(prefix):])
    return None
