"""Inputs that happen at night, each with a defined outcome and nothing wrong published."""
from __future__ import annotations

import datetime as dt
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from core import delta
from core.config import Config, FeaturesConf, Paths
from core.contract import ContractError
from core.tables import Warehouse, warehouse_uri
from jobs.features import run
from tests.features.scenario import _bucket

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 10)
EVENTS = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("event_type", pa.string()),
                    ("event_time", pa.timestamp("us", tz="UTC"))])


def _write(path, table):
    os.makedirs(path, exist_ok=True)
    pq.write_table(table, f"{path}/part-0.parquet")


def _world(root, events: pa.Table, *, max_bad_fraction=0.5, users: pa.Table | None = None) -> Config:
    raw = f"{root}/raw"
    _write(f"{raw}/events", events)
    _write(f"{raw}/items", pa.table({"item_id": ["i1", "i2"], "tag_ids": [["t1"], ["t2"]]}))
    _write(f"{raw}/tags", pa.table({"tag_id": ["t1", "t2"], "tag_name": ["One", "Two"], "category": ["a", "b"]}))
    _write(f"{raw}/users", users if users is not None else pa.table({"user_id": ["u1", "u2"], "city": ["x", "y"]}))
    return Config(paths=Paths(raw=raw, warehouse=f"{root}/wh", models=f"{root}/models"),
                  features=FeaturesConf(window_days=3, max_bad_fraction=max_bad_fraction, max_id_length=64))


def _events(rows):
    user, item, kind, time = zip(*rows)
    return pa.table([pa.array(user, pa.binary()).view(pa.string()), pa.array(item, pa.string()),
                     pa.array(kind, pa.string()), pa.array(time, EVENTS.field("event_time").type)], schema=EVENTS)


def _at(hour):
    return dt.datetime(2026, 11, 9, hour, tzinfo=UTC)


def _quarantine(spark, config):
    rows = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.QUARANTINE)).collect()
    return sorted((r["reason"], json.loads(r["record"])["item_id"]) for r in rows)


def test_non_utf8_and_overlong_ids_are_quarantined_by_reason(spark, tmp_path):
    long_id = ("u" * 5000).encode()
    config = _world(tmp_path, _events([
        (b"u1", "i1", "impression", _at(1)), (b"u1", "i1", "click", _at(2)),
        (b"u\xff\xfe", "i2", "impression", _at(3)),          # not UTF-8
        (long_id, "i1", "impression", _at(4)),               # 5000 bytes > max_id_length
        (b"u2", "i2", "impression", _at(5)),
    ]))
    run(spark, config, [DAY], run_id="bad-ids")
    assert _quarantine(spark, config) == [("id_too_long", "i1"), ("invalid_utf8", "i2")]
    samples = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.SAMPLES)).orderBy("user_id")
    assert [(r["user_id"], r["tag_id"], r["click"]) for r in samples.collect()] == [("u1", "t1", 1), ("u2", "t2", 0)]


def test_an_item_without_a_known_tag_is_counted_and_its_events_stay_activity(spark, tmp_path):
    """The contract gives every item one or more tags. An item with none (null, empty, blank) or only
    unknown ones has no tag to sample: a no_tags row says so, instead of its clicks leaving samples,
    tags and lists without a trace; its events still count as the user's activity."""
    config = _world(tmp_path, _events([
        (b"u1", "i1", "click", _at(1)), (b"u1", "i3", "click", _at(2)), (b"u2", "i4", "impression", _at(3)),
        (b"u2", "i5", "click", _at(4)), (b"u2", "i6", "impression", _at(5)), (b"u2", "i7", "click", _at(6)),
    ]))
    items = pa.table({"item_id": ["i1", "i3", "i4", "i5", "i6", "i7"],
                      "tag_ids": [["t1"], [], None, ["tx"], [" ", None], ["tx", "t2"]]})
    _write(f"{config.paths.raw}/items", items)
    summary = run(spark, config, [DAY], run_id="tagless")
    rows = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.QUARANTINE)).collect()
    assert sorted((r["source"], r["reason"], json.loads(r["record"])["item_id"]) for r in rows) == [
        ("items", "no_tags", "i3"), ("items", "no_tags", "i4"), ("items", "no_tags", "i5"), ("items", "no_tags", "i6"),
        ("items", "unknown_tag", "i5"), ("items", "unknown_tag", "i6"), ("items", "unknown_tag", "i6"),
        ("items", "unknown_tag", "i7")]  # i6: " " and null are no tags either
    assert summary["quality"][DAY.isoformat()]["bad"] == {"items/no_tags": 4, "items/unknown_tag": 4}
    assert summary["quality"][DAY.isoformat()]["bad_events"] == 0
    samples = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.SAMPLES)).orderBy("user_id", "tag_id")
    assert [(r["user_id"], r["tag_id"], r["click"]) for r in samples.collect()] == [("u1", "t1", 1), ("u2", "t2", 1)]
    # every event is activity: u1 2 clicks; u2 2 impressions, 2 clicks (bucket 2 + #edges <= n)
    activity = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.USER_FEATURES)).select(
        "user_id", "impressions", "clicks").orderBy("user_id").collect()
    assert [tuple(r) for r in activity] == [("u1", 2, 4), ("u2", 4, 4)]


