"""Delta tables through delta-rs, written by Spark executors and committed by the driver.

The one module that touches Delta (Delta's Spark jars cannot be fetched on these machines).

Writing: each Spark task streams its rows into Parquet files under the table folder
(`<table>/<col>=<value>/part-<uuid>.parquet` when partitioned) and yields one small row
per file. The driver gathers only those rows, turns them into add actions and commits
them in ONE Delta transaction. Until that commit no reader sees any of the new files,
so a failure at any point before it leaves the table exactly as it was; the orphan
files are removed later by `vacuum`.

Reading: `read_table` hands Spark exactly the live files of a version, never the
folder (a folder holds removed files too).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Mapping, Sequence, TypeVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from core import faults

if TYPE_CHECKING:
    from pyarrow import fs as pafs

WriteMode = Literal["append", "overwrite"]
Result = TypeVar("Result")
FAULT_EXIT_BEFORE_COMMIT = "MVKE_FAULT_EXIT_BEFORE_COMMIT"  # test-only: exit code to die with before a commit

_FILE_ROW = T.StructType(
    [
        T.StructField("path", T.StringType(), False),
        T.StructField("size", T.LongType(), False),
        T.StructField("partition_values", T.MapType(T.StringType(), T.StringType(), True), False),
        T.StructField("num_records", T.LongType(), False),
    ]
)


@dataclass(frozen=True)
class WrittenFiles:
    """What a distributed write produced, before any commit."""

    adds: list[AddAction]
    num_records: int


@dataclass(frozen=True)
class ArrowMap:
    """A mapInArrow-style function run on the executors right before the Parquet writer.

    `function` takes the Arrow batches of a DataFrame's rows and yields batches of `schema`; they
    go into the files as they are. Spark's own `df.mapInArrow(function, schema)` followed by the
    write would turn every output row into a Spark row and back into Arrow between the two.
    """

    function: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
    schema: T.StructType


class ConcurrentCommitError(RuntimeError):
    """Another writer committed to the table after the snapshot a read-modify-write was based on,
    or changed the partitions a replace was replacing (since it planned, or since `replaced_as_of`),
    or committed anything while a whole-table overwrite was being made. Nothing was committed."""


@dataclass(frozen=True)
class Snapshot:
    """The version a read-modify-write read (None: no table yet); its commit lands only on top of it."""

    uri: str
    version: int | None


def snapshot(uri: str) -> Snapshot:
    return Snapshot(uri, table_version(uri))


def retry_on_conflict(update: Callable[[], Result], attempts: int = 5) -> Result:
    """Run a read-modify-write (`update` takes its own snapshot) again when another writer won the race."""
    for attempt in range(1, attempts + 1):
        try:
            return update()
        except ConcurrentCommitError:
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri)


def table_version(uri: str) -> int | None:
    """The table's current version, or None if there is no table."""
    return DeltaTable(uri).version() if table_exists(uri) else None


def open_table(uri: str, version: int | None = None) -> DeltaTable:
    if not table_exists(uri):
        raise FileNotFoundError(f"no Delta table at {uri}")
    try:
        return DeltaTable(uri, version=version)
    except Exception as exc:  # delta-rs raises a generic error for a missing version
        if version is None:
            raise
        raise ValueError(f"{uri} has no version {version} (latest is {DeltaTable(uri).version()})") from exc


def write_table(
    df: DataFrame,
    uri: str,
    *,
    mode: WriteMode,
    partition_by: Sequence[str] = (),
    replace_partitions: Sequence[str] | None = None,
    commit_info: dict[str, str] | None = None,
    based_on: Snapshot | None = None,
    replaced_as_of: int | None = None,
    through: ArrowMap | None = None,
) -> int:
    """Write `df` to the Delta table at `uri` in one atomic commit; return the new version.

    mode="append" adds rows. mode="overwrite" replaces the whole table, or, when
    `replace_partitions` lists values of the single partition column, only those
    partitions (rows of `df` outside them are an error). Creates the table if needed.
    `based_on`, `replaced_as_of`: see `commit`. `through`: the rows written are
    `through.function`'s output for the rows of `df` (see ArrowMap), with `through.schema`.
    """
    schema = df.schema if through is None else through.schema
    _check_write_args(schema.names, uri, mode, partition_by, replace_partitions)
    arrow_schema = spark_to_arrow_schema(schema)
    written = write_files(df, uri, partition_by=partition_by, through=through)
    _check_inside_replaced(uri, written.adds, partition_by, replace_partitions)
    return commit(uri, written.adds, arrow_schema, mode=mode, partition_by=partition_by,
                  replace_partitions=replace_partitions, commit_info=commit_info, based_on=based_on,
                  replaced_as_of=replaced_as_of)


