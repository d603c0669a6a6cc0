"""What runs on the executors: Arrow batches of user_features in, profile rows (or user vectors) out.

The model is loaded once per executor Python process (`_MODELS`, keyed by the artifact path;
Spark reuses its Python workers across tasks), Arrow rows are taken in blocks of `block_size`
users, the user tower runs over a block TOWER_ROWS users at a time, and each block is scanned
against the broadcast tag matrices (`scoring.scan`). Only the profile rows leave the function.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pyspark import Broadcast
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema
from torch import Tensor

from mvke.base import ProfileModel
from mvke.fields import FieldSpec, weights_key
from scoring.memory import keep_freed_memory
from scoring.scan import ScanPlan, ScanTags, Selection, scan_block
from scoring.topn import UndefinedScoreError

PROFILE_SCHEMA = T.StructType([
    T.StructField("dt", T.DateType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("objective", T.StringType()),
    T.StructField("rank", T.IntegerType()),
    T.StructField("tag_id", T.StringType()),
    T.StructField("score", T.DoubleType()),
    T.StructField("model_version", T.StringType()),
])
USER_VECTOR_SCHEMA = T.StructType([
    T.StructField("dt", T.DateType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("model_version", T.StringType()),
    T.StructField("user_vector", T.ArrayType(T.FloatType())),  # K*E, expert-major
    T.StructField("vector_mask", T.ArrayType(T.BooleanType())),  # K, False: unused (MIND)
])

# Users per user-tower call. The tower's [K, rows, F, E] intermediates of 256 users stay in a
# core's cache: 7 us per user on one thread against 18 us in one call over 4,096 users.
TOWER_ROWS = 256

_MODELS: dict[str, tuple[tuple, ProfileModel, str | None]] = {}  # path -> (file identity, model, weights_id)


@dataclass(frozen=True)
class ScanTask:
    """Everything the executor function needs besides the broadcast tags (pickled with it)."""

    model_path: str
    model_version: str
    date: dt.date
    plan: ScanPlan
    block_size: int
    threads: int
    weights_id: str | None = None  # the weights the driver loaded (mvke.artifact.weights_id)


class ModelReplacedError(ValueError):
    """The model folder holds other weights than the driver loaded: its version was saved again."""


def score_users(batches: Iterator[pa.RecordBatch], *, task: ScanTask, tags: Broadcast) -> Iterator[pa.RecordBatch]:
    """mapInArrow: user_features batches -> PROFILE_SCHEMA rows (top-N per user and objective)."""
    prepare_worker(task.threads)
    model = cached_model(task.model_path, task.weights_id)
    scan = tags.value
    tag_ids = pa.array(scan.tag_ids, pa.string())
    schema = to_arrow_schema(PROFILE_SCHEMA)
    for block in user_blocks(batches, task.block_size):
        with torch.inference_mode():
            inputs = tensor_batch(block, model.spec.fields)
            vecs = block_user_vectors(model, inputs)
            try:
                selections = scan_block(vecs, model.user_mask(inputs), scan, task.plan)
            except UndefinedScoreError:
                raise UndefinedScoreError(_undefined_score(vecs, scan, block["user_id"], task.model_version)) from None
        yield profile_batch(block["user_id"], selections, tag_ids, task, schema)


def user_vectors(batches: Iterator[pa.RecordBatch], *, task: ScanTask) -> Iterator[pa.RecordBatch]:
    """mapInArrow: user_features batches -> USER_VECTOR_SCHEMA rows (x_k(u) for every k)."""
    prepare_worker(task.threads)
    model = cached_model(task.model_path, task.weights_id)
    schema = to_arrow_schema(USER_VECTOR_SCHEMA)
    for block in user_blocks(batches, task.block_size):
        with torch.inference_mode():
            inputs = tensor_batch(block, model.spec.fields)
            vecs = block_user_vectors(model, inputs)  # [B, K, E]
            mask = model.user_mask(inputs)  # [B, K] or None
        batch, num_vectors, dim = vecs.shape
        if mask is None:
            mask = torch.ones(batch, num_vectors, dtype=torch.bool)
        yield pa.RecordBatch.from_arrays([
            _dates(task.date, batch),
            block["user_id"].combine_chunks(),
            _repeated([task.model_version], [batch]),
            _lists(pa.array(vecs.reshape(-1).numpy(), pa.float32()), batch, num_vectors * dim),
            _lists(pa.array(mask.reshape(-1).numpy(), pa.bool_()), batch, num_vectors),
        ], schema=schema)


def prepare_worker(threads: int) -> None:
    """torch's threads for this Python process, and malloc kept from page-faulting every block in."""
    torch.set_num_threads(threads)
    keep_freed_memory()


def _undefined_score(vecs: Tensor, scan: ScanTags, user_ids: pa.ChunkedArray, model_version: str) -> str:
    """Who a NaN score belongs to: the first user with a NaN or inf in a vector of an expert some
    objective uses (inf - inf is NaN; a masked MIND interest still is, as 0 * NaN), else the tag side."""
    used = sorted({int(k) for side in scan.objectives.values() for k in side.experts})
    broken = (~torch.isfinite(vecs[:, used])).flatten(1).any(dim=1).nonzero().flatten()
    if broken.numel() == 0:
        return (f"model {model_version} gives NaN scores, with every user vector it uses finite: its tag vectors hold "
                f"NaN or inf")
    return (f"model {model_version} gives NaN scores to {broken.numel()} of {len(user_ids)} users of a block, "
            f"e.g. user {user_ids[int(broken[0])].as_py()}: the model's weights or these users' features are broken")


