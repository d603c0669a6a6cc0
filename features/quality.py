"""Bad raw rows: flagged with one reason each, counted, never silently dropped.

Every row of the raw tables gets `reason` = null (clean) or one `Reason`. Event reasons
are checked in this order and the first that applies wins, so per-reason counts add up
to the bad rows: null_id, invalid_utf8 (an id or event type that is not valid UTF-8),
id_too_long (an id longer than `max_id_length` bytes), null_event_time, unknown_event_type, future, unknown_item,
duplicate (the extra copies of an otherwise clean event; one copy stays clean).
Dimension tables (users, items, tags) have null_id, invalid_utf8 (the key or any other string of
the row: a tag name, a category, an attribute value, a tag id of an item), id_too_long (a
user_id or item_id, as in the events) and duplicate
(same key; of the rows with valid strings, the one with the smallest JSON record stays), and
items referring to a tag missing from the tags table give one unknown_tag row per (item, tag);
an item with no known tag at all also gives a no_tags row. Both items stay clean: their events
count as activity, and an item without a known tag has no tag to sample.
"""
from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.contract import EVENT_TYPES, column

EVENT_COLUMNS = ("user_id", "item_id", "event_type", "event_time")


class Reason(StrEnum):
    NULL_ID = "null_id"
    INVALID_UTF8 = "invalid_utf8"
    ID_TOO_LONG = "id_too_long"
    NULL_EVENT_TIME = "null_event_time"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    FUTURE = "future"
    UNKNOWN_ITEM = "unknown_item"
    DUPLICATE = "duplicate"
    UNKNOWN_TAG = "unknown_tag"
    NO_TAGS = "no_tags"


# What str.isspace calls whitespace (tabs, line breaks, Unicode spaces; none above U+3000), where
# Spark's trim alone strips only the space character.
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def blank(column: str | Column) -> Column:
    """Null, or only whitespace (the value read as a string)."""
    value = (F.col(column) if isinstance(column, str) else column).cast("string")
    return value.isNull() | (F.btrim(value, F.lit(WHITESPACE)) == "")