def write_files(df: DataFrame, uri: str, *, partition_by: Sequence[str] = (),
                through: ArrowMap | None = None) -> WrittenFiles:
    """Executors write `df` (or `through`'s output for it) as Parquet files under `uri`; nothing
    is committed.

    Only one small row per file comes back to the driver.
    """
    filesystem, root, _ = arrow_filesystem(uri)  # resolved here: executors have their own working directory
    arrow_schema = spark_to_arrow_schema(df.schema if through is None else through.schema)
    data_schema = pa.schema([f for f in arrow_schema if f.name not in partition_by])
    partition_cols = list(partition_by)

    def write_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        faults.maybe_kill_executor()
        if through is not None:
            batches = through.function(batches)
        writers: dict[tuple, tuple[pq.ParquetWriter, str, dict[str, str | None]]] = {}
        counts: dict[tuple, int] = {}
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                table = pa.Table.from_batches([batch])
                for key, part in _split_by_partition(table, partition_cols):
                    if key not in writers:
                        values = dict(zip(partition_cols, key))
                        rel = _new_data_file(values)
                        filesystem.create_dir(posixpath.dirname(f"{root}/{rel}"), recursive=True)
                        writers[key] = (pq.ParquetWriter(f"{root}/{rel}", data_schema, filesystem=filesystem),
                                        rel, values)
                        counts[key] = 0
                    writers[key][0].write_table(part.select(data_schema.names).cast(data_schema))
                    counts[key] += part.num_rows
        finally:
            for writer, _, _ in writers.values():
                writer.close()
        if not writers:
            return
        yield pa.RecordBatch.from_pylist(
            [
                {
                    "path": rel,
                    "size": filesystem.get_file_info(f"{root}/{rel}").size,
                    "partition_values": list(values.items()),
                    "num_records": counts[key],
                }
                for key, (_, rel, values) in writers.items()
            ],
            schema=to_arrow_schema(_FILE_ROW),
        )

    filesystem.create_dir(root, recursive=True)
    rows = df.mapInArrow(write_task, _FILE_ROW).collect()
    now_ms = int(time.time() * 1000)
    adds = [
        AddAction(
            path=row.path,
            size=row.size,
            partition_values=dict(row.partition_values),
            modification_time=now_ms,
            data_change=True,
            stats=json.dumps({"numRecords": row.num_records}),
        )
        for row in rows
    ]
    return WrittenFiles(adds=adds, num_records=sum(r.num_records for r in rows))


