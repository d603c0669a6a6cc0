"""Stable integer ids: the append-only `vocabulary` table (field, value, id, first_dt).

Ids follow the project convention: 0 missing / padding, 1 unknown, real values from 2.
A value keeps its id forever. Values new to a field get the ids after the field's
current maximum, in the order of the value string, so the same inputs always give the
same ids. Vocabulary fields: `tag` (tag_id of the tags table), `category` (tag
categories), and one per categorical user attribute (named like the attribute).
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features.quality import blank

TAG = "tag"
CATEGORY = "category"
VOCABULARY_SCHEMA = "field string, value string, id int, first_dt date"
VALUES_SCHEMA = "field string, value string"
PAD_ID = 0
UNKNOWN_ID = 1
FIRST_ID = 2


def vocabulary_values(tags: DataFrame, *, users: DataFrame, categorical: Sequence[str]) -> DataFrame:
    """(field, value): every distinct non-blank value the run must be able to encode."""
    parts = [
        tags.select(F.lit(TAG).alias("field"), F.col("tag_id").alias("value")),
        tags.select(F.lit(CATEGORY).alias("field"), F.col("category").alias("value")),
        *[users.select(F.lit(name).alias("field"), F.col(name).cast("string").alias("value")) for name in categorical],
    ]
    values = parts[0]
    for part in parts[1:]:
        values = values.unionByName(part)
    return values.where(~blank("value")).distinct().select("field", "value")


def new_vocabulary_entries(values: DataFrame, *, vocabulary: DataFrame, first_dt: dt.date) -> DataFrame:
    """Vocabulary rows for the values not in `vocabulary` yet, with the next ids per field."""
    next_id = vocabulary.groupBy("field").agg(F.max("id").alias("max_id"))
    by_value = Window.partitionBy("field").orderBy("value").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (
        values.join(vocabulary.select("field", "value"), on=["field", "value"], how="left_anti")
        .join(next_id, on="field", how="left")
        .select(
            "field", "value",
            (F.coalesce(F.col("max_id"), F.lit(FIRST_ID - 1)) + F.row_number().over(by_value)).cast("int").alias("id"),
            F.lit(first_dt).alias("first_dt"),
        )
    )


def encode(df: DataFrame, *, vocabulary: DataFrame, field: str, column: str, output: str) -> DataFrame:
    """`df` plus `output`: the id of `column` in vocabulary `field` (0 if blank, 1 if unknown)."""
    ids = vocabulary.where(F.col("field") == field).select(
        F.col("value").alias("_value"), F.col("id").alias("_id")
    )
    value = F.col(column).cast("string")
    joined = df.join(F.broadcast(ids), value == F.col("_value"), how="left")
    encoded = (
        F.when(blank(value), F.lit(PAD_ID))
        .when(F.col("_id").isNull(), F.lit(UNKNOWN_ID))
        .otherwise(F.col("_id"))
        .cast("int")
    )
    return joined.select(*[c for c in df.columns if c != output], encoded.alias(output))


def vocabulary_sizes(vocabulary: DataFrame) -> DataFrame:
    """(field, vocab_size): one more than the largest id, at least FIRST_ID."""
    return vocabulary.groupBy("field").agg(
        F.greatest(F.max("id") + 1, F.lit(FIRST_ID)).cast("int").alias("vocab_size")
    ).select("field", "vocab_size")
