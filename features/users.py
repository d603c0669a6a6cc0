"""The `user_features` snapshot: one row per known user and run date, every field an id.

A user is known on D if the users table lists them or they have a clean event in D's
window. Attributes come from the users table (missing -> 0); behaviour fields from the
window's events: a user without events has counts 0 (in their bucket), a missing click
rate (0) and empty lists.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.behaviour import ACTIVITY_COUNTS, ENTRY_TYPE, bucket_id, top_values
from features.schema import WEIGHTS_SUFFIX, FieldDef
from features.vocabulary import PAD_ID, encode

LIST_TYPE = f"array<{ENTRY_TYPE}>"


def attribute_ids(users: DataFrame, *, fields: Sequence[FieldDef], vocabulary: DataFrame) -> DataFrame:
    """(user_id, one int column per attribute field): vocabulary ids or bucket ids."""
    out = users
    for f in fields:
        if f.encoding == "vocab":
            out = encode(out, vocabulary=vocabulary, field=f.vocabulary, column=f.name, output=f.name)
        else:
            out = out.withColumn(f.name, bucket_id(F.col(f.name), f.edges))
    return out.select("user_id", *[f.name for f in fields])


def user_snapshots(
    attributes: DataFrame,
    *,
    activity: DataFrame,
    entries: DataFrame,
    dates: Sequence[dt.date],
    fields: Sequence[FieldDef],
    max_len: int,
) -> DataFrame:
    """The user_features rows: dt, user_id, then the fields in order.

    `attributes`: user_id + one id column per attribute field (the users table);
    `activity`: one row of counts per (dt, user_id) (`window_activity`); `entries`:
    (dt, user_id, field, entry) per list value (`window_entries`), reduced here to one list
    per field and (dt, user_id). Then the three become rows of one union, merged by a
    final aggregation per (dt, user_id): users of the users table appear on every date,
    the others on the dates whose window holds one of their events.
    """
    attribute_names = [f.name for f in fields if f.source.startswith("users.")]
    every_date = F.explode(F.array(*[F.lit(d) for d in sorted(dates)])).alias("dt")
    list_names = [f.name for f in fields if f.kind == "multi"]

    def row(df: DataFrame, first: list[Column], **given: Column) -> DataFrame:
        nulls = {**{a: F.lit(None).cast("int") for a in attribute_names},
                 **{c: F.lit(None).cast("long") for c in ACTIVITY_COUNTS},
                 **{name: F.lit(None).cast(LIST_TYPE) for name in list_names}}
        return df.select(*first, *[given.get(name, null).alias(name) for name, null in nulls.items()])

    keys = [F.col("dt"), F.col("user_id")]
    union = (
        row(attributes, [every_date, F.col("user_id")], **{a: F.col(a) for a in attribute_names})
        .unionByName(row(activity, keys, **{c: F.col(c) for c in ACTIVITY_COUNTS}))
    )
    if list_names:  # a field list without multi fields has no lists (and agg needs a column)
        lists = entries.groupBy("dt", "user_id").agg(  # collect_list skips the nulls of other fields
            *[F.collect_list(F.when(F.col("field") == name, F.col("entry"))).alias(name) for name in list_names]
        )
        union = union.unionByName(row(lists, keys, **{name: F.col(name) for name in list_names}))
    reduced = union.groupBy("dt", "user_id").agg(  # at most one non-null value per column and key
        *[F.max(a).alias(a) for a in attribute_names],
        *[F.coalesce(F.max(c), F.lit(0)).alias(c) for c in ACTIVITY_COUNTS],
        *[F.coalesce(F.first(name, ignorenulls=True), F.array().cast(LIST_TYPE)).alias(name) for name in list_names],
    )
    activity_values = {name: F.col(name) for name in ACTIVITY_COUNTS}
    activity_values["click_rate"] = F.try_divide(F.col("clicks").cast("double"), F.col("impressions"))
    columns = []
    for f in fields:
        if f.kind == "multi":
            ids, weights = top_values(F.col(f.name), max_len=max_len)
            columns += [ids.alias(f.name), weights.alias(f.name + WEIGHTS_SUFFIX)]
        elif f.source.startswith("events."):
            columns.append(bucket_id(activity_values[f.name], f.edges).alias(f.name))
        else:
            columns.append(F.coalesce(F.col(f.name), F.lit(PAD_ID)).cast("int").alias(f.name))
    return reduced.select("dt", "user_id", *columns)
