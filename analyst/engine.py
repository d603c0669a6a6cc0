"""Run one read-only query on Spark or DuckDB over the warehouse views; get an Arrow table back.

`run` refuses anything but a single SELECT/WITH query before the engine sees it
(`analyst.sqltext.check_read_only`), on both engines; then the engine's own parser must read it
as one plain query too (Spark: `analyst.spark_guard`; DuckDB: `check_duckdb_statement`), so the
two readings of the text cannot disagree about where a string or a statement ends.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Literal, Protocol, Sequence

import pyarrow as pa

from analyst import catalog, spark_guard
from analyst.catalog import TableInfo
from analyst.sqltext import Dialect, ReadOnlyError, check_read_only, words
from core.config import Config, Paths

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

EngineName = Literal["spark", "duckdb"]
ENGINES: tuple[EngineName, ...] = ("spark", "duckdb")


class Engine(Protocol):
    dialect: Dialect
    paths: Paths
    tables: list[TableInfo]

    def run(self, sql: str) -> pa.Table: ...

    def close(self) -> None: ...


class SparkEngine:
    """Temp views over the live files of each table, in a session of its own on the caller's Spark
    context (`spark_guard.analyst_session`: no SQL on files, no `${...}` substitution); the
    caller's session keeps its settings and views, and is not stopped.

    The table versions are fixed when the engine is made (or given as `tables`); a table's view
    is registered the first time a query names it, so Spark lists only the files of the tables
    a query reads.
    """

    dialect: Dialect = "spark"

    def __init__(self, spark: "SparkSession", paths: Paths, tables: Sequence[TableInfo] | None = None) -> None:
        self.spark = spark_guard.analyst_session(spark)
        self.paths = paths
        self.tables = list(catalog.warehouse_tables(paths) if tables is None else tables)
        self._registered: set[str] = set()

    def run(self, sql: str) -> pa.Table:
        check_read_only(sql, self.dialect)
        spark_guard.check_plan(self.spark, sql)  # before any view is registered
        named = words(sql, self.dialect)
        needed = [t for t in self.tables if t.name in named and t.name not in self._registered]
        catalog.register_spark_views(self.spark, self.paths, needed)
        self._registered.update(t.name for t in needed)
        return spark_guard.analyzed_query(self.spark, sql).toArrow()

    def close(self) -> None:
        for name in sorted(self._registered):
            self.spark.catalog.dropTempView(name)
        self._registered.clear()


class DuckDBEngine:
    """A locked in-memory DuckDB connection (see `catalog.duckdb_connection`); no JVM, no Spark.

    As on Spark, a table's view is registered the first time a query names it, so a query never
    opens the files of a table it does not read.
    """

    dialect: Dialect = "duckdb"

    def __init__(self, paths: Paths, tables: Sequence[TableInfo] | None = None) -> None:
        self.paths = paths
        self.tables = list(catalog.warehouse_tables(paths) if tables is None else tables)
        self.connection: "duckdb.DuckDBPyConnection" = catalog.duckdb_connection(paths, tables=())
        self._registered: set[str] = set()

    def run(self, sql: str) -> pa.Table:
        check_read_only(sql, self.dialect)
        check_duckdb_statement(self.connection, sql)  # before any view is registered
        named = words(sql, self.dialect)
        for info in self.tables:
            if info.name in named and info.name not in self._registered:
                self.connection.register(info.name, catalog.arrow_dataset(info.uri, info.version))
                self._registered.add(info.name)
        return integer_sums(self.connection.execute(sql).arrow())

    def close(self) -> None:
        self.connection.close()


def check_duckdb_statement(connection: "duckdb.DuckDBPyConnection", sql: str) -> None:
    """Raise `ReadOnlyError` unless DuckDB's own parser reads `sql` as exactly one SELECT statement
    (a query that does not parse raises DuckDB's ParserException)."""
    kinds = [statement.type.name for statement in connection.extract_statements(sql)]
    if kinds != ["SELECT"]:
        shown = ", ".join(kinds) or "none"
        # DuckDB makes a PIVOT without an IN (...) list into a CREATE TYPE, then the query
        hint = "; a PIVOT needs its IN (...) list here" if "pivot" in words(sql, "duckdb") else ""
        raise ReadOnlyError("not a single SELECT", f"refused: DuckDB reads {len(kinds)} statements ({shown}); "
                                                   f"only a single read-only SELECT or WITH query is allowed{hint}")


def integer_sums(table: pa.Table) -> pa.Table:
    """DuckDB's SUM of integers is a HUGEINT, which reaches Arrow as decimal128(38, 0); Spark's is
    a bigint. Such columns become int64, so a file written from either engine has the same types;
    a column whose values do not fit int64 stays decimal."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal128(field.type) and (field.type.precision, field.type.scale) == (38, 0):
            try:
                column = table.column(i).cast(pa.int64())
            except pa.ArrowInvalid:  # past int64: keep every digit
                continue
            table = table.set_column(i, field.with_type(pa.int64()), column)
    return table


@contextmanager
def open_engine(name: EngineName, config: Config, tables: Sequence[TableInfo] | None = None) -> Iterator[Engine]:
    """An engine over the warehouse of `config` (at the versions of `tables` when given, else the current ones);
    Spark's session is built only for "spark" and stopped after."""
    if name == "duckdb":
        engine: Engine = DuckDBEngine(config.paths, tables)
        try:
            yield engine
        finally:
            engine.close()
    elif name == "spark":
        from core.spark import spark_session

        spark = spark_session(config.spark)
        try:
            yield SparkEngine(spark, config.paths, tables)
        finally:
            spark.stop()
    else:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")


def is_engine_error(exc: Exception) -> bool:
    """An error the engine raised about the query or the data (a SQL error, a missing table, column
    or file), which the command lines report in one line, not a bug of theirs."""
    import duckdb

    if isinstance(exc, (duckdb.Error, ValueError, catalog.MissingDataFileError)):
        return True
    try:
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - pyspark is always installed here
        return False
    return isinstance(exc, PySparkException)


def engine_error_status(exc: Exception, prog: str) -> int:
    """Exit status 1 after printing an engine error (`is_engine_error`) in one line; anything else
    is raised again, traceback and all."""
    if not is_engine_error(exc):
        raise exc
    print(f"{prog}: error: {str(exc).strip()}", file=sys.stderr)
    return 1