def copy_partition(spark: SparkSession, uri: str, version: int, column: str, value: str, target_uri: str, *,
                   commit_info: dict[str, str] | None = None, based_on: Snapshot | None = None) -> int:
    """Replace the whole (unpartitioned) table `target_uri` with the rows of partition `column` =
    `value` of `uri` at `version`, in one commit; return its version.

    Executors copy the partition's files with pyarrow (the files dealt over the cores), streaming row groups
    and writing `column` into each copy: no row passes through the JVM. The same rows through a
    Spark read and `write_table` cost about as much as the scoring job's own write
    (docs/performance.md). `based_on` as in `commit`.
    """
    table = open_table(uri, version)
    _check_readable(table, uri)
    if column not in table.metadata().partition_columns:
        raise ValueError(f"{uri}: {column!r} is not a partition column")
    schema = spark_to_arrow_schema(arrow_to_spark_schema(table.schema().to_arrow()))  # as write_table has it
    adds = pa.table(table.get_add_actions(flatten=True))
    relative = adds.filter(_in_partition(adds[f"partition.{column}"], value)).column("path").to_pylist()
    source, _, files = arrow_filesystem(table.table_uri, relative)
    target, root, _ = arrow_filesystem(target_uri)
    constant = pc.cast(pa.array([value], pa.string()), schema.field(column).type)[0]  # "2026-11-12" -> a date

    def copy_task(paths: Iterator[str]) -> Iterator[tuple[str, int, int]]:
        for path in paths:
            rel, rows = _new_data_file({}), 0
            with pq.ParquetFile(path, filesystem=source) as parquet, \
                    pq.ParquetWriter(f"{root}/{rel}", schema, filesystem=target) as writer:
                for batch in parquet.iter_batches():
                    # a column the table has and this file lacks reads null, as through Spark
                    columns = [pa.repeat(constant, batch.num_rows) if f.name == column
                               else batch.column(f.name).cast(f.type) if f.name in batch.schema.names
                               else pa.nulls(batch.num_rows, f.type) for f in schema]
                    writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
                    rows += batch.num_rows
            yield rel, target.get_file_info(f"{root}/{rel}").size, rows

    target.create_dir(root, recursive=True)
    copied = (spark.sparkContext.parallelize(files, max(1, min(len(files), spark.sparkContext.defaultParallelism)))
              .mapPartitions(copy_task).collect()) if files else []
    now_ms = int(time.time() * 1000)
    written = [AddAction(path=rel, size=size, partition_values={}, modification_time=now_ms, data_change=True,
                         stats=json.dumps({"numRecords": rows})) for rel, size, rows in copied]
    return commit(target_uri, written, schema, mode="overwrite", commit_info=commit_info, based_on=based_on)


def write_arrow(
    table: pa.Table,
    uri: str,
    *,
    mode: WriteMode,
    partition_by: Sequence[str] = (),
    replace_partitions: Sequence[str] | None = None,
    commit_info: dict[str, str] | None = None,
    based_on: Snapshot | None = None,
    replaced_as_of: int | None = None,
) -> int:
    """Write a small, driver-side Arrow table (a registry, a run log) in one commit
    (`based_on` and `replaced_as_of` as in `commit`).

    Files are written with this project's pyarrow, so every reader here can read them
    (delta-rs's own writer emits Arrow view types that pyarrow 14 cannot read).
    """
    _check_write_args(table.column_names, uri, mode, partition_by, replace_partitions)
    filesystem, root, _ = arrow_filesystem(uri)
    partition_cols = list(partition_by)
    data_schema = pa.schema([f for f in table.schema if f.name not in partition_cols])
    adds = []
    now_ms = int(time.time() * 1000)
    for key, part in _split_by_partition(table, partition_cols):
        values = dict(zip(partition_cols, key))
        rel = _new_data_file(values)
        filesystem.create_dir(posixpath.dirname(f"{root}/{rel}"), recursive=True)
        pq.write_table(part.select(data_schema.names), f"{root}/{rel}", filesystem=filesystem)
        adds.append(AddAction(path=rel, size=filesystem.get_file_info(f"{root}/{rel}").size, partition_values=values,
                              modification_time=now_ms, data_change=True,
                              stats=json.dumps({"numRecords": part.num_rows})))
    filesystem.create_dir(root, recursive=True)
    _check_inside_replaced(uri, adds, partition_by, replace_partitions)
    return commit(uri, adds, table.schema, mode=mode, partition_by=partition_by,
                  replace_partitions=replace_partitions, commit_info=commit_info, based_on=based_on,
                  replaced_as_of=replaced_as_of)


