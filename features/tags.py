"""The tag side: the item -> tag mapping with stable ids, and the daily `tags` table.

An event on an item counts for every tag of the item. Popularity over D's window:
impressions, clicks, conversions, and popularity_rank 1..T by impressions, then
clicks, then tag_index (descending, descending, ascending), unique within a date.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features import vocabulary as vocab
from features.schema import FieldDef
from features.windows import explode_to_dates

COUNTS = ("impressions", "clicks", "conversions")
ITEM_VALUES_SCHEMA = "item_id string, event_type string, field string, value int"


def tag_catalogue(tags: DataFrame, *, vocabulary: DataFrame) -> DataFrame:
    """(tag_id, tag_index, tag_name, category, category_id) for the clean tags."""
    return (
        tags.transform(encode_column, vocabulary=vocabulary, field=vocab.TAG, column="tag_id", output="tag_index")
        .transform(encode_column, vocabulary=vocabulary, field=vocab.CATEGORY, column="category", output="category_id")
        .select("tag_id", "tag_index", "tag_name", "category", "category_id")
    )


def encode_column(df: DataFrame, *, vocabulary: DataFrame, field: str, column: str, output: str) -> DataFrame:
    """`vocabulary.encode` in the shape df.transform expects."""
    return vocab.encode(df, vocabulary=vocabulary, field=field, column=column, output=output)


def item_tags(items: DataFrame, *, catalogue: DataFrame) -> DataFrame:
    """(item_id, tag_id, tag_index, category_id): each known tag of each clean item once."""
    return (
        items.select("item_id", F.explode(F.array_distinct("tag_ids")).alias("tag_id"))
        .join(catalogue, on="tag_id", how="inner")
        .select("item_id", "tag_id", "tag_index", "category_id")
    )


def item_field_values(item_tag_rows: DataFrame, *, fields: Sequence[FieldDef]) -> DataFrame:
    """(item_id, event_type, field, value): what an event on the item adds to each list field.

    Tag lists get the item's tag indexes, category lists its distinct known categories.
    """
    values = {
        vocab.TAG: item_tag_rows.select("item_id", F.col("tag_index").alias("value")),
        vocab.CATEGORY: item_tag_rows.where(F.col("category_id") >= vocab.FIRST_ID)
        .select("item_id", F.col("category_id").alias("value")).distinct(),
    }
    parts = [
        values[f.vocabulary].select("item_id", F.lit(f.event_type).alias("event_type"), F.lit(f.name).alias("field"),
                                    "value")
        for f in fields if f.kind == "multi"
    ]
    if not parts:
        return item_tag_rows.sparkSession.createDataFrame([], ITEM_VALUES_SCHEMA)
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out.select("item_id", "event_type", "field", "value")


def daily_tag_counts(events: DataFrame, *, item_tag_rows: DataFrame) -> DataFrame:
    """(tag_index, day, impressions, clicks, conversions) from clean events."""
    def count(kind: str) -> Column:
        return F.count(F.when(F.col("event_type") == kind, F.lit(1))).alias(f"{kind}s")

    return (
        events.join(F.broadcast(item_tag_rows.select("item_id", "tag_index")), on="item_id", how="inner")
        .groupBy("tag_index", "day")
        .agg(count("impression"), count("click"), count("conversion"))
        .select("tag_index", "day", *COUNTS)
    )


def tag_snapshots(
    daily: DataFrame, *, catalogue: DataFrame, dates: Sequence[dt.date], window_days: int
) -> DataFrame:
    """The `tags` table for `dates`: every catalogue tag, its window counts and rank.

    Catalogue rows (on every date, counts 0) and the daily counts exploded to the dates
    that see them are reduced by one aggregation per (dt, tag_index).
    """
    described = ("tag_id", "tag_name", "category", "category_id")
    catalogue_rows = catalogue.select(
        F.explode(F.array(*[F.lit(d) for d in sorted(dates)])).alias("dt"), "tag_index", *described,
        *[F.lit(0).cast("long").alias(c) for c in COUNTS],
    )
    count_rows = explode_to_dates(daily, dates=dates, window_days=window_days).select(
        "dt", "tag_index", *[F.lit(None).cast(catalogue.schema[c].dataType).alias(c) for c in described], *COUNTS,
    )
    by_popularity = (
        Window.partitionBy("dt")
        .orderBy(F.col("impressions").desc(), F.col("clicks").desc(), F.col("tag_index").asc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        catalogue_rows.unionByName(count_rows)
        .groupBy("dt", "tag_index")
        .agg(*[F.max(c).alias(c) for c in described], *[F.sum(c).alias(c) for c in COUNTS])
        .where(F.col("tag_id").isNotNull())  # counts only come for catalogue tags; kept explicit
        .withColumn("popularity_rank", F.row_number().over(by_popularity).cast("int"))
        .select("dt", "tag_id", "tag_index", "tag_name", "category", "category_id", *COUNTS, "popularity_rank")
    )