def block_user_vectors(model: ProfileModel, inputs: Mapping[str, Tensor]) -> Tensor:
    """x(u) [B, K, E] of a block's model inputs (each [B, ...]), TOWER_ROWS users per tower call."""
    rows = len(next(iter(inputs.values())))
    return torch.cat([model.user_vectors({name: value[first:first + TOWER_ROWS] for name, value in inputs.items()})
                      for first in range(0, rows, TOWER_ROWS)])


def cached_model(path: str, expected_id: str | None = None) -> ProfileModel:
    """The model at `path`, loaded at most once per Python process (reloaded if its weights file changed).

    A retrained version replaces its folder whole (`training.artifact.finalize`): the new weights
    file is another inode, while its size is the same (same architecture) and its time may be too
    on a filesystem with coarse timestamps. With `expected_id` (the weights the driver loaded and
    built the tag side from), other weights raise ModelReplacedError: users scored with them
    against the driver's tag vectors would be another model's scores under this version's name."""
    from mvke.artifact import WEIGHTS_FILE, load_model, weights_id

    stat = os.stat(os.path.join(path, WEIGHTS_FILE))
    key = (path, stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if _MODELS.get(path, (None, None, None))[0] != key:
        before = weights_id(path)
        model = load_model(path)
        _MODELS[path] = (key, model, before if weights_id(path) == before else None)
    _, model, loaded_id = _MODELS[path]
    if expected_id is not None and loaded_id != expected_id:
        raise ModelReplacedError(f"{path} holds other weights than the driver loaded (weights_id {loaded_id}, "
                                 f"expected {expected_id}): the model version was saved again while this job ran; "
                                 f"nothing was written; run the job again")
    return model


def user_blocks(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of exactly `size` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def tensor_batch(block: pa.Table, fields: Sequence[FieldSpec]) -> dict[str, Tensor]:
    """Rows of `features.examples.model_inputs` (ids already mapped: 0 missing, 1 unknown) -> the
    model's batch dict. Shapes: B users, L multi-field length (padding: id 0, weight 0)."""
    batch: dict[str, Tensor] = {}
    for spec in fields:
        if spec.kind == "single":
            batch[spec.name] = torch.from_numpy(pc.fill_null(block[spec.name], 0).to_numpy().astype(np.int64))  # [B]
            continue
        ids, id_lengths = _padded(block[spec.name], np.int64)  # [B, L]
        weights, weight_lengths = _padded(block[weights_key(spec.name)], np.float32)  # [B, L]
        if not np.array_equal(id_lengths, weight_lengths):
            raise ValueError(f"{spec.name} and {weights_key(spec.name)} differ in length for some users")
        batch[spec.name] = torch.from_numpy(ids)
        batch[weights_key(spec.name)] = torch.from_numpy(weights)
    return batch


def profile_batch(user_ids: pa.ChunkedArray, selections: dict[str, Selection], tag_ids: pa.Array,
                  task: ScanTask, schema: pa.Schema) -> pa.RecordBatch:
    """The kept pairs of one block as PROFILE_SCHEMA rows."""
    users = user_ids.combine_chunks()
    counts = [len(s.rows) for s in selections.values()]
    total = sum(counts)
    rows = np.concatenate([s.rows for s in selections.values()])
    cols = np.concatenate([s.cols for s in selections.values()])
    return pa.RecordBatch.from_arrays([
        _dates(task.date, total),
        users.take(pa.array(rows, pa.int64())),
        _repeated(list(selections), counts),
        pa.array(np.concatenate([s.rank for s in selections.values()]), pa.int32()),
        tag_ids.take(pa.array(cols, pa.int64())),
        pa.array(np.concatenate([s.score for s in selections.values()]), pa.float64()),
        _repeated([task.model_version], [total]),
    ], schema=schema)


def _padded(column: pa.ChunkedArray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """list column [B] -> (values padded with 0 [B, L], lengths [B]); a null list is empty."""
    array = column.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy().astype(np.int64)  # [B]
    values = pc.fill_null(array.flatten(), 0).to_numpy().astype(dtype)  # [sum lengths]
    out = np.zeros((len(array), max(1, int(lengths.max(initial=0)))), dtype=dtype)  # [B, L]
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(len(array)), lengths)
    out[rows, np.arange(len(values)) - np.repeat(starts, lengths)] = values
    return out, lengths


def _repeated(values: Sequence[str], counts: Sequence[int]) -> pa.Array:
    """values[0] counts[0] times, then values[1] counts[1] times, ...: a string column built by
    Arrow's take (a Python list of one string object per row costs 8x more)."""
    return pa.array(values, pa.string()).take(pa.array(np.repeat(np.arange(len(values)), counts)))


def _dates(date: dt.date, count: int) -> pa.Array:
    days = (date - dt.date(1970, 1, 1)).days
    return pa.array(np.full(count, days, dtype=np.int32)).cast(pa.date32())


def _lists(values: pa.Array, rows: int, width: int) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * width), values)
