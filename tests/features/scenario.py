"""A small raw world for the feature-job tests, and what the tables must hold, in plain Python.

The raw tables are inline rows: good events, and bad rows each tagged with the reason
the job must give them. The expected tables are computed here from the good rows
alone with nothing but Python (datetime arithmetic, sorted lists), independently of
the Spark code under test. Window: 3 days; half-life 2 days; lists cut to 2 values.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Row

from core.config import Config, FeaturesConf, Paths

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
D1, D2, D3 = dt.date(2026, 11, 5), dt.date(2026, 11, 6), dt.date(2026, 11, 7)
AS_OF = dt.date(2026, 11, 8)  # events from 2026-11-09 on are in the future
MAX_LEN = 2

CONF = FeaturesConf(
    window_days=3,
    decay_half_life_days=2.0,
    max_multi_len=MAX_LEN,
    activity_buckets=(1, 2, 4),
    rate_buckets=(0.3, 0.6),
    numeric_buckets=(18, 30, 50),
    attribute_buckets={"score": (0.5,)},
    categorical_attributes=("gender",),  # age, vip and score are discovered
    max_bad_fraction=0.9,
)


def T(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


# users: user_id, gender, age, vip, score
USERS = [
    ("u1", "F", 34, True, 0.7),
    ("u2", "M", 41, False, 0.2),
    ("u4", None, 17, None, 3.0),
]
BAD_USERS = [
    ("duplicate", ("u2", "M", None, False, None)),  # the record with age 41 sorts first and stays
    ("null_id", (None, "F", 20, True, 1.0)),
]
ITEMS = [("i1", ["t1", "t2"]), ("i2", ["t2", "t3"]), ("i3", ["t3"]), ("i4", ["t1", "t9"]), ("i5", [])]
BAD_ITEMS = [("duplicate", ("i3", ["t3"]))]
UNKNOWN_TAGS = [("unknown_tag", {"item_id": "i4", "tag_id": "t9"})]
TAGS = [("t1", "Running", "sport"), ("t2", "Stocks", "finance"), ("t3", "Misc", None), ("t4", "Tennis", "sport")]
BAD_TAGS = [("null_id", ("", "Blank", "x"))]

GOOD = [
    ("u5", "i1", "impression", T(1, 23, 59, 59)),  # one second before D1's window: never read
    ("u6", "i1", "impression", T(2)),  # exactly at D1 - window: u6 is known on D1, not on D2
    ("u1", "i1", "impression", T(2, 0, 3)),
    ("u1", "i1", "click", T(2, 0, 5)),
    ("u1", "i2", "impression", T(3, 9)),
    ("u1", "i2", "click", T(3, 9, 1)),
    ("u1", "i2", "conversion", T(3, 10)),
    ("u3", "i3", "impression", T(4, 8)),
    ("u3", "i3", "click", T(4, 8, 2)),
    ("u2", "i1", "impression", T(4, 20)),
    ("u2", "i5", "impression", T(4, 21)),  # an item without tags: activity only
    ("u1", "i4", "impression", T(4, 11)),
    ("u1", "i4", "click", T(4, 11, 30)),
    ("u7", "i2", "impression", T(5)),  # exactly at D1: u7 is known on D2, not on D1
    ("u2", "i2", "impression", T(5, 0, 0, 1)),
    ("u2", "i2", "click", T(5, 0, 1)),
    ("u3", "i1", "conversion", T(5, 13)),  # a conversion without a logged impression
    ("u1", "i1", "impression", T(5, 10)),
    ("u4", "i3", "impression", T(6, 10)),  # D2's own day: read by neither date
]
BAD = [
    ("null_id", (None, "i1", "impression", T(4, 9))),
    ("null_id", ("u1", "", "click", T(4, 9, 5))),
    ("null_id", ("  ", "i1", "impression", T(3, 9, 7))),
    ("null_id", (None, "i1", "click", T(10, 1))),  # also in the future: the first reason wins
    ("null_event_time", ("u1", "i1", "impression", None)),
    ("unknown_event_type", ("u1", "i1", "view", T(4, 9, 10))),
    ("unknown_event_type", ("u2", "i1", None, T(3, 9, 11))),
    ("unknown_event_type", ("u1", "i9", "view", T(4, 9, 20))),  # also an unknown item
    ("future", ("u1", "i1", "click", T(9, 1))),
    ("unknown_item", ("u3", "i9", "impression", T(3, 12))),
    ("unknown_item", ("u3", "i9", "impression", T(3, 12))),  # identical bad rows keep their reason
    ("duplicate", ("u1", "i2", "impression", T(3, 9))),
    ("duplicate", ("u2", "i1", "impression", T(4, 20))),
    ("duplicate", ("u2", "i1", "impression", T(4, 20))),
    ("unknown_item", ("u3", "i9", "click", T(1, 5))),  # before every window: never read
    ("unknown_item", ("u3", "i9", "click", T(6, 5))),  # D2's own day: read by neither date
]


@dataclasses.dataclass(frozen=True)
class World:
    """Raw rows (bad ones included in the tables) and the conf of one scenario."""

    users: list = dataclasses.field(default_factory=lambda: list(USERS))
    items: list = dataclasses.field(default_factory=lambda: list(ITEMS))
    tags: list = dataclasses.field(default_factory=lambda: list(TAGS))
    good: list = dataclasses.field(default_factory=lambda: list(GOOD))
    bad: list = dataclasses.field(default_factory=lambda: list(BAD))

    def replace(self, **changes) -> "World":
        return dataclasses.replace(self, **changes)

    # ---- the raw tables ------------------------------------------------------------------
    def write(self, root: str) -> None:
        """Parquet folders under `root`, bad rows mixed in."""
        users = self.users + [r for _, r in BAD_USERS]
        _parquet(f"{root}/users", users, pa.schema([
            ("user_id", pa.string()), ("gender", pa.string()), ("age", pa.int64()), ("vip", pa.bool_()),
            ("score", pa.float64())]))
        _parquet(f"{root}/items", self.items + [r for _, r in BAD_ITEMS],
                 pa.schema([("item_id", pa.string()), ("tag_ids", pa.list_(pa.string()))]))
        _parquet(f"{root}/tags", self.tags + [r for _, r in BAD_TAGS],
                 pa.schema([("tag_id", pa.string()), ("tag_name", pa.string()), ("category", pa.string())]))
        events = self.good + [r for _, r in self.bad]
        _parquet(f"{root}/events", events, pa.schema([
            ("user_id", pa.string()), ("item_id", pa.string()), ("event_type", pa.string()),
            ("event_time", pa.timestamp("us", tz="UTC"))]))

    # ---- vocabularies (first run: every value sorted, ids from 2) ------------------------
    def first_vocabulary(self, first_dt: dt.date) -> list[tuple]:
        values = {
            "tag": {t for t, _, _ in self.tags},
            "category": {c for _, _, c in self.tags if c},
            "gender": {g for _, g, *_ in self.users if g},
            "vip": {str(v).lower() for *_, v, _ in self.users if v is not None},
        }
        return [(field, value, i + 2, first_dt) for field, vals in values.items() for i, value in enumerate(sorted(vals))]

    # ---- user_features ---------------------------------------------------------------------
    def user_features(self, dates: Sequence[dt.date], vocabulary: Iterable[tuple]) -> list[Row]:
        ids = _ids(vocabulary)
        tags_of = self._item_tags(ids)
        category_of = {ids["tag"][t]: ids["category"][c] for t, _, c in self.tags if c}
        rows = []
        for date in dates:
            start, end = _midnight(date - CONF.window_days * DAY), _midnight(date)
            window = [e for e in self.good if start <= e[3] < end]
            users = {u[0] for u in self.users} | {e[0] for e in window}
            for user in sorted(users):
                mine = [e for e in window if e[0] == user]
                count = {k: sum(e[2] == k for e in mine) for k in ("impression", "click", "conversion")}
                lists = {
                    "clicked_tags": _top(mine, "click", lambda item: tags_of[item], end),
                    "converted_tags": _top(mine, "conversion", lambda item: tags_of[item], end),
                    "clicked_categories": _top(
                        mine, "click", lambda item: sorted({category_of[t] for t in tags_of[item] if t in category_of}),
                        end),
                }
                attrs = self._attributes(user, ids)
                rate = count["click"] / count["impression"] if count["impression"] else None
                rows.append(Row(
                    dt=date, user_id=user,
                    active_days=_bucket(len({e[3].date() for e in mine}), CONF.activity_buckets),
                    age=attrs["age"], click_rate=_bucket(rate, CONF.rate_buckets),
                    clicked_categories=lists["clicked_categories"][0],
                    clicked_categories_weights=lists["clicked_categories"][1],
                    clicked_tags=lists["clicked_tags"][0], clicked_tags_weights=lists["clicked_tags"][1],
                    clicks=_bucket(count["click"], CONF.activity_buckets),
                    conversions=_bucket(count["conversion"], CONF.activity_buckets),
                    converted_tags=lists["converted_tags"][0], converted_tags_weights=lists["converted_tags"][1],
                    gender=attrs["gender"], impressions=_bucket(count["impression"], CONF.activity_buckets),
                    score=attrs["score"], vip=attrs["vip"],
                ))
        return rows

    def _attributes(self, user: str, ids: dict) -> dict:
        row = next((u for u in self.users if u[0] == user), None)
        if row is None:
            return {"gender": 0, "age": 0, "vip": 0, "score": 0}
        _, gender, age, vip, score = row
        return {
            "gender": ids["gender"].get(gender, 1) if gender else 0,
            "age": _bucket(age, CONF.numeric_buckets),
            "vip": ids["vip"].get(str(vip).lower(), 1) if vip is not None else 0,
            "score": _bucket(score, CONF.attribute_buckets["score"]),
        }

    def _item_tags(self, ids: dict) -> dict[str, list[int]]:
        return {item: sorted({ids["tag"][t] for t in tags if t in ids["tag"]}) for item, tags in self.items}

    # ---- tags --------------------------------------------------------------------------------
    def tags_table(self, dates: Sequence[dt.date], vocabulary: Iterable[tuple]) -> list[Row]:
        ids = _ids(vocabulary)
        tags_of = self._item_tags(ids)
        rows = []
        for date in dates:
            start, end = _midnight(date - CONF.window_days * DAY), _midnight(date)
            window = [e for e in self.good if start <= e[3] < end]
            stats = []
            for tag_id, name, category in self.tags:
                index = ids["tag"][tag_id]
                on_tag = [e for e in window if index in tags_of[e[1]]]
                counts = [sum(e[2] == k for e in on_tag) for k in ("impression", "click", "conversion")]
                stats.append((tag_id, index, name, category, ids["category"].get(category, 0) if category else 0,
                              *counts))
            stats.sort(key=lambda s: (-s[5], -s[6], s[1]))
            rows += [Row(date, *s, rank + 1) for rank, s in enumerate(stats)]
        return rows

    # ---- samples -----------------------------------------------------------------------------
    def samples(self, days: Sequence[dt.date], vocabulary: Iterable[tuple]) -> list[Row]:
        ids = _ids(vocabulary)
        tag_name = {v: k for k, v in ids["tag"].items()}
        category_of = {ids["tag"][t]: ids["category"].get(c, 0) if c else 0 for t, _, c in self.tags}
        tags_of = self._item_tags(ids)
        labels: dict[tuple, list[int]] = {}
        for user, item, kind, time in self.good:
            if time.date() not in days:
                continue
            for index in tags_of[item]:
                label = labels.setdefault((time.date(), user, index), [0, 0])
                label[0] |= kind == "click"
                label[1] |= kind == "conversion"
        return [Row(day, user, tag_name[index], index, category_of[index], int(c), int(v), "impression")
                for (day, user, index), (c, v) in sorted(labels.items())]

    # ---- quarantine and counts --------------------------------------------------------------
    def quarantine(self, dates: Sequence[dt.date], run_id: str) -> list[Row]:
        rows = []
        for date in dates:
            for reason, event in self._bad_read_by(date):
                rows.append(Row(date, run_id, "events", reason, _event_json(event)))
            for source, reason, record in _dimension_bad():
                rows.append(Row(date, run_id, source, reason, record))
        return rows

    def bad_counts(self, date: dt.date) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason, _ in self._bad_read_by(date):
            counts[f"events/{reason}"] = counts.get(f"events/{reason}", 0) + 1
        for source, reason, _ in _dimension_bad():
            counts[f"{source}/{reason}"] = counts.get(f"{source}/{reason}", 0) + 1
        return counts

    def events_read(self, date: dt.date) -> int:
        good = [e for e in self.good if self._reads(date, e[3])]
        return len(good) + len(self._bad_read_by(date))

    def _bad_read_by(self, date: dt.date) -> list[tuple[str, tuple]]:
        return [(reason, e) for reason, e in self.bad if self._reads(date, e[3])]

    @staticmethod
    def _reads(date: dt.date, time: dt.datetime | None) -> bool:
        """Run date `date` reads its window, rows without a time, and future rows."""
        if time is None or time >= _midnight(AS_OF + DAY):
            return True
        return _midnight(date - CONF.window_days * DAY) <= time < _midnight(date)


def config(tmp_root: str, raw: str, *, features: FeaturesConf = CONF) -> Config:
    return Config(paths=Paths(raw=raw, warehouse=f"{tmp_root}/warehouse", models=f"{tmp_root}/models"),
                  features=features)


def user_features_schema(multi: Sequence[str] = ("clicked_categories", "clicked_tags", "converted_tags")) -> str:
    columns = ["dt date", "user_id string"]
    for name in ("active_days", "age", "click_rate", "clicked_categories", "clicked_tags", "clicks", "conversions",
                 "converted_tags", "gender", "impressions", "score", "vip"):
        if name in multi:
            columns += [f"{name} array<int>", f"{name}_weights array<float>"]
        else:
            columns.append(f"{name} int")
    return ", ".join(columns)


TAGS_SCHEMA = ("dt date, tag_id string, tag_index int, tag_name string, category string, category_id int, "
               "impressions long, clicks long, conversions long, popularity_rank int")
SAMPLES_SCHEMA = ("dt date, user_id string, tag_id string, tag_index int, category_id int, click int, "
                  "conversion int, source string")
QUARANTINE_SCHEMA = "dt date, run_id string, source string, reason string, record string"
VOCABULARY_SCHEMA = "field string, value string, id int, first_dt date"
FIELDS_SCHEMA = "name string, kind string, encoding string, source string, vocab_size int, definition string"


def _parquet(path: str, rows: list, schema: pa.Schema) -> None:
    os.makedirs(path, exist_ok=True)
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    table = pa.table([pa.array(list(c), f.type) for c, f in zip(columns, schema)], schema=schema)
    pq.write_table(table, f"{path}/part-0.parquet")


def _midnight(date: dt.date) -> dt.datetime:
    return dt.datetime(date.year, date.month, date.day, tzinfo=UTC)


def _ids(vocabulary: Iterable[tuple]) -> dict[str, dict[str, int]]:
    ids: dict[str, dict[str, int]] = {}
    for field, value, id_, _ in vocabulary:
        ids.setdefault(field, {})[value] = id_
    return ids


def _bucket(value: float | None, edges: Sequence[float]) -> int:
    return 0 if value is None else 2 + sum(value >= e for e in edges)


def _top(events: list, kind: str, values_of, end: dt.datetime) -> tuple[list[int], list[float]]:
    """The MAX_LEN values with the largest decayed counts: sum of 0.5 ** (age in days / half-life)."""
    weights: dict[int, float] = {}
    for _, item, event_kind, time in events:
        if event_kind != kind:
            continue
        for value in values_of(item):
            age_days = (end - time).total_seconds() / 86_400
            weights[value] = weights.get(value, 0.0) + 0.5 ** (age_days / CONF.decay_half_life_days)
    top = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_LEN]
    return [v for v, _ in top], [w for _, w in top]


def _json(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


def _event_json(event: tuple) -> str:
    user, item, kind, time = event
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if time else None
    return _json({"user_id": user, "item_id": item, "event_type": kind, "event_time": stamp})


def _dimension_bad() -> list[tuple[str, str, str]]:
    users = [("users", r, _json(dict(zip(("user_id", "gender", "age", "vip", "score"), row)))) for r, row in BAD_USERS]
    items = [("items", r, _json({"item_id": row[0], "tag_ids": row[1]})) for r, row in BAD_ITEMS]
    items += [("items", r, _json(record)) for r, record in UNKNOWN_TAGS]
    items += [("items", "no_tags", _json({"item_id": item, "tag_ids": tags})) for item, tags in ITEMS
              if not set(tags) & {t for t, _, _ in TAGS}]
    tags = [("tags", r, _json(dict(zip(("tag_id", "tag_name", "category"), row)))) for r, row in BAD_TAGS]
    return users + items + tags
