"""A tiny warehouse written inline in the schemas of docs/tables.md, with a learnable signal.

Users have a `city` (ids 2..5) and click the two tags whose tag_index is their city or the
next one (5 -> 2); a click converts when the tag_index is even. `clicked_tags` holds both.
"""
from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

from core import delta
from core.config import Config, config_from_dict

RUN_DATE = dt.date(2026, 11, 5)
DAYS = (dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
TAGS = {f"t{i}": (i, 2 + i % 2) for i in range(2, 6)}  # tag_id -> (tag_index, category_id)
NUM_TAGS, NUM_CATEGORIES, CITIES = 6, 4, 6


FIELD_DEFINITIONS = {"city": "vocabulary city", "clicked_tags": "vocabulary tag"}


def write_warehouse(root: str, *, users: int = 48, samples_per_user_day: int = 4, days=DAYS,
                    city_vocab_size: int = CITIES) -> None:
    rng = random.Random(7)
    city = {f"u{i}": 2 + i % 4 for i in range(users)}
    _write(root, "vocabulary", _vocabulary(), partitioned=False)
    _write(root, "fields", pa.table({
        "name": ["city", "clicked_tags"], "kind": ["single", "multi"], "encoding": ["vocab", "vocab"],
        "source": ["users.city", "events.click.tag"], "vocab_size": pa.array([city_vocab_size, NUM_TAGS], pa.int32()),
        "definition": [FIELD_DEFINITIONS["city"], FIELD_DEFINITIONS["clicked_tags"]],
    }), partitioned=False)
    _write(root, "user_features", _user_features(city, days), partitioned=True)
    _write(root, "tags", _tags(days), partitioned=True)
    _write(root, "samples", _samples(city, days, samples_per_user_day, rng), partitioned=True)


def training_config(tmp_path, **train) -> Config:
    return config_from_dict({
        "paths": {"raw": str(tmp_path / "raw"), "warehouse": str(tmp_path / "warehouse"),
                  "models": str(tmp_path / "models")},
        "features": {"max_multi_len": 2},
        "model": {"embedding_dim": 8, "hidden_dim": 16, "num_experts": 3,
                  "expert_sets": {"ctr": [0, 1], "cvr": [1, 2]}, "seed": 1},
        "train": {"num_proc": 2, "window_days": 3, "epochs": 2, "batch_size": 32, "learning_rate": 0.05,
                  "build_missing": False, "shuffle_buffer": 0, "reader_workers": 1, "log_every": 2, "torch_threads": 1,
                  "publish_if": {"min_auc": 0.55}, **train},
    })


def _write(root: str, name: str, table: pa.Table, *, partitioned: bool) -> None:
    delta.write_arrow(table, f"{root}/{name}", mode="overwrite", partition_by=["dt"] if partitioned else ())


def _vocabulary() -> pa.Table:
    rows = [("tag", tag, index) for tag, (index, _) in TAGS.items()]
    rows += [("category", f"c{i}", i) for i in (2, 3)] + [("city", f"city{i}", i) for i in range(2, CITIES)]
    return pa.table({"field": [r[0] for r in rows], "value": [r[1] for r in rows],
                     "id": pa.array([r[2] for r in rows], pa.int32()),
                     "first_dt": pa.array([DAYS[0]] * len(rows), pa.date32())})


def _user_features(city: dict[str, int], days) -> pa.Table:
    rows = [(day, user, c) for day in days for user, c in city.items()]
    return pa.table({
        "dt": pa.array([r[0] for r in rows], pa.date32()), "user_id": [r[1] for r in rows],
        "city": pa.array([r[2] for r in rows], pa.int32()),
        "clicked_tags": pa.array([sorted(_favourites(r[2])) for r in rows], pa.list_(pa.int32())),
        "clicked_tags_weights": pa.array([[1.0, 0.5] for _ in rows], pa.list_(pa.float32())),
    })


def _favourites(city: int) -> set[int]:
    return {city, 2 + (city - 1) % 4}


def _tags(days) -> pa.Table:
    rows = [(day, tag, index, category) for day in days for tag, (index, category) in TAGS.items()]
    n = len(rows)
    return pa.table({
        "dt": pa.array([r[0] for r in rows], pa.date32()), "tag_id": [r[1] for r in rows],
        "tag_index": pa.array([r[2] for r in rows], pa.int32()), "tag_name": [r[1].upper() for r in rows],
        "category": [f"c{r[3]}" for r in rows], "category_id": pa.array([r[3] for r in rows], pa.int32()),
        "impressions": pa.array([10] * n, pa.int64()), "clicks": pa.array([2] * n, pa.int64()),
        "conversions": pa.array([1] * n, pa.int64()), "popularity_rank": pa.array(list(range(1, n + 1)), pa.int32()),
    })


def _samples(city: dict[str, int], days, per_day: int, rng: random.Random) -> pa.Table:
    rows = []
    for day in days:
        for user, c in city.items():
            for tag in rng.sample(sorted(TAGS), per_day):
                index, category = TAGS[tag]
                click = int(index in _favourites(c))
                rows.append((day, user, tag, index, category, click, click * int(index % 2 == 0)))
    return pa.table({
        "dt": pa.array([r[0] for r in rows], pa.date32()), "user_id": [r[1] for r in rows],
        "tag_id": [r[2] for r in rows], "tag_index": pa.array([r[3] for r in rows], pa.int32()),
        "category_id": pa.array([r[4] for r in rows], pa.int32()),
        "click": pa.array([r[5] for r in rows], pa.int32()), "conversion": pa.array([r[6] for r in rows], pa.int32()),
        "source": ["impression"] * len(rows),
    })
