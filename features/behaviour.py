"""Behaviour fields from clean events: activity counts and decayed, weighted value lists.

Two steps, so a backfill of many dates stays cheap: events are first reduced to one row
per (user, day[, field, value]) and only those daily rows are exploded to the run dates
whose window holds the day (`features.windows`). Every aggregation is keyed by user_id,
so events partitioned by user_id flow through without another shuffle.

Recency decay: an event at time t counts 0.5 ** ((D - t) / h) in the snapshot of D
(t and D in days, h the half-life). It factorises per day,
0.5 ** (days(D - day) / h) * 2 ** (frac(t) / h) with frac(t) the time since the start of
the event's day, so the daily rows carry the sum of 2 ** (frac / h) and the exact weight
is rebuilt for each D.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.windows import days_before, explode_to_dates

MICROS_PER_DAY = 86_400 * 1_000_000
ACTIVITY_COUNTS = ("impressions", "clicks", "conversions", "active_days")


def bucket_id(value: Column, edges: Sequence[float]) -> Column:
    """0 if missing (null, NaN), else 2 + the number of edges <= value."""
    number = value.cast("double")
    above = sum((number >= F.lit(float(e))).cast("int") for e in edges)
    return F.when(number.isNull() | F.isnan(number), F.lit(0)).otherwise(F.lit(2) + above).cast("int")


def daily_activity(events: DataFrame) -> DataFrame:
    """(user_id, day, impressions, clicks, conversions) from clean events."""
    def count(kind: str) -> Column:
        return F.count(F.when(F.col("event_type") == kind, F.lit(1))).alias(f"{kind}s")

    return (
        events.groupBy("user_id", "day")
        .agg(count("impression"), count("click"), count("conversion"))
        .select("user_id", "day", "impressions", "clicks", "conversions")
    )


def daily_partials(events: DataFrame, *, item_values: DataFrame, half_life_days: float) -> DataFrame:
    """(user_id, day, field, value, partial): per day, the sum over events of 2 ** (frac / h).

    `item_values` (item_id, event_type, field, value) says which list `field` an event of
    `event_type` on the item adds `value` to (a tag index, a category id).
    """
    day_start = F.unix_micros(F.col("day").cast("timestamp"))
    frac = (F.unix_micros("event_time") - day_start) / F.lit(float(MICROS_PER_DAY))
    return (
        events.join(F.broadcast(item_values), on=["item_id", "event_type"], how="inner")
        .groupBy("user_id", "day", "field", "value")
        .agg(F.sum(F.pow(F.lit(2.0), frac / F.lit(half_life_days))).alias("partial"))
        .select("user_id", "day", "field", "value", "partial")
    )


def window_entries(
    partials: DataFrame, *, dates: Sequence[dt.date], window_days: int, half_life_days: float
) -> DataFrame:
    """(dt, user_id, entry): one entry struct (field, neg_weight, id) per value in each window.

    weight = sum over the window's days of partial * 0.5 ** (days before dt / h), rounded
    to float; neg_weight = -weight, so sorting entries puts the heaviest first.
    """
    decay = F.pow(F.lit(0.5), days_before("dt", "day") / F.lit(half_life_days))
    return (
        explode_to_dates(partials, dates=dates, window_days=window_days)
        .groupBy("dt", "user_id", "field", "value")
        .agg(F.sum(F.col("partial") * decay).cast("float").alias("weight"))
        .select("dt", "user_id", F.struct(
            "field", (-F.col("weight")).cast("float").alias("neg_weight"), F.col("value").cast("int").alias("id"),
        ).alias("entry"))
    )


ENTRY_TYPE = "struct<field: string, neg_weight: float, id: int>"


def top_values(entries: Column, *, field: str, max_len: int) -> tuple[Column, Column]:
    """(ids array<int>, weights array<float>) of `field`: its max_len heaviest entries, by
    weight descending then id ascending (ties stay stable)."""
    top = F.slice(F.sort_array(F.filter(entries, lambda e: e["field"] == F.lit(field))), 1, max_len)
    ids = F.transform(top, lambda e: e["id"]).cast("array<int>")
    weights = F.transform(top, lambda e: -e["neg_weight"]).cast("array<float>")
    return ids, weights
