"""Behaviour fields from clean events: activity counts and decayed, weighted value lists.

Per run date D, each user's events in D's window become activity counts (impressions,
clicks, conversions, active days) and, per list field, the decayed weight of each value.
Two plans compute the same rows:
- one date (the nightly run): the window's events are aggregated per user directly,
  active days as bitmasks of the days seen;
- several dates (a backfill): events are first reduced to one row per (user, day[, field,
  value]) and only those daily rows are exploded to the run dates whose window holds
  the day (`features.windows`), so each event is read once however many dates see it.

Recency decay: an event at time t counts 0.5 ** ((D - t) / h) in the snapshot of D
(t and D in days, h the half-life). It factorises per day,
0.5 ** ((days(D - day) - 1) / h) * 0.5 ** ((1 - frac(t)) / h) with frac(t) the time since the
start of the event's day, so the daily rows carry the sum of 0.5 ** ((1 - frac) / h) (the
weight at the end of the event's day, at most 1 whatever h) and the exact weight is rebuilt
for each D.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.windows import days_before, explode_to_dates, window_start

MICROS_PER_DAY = 86_400 * 1_000_000
ACTIVITY_COUNTS = ("impressions", "clicks", "conversions", "active_days")
EVENT_COUNTS = ACTIVITY_COUNTS[:3]
MASK_BITS = 63


def bucket_id(value: Column, edges: Sequence[float]) -> Column:
    """0 if missing (null, NaN), else 2 + the number of edges <= value."""
    number = value.cast("double")
    above = sum((number >= F.lit(float(e))).cast("int") for e in edges)
    return F.when(number.isNull() | F.isnan(number), F.lit(0)).otherwise(F.lit(2) + above).cast("int")


def _event_counts() -> list[Column]:
    return [F.count(F.when(F.col("event_type") == name[:-1], F.lit(1))).alias(name) for name in EVENT_COUNTS]


def _in_window(events: DataFrame, date: dt.date, window_days: int) -> DataFrame:
    return events.where((F.col("day") >= F.lit(window_start(date, window_days))) & (F.col("day") < F.lit(date)))


def window_activity(events: DataFrame, *, dates: Sequence[dt.date], window_days: int) -> DataFrame:
    """(dt, user_id, impressions, clicks, conversions, active_days) per user with events in a window."""
    if len(dates) > 1:
        return (
            explode_to_dates(daily_activity(events), dates=dates, window_days=window_days)
            .groupBy("dt", "user_id")
            .agg(*[F.sum(c).alias(c) for c in EVENT_COUNTS], F.count(F.lit(1)).alias("active_days"))
        )
    date = dates[0]
    offset = F.datediff(F.lit(date), F.col("day")) - 1  # 0 .. window_days - 1
    masks = [  # bit i of mask k: a day with offset 63 k + i (powers of two up to 2 ** 62 are exact doubles)
        F.bit_or(F.when(F.floor(offset / MASK_BITS) == k, F.pow(F.lit(2.0), offset % MASK_BITS).cast("long")))
        for k in range(-(-window_days // MASK_BITS))
    ]
    active_days = sum(F.coalesce(F.bit_count(m), F.lit(0)) for m in masks)
    return (
        _in_window(events, date, window_days)
        .groupBy("user_id")
        .agg(*_event_counts(), active_days.cast("long").alias("active_days"))
        .select(F.lit(date).alias("dt"), "user_id", *ACTIVITY_COUNTS)
    )


def daily_activity(events: DataFrame) -> DataFrame:
    """(user_id, day, impressions, clicks, conversions) from clean events."""
    return events.groupBy("user_id", "day").agg(*_event_counts()).select("user_id", "day", *EVENT_COUNTS)


def daily_partials(events: DataFrame, *, item_values: DataFrame, half_life_days: float) -> DataFrame:
    """(user_id, day, field, value, partial): per day, the sum over events of 0.5 ** ((1 - frac) / h),
    each event's weight at the end of its day (at most 1: no overflow for a half-life of seconds).

    `item_values` (item_id, event_type, field, value) says which list `field` an event of
    `event_type` on the item adds `value` to (a tag index, a category id).
    """
    day_start = F.unix_micros(F.col("day").cast("timestamp"))
    frac = (F.unix_micros("event_time") - day_start) / F.lit(float(MICROS_PER_DAY))
    return (
        events.join(F.broadcast(item_values), on=["item_id", "event_type"], how="inner")
        .groupBy("user_id", "day", "field", "value")
        .agg(F.sum(F.pow(F.lit(0.5), (F.lit(1.0) - frac) / F.lit(half_life_days))).alias("partial"))
        .select("user_id", "day", "field", "value", "partial")
    )


def window_entries(
    events: DataFrame,
    *,
    item_values: DataFrame,
    dates: Sequence[dt.date],
    window_days: int,
    half_life_days: float,
) -> DataFrame:
    """(dt, user_id, field, entry): one entry struct (neg_weight, id, weight) per value in each window.

    `item_values` as for `daily_partials`. weight = the sum of the decayed counts of the
    window's events on the value, rounded to float; neg_weight = -weight, so sorting
    entries puts the heaviest first and breaks ties by id.
    """
    if len(dates) > 1:
        # from the end of the event's day to the start of dt: whole days, >= 0 inside the window
        decay = F.pow(F.lit(0.5), (days_before("dt", "day") - F.lit(1)) / F.lit(half_life_days))
        partials = daily_partials(events, item_values=item_values, half_life_days=half_life_days)
        weights = (
            explode_to_dates(partials, dates=dates, window_days=window_days)
            .groupBy("dt", "user_id", "field", "value")
            .agg(F.sum(F.col("partial") * decay).cast("float").alias("weight"))
        )
    else:
        date = dates[0]
        age = (F.lit(float(_unix_micros(date))) - F.unix_micros("event_time")) / F.lit(float(MICROS_PER_DAY))
        weights = (
            _in_window(events, date, window_days)
            .join(F.broadcast(item_values), on=["item_id", "event_type"], how="inner")
            .groupBy("user_id", "field", "value")
            .agg(F.sum(F.pow(F.lit(0.5), age / F.lit(half_life_days))).cast("float").alias("weight"))
            .withColumn("dt", F.lit(date))
        )
    weight = F.col("weight")
    return weights.select("dt", "user_id", "field", F.struct(
        (-weight).cast("float").alias("neg_weight"), F.col("value").cast("int").alias("id"), weight.alias("weight"),
    ).alias("entry"))


def _unix_micros(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days * MICROS_PER_DAY


ENTRY_TYPE = "struct<neg_weight: float, id: int, weight: float>"


def top_values(entries: Column, *, max_len: int) -> tuple[Column, Column]:
    """(ids array<int>, weights array<float>): the max_len heaviest of one field's entries, by
    weight descending then id ascending (ties stay stable). Plain array expressions, no
    lambdas, so Spark compiles them."""
    top = F.slice(F.sort_array(entries), 1, max_len)
    return top.getField("id").cast("array<int>"), top.getField("weight").cast("array<float>")
