"""Build the synthetic raw tables as Spark DataFrames and write them as Delta tables.

Users, events, items and ground truth are generated on the executors: `spark.range`
enumerates block ids, and each block's rows are drawn with numpy inside the writer's task
(`core.delta.ArrowMap`) from its own seed stream (seed, stream, block). Only the small
`World` travels in the task closures; nothing of size users or items is built on the driver.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core import delta
from core.config import GenerateConf, Paths
from core.contract import EVENT_TYPES, SCHEMAS, check_schema
from core.tables import Raw, raw_uri
from synthetic.events import EVENTS_SCHEMA, events_batch
from synthetic.items import ITEMS_SCHEMA, items_batch, num_item_blocks
from synthetic.truth import GROUND_TRUTH_SCHEMA, ground_truth_batches
from synthetic.users import USERS_SCHEMA, users_batch
from synthetic.world import World, build_world

BlockBatches = Callable[[int], Iterable[pa.RecordBatch]]


@dataclass(frozen=True)
class GenerationSummary:
    rows: dict[str, int]  # table name -> row count
    events_by_type: dict[str, int]

    @property
    def click_through_rate(self) -> float:
        """Clicks per impression."""
        return self.events_by_type.get("click", 0) / max(self.events_by_type.get("impression", 0), 1)

    @property
    def conversion_rate(self) -> float:
        """Conversions per click."""
        return self.events_by_type.get("conversion", 0) / max(self.events_by_type.get("click", 0), 1)


def generate(spark: SparkSession, conf: GenerateConf, paths: Paths) -> GenerationSummary:
    """Replace the raw tables under `paths.raw` with synthetic data; one Delta commit per table.

    Every table's files are written before the first commit, so a failure while drawing or
    writing (the ground truth, U x T rows, is by far the largest) leaves every table as it
    was, never new tags and items beside old events. Where no Delta table was, the files this run
    wrote are removed again (with the folder, if it did not exist): uncommitted, they would read
    as a raw Parquet folder.
    """
    world = build_world(conf)
    sources = raw_sources(spark, world)
    for table, source in sources.items():
        if table in SCHEMAS:
            check_schema(source.schema, table)
        check_replaceable(raw_uri(paths, table))
    uris = [raw_uri(paths, table) for table in sources]
    new = [uri for uri in uris if not _folder_exists(uri)]
    plain = {uri: _files(uri) for uri in uris if uri not in new and not delta.table_exists(uri)}  # no Delta log
    plain = {uri: files for uri, files in plain.items() if files is not None}  # unlisted: nothing can be told apart
    commit_info = {"writer": "synthetic", "seed": str(conf.seed)}
    try:
        written = {table: delta.write_files(source.rows, raw_uri(paths, table), through=source.through)
                   for table, source in sources.items()}
        for table, source in sources.items():
            delta.commit(raw_uri(paths, table), written[table].adds, delta.spark_to_arrow_schema(source.schema),
                         mode="overwrite", commit_info=commit_info)
    except BaseException:
        for uri in new:
            if not delta.table_exists(uri):  # committed (by this run, or another one meanwhile): a table now
                _remove_folder(uri)
        for uri, before in plain.items():
            after = _files(uri)
            if after is not None and not delta.table_exists(uri):
                _remove_files(uri, after - before)
        raise
    rows = {table.value: files.num_records for table, files in written.items()}
    return GenerationSummary(rows=rows, events_by_type=count_event_types(spark, paths))


def _folder_exists(uri: str) -> bool:
    """Whether anything is at `uri`; locally a link counts even when its target is gone."""
    from pyarrow import fs as pafs

    filesystem, root, _ = delta.arrow_filesystem(uri)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return os.path.lexists(root)
    return filesystem.get_file_info(root).type != pafs.FileType.NotFound


def _files(uri: str) -> set[str] | None:
    """The files under `uri` (None when it cannot be listed)."""
    from pyarrow import fs as pafs

    filesystem, root, _ = delta.arrow_filesystem(uri)
    try:
        listed = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except OSError:
        return None
    return {info.path for info in listed if info.type == pafs.FileType.File}


def _remove_files(uri: str, files: set[str]) -> None:
    filesystem, _, _ = delta.arrow_filesystem(uri)
    for path in sorted(files):
        try:
            filesystem.delete_file(path)
        except OSError:  # the error that stopped the run is the one to see
            pass


def _remove_folder(uri: str) -> None:
    filesystem, root, _ = delta.arrow_filesystem(uri)
    try:
        filesystem.delete_dir(root)
    except OSError:  # never there, or a volume that is gone: the error that stopped the run is the one to see
        pass


def check_replaceable(uri: str) -> None:
    """Refuse, before anything is written, a table that an unpartitioned overwrite cannot replace:
    a partitioned one, or one using table features this project's writer does not apply (its
    commit would fail after the tables before it had taken the new world)."""
    if not delta.table_exists(uri):
        return
    table = delta.open_table(uri)
    partitioned = list(table.metadata().partition_columns)
    if partitioned:
        raise ValueError(f"{uri} is partitioned by {partitioned}; generate writes unpartitioned tables, "
                         "so move the table away first")
    features = delta.unreadable_features(table)
    if table.metadata().configuration.get("delta.appendOnly", "false").lower() == "true":
        features.append("delta.appendOnly (no overwrite may remove its files)")
    if features:
        raise ValueError(f"{uri} uses {' and '.join(features)}, which generate cannot replace; move the table "
                         f"away first")


@dataclass(frozen=True)
class TableSource:
    """A raw table as the writer gets it: `rows`, or `through`'s output for `rows` (the block ids
    whose rows are drawn inside the executor tasks, straight into the Parquet writer)."""

    rows: DataFrame
    through: delta.ArrowMap | None = None

    @property
    def schema(self) -> T.StructType:
        return self.rows.schema if self.through is None else self.through.schema

    def frame(self) -> DataFrame:
        """The table's rows as a DataFrame (for reading them without writing)."""
        return self.rows if self.through is None else self.rows.mapInArrow(self.through.function, self.schema)