def test_an_overlong_user_key_is_quarantined_as_its_events_are(spark, tmp_path):
    """A user_id over max_id_length is quarantined in the events; its users row must be too, or
    the user is published with attributes alone under an id no event can carry."""
    long_id = "u" * 65  # max_id_length is 64 bytes
    users = pa.table({"user_id": ["u1", long_id, "u" * 64], "city": ["x", "y", "z"]})
    config = _world(tmp_path, _events([(b"u1", "i1", "impression", _at(1))]), users=users)
    run(spark, config, [DAY], run_id="long-key")
    rows = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.QUARANTINE)).collect()
    assert [(r["source"], r["reason"], json.loads(r["record"])) for r in rows] == [
        ("users", "id_too_long", {"user_id": long_id, "city": "y"})]
    snapshot = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.USER_FEATURES))
    assert sorted(r["user_id"] for r in snapshot.collect()) == ["u1", "u" * 64]


def test_an_empty_day_publishes_empty_samples_and_yesterdays_users(spark, tmp_path):
    config = _world(tmp_path, _events([(b"u1", "i1", "impression", dt.datetime(2026, 11, 8, 5, tzinfo=UTC))]))
    run(spark, config, [DAY], run_id="empty-day")
    samples = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.SAMPLES))
    assert samples.collect() == []  # the label day D-1 had no event, and no other day is written
    # u1's impression of 11-08 is in D's window; u2 has attributes alone. Activity ids (docs/features.md):
    # 2 + the edges (1, 2, 4, ...) at or below the count, so 1 event -> 3 and none -> 2; no impression,
    # no click rate (0).
    users = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.USER_FEATURES))
    activity = users.select("dt", "user_id", "impressions", "clicks", "conversions", "active_days", "click_rate")
    assert sorted(tuple(r) for r in activity.collect()) == [(DAY, "u1", 3, 2, 2, 3, 2), (DAY, "u2", 2, 2, 2, 2, 0)]


def test_schema_changes_stop_the_job_before_any_write(spark, tmp_path):
    config = _world(tmp_path / "a", _events([(b"u1", "i1", "impression", _at(1))]))
    _write(f"{config.paths.raw}/events", pa.table({"user_id": ["u1"], "item_id": ["i1"],
                                                    "event_type": ["click"], "event_time": ["2026-11-09"]}))
    with pytest.raises(ContractError, match="column event_time has type string, expected timestamp"):
        run(spark, config, [DAY])
    _write(f"{config.paths.raw}/events", pa.table({"user_id": ["u1"], "item_id": ["i1"]}))
    with pytest.raises(ContractError, match="column event_type is missing"):
        run(spark, config, [DAY])
    assert not os.path.exists(config.paths.warehouse)