def commit(
    uri: str,
    adds: list[AddAction],
    arrow_schema: pa.Schema,
    *,
    mode: WriteMode,
    partition_by: Sequence[str] = (),
    replace_partitions: Sequence[str] | None = None,
    commit_info: dict[str, str] | None = None,
    based_on: Snapshot | None = None,
    replaced_as_of: int | None = None,
) -> int:
    """Commit files already written under `uri` as one Delta transaction; return its version.

    An append lands whatever else was committed meanwhile (two appends both land). An overwrite
    lands only as the next version after the one it planned its removes on: when another commit
    came in between, a partition replace whose partitions that commit did not touch (two nights
    of different dates publishing at once) is planned again on top of it (`REPLACE_ATTEMPTS`);
    one whose partitions changed (another writer replaced or appended to them, also when neither
    found the partition there) fails with `ConcurrentCommitError`, and so does a whole-table
    overwrite: neither lands rows mixed with the other writer's. (delta-rs's own retry would
    land a replace on top of a commit that only added files, keeping that commit's rows.)
    A read-modify-write (the model registry, the vocabulary, `profiles_latest`) passes the
    snapshot it read: its commit lands as the very next version or not at all, raising
    `ConcurrentCommitError` when any other commit came in between. `replaced_as_of`: a
    partition replace that lands only if its partitions still hold the files they held at that
    version (a rollback that chose what to undo from that version's history).
    """
    if os.environ.get(FAULT_EXIT_BEFORE_COMMIT):
        # Test-only: die like a killed driver, after the data files exist, before the commit.
        os._exit(int(os.environ[FAULT_EXIT_BEFORE_COMMIT]))
    schema = Schema.from_arrow(arrow_schema)
    commit_id = uuid.uuid4().hex
    properties = CommitProperties(custom_metadata={**(commit_info or {}), COMMIT_ID: commit_id},
                                  max_commit_retries=None if based_on is None and mode == "append" else 0)
    if based_on is not None and based_on.uri != uri:
        raise ValueError(f"a snapshot of {based_on.uri} cannot guard a commit to {uri}")
    if replaced_as_of is not None and replace_partitions is None:
        raise ValueError("replaced_as_of guards a partition replace: give replace_partitions")
    filters = None
    if replace_partitions is not None:
        filters = [(partition_by[0], "in", [str(v) for v in replace_partitions])]
    exists = table_exists(uri)
    if based_on is not None and based_on.version is None and exists:
        raise _concurrent(uri, based_on)
    if replaced_as_of is not None and not exists:
        raise ValueError(f"{uri}: no table, so no version {replaced_as_of} to guard the replace with")
    expected, since = None, None  # the files the replaced partitions must still hold, and since when
    if replaced_as_of is not None:
        expected, since = _files_in(open_table(uri, replaced_as_of), filters), f"since version {replaced_as_of}"
    if not exists:
        try:
            create_table_with_add_actions(
                uri, schema, adds, mode="error", partition_by=list(partition_by) or None,
                commit_properties=properties,
            )
        except Exception:
            if not table_exists(uri):
                raise
            if based_on is not None:
                raise _concurrent(uri, based_on) from None
            # Another writer created the table since we looked (two first runs at once). An append
            # lands on top of its version; a replace only of partitions that writer left empty,
            # as this job found them; a whole-table overwrite not at all.
            if mode == "overwrite" and filters is None:
                raise ConcurrentCommitError(
                    f"{uri}: another writer created the table while this job was overwriting it; nothing was "
                    f"committed; run the job again") from None
            if filters is not None:
                expected, since = frozenset(), "since this job found no table"
        else:
            return _committed_version(uri, commit_id)
    for attempt in range(1, REPLACE_ATTEMPTS + 1):
        table = DeltaTable(uri) if based_on is None else open_table(uri, based_on.version)
        existing = table.metadata().partition_columns
        if list(existing) != list(partition_by):
            raise ValueError(f"{uri} is partitioned by {existing}, not {list(partition_by)}")
        if expected is not None and _files_in(table, filters) != expected:
            raise _replaced_meanwhile(uri, partition_by, replace_partitions, since)
        _check_readable(table, uri)
        written = schema
        if mode == "append" or replace_partitions is not None:
            written = _schema_for_partial_write(uri, table.schema(), schema, append=mode == "append")
        try:
            table.create_write_transaction(
                adds, mode=mode, schema=written, partition_by=list(partition_by) or None,
                partition_filters=filters, commit_properties=properties,
            )
            return _committed_version(uri, commit_id)
        except CommitFailedError as exc:
            latest = DeltaTable(uri)
            if based_on is not None and latest.version() != based_on.version:
                raise _concurrent(uri, based_on) from None
            if mode == "overwrite" and filters is None and based_on is None and latest.version() != table.version():
                raise ConcurrentCommitError(
                    f"{uri}: another writer committed version {latest.version()} while this job was "
                    f"overwriting the table; nothing was committed; run the job again") from exc
            if filters is not None and based_on is None and _files_in(latest, filters) != _files_in(table, filters):
                raise _replaced_meanwhile(uri, partition_by, replace_partitions,
                                          f"(version {latest.version()})") from exc
            if based_on is not None or filters is None or attempt == REPLACE_ATTEMPTS:
                raise
            # Another writer committed to other partitions only: replace ours again on top of its commit.
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