RECORD_OPTIONS = {"ignoreNullFields": "false", "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}


def record_json(columns: list[str] | tuple[str, ...]) -> Column:
    """The row as a JSON string (null values kept as nulls, times exact to the microsecond, in
    the session time zone: UTC, so they end in Z)."""
    return F.to_json(F.struct(*[column(c) for c in columns]), RECORD_OPTIONS)


def classify_events(events: DataFrame, *, items: DataFrame, horizon: dt.date, max_id_length: int = 256) -> DataFrame:
    """One row per distinct (event, reason) with `copies`, the number of identical raw rows.

    `items` are the clean items (item_id); `horizon` is the first day that cannot have
    happened yet (the job passes as_of + 1 day): events on or after it are future.
    `always` marks rows read by every run date (no event_time, or future); the others
    belong to the windows containing `day`.
    """
    known_items = items.select("item_id", F.lit(True).alias("known_item")).distinct()
    typed = events.select(
        "user_id", "item_id", "event_type", F.col("event_time").cast("timestamp").alias("event_time")
    ).withColumn("day", F.to_date("event_time"))
    flagged = typed.join(F.broadcast(known_items), on="item_id", how="left").withColumn(
        "reason",
        F.when(blank("user_id") | blank("item_id"), F.lit(Reason.NULL_ID.value))
        .when(~F.is_valid_utf8("user_id") | ~F.is_valid_utf8("item_id") | ~F.coalesce(F.is_valid_utf8("event_type"), F.lit(True)),
              F.lit(Reason.INVALID_UTF8.value))
        .when((F.octet_length("user_id") > max_id_length) | (F.octet_length("item_id") > max_id_length),
              F.lit(Reason.ID_TOO_LONG.value))
        .when(F.col("event_time").isNull(), F.lit(Reason.NULL_EVENT_TIME.value))
        .when(F.coalesce(~F.col("event_type").isin(*EVENT_TYPES), F.lit(True)), F.lit(Reason.UNKNOWN_EVENT_TYPE.value))
        .when(F.col("day") >= F.lit(horizon), F.lit(Reason.FUTURE.value))
        .when(F.col("known_item").isNull(), F.lit(Reason.UNKNOWN_ITEM.value)),
    )
    return (
        flagged.groupBy(*EVENT_COLUMNS, "day", "reason")
        .agg(F.count(F.lit(1)).alias("copies"))
        .select(
            *EVENT_COLUMNS, "day", "reason", "copies",
            (F.col("event_time").isNull() | (F.col("day") >= F.lit(horizon))).alias("always"),
        )
    )


def clean_events(classified: DataFrame) -> DataFrame:
    """The clean events, each once: user_id, item_id, event_type, event_time, day."""
    return classified.where(F.col("reason").isNull()).select(*EVENT_COLUMNS, "day")


def bad_events(classified: DataFrame) -> DataFrame:
    """One row per bad raw event: reason, record (JSON), day, always."""
    extra = F.when(F.col("reason").isNull(), F.col("copies") - 1).otherwise(F.col("copies"))
    return (
        classified.where(F.col("reason").isNotNull() | (F.col("copies") > 1))
        .select(
            F.coalesce(F.col("reason"), F.lit(Reason.DUPLICATE.value)).alias("reason"),
            record_json(EVENT_COLUMNS).alias("record"),
            "day", "always",
            F.explode(F.array_repeat(F.lit(1), extra.cast("int"))).alias("_copy"),
        )
        .select("reason", "record", "day", "always")
    )


def event_counts(classified: DataFrame) -> DataFrame:
    """Raw event rows by (day, always, reason); reason null = clean (duplicates split out)."""
    duplicates = classified.where(F.col("reason").isNull() & (F.col("copies") > 1)).select(
        "day", "always", F.lit(Reason.DUPLICATE.value).alias("reason"), (F.col("copies") - 1).alias("rows")
    )
    firsts = classified.select(
        "day", "always", "reason",
        F.when(F.col("reason").isNull(), F.lit(1)).otherwise(F.col("copies")).cast("long").alias("rows"),
    )
    return (
        firsts.unionByName(duplicates)
        .groupBy("day", "always", "reason")
        .agg(F.sum("rows").alias("rows"))
        .select("day", "always", "reason", "rows")
    )


def flag_dimension_rows(df: DataFrame, *, key: str, max_key_length: int | None = None) -> DataFrame:
    """`row` (the raw row as a struct), `reason` (null_id, invalid_utf8 (any string of the row),
    id_too_long (a key over `max_key_length` bytes, when given), duplicate or null) and `record`
    (the row as JSON). The raw columns stay inside `row`, so no name of theirs can meet the
    columns made here; `row.*` gives them back.

    Of several rows with the same key, the one with the smallest JSON record of those whose
    strings are valid UTF-8 is kept, so the choice does not depend on file order.
    """
    keyed = df.select(F.struct(*[column(c) for c in df.columns]).alias("row"),
                      record_json(df.columns).alias("record"), column(key).alias("key"),
                      valid_utf8(df.schema).alias("valid_utf8"))
    too_long = F.lit(False) if max_key_length is None else F.octet_length("key") > max_key_length
    first = (Window.partitionBy("key").orderBy(F.desc("valid_utf8"), "record")
             .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    return (
        keyed.withColumn("rank", F.when(blank("key"), F.lit(None)).otherwise(F.row_number().over(first)))
        .select(
            "row",
            F.when(blank("key"), F.lit(Reason.NULL_ID.value))
            .when(~F.col("valid_utf8"), F.lit(Reason.INVALID_UTF8.value))
            .when(too_long, F.lit(Reason.ID_TOO_LONG.value))
            .when(F.col("rank") > 1, F.lit(Reason.DUPLICATE.value))
            .alias("reason"),
            "record",
        )
    )


def valid_utf8(schema: T.StructType) -> Column:
    """True when every string of the row (string columns and string arrays) is valid UTF-8 or null."""
    def valid(value: Column) -> Column:
        return F.coalesce(F.is_valid_utf8(value), F.lit(True))

    result = F.lit(True)
    for f in schema.fields:
        if isinstance(f.dataType, T.StringType):
            result = result & valid(column(f.name))
        elif isinstance(f.dataType, T.ArrayType) and isinstance(f.dataType.elementType, T.StringType):
            result = result & F.coalesce(F.forall(column(f.name), valid), F.lit(True))
    return result


def items_without_known_tags(items: DataFrame, *, tags: DataFrame) -> DataFrame:
    """(item_id, reason no_tags, record) of the `items` (clean rows of `flag_dimension_rows`: row,
    record) with no tag of the clean `tags`: tag_ids null, empty, or only unknown or blank ids.
    The item stays clean (its events are activity) but has nothing to sample: counted here, its
    events do not leave samples, tags and lists without a trace."""
    known = tags.select("tag_id", F.lit(True).alias("known_tag"))
    refs = items.select(F.col("row").getField("item_id").alias("item_id"), "record",
                        F.explode_outer(F.col("row").getField("tag_ids")).alias("tag_id"))
    return (
        refs.join(F.broadcast(known), on="tag_id", how="left")
        .groupBy("item_id", "record")
        .agg(F.max(F.coalesce(F.col("known_tag"), F.lit(False))).alias("any_known"))
        .where(~F.col("any_known"))
        .select("item_id", F.lit(Reason.NO_TAGS.value).alias("reason"), "record")
    )


def unknown_item_tags(items: DataFrame, *, tags: DataFrame) -> DataFrame:
    """(item_id, tag_id) references to tags missing from the clean `tags`: reason, record."""
    known = tags.select("tag_id", F.lit(True).alias("known_tag"))
    refs = items.select("item_id", F.explode(F.array_distinct("tag_ids")).alias("tag_id"))
    return (
        refs.join(known, on="tag_id", how="left")
        .where(F.col("known_tag").isNull())
        .select(F.lit(Reason.UNKNOWN_TAG.value).alias("reason"), record_json(["item_id", "tag_id"]).alias("record"))
    )