def test_one_user_with_a_million_events_is_aggregated_exactly(spark, tmp_path):
    n = 1_000_000
    raw_events = (spark.range(n)
                  .select(F.lit("whale").alias("user_id"),
                          F.when(F.col("id") % 2 == 0, "i1").otherwise("i2").alias("item_id"),
                          F.when(F.col("id") % 10 == 0, "click").otherwise("impression").alias("event_type"),
                          (F.lit(dt.datetime(2026, 11, 9, tzinfo=UTC)) + F.make_interval(
                              secs=(F.col("id") / 20).cast("decimal(18,6)"))).alias("event_time")))  # 50 ms apart
    config = _world(tmp_path, _events([(b"u1", "i1", "impression", _at(1))]))
    raw_events.unionByName(spark.read.parquet(f"{config.paths.raw}/events")) \
        .write.mode("overwrite").parquet(f"{tmp_path}/raw/events2")
    os.replace(f"{tmp_path}/raw/events", f"{tmp_path}/raw/events_old")
    os.replace(f"{tmp_path}/raw/events2", f"{tmp_path}/raw/events")
    run(spark, config, [DAY], run_id="whale")
    samples = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.SAMPLES)) \
        .where(F.col("user_id") == "whale").orderBy("tag_id")
    # every 10th event is a click; ids 0, 10, 20... are even, so every click is on i1 (tag t1)
    assert [(r["tag_id"], r["click"]) for r in samples.collect()] == [("t1", 1), ("t2", 0)]
    quarantine = warehouse_uri(config.paths, Warehouse.QUARANTINE)
    assert not delta.table_exists(quarantine) or delta.read_table(spark, quarantine).count() == 0
    whale = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.USER_FEATURES)) \
        .where(F.col("user_id") == "whale").collect()
    # Computed here from the events' definition: 900,000 impressions and 100,000 clicks on one day
    # of the 3-day window; each click (id 0, 10, 20, ...) at id / 20 s after 2026-11-09 00:00
    # counts 0.5 ** (age in days / 7) on the snapshot of 2026-11-10. Ids in value order from 2:
    # tag t1 -> 2, category a -> 2. Bucket b of the default edges is 2 + #edges <= value.
    click_ids = np.arange(0, n, 10, dtype=np.float64)
    weight = np.float32(np.sum(0.5 ** ((86_400 - click_ids / 20) / 86_400 / 7.0)))

    conf = FeaturesConf()
    expected = {
        "dt": DAY, "user_id": "whale", "city": 0,
        "impressions": _bucket(900_000, conf.activity_buckets), "clicks": _bucket(100_000, conf.activity_buckets),
        "conversions": _bucket(0, conf.activity_buckets), "active_days": _bucket(1, conf.activity_buckets),
        "click_rate": _bucket(100_000 / 900_000, conf.rate_buckets),
        "clicked_tags": [2], "clicked_categories": [2], "converted_tags": [], "converted_tags_weights": [],
    }
    assert len(whale) == 1
    row = whale[0].asDict()
    assert row.pop("clicked_tags_weights") == [pytest.approx(weight, rel=1e-6)]
    assert row.pop("clicked_categories_weights") == [pytest.approx(weight, rel=1e-6)]
    assert row == expected


def _table_versions(config: Config) -> dict[str, int | None]:
    return {t.value: delta.table_version(warehouse_uri(config.paths, t)) for t in Warehouse}


def test_attribute_names_the_job_cannot_carry_stop_it_before_any_write(spark, tmp_path):
    """Names that would meet the job's own columns or Spark's name resolution (dotted, mixed
    case, _-prefixed): a ContractError naming the column, and no table changes."""
    config = _world(tmp_path, _events([(b"u1", "i1", "click", _at(1)), (b"u2", "i2", "impression", _at(2))]))
    run(spark, config, [DAY - dt.timedelta(days=1)], run_id="before")
    before = _table_versions(config)
    tables = {name: delta.read_table(spark, warehouse_uri(config.paths, Warehouse(name))).collect()
              for name, version in before.items() if version is not None}
    assert set(tables) == {"vocabulary", "fields", "user_features", "tags", "samples", "quarantine"}
    for name in ("geo.country", "_id", "_value", "_rank", "Reason", "Clicks", "DT", "home city"):
        _write(f"{config.paths.raw}/users", pa.table({"user_id": ["u1", "u2"], name: ["x", "y"]}))
        with pytest.raises(ContractError, match=rf"attribute column {re.escape(repr(name))} is not a valid "
                                                r"attribute name: attribute names are lowercase identifiers"):
            run(spark, config, [DAY], run_id="refused")
        assert _table_versions(config) == before, name
    for name, rows in tables.items():
        assert sorted(delta.read_table(spark, warehouse_uri(config.paths, Warehouse(name))).collect()) == sorted(rows)


def test_attributes_named_like_the_quality_steps_columns_are_encoded_like_any_other(spark, tmp_path):
    """`reason` and `record` are plain attribute names: a duplicate user still goes to the
    quarantine whole, and the kept rows are encoded with their own vocabularies."""
    users = pa.table({"user_id": ["u1", "u2", "u2"], "reason": ["x", "y", "z"], "record": ["p", "q", "q"]})
    config = _world(tmp_path, _events([(b"u1", "i1", "click", _at(1)), (b"u2", "i2", "impression", _at(2))]),
                    users=users)
    run(spark, config, [DAY], run_id="names")
    wh = {t: delta.read_table(spark, warehouse_uri(config.paths, t))
          for t in (Warehouse.USER_FEATURES, Warehouse.VOCABULARY, Warehouse.QUARANTINE)}
    assert sorted(tuple(r) for r in wh[Warehouse.USER_FEATURES].select("user_id", "reason", "record").collect()) \
        == [("u1", 2, 2), ("u2", 3, 3)]
    vocabulary = wh[Warehouse.VOCABULARY].where(F.col("field").isin("reason", "record")).select("field", "value", "id")
    assert sorted(tuple(r) for r in vocabulary.collect()) == [("reason", "x", 2), ("reason", "y", 3),
                                                              ("record", "p", 2), ("record", "q", 3)]
    quarantine = [(r["source"], r["reason"], r["record"]) for r in wh[Warehouse.QUARANTINE].collect()]
    assert quarantine == [("users", "duplicate", '{"user_id":"u2","reason":"z","record":"q"}')]