# A partition replace that lost a race to commits touching only other partitions plans its
# removes again on the new version, up to this many times (delta-rs commits with no retries).
REPLACE_ATTEMPTS = 20


COMMIT_ID = "commit_id"  # in every commit's metadata: how a job finds the version of its own commit


def _committed_version(uri: str, commit_id: str) -> int:
    """The version of the commit carrying `commit_id` (another writer may have committed since)."""
    for limit in (16, None):
        for entry in DeltaTable(uri).history(limit):
            if entry.get(COMMIT_ID) == commit_id:
                return int(entry["version"])
    raise AssertionError(f"{uri}: commit {commit_id} is not in the table's history")


def _replaced_meanwhile(uri: str, partition_by: Sequence[str], values: Sequence[str], when: str
                        ) -> ConcurrentCommitError:
    return ConcurrentCommitError(
        f"{uri}: another writer changed {partition_by[0]}={', '.join(map(str, values))} {when} while this job "
        f"was replacing it; nothing was committed to this table, and the rows there are that writer's; run the "
        f"job again if its output should be there")


def _files_in(table: DeltaTable, filters: list[tuple[str, str, list[str]]]) -> frozenset[str]:
    """The live files of `table` in the partitions `filters` names (one column, "in" a list of values)."""
    [(column, _, values)] = filters
    adds = table.get_add_actions(flatten=True)
    paths, parts = adds.column("path").to_pylist(), adds.column(f"partition.{column}").to_pylist()
    return frozenset(path for path, value in zip(paths, parts) if _partition_text(value) in values)


def _partition_text(value: object) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def _schema_for_partial_write(uri: str, current: Schema, new: Schema, *, append: bool) -> Schema:
    """The schema a write that keeps some of the table's rows commits, or a ValueError.

    The committed schema becomes the whole table's, and delta-rs checks nothing: an append's new
    columns vanished and its missing ones read null, a partition replace dropped its missing columns
    from every other partition, and a changed type made the other files unreadable. So an append must
    have the table's columns and types; a partition replace keeps the types, may add columns (older
    rows read null) and keeps the table's columns its rows lack (its rows read null there). A column
    (or list element, map value, struct field) nullable in the table stays nullable: the kept rows
    may hold nulls, and a non-null declaration for the whole table made delta-rs refuse to read it.
    """
    old = {f["name"]: f for f in json.loads(current.to_json())["fields"]}
    fresh = {f["name"]: f for f in json.loads(new.to_json())["fields"]}
    retyped = {n: (_bare_type(old[n]["type"]), _bare_type(fresh[n]["type"])) for n in old if n in fresh}
    retyped = {n: types for n, types in retyped.items() if types[0] != types[1]}
    if retyped:
        changes = ", ".join(f"{n} {json.dumps(a)} -> {json.dumps(b)}" for n, (a, b) in sorted(retyped.items()))
        raise ValueError(f"{uri}: the write would change column types ({changes}); overwrite the whole table instead")
    if append and old.keys() != fresh.keys():
        raise ValueError(f"{uri}: an append must have the table's columns; "
                         f"missing {sorted(old.keys() - fresh.keys())}, extra {sorted(fresh.keys() - old.keys())}")
    kept = [{**f, "nullable": True} for n, f in old.items() if n not in fresh]
    # a new column is nullable: the table's other files do not have it
    merged = [_keep_nullable(old[n], f) if n in old else {**f, "nullable": True} for n, f in fresh.items()]
    if not kept and merged == list(fresh.values()):
        return new
    return Schema.from_json(json.dumps({"type": "struct", "fields": [*merged, *kept]}))


_NULLABILITY = ("nullable", "containsNull", "valueContainsNull")


def _bare_type(value: object) -> object:
    """A Delta type from a schema's JSON without its nullability and metadata, to compare types alone."""
    if isinstance(value, dict):
        return {k: _bare_type(v) for k, v in value.items() if k not in (*_NULLABILITY, "metadata")}
    if isinstance(value, list):
        return [_bare_type(v) for v in value]
    return value


