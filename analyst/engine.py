"""Run one read-only query on Spark or DuckDB over the warehouse views; get an Arrow table back.

`run` refuses anything but a single SELECT/WITH query before the engine sees it
(`analyst.sqltext.check_read_only`), on both engines.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Literal, Protocol

import pyarrow as pa

from analyst import catalog
from analyst.catalog import TableInfo
from analyst.sqltext import Dialect, check_read_only, words
from core.config import Config, Paths

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

EngineName = Literal["spark", "duckdb"]
ENGINES: tuple[EngineName, ...] = ("spark", "duckdb")


class Engine(Protocol):
    dialect: Dialect
    tables: list[TableInfo]

    def run(self, sql: str) -> pa.Table: ...

    def close(self) -> None: ...


class SparkEngine:
    """Temp views over the live files of each table, on the caller's session (which it does not stop).

    The table versions are fixed when the engine is made; a table's view is registered the
    first time a query names it, so Spark lists only the files of the tables a query reads.
    """

    dialect: Dialect = "spark"

    def __init__(self, spark: "SparkSession", paths: Paths) -> None:
        if spark.conf.get("spark.sql.parser.escapedStringLiterals", "false").lower() == "true":
            raise ValueError("spark.sql.parser.escapedStringLiterals=true changes how string literals are "
                             "escaped; the analyst queries need it false")
        self.spark = spark
        self.paths = paths
        self.tables = catalog.warehouse_tables(paths)
        self._registered: set[str] = set()

    def run(self, sql: str) -> pa.Table:
        check_read_only(sql, self.dialect)
        named = words(sql, self.dialect)
        needed = [t for t in self.tables if t.name in named and t.name not in self._registered]
        catalog.register_spark_views(self.spark, self.paths, needed)
        self._registered.update(t.name for t in needed)
        return self.spark.sql(sql).toArrow()

    def close(self) -> None:
        for name in sorted(self._registered):
            self.spark.catalog.dropTempView(name)
        self._registered.clear()


class DuckDBEngine:
    """A locked in-memory DuckDB connection (see `catalog.duckdb_connection`); no JVM, no Spark."""

    dialect: Dialect = "duckdb"

    def __init__(self, paths: Paths) -> None:
        self.tables = catalog.warehouse_tables(paths)
        self.connection: "duckdb.DuckDBPyConnection" = catalog.duckdb_connection(paths, tables=self.tables)

    def run(self, sql: str) -> pa.Table:
        check_read_only(sql, self.dialect)
        return self.connection.execute(sql).arrow()

    def close(self) -> None:
        self.connection.close()


@contextmanager
def open_engine(name: EngineName, config: Config) -> Iterator[Engine]:
    """An engine over the warehouse of `config`; Spark's session is built only for "spark" and stopped after."""
    if name == "duckdb":
        engine: Engine = DuckDBEngine(config.paths)
        try:
            yield engine
        finally:
            engine.close()
    elif name == "spark":
        from core.spark import spark_session

        spark = spark_session(config.spark)
        try:
            yield SparkEngine(spark, config.paths)
        finally:
            spark.stop()
    else:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
