"""Training samples: one row per (user, tag, day) with that day's click and conversion labels.

Every clean event of the day on an item is expanded to the item's tags. A (user, tag,
day) with any event is a sample (source 'impression'; a click or conversion proves the
exposure even if its impression was not logged); click = 1 if any click, conversion =
1 if any conversion, so impressions without clicks are the negatives.

Optional sampled negatives (source 'sampled'): for each (user, day) with samples, draw
`per_user_day` tags from that day's tag snapshot, uniformly or log-uniformly over the
popularity rank (P(rank r) = log((r + 1) / r) / log(T + 1), popular tags first), each
draw a hash of (seed, user, day, draw number), so the same inputs give the same draws.
Draws that hit a tag the user has a sample for that day, or repeat an earlier draw,
are dropped: a user-day gets at most `per_user_day` sampled rows.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SAMPLE_COLUMNS = ("dt", "user_id", "tag_id", "tag_index", "category_id", "click", "conversion", "source")
Method = Literal["uniform", "log_uniform"]
HASH_BITS = 53


def label_samples(events: DataFrame, *, item_tag_rows: DataFrame, label_days: Sequence[dt.date]) -> DataFrame:
    """Samples of the days `label_days` from clean events (source 'impression')."""
    def any_of(kind: str) -> Column:
        return F.max((F.col("event_type") == kind).cast("int")).alias(kind)

    return (
        events.where(F.col("day").isin(*sorted(label_days)))
        .join(F.broadcast(item_tag_rows), on="item_id", how="inner")
        .groupBy(F.col("day").alias("dt"), "user_id", "tag_id", "tag_index", "category_id")
        .agg(any_of("click"), any_of("conversion"))
        .select(*SAMPLE_COLUMNS[:-1], F.lit("impression").alias("source"))
    )


def sampled_negatives(
    samples: DataFrame, *, tag_ranks: DataFrame, method: Method, per_user_day: int, seed: int
) -> DataFrame:
    """Extra negatives for the (dt, user_id) of `samples` (source 'sampled').

    `tag_ranks`: (dt, tag_id, tag_index, category_id, popularity_rank) of each sample day.
    """
    sizes = tag_ranks.groupBy("dt").agg(F.max("popularity_rank").alias("tag_count"))
    draws = (
        samples.select("dt", "user_id").distinct()
        .join(sizes, on="dt", how="inner")
        .select("dt", "user_id", "tag_count", F.explode(F.sequence(F.lit(0), F.lit(per_user_day - 1))).alias("draw"))
    )
    u = F.pmod(F.xxhash64(F.lit(seed), "user_id", "dt", "draw"), F.lit(2**HASH_BITS)) / F.lit(float(2**HASH_BITS))
    if method == "uniform":
        rank = F.floor(u * F.col("tag_count")) + 1
    else:
        rank = F.floor(F.exp(u * F.log(F.col("tag_count") + 1.0)))
    drawn = draws.select(
        "dt", "user_id", F.least(F.greatest(rank, F.lit(1)), F.col("tag_count")).cast("int").alias("popularity_rank")
    )
    return (
        drawn.join(tag_ranks, on=["dt", "popularity_rank"], how="inner")
        .join(samples.select("dt", "user_id", "tag_id"), on=["dt", "user_id", "tag_id"], how="left_anti")
        .select("dt", "user_id", "tag_id", "tag_index", "category_id")
        .distinct()
        .select(
            "dt", "user_id", "tag_id", "tag_index", "category_id",
            F.lit(0).alias("click"), F.lit(0).alias("conversion"), F.lit("sampled").alias("source"),
        )
    )