def _keep_nullable(old: object, new: object) -> object:
    """`new` (schema JSON of the same bare type as `old`) nullable wherever `old` is."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: bool(v or old.get(k)) if k in _NULLABILITY
                else v if k == "metadata" else _keep_nullable(old.get(k), v) for k, v in new.items()}
    if isinstance(old, list) and isinstance(new, list):
        return [_keep_nullable(o, n) for o, n in zip(old, new)]
    return new


def _concurrent(uri: str, based_on: Snapshot) -> ConcurrentCommitError:
    read = "no table" if based_on.version is None else f"version {based_on.version}"
    return ConcurrentCommitError(
        f"{uri}: another writer committed version {table_version(uri)} after this job read {read}; "
        f"nothing was committed (the job's read-modify-write must start again from the new version)"
    )


def read_table(spark: SparkSession, uri: str, version: int | None = None, *,
               partition: Mapping[str, object] | None = None) -> DataFrame:
    """Exactly the live rows of `uri` at `version` (latest by default), as a Spark DataFrame.

    `partition` ({column: value}) reads only the files of that partition, chosen from the Delta
    log: Spark does not list the others (which, in an old version, the vacuum may have deleted).
    """
    table = open_table(uri, version)
    _check_readable(table, uri)
    schema = arrow_to_spark_schema(table.schema().to_arrow())
    base, files = _spark_paths(uri, table, partition)
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).option("basePath", base).parquet(*files).select(schema.fieldNames())


def unreadable_features(table: DeltaTable) -> list[str]:
    """Table features this module's readers and writers do not apply (they read and replace the
    live files as they are): [] for every table the project writes."""
    problems = []
    if "deletionVectors" in (table.protocol().reader_features or ()):
        problems.append("deletion vectors (rows they delete would be read back)")
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mapping != "none":
        problems.append(f"column mapping mode {mapping!r} (columns are stored under other names)")
    columns = table.metadata().partition_columns
    if problems or not columns:  # column mapping writes random prefixes too; one reason is enough
        return problems
    outside = next((path for path in _live_paths(table) if not _in_partition_folders(path, columns)), None)
    if outside is not None:
        problems.append(f"data files outside <column>=<value> folders, e.g. {outside} (randomized file prefixes: "
                        f"Spark takes partition values from folder names, so {', '.join(columns)} would read null)")
    return problems


def _in_partition_folders(path: str, columns: Sequence[str]) -> bool:
    folders = {part.split("=", 1)[0] for part in unquote(path).split("/")[:-1] if "=" in part}
    return set(columns) <= folders


def _check_readable(table: DeltaTable, uri: str) -> None:
    problems = unreadable_features(table)
    if problems:
        raise ValueError(f"{uri} uses {' and '.join(problems)}, which this project's Delta reader does not apply; "
                         f"drop the table feature with the engine that enabled it (Delta Spark: ALTER TABLE ... "
                         f"DROP FEATURE), or recreate the table")


def partition_changed(uri: str, column: str, values: Sequence[str], since: int) -> bool:
    """Whether the live files of partitions `column` in `values` differ now from version `since`'s."""
    filters = [(column, "in", [str(v) for v in values])]
    return _files_in(DeltaTable(uri), filters) != _files_in(open_table(uri, since), filters)


def _spark_paths(uri: str, table: DeltaTable,
                 partition: Mapping[str, object] | None = None) -> tuple[str, list[str]]:
    """The table folder and its live files (of `partition` only, when given) as Spark reads them.

    Local tables (a path, relative or not, or `file://`) give absolute `file://` paths, decoded: Spark
    resolves a relative path against the JVM's working directory and would read delta-rs's `%20` literally.
    """
    from pyarrow import fs as pafs

    relative = _live_paths(table, partition)
    filesystem, root, files = arrow_filesystem(table.table_uri, relative)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return f"file://{root}", [f"file://{f}" for f in files]
    return uri, [f"{uri.rstrip('/')}/{unquote(path)}" for path in relative]  # the names in the store, under basePath