def raw_sources(spark: SparkSession, world: World) -> dict[Raw, TableSource]:
    rows = list(zip(world.tag_ids.tolist(), world.tag_names.tolist(), world.tag_categories.tolist()))
    user_blocks = _blocks(spark, world.num_user_blocks, world.conf.partitions)
    return {
        Raw.TAGS: TableSource(spark.createDataFrame(rows, SCHEMAS[Raw.TAGS])),
        Raw.ITEMS: TableSource(_blocks(spark, num_item_blocks(world), world.conf.partitions),
                               _drawn(lambda block: [items_batch(world, block)], ITEMS_SCHEMA)),
        Raw.USERS: TableSource(user_blocks, _drawn(lambda block: [users_batch(world, block)], USERS_SCHEMA)),
        Raw.EVENTS: TableSource(user_blocks, _drawn(lambda block: [events_batch(world, block)], EVENTS_SCHEMA)),
        Raw.GROUND_TRUTH: TableSource(user_blocks, _drawn(lambda block: ground_truth_batches(world, block),
                                                          GROUND_TRUTH_SCHEMA)),
    }


def raw_frames(spark: SparkSession, world: World) -> dict[Raw, DataFrame]:
    """Every raw table's rows as a DataFrame, drawn when read (what `generate` writes)."""
    return {table: source.frame() for table, source in raw_sources(spark, world).items()}


def count_event_types(spark: SparkSession, paths: Paths) -> dict[str, int]:
    """Events per event_type in the written events table, contract types first."""
    by_type = delta.read_table(spark, raw_uri(paths, Raw.EVENTS)).groupBy("event_type").count().collect()
    counts = {str(r["event_type"]): r["count"] for r in by_type}
    ordered = {t: counts.pop(t, 0) for t in EVENT_TYPES}
    return {**ordered, **dict(sorted(counts.items()))}


def _blocks(spark: SparkSession, num_blocks: int, partitions: int) -> DataFrame:
    """Block ids 0 .. num_blocks - 1 (column `block`), spread over the tasks."""
    return spark.range(0, num_blocks, 1, numPartitions=max(1, min(partitions, num_blocks))).select(
        F.col("id").alias("block"))


def _drawn(batches_of: BlockBatches, schema: T.StructType) -> delta.ArrowMap:
    """Block ids -> the rows of those blocks, generated inside the executor task."""

    def generate_blocks(id_batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for ids in id_batches:
            for block in ids.column(0).to_pylist():
                yield from batches_of(block)

    return delta.ArrowMap(generate_blocks, schema)
