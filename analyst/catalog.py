"""Every warehouse Delta table as a read-only view, in Spark and in DuckDB, under its own name
(and each staged candidate table as `staging_<table>`).

Both engines read exactly the live files of each table's current version (the Delta log
lists them), never the folder, which also holds files that later versions removed:

- Spark: a temp view over `core.delta.read_table`; a view over a DataFrame cannot write.
- DuckDB: each table is a `pyarrow.dataset` over its live files (hive partitioning, `dt`
  typed DATE), registered into an in-memory connection. Then the connection's external
  access is switched off and its configuration locked: no COPY TO, EXPORT, ATTACH, INSTALL,
  LOAD or file reads/writes of any kind. (DuckDB 1.1 has no allow-list of directories, so
  `read_parquet` views would be blocked as well; the registered Arrow datasets keep working.)

The views are a snapshot: the versions current when they were registered.
"""
from __future__ import annotations

import datetime as dt
import difflib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import pyarrow as pa
import pyarrow.dataset as ds

from core import delta
from core.config import Paths
from core.tables import Warehouse, staging_uri, warehouse_uri

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

PROFILES = Warehouse.USER_TAG_PROFILES
STAGING_PREFIX = "staging_"


class UnpublishedDateError(ValueError):
    """A date with no published profiles; the message lists the published dates."""


class UnknownTagError(ValueError):
    """A requested tag that neither the profiles nor the tags table of the date know."""


class UnscoredObjectiveError(ValueError):
    """A requested objective that the profiles of the date do not hold (ctr_x_cvr without score.combined)."""


class MissingDataFileError(OSError):
    """A warehouse table's Delta log lists a data file that is not there."""


@dataclass(frozen=True)
class TableInfo:
    name: str
    uri: str
    version: int
    partition_columns: tuple[str, ...]


def warehouse_tables(paths: Paths) -> list[TableInfo]:
    """The warehouse tables that exist, in `Warehouse` order, then the staged candidates.

    A table under the staging root (a candidate the nightly gates held back) is named
    `staging_<table>`, e.g. `staging_user_tag_profiles`.
    """
    tables = []
    for prefix, uri_of in (("", warehouse_uri), (STAGING_PREFIX, staging_uri)):
        for table in Warehouse:
            uri = _local_absolute(uri_of(paths, table))
            if delta.table_exists(uri):
                handle = delta.open_table(uri)
                tables.append(TableInfo(prefix + table.value, uri, handle.version(),
                                        tuple(handle.metadata().partition_columns)))
    return tables


def published_dates(tables: Sequence[TableInfo]) -> list[dt.date]:
    """The dates of `user_tag_profiles` at its version in `tables` (from `warehouse_tables`), oldest first.

    Take them from the same `tables` the engine reads, so that the dates and the rows come
    from one version even when a publish or a rollback commits in between. Empty if there
    is no such table.
    """
    profiles = [t for t in tables if t.name == PROFILES.value]
    if not profiles:
        return []
    return [dt.date.fromisoformat(v) for v in delta.partition_values(profiles[0].uri, version=profiles[0].version)]


def resolve_published_date(date: dt.date | None, published: Sequence[dt.date]) -> dt.date:
    """`date` if profiles were published for it, the latest published date if None; else an error."""
    if not published:
        raise UnpublishedDateError("no published profiles yet: user_tag_profiles is missing or empty")
    if date is None:
        return max(published)
    if date not in published:
        shown = ", ".join(d.isoformat() for d in sorted(published)[-14:])
        more = f" (the last 14 of {len(published)})" if len(published) > 14 else ""
        raise UnpublishedDateError(f"no published profiles for {date.isoformat()}; published dates{more}: {shown}")
    return date


def known_tags(tables: Sequence[TableInfo], dates: Sequence[dt.date],
               among: Sequence[str] | None = None) -> set[str]:
    """The tag ids that the profiles or the `tags` rows of `dates` hold, at the versions in `tables`
    (only those of `among` when given: then the files are read for those tags alone)."""
    wanted = ds.field("dt").isin(pa.array(list(dates), pa.date32()))
    if among is not None:
        wanted &= ds.field("tag_id").isin(pa.array(list(among), pa.string()))
    known: set[str] = set()
    for info in tables:
        if info.name in (PROFILES.value, Warehouse.TAGS.value):
            rows = arrow_dataset(info.uri, info.version).to_table(columns=["tag_id"], filter=wanted)
            known.update(rows.column("tag_id").unique().to_pylist())
    return known