def _live_paths(table: DeltaTable, partition: Mapping[str, object] | None = None) -> list[str]:
    """The live files of `table` (of `partition`, {column: value}, when given), relative and URL-encoded as logged."""
    adds = table.get_add_actions(flatten=True)
    relative = adds.column("path").to_pylist()
    if not partition:
        return relative
    [(column, value)] = partition.items()
    if column not in table.metadata().partition_columns:
        raise ValueError(f"{table.table_uri} is not partitioned by {column} "
                         f"(partition columns: {table.metadata().partition_columns})")
    values = adds.column(f"partition.{column}").to_pylist()
    return [path for path, v in zip(relative, values) if _partition_text(v) == _partition_text(value)]


def arrow_filesystem(uri: str, relative_paths: Sequence[str] = ()) -> tuple["pafs.FileSystem", str, list[str]]:
    """pyarrow's filesystem for the table folder `uri`, the folder's path in it, and `relative_paths` there.

    `uri` is a local path, `file://` or a store URI pyarrow knows (`s3://`, `gs://`, `abfs(s)://`,
    `hdfs://`; credentials from the environment). The filesystem is resolved once per table; the
    paths it returns have no scheme, as pyarrow wants them next to `filesystem=`. `relative_paths`
    are URL-encoded and relative to the folder, as a Delta log's add actions hold them.
    """
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(uri if "://" in uri else os.path.abspath(uri))
    root = root.rstrip("/")
    paths = []
    for relative in relative_paths:
        if "://" in relative or relative.startswith("/"):
            raise ValueError(f"{uri}: data file {relative} is not inside the table folder")
        paths.append(f"{root}/{unquote(relative)}")
    return filesystem, root, paths


def read_arrow(uri: str, version: int | None = None, columns: Sequence[str] | None = None, *,
               partition: Mapping[str, object] | None = None) -> pa.Table:
    """Read a (small) table on the driver with pyarrow; partitioned tables included.

    For metadata-sized tables (vocabularies, model lists, run logs, one day of tags), never for
    data tables. `partition` ({column: value}, e.g. {"dt": date}) reads only the files of that
    partition, chosen from the Delta log: the other partitions' files are never opened.
    """
    import pyarrow.dataset as ds

    table = open_table(uri, version)
    _check_readable(table, uri)
    schema = pa.schema(table.schema().to_arrow())
    partition_cols = table.metadata().partition_columns
    adds = pa.table(table.get_add_actions(flatten=True))
    for column, value in (partition or {}).items():
        if column not in partition_cols:
            raise ValueError(f"{uri}: {column!r} is not a partition column (those are {partition_cols})")
        adds = adds.filter(_in_partition(adds[f"partition.{column}"], _partition_value(value)))
    relative = adds.column("path").to_pylist()
    if not relative:
        empty = schema.empty_table()
        return empty.select(list(columns)) if columns else empty
    filesystem, root, files = arrow_filesystem(table.table_uri, relative)
    partitioning = ds.partitioning(pa.schema([schema.field(c) for c in partition_cols]), flavor="hive") \
        if partition_cols else None
    dataset = ds.dataset(files, format="parquet", partitioning=partitioning, filesystem=filesystem,
                         partition_base_dir=root, schema=schema)
    return dataset.to_table(columns=list(columns) if columns else None)


def _in_partition(values: pa.ChunkedArray, wanted: str | None) -> pa.ChunkedArray:
    """Which add actions hold partition value `wanted` (None: the null partition)."""
    if wanted is None:
        return pc.is_null(values)
    return pc.fill_null(pc.equal(values.cast(pa.string()), wanted), False)


def partition_values(uri: str, column: str = "dt", version: int | None = None) -> list[str]:
    """The distinct live values of a partition column (at `version`, default latest), from the Delta log alone."""
    if not table_exists(uri):
        return []
    return sorted({p[column] for p in open_table(uri, version).partitions()}, key=lambda v: (v is None, v or ""))


def partition_rows(uri: str, value: str, version: int | None = None, column: str = "dt") -> int:
    """Records of `column` = `value` (at `version`, default latest), from the Delta log's file statistics."""
    adds = pa.table(open_table(uri, version).get_add_actions(flatten=True))
    part = adds.filter(pc.equal(adds[f"partition.{column}"].cast(pa.string()), value))
    return int(pc.sum(part["num_records"]).as_py() or 0)


def history(uri: str) -> list[dict]:
    return DeltaTable(uri).history() if table_exists(uri) else []


