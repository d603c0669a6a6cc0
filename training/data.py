"""Training examples on their way to the workers: stored columns, Petastorm converters, dict batches.

Driver side: `model_columns` picks and types the columns a batch needs; `petastorm_converters`
materialises the train and validation DataFrames once under `paths.petastorm_root` and deletes
them afterwards, also on failure. Worker side: `converter_batches` is the one adapter from a
Petastorm converter (one shard of it) to an iterable of model batches (dict of tensors);
`epoch_batches` opens one for a training epoch, seeded by (train.seed, epoch).

Storage layout: a multi field `f` (array of exactly `multi_len`) is stored as `multi_len` scalar
columns `f__0 .. f__{L-1}` (and `f_weights__i`), and stacked back into [B, L] tensors by
`to_model_batch`. Petastorm turns an array column into a matrix row by row in Python
(np.vstack of one array per row), most of the data path's cost; scalar columns convert
column-wise (docs/performance.md).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mvke.fields import LABEL_KEYS, TAG_CATEGORY_KEY, TAG_KEY, FieldSpec, weights_key
from training.errors import EmptyWindowError
from training.loop import USER_KEY

SOURCES = {TAG_KEY: "tag_index", TAG_CATEGORY_KEY: "category_id"}


class Column(NamedTuple):
    """A batch column: "ids" (int64 tensor) or "float" (float32 tensor), [B] or [B, L] (array)."""

    kind: Literal["ids", "float"]
    array: bool = False


def batch_columns(fields: Sequence[FieldSpec]) -> dict[str, Column]:
    """Every batch key with its column type, user fields first."""
    columns: dict[str, Column] = {}
    for f in fields:
        columns[f.name] = Column("ids", array=f.kind == "multi")
        if f.kind == "multi":
            columns[weights_key(f.name)] = Column("float", array=True)
    columns.update({TAG_KEY: Column("ids"), TAG_CATEGORY_KEY: Column("ids"), USER_KEY: Column("ids")})
    columns.update({label: Column("float") for label in LABEL_KEYS})
    return columns


def stored_name(name: str, position: int) -> str:
    """The scalar column holding position `position` of array column `name`."""
    return f"{name}__{position}"


def model_columns(examples: DataFrame, fields: Sequence[FieldSpec], multi_len: int,
                  keep: Sequence[str] = ()) -> DataFrame:
    """The stored batch columns (then the `keep` columns): ids int, weights and labels float.

    `user_key` is a 64-bit hash of user_id (GAUC groups by it); `tag` and `tag_category` come
    from the examples' tag_index and category_id; multi fields are split into scalar columns.
    """
    selected = [(USER_KEY, F.xxhash64("user_id"))]
    for name, column in batch_columns(fields).items():
        element = "int" if column.kind == "ids" else "float"
        source = F.col(SOURCES.get(name, name))
        if column.array:
            selected += [(stored_name(name, i), source[i].cast(element)) for i in range(multi_len)]
        elif name != USER_KEY:
            selected.append((name, source.cast(element)))
    names = [name for name, _ in selected]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"stored column names clash: {clashes} (a field is named like another's array part)")
    selected = [column.alias(name) for name, column in selected]
    return examples.select(*selected, *keep)


@contextmanager
def petastorm_converters(spark: SparkSession, frames: Mapping[str, DataFrame], cache_root: str,
                         partitions: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """{name: SparkDatasetConverter} for each DataFrame, cached under `cache_root`; deleted on exit.

    Each frame is split into `partitions` Parquet files (one row group at least each), so
    that every one of that many shards has rows to read, with the rows of each file in a
    random order (seeded): the shuffle a reader without a row buffer relies on. A frame whose
    rows all hash into fewer files (a tiny split: 3 rows can land in one of 2 files; the other
    file is written empty, without a row group) raises EmptyWindowError, since a worker with an
    empty shard cannot read at all.

    Both the split and the order are functions of the rows' content and `seed` alone (hash
    partitioning, then a seeded hash as the sort key), never of the input's partition layout:
    the same examples give the same files on local[2] and on a cluster, so training with one
    reader worker is reproducible across layouts.
    """
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    Path(cache_root).mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, Path(cache_root).resolve().as_uri())
    converters: dict[str, Any] = {}
    try:
        for name, frame in frames.items():
            row = [F.col(c) for c in frame.columns]
            shuffled = (frame.repartition(partitions, F.xxhash64(*row))
                        .sortWithinPartitions(F.xxhash64(F.lit(seed), *row)))
            converter = make_spark_converter(shuffled, dtype="float32")
            # Shards are dealt files by their position in this list, which Spark returns in no
            # fixed order: sorted, every rank (and every run) sees the same deal.
            converter.file_urls = sorted(converter.file_urls)
            converters[name] = converter
            check_every_shard_has_rows(name, row_groups(converter.file_urls), partitions)
        yield converters
    finally:
        for converter in converters.values():
            converter.delete()


def row_groups(file_urls: Sequence[str]) -> list[int]:
    """The row groups of each Parquet file at `file_urls`, from their footers (an empty file has none)."""
    import pyarrow.parquet as pq
    from pyarrow import fs

    counts = []
    for url in file_urls:
        filesystem, path = fs.FileSystem.from_uri(url)
        with filesystem.open_input_file(path) as handle:
            counts.append(pq.ParquetFile(handle).metadata.num_row_groups)
    return counts


def check_every_shard_has_rows(split: str, row_groups: Sequence[int], partitions: int) -> None:
    """Raise EmptyWindowError when a file of the split has no row group: the worker whose shard it
    is (with `partitions` = train.num_proc, one file per worker) would have no rows to read."""
    filled = sum(1 for count in row_groups if count > 0)
    if filled < partitions:
        raise EmptyWindowError(
            f"the {split} split's rows all fell into {filled} of {partitions} files (rows go to files by a "
            f"hash of their content), so {partitions - filled} of train.num_proc={partitions} workers would "
            f"have no rows to read; add rows to the split (a wider train.window_days) or lower train.num_proc"
        )


def shard_files(file_urls: Sequence[str], cur_shard: int, shard_count: int) -> list[str]:
    """The files of shard `cur_shard` of `shard_count`: every shard_count-th file of the sorted list.

    Whole files, not Petastorm's deal of row groups by their index: that deal gave one rank every
    full 32 MB row group and the other every file's small remainder whenever the files held an
    even number of row groups each, so both took the same steps over very different row counts.
    Files hold the rows by a hash of their content, so shards differ only by that hash's spread.
    """
    if not 0 <= cur_shard < shard_count <= len(file_urls):
        raise ValueError(f"shard {cur_shard} of {shard_count} needs at least {shard_count} files, got "
                         f"{len(file_urls)}")
    return list(file_urls)[cur_shard::shard_count]


@contextmanager
def converter_batches(converter: Any, fields: Sequence[FieldSpec], *, multi_len: int, cur_shard: int,
                      shard_count: int, batch_size: int, num_epochs: int | None, shuffle: bool = False,
                      shuffle_buffer: int = 0, workers: int = 1, seed: int | None = None) -> Iterator[Iterator[dict]]:
    """Model batches from shard `cur_shard` of `shard_count` of a Petastorm converter.

    num_epochs=None repeats the shard forever (the caller takes a fixed number of steps).
    shuffle=True reads the row groups in a random order drawn once per reader from `seed` (every
    pass repeats it; Petastorm takes a seed of 0 or None as unseeded) and the rows of each row
    group in a new order every time it is read, drawn from the same seed: a shard of one row
    group (a file under Petastorm's 32 MB) would otherwise give the same batches every epoch.
    shuffle_buffer > 0
    also mixes rows across row groups through a buffer of that many rows (it halves the
    loader's throughput, see docs/performance.md). Uses
    Petastorm's BatchedDataLoader (columnar; its shuffling buffer draws rows with torch), not the
    default DataLoader, which splits every row group into Python rows and collates them again.
    """
    from petastorm import make_batch_reader
    from petastorm.pytorch import BatchedDataLoader

    kinds = batch_columns(fields)
    files = shard_files(converter.file_urls, cur_shard, shard_count)
    with make_batch_reader(files, num_epochs=num_epochs, workers_count=workers, seed=seed, shuffle_row_groups=shuffle,
                           shuffle_rows=shuffle,
                           # One worker reads in this thread: Petastorm's thread pool with one worker sometimes
                           # ended a reader's shard with no rows at all (1 loader in 12 here, either rank).
                           reader_pool_type="dummy" if workers == 1 else "thread") as reader:
        loader = BatchedDataLoader(reader, batch_size=batch_size, shuffling_queue_capacity=shuffle_buffer)
        yield (to_model_batch(raw, kinds, multi_len) for raw in loader)


def epoch_seed(*parts: int) -> int:
    """A seed in 1 .. 2**31 - 1 derived from `parts` (e.g. train.seed, epoch): never 0.

    Petastorm takes a seed of 0 or None to mean "unseeded" and shuffles with numpy's global
    generator, so train.seed=0 must not reach it as is.
    """
    digest = hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1) + 1


@contextmanager
def epoch_batches(converter: Any, fields: Sequence[FieldSpec], *, multi_len: int, cur_shard: int,
                  shard_count: int, batch_size: int, steps: int, seed: int, epoch: int, shuffle_buffer: int = 0,
                  workers: int = 1) -> Iterator[Iterator[dict]]:
    """Exactly `steps` training batches of epoch `epoch` from shard `cur_shard`, from a reader of its own.

    The reader's row group order, and the row order within each group, are drawn from
    `epoch_seed(seed, epoch)`: a new order every epoch, the same for a rerun and for a run
    resumed at this epoch. A shard that holds fewer than
    `steps` batches is read again (another seeded pass), so every rank takes `steps` steps (equal
    step counts keep the gradient allreduce in step). With `shuffle_buffer > 0` the buffer draws
    rows with torch's global generator, which is seeded here from (seed, epoch, cur_shard);
    with `workers > 1` the order also depends on thread timing and is not reproducible.
    """
    import torch

    if shuffle_buffer > 0:
        torch.manual_seed(epoch_seed(seed, epoch, cur_shard))
    with converter_batches(converter, fields, multi_len=multi_len, cur_shard=cur_shard, shard_count=shard_count,
                           batch_size=batch_size, num_epochs=None, shuffle=True, shuffle_buffer=shuffle_buffer,
                           workers=workers, seed=epoch_seed(seed, epoch)) as stream:
        yield islice(stream, steps)


def to_model_batch(raw: Mapping[str, Any], kinds: Mapping[str, Column], multi_len: int) -> dict:
    """A stored batch as a model batch: ids int64, weights and labels float32, arrays stacked to [B, L]."""
    import torch

    batch = {}
    for name, column in kinds.items():
        dtype = torch.int64 if column.kind == "ids" else torch.float32
        if column.array:
            parts = [torch.as_tensor(raw[stored_name(name, i)]) for i in range(multi_len)]
            batch[name] = torch.stack(parts, dim=1).to(dtype)  # [B, L]
        else:
            batch[name] = torch.as_tensor(raw[name]).to(dtype)
    return batch
