"""Model-ready rows: fields padded to a fixed length so batches collate.

`training_examples` joins each sample to its user's snapshot of the sample's own dt
(labels of day X, features from events before X); `model_inputs` prepares snapshots
for scoring. Both take the model's field list (`FieldSpec`s or (name, kind,
vocab_size) tuples): a single field is an int id (0 when the user has no snapshot); a
multi field `f` is `f` array<int> and `f_weights` array<float> of exactly `max_len`,
cut to the first max_len values and padded with id 0 / weight 0.0. Ids the model does
not know (>= its vocab_size, e.g. values added to the vocabulary after it was
trained) become 1, unknown.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.samples import SAMPLE_COLUMNS
from features.schema import WEIGHTS_SUFFIX
from features.vocabulary import PAD_ID, UNKNOWN_ID


def training_examples(samples: DataFrame, user_features: DataFrame, fields: Iterable, max_len: int) -> DataFrame:
    """Samples joined (left) to the snapshot of their own dt; columns SAMPLE_COLUMNS + fields."""
    specs = _specs(fields)
    snapshot = user_features.select("dt", "user_id", *_field_columns(specs))
    joined = samples.select(*SAMPLE_COLUMNS).join(snapshot, on=["dt", "user_id"], how="left")
    return joined.select(*SAMPLE_COLUMNS, *_padded(specs, max_len))


def model_inputs(user_features: DataFrame, fields: Iterable, max_len: int) -> DataFrame:
    """Snapshots with padded fields; columns dt, user_id + fields."""
    specs = _specs(fields)
    return user_features.select("dt", "user_id", *_padded(specs, max_len))


def _specs(fields: Iterable) -> list[tuple[str, str, int]]:
    specs = [(f.name, f.kind, int(f.vocab_size)) if hasattr(f, "name") else tuple(f) for f in fields]
    for name, kind, size in specs:
        if kind not in ("single", "multi") or size < 2:
            raise ValueError(f"field {name!r}: kind must be single or multi and vocab_size >= 2, got {kind!r}, {size}")
    return specs


def _field_columns(specs: Sequence[tuple[str, str, int]]) -> list[str]:
    return [c for name, kind, _ in specs for c in ((name, name + WEIGHTS_SUFFIX) if kind == "multi" else (name,))]


def _known(id_: Column, vocab_size: int) -> Column:
    return F.when(id_ >= F.lit(vocab_size), F.lit(UNKNOWN_ID)).otherwise(id_)


def _padded(specs: Sequence[tuple[str, str, int]], max_len: int) -> list[Column]:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    columns = []
    for name, kind, size in specs:
        if kind == "single":
            columns.append(_known(F.coalesce(F.col(name), F.lit(PAD_ID)), size).cast("int").alias(name))
            continue
        ids = F.slice(F.coalesce(F.col(name), F.array().cast("array<int>")), 1, max_len)
        weights = F.slice(F.coalesce(F.col(name + WEIGHTS_SUFFIX), F.array().cast("array<float>")), 1, max_len)
        ids_pad = F.array_repeat(F.lit(PAD_ID), F.lit(max_len) - F.size(ids))
        weights_pad = F.array_repeat(F.lit(0.0).cast("float"), F.lit(max_len) - F.size(weights))
        # Spark interprets the lambda row by row: only lists holding an id the model never saw take it.
        known = F.when(F.array_max(ids) < F.lit(size), ids).otherwise(F.transform(ids, lambda x: _known(x, size)))
        columns.append(F.concat(known, ids_pad).cast("array<int>").alias(name))
        columns.append(F.concat(weights, weights_pad).cast("array<float>").alias(name + WEIGHTS_SUFFIX))
    return columns