def check_known_tags(tables: Sequence[TableInfo], tags: Sequence[str], dates: Sequence[dt.date]) -> None:
    """Raise `UnknownTagError` unless the profiles or the `tags` rows of one of `dates` hold each tag.

    A tag no such row holds (a typo, a retired or not yet created tag) would count 0 users
    without a word, like a real tag that nobody has; a real tag with 0 users passes.
    """
    known = known_tags(tables, dates, tags)
    unknown = [t for t in tags if t not in known]
    if unknown:
        raise UnknownTagError(unknown_tags_message(unknown, known_tags(tables, dates), dates))


def check_scored_objectives(tables: Sequence[TableInfo], objectives: Sequence[str], dates: Sequence[dt.date]) -> None:
    """Raise `UnscoredObjectiveError` unless the profiles of every one of `dates` hold each objective.

    The scoring job writes ctr_x_cvr only with `score.combined`; asked of a date scored without
    it, a query would count 0 users for every tag without a word (or, compared with such a date,
    a change of +N for every tag).
    """
    profiles = next((t for t in tables if t.name == PROFILES.value), None)
    if profiles is None or not objectives:
        return
    for date in dates:
        wanted = ds.field("dt") == pa.scalar(date, pa.date32())
        rows = arrow_dataset(profiles.uri, profiles.version).to_table(columns=["objective"], filter=wanted)
        scored = set(rows.column("objective").unique().to_pylist())
        for objective in objectives:
            if objective not in scored:
                raise UnscoredObjectiveError(f"objective {objective!r} has no profiles on {date.isoformat()}; "
                                             f"objectives: {', '.join(sorted(scored)) or 'none'}")


def unknown_tags_message(unknown: Sequence[str], known: set[str], dates: Sequence[dt.date]) -> str:
    """`unknown tag(s) on D: t11 (close: t1); zz`, with up to 5 close known tag ids per unknown tag."""
    hints = []
    for tag in unknown:
        close = difflib.get_close_matches(tag, sorted(known), n=5, cutoff=0.6)
        hints.append(f"{tag} (close: {', '.join(close)})" if close else tag)
    return f"unknown tag(s) on {' or '.join(d.isoformat() for d in dates)}: {'; '.join(hints)}"


def arrow_dataset(uri: str, version: int | None = None) -> ds.Dataset:
    """The live files of a Delta table version as a lazy pyarrow dataset (filters skip whole partitions).

    The files are read through pyarrow's filesystem for `uri` (`core.delta.arrow_filesystem`).
    """
    table = delta.open_table(_local_absolute(uri), version)
    schema = pa.schema(table.schema().to_arrow())
    relative = table.get_add_actions(flatten=True).column("path").to_pylist()
    if not relative:
        return ds.dataset(schema.empty_table())
    filesystem, root, files = delta.arrow_filesystem(table.table_uri, relative)
    columns = table.metadata().partition_columns
    partitioning = ds.partitioning(pa.schema([schema.field(c) for c in columns]), flavor="hive") \
        if columns else None
    try:
        return ds.dataset(files, schema=schema, format="parquet", partitioning=partitioning, filesystem=filesystem,
                          partition_base_dir=root)
    except FileNotFoundError as exc:
        raise MissingDataFileError(f"table {uri} (version {table.version()}) lists a data file that is gone: "
                                   f"{exc}; it was deleted outside the pipeline (or by a vacuum with a short "
                                   f"retention): restore it, or roll the table back") from None


def register_spark_views(spark: "SparkSession", paths: Paths,
                         tables: Sequence[TableInfo] | None = None) -> list[TableInfo]:
    """A temp view per table (default: every existing one), named like the table; returns the tables."""
    tables = list(warehouse_tables(paths) if tables is None else tables)
    for info in tables:
        delta.read_table(spark, info.uri, info.version).createOrReplaceTempView(info.name)
    return tables


def duckdb_connection(paths: Paths, *, lock: bool = True,
                      tables: Sequence[TableInfo] | None = None) -> "duckdb.DuckDBPyConnection":
    """An in-memory DuckDB connection with a view per existing warehouse table.

    With `lock` (the default, and always in the `sql` and `audience` jobs) the connection
    cannot read or write any file, install or load extensions, attach databases, or change
    these settings back. `lock=False` is for notebooks that also want to read their own files.
    `tables` (default: `warehouse_tables(paths)`) pins the table versions to register.
    """
    import duckdb

    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        for info in warehouse_tables(paths) if tables is None else tables:
            connection.register(info.name, arrow_dataset(info.uri, info.version))
        if lock:
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
    except Exception:
        connection.close()
        raise
    return connection


def _local_absolute(uri: str) -> str:
    """A relative local path made absolute (pyarrow and delta-rs then agree on file paths)."""
    return uri if "://" in uri else os.path.abspath(uri)