def restore(uri: str, version: int) -> int:
    """Make `version` the current state again (a new commit; history is kept)."""
    table = open_table(uri)
    table.restore(version)
    return DeltaTable(uri).version()


def missing_files(uri: str, version: int, partition: Mapping[str, object] | None = None) -> list[str]:
    """The data files `version` of `uri` reads (only `partition`'s, {column: value}, when given)
    that are gone from the store, i.e. vacuumed; [] when every one is there."""
    from pyarrow import fs as pafs

    table = open_table(uri, version)
    filesystem, _, files = arrow_filesystem(table.table_uri, _live_paths(table, partition))
    return [info.path for info in filesystem.get_file_info(files) if info.type == pafs.FileType.NotFound]


def vacuum(uri: str, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
    """Delete files no live version needs that are older than the retention window.

    Also removes orphans left by a writer that died before its commit, and, as they look the
    same, the files of a write still in progress that began before the window: callers keep the
    window longer than any write (`jobs/vacuum.py` sets the floor).
    """
    if retention_hours < 0:
        raise ValueError("retention_hours must be >= 0")
    return open_table(uri).vacuum(
        retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
    )


def spark_to_arrow_schema(schema: T.StructType) -> pa.Schema:
    return to_arrow_schema(schema, timestamp_utc=True)


def arrow_to_spark_schema(schema: pa.Schema) -> T.StructType:
    return from_arrow_schema(pa.schema(schema))


def _check_write_args(
    columns: Sequence[str], uri: str, mode: str, partition_by: Sequence[str], replace_partitions: Sequence[str] | None
) -> None:
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    if not uri or uri != uri.strip():
        raise ValueError(f"table uri must be a non-empty path without surrounding spaces, got {uri!r}")
    missing = [c for c in partition_by if c not in columns]
    if missing:
        raise ValueError(f"partition columns {missing} are not in the DataFrame columns {list(columns)}")
    if replace_partitions is not None:
        if mode != "overwrite":
            raise ValueError("replace_partitions needs mode='overwrite'")
        if len(partition_by) != 1:
            raise ValueError("replace_partitions needs exactly one partition column")
        if not replace_partitions:
            raise ValueError("replace_partitions must name at least one partition value")


def _check_inside_replaced(
    uri: str, adds: list[AddAction], partition_by: Sequence[str], replace_partitions: Sequence[str] | None
) -> None:
    """Refuse files outside the partitions being replaced: they would be added next to that partition's rows."""
    if replace_partitions is None:
        return
    column = partition_by[0]
    stray = {a.partition_values[column] for a in adds} - {str(v) for v in replace_partitions}
    if stray:
        raise ValueError(
            f"{uri}: rows for {column} in {sorted(stray, key=str)} are outside the partitions being replaced "
            f"{sorted(map(str, replace_partitions))}"
        )


def _split_by_partition(table: pa.Table, columns: list[str]) -> Iterable[tuple[tuple, pa.Table]]:
    if not columns:
        yield (), table
        return
    for combo in table.select(columns).group_by(columns).aggregate([]).to_pylist():
        mask = None
        for c in columns:
            m = pc.is_null(table[c]) if combo[c] is None else pc.fill_null(pc.equal(table[c], combo[c]), False)
            mask = m if mask is None else pc.and_(mask, m)
        yield tuple(_partition_value(combo[c]) for c in columns), table.filter(mask)


def _partition_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _new_data_file(partition_values: dict[str, str | None]) -> str:
    """A fresh, unique data file path relative to the table root, in its partition folder."""
    folder = "/".join(f"{c}={_partition_dir_value(v)}" for c, v in partition_values.items())
    name = f"part-{uuid.uuid4().hex}.parquet"
    return f"{folder}/{name}" if folder else name


def _partition_dir_value(value: str | None) -> str:
    """The folder name of a partition value. Values here are dates and model versions; one that
    would need escaping in a path (Spark reads partition values back from the folders) is refused."""
    if value is None:
        return "__HIVE_DEFAULT_PARTITION__"
    if not value or value in (".", "..") or any(c in value for c in '/\\%=:*?"<>|#') or not value.isprintable():
        raise ValueError(f"partition value {value!r} cannot be a folder name as it is; "
                         f"partition by dates, ids or versions without path characters")
    return value
