"""A tiny warehouse for the analyst tests: user_tag_profiles on two dates, and tags.

Written with pyarrow (`core.delta.write_arrow`), so building it needs no Spark.
"""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pyarrow as pa
import pytest

from core import delta
from core.config import Paths

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
ODD_USER = "o'b\\r"  # a user id with a quote and a backslash

# (user, tags in rank order with their scores) per (dt, objective)
_PROFILES = {
    (D1, "ctr"): {
        "u1": [("t1", 0.90), ("t2", 0.80), ("t3", 0.50), ("t5", 0.10)],
        "u2": [("t2", 0.70), ("t1", 0.60), ("t4", 0.20)],
        "u3": [("t3", 0.95), ("t4", 0.40), ("t1", 0.30)],
        "u4": [("t1", 0.55), ("t5", 0.35)],
    },
    (D1, "cvr"): {
        "u1": [("t4", 0.60), ("t1", 0.50), ("t2", 0.10)],
        "u2": [("t1", 0.40), ("t3", 0.30)],
    },
    (D2, "ctr"): {
        "u1": [("t2", 0.85), ("t1", 0.80), ("t4", 0.30), ("t3", 0.05)],
        "u2": [("t2", 0.75), ("t3", 0.50), ("t1", 0.45)],
        "u4": [("t1", 0.90), ("t3", 0.60), ("t2", 0.20)],
        "u5": [("t3", 0.70), ("t1", 0.65)],
        ODD_USER: [("t4", 0.50), ("t1", 0.15)],
    },
    (D2, "cvr"): {
        "u2": [("t1", 0.70), ("t3", 0.30), ("t4", 0.05)],
        "u4": [("t2", 0.45)],
    },
}

# dt, user_id, objective, rank, tag_id, score, model_version
PROFILE_ROWS = [
    (day, user, objective, rank, tag, score, "v1" if day == D1 else "v2")
    for (day, objective), users in _PROFILES.items()
    for user, tags in users.items()
    for rank, (tag, score) in enumerate(tags, start=1)
]

# tag_id -> (tag_name, category); t6 is known to the tags table but in nobody's profile.
TAGS = {"t1": ("running", "sport"), "t2": ("tennis", "sport"), "t3": ("jazz", "music"),
        "t4": ("cooking", None), "t5": ("chess", "games"), "t6": ("opera", "music")}


def _profiles_table() -> pa.Table:
    columns = list(zip(*PROFILE_ROWS))
    return pa.table({
        "dt": pa.array(columns[0], pa.date32()),
        "user_id": pa.array(columns[1], pa.string()),
        "objective": pa.array(columns[2], pa.string()),
        "rank": pa.array(columns[3], pa.int32()),
        "tag_id": pa.array(columns[4], pa.string()),
        "score": pa.array(columns[5], pa.float64()),
        "model_version": pa.array(columns[6], pa.string()),
    })


def _tags_table() -> pa.Table:
    rows = [(day, tag, index, name, category) for day in (D1, D2)
            for index, (tag, (name, category)) in enumerate(sorted(TAGS.items()), start=2)]
    columns = list(zip(*rows))
    return pa.table({
        "dt": pa.array(columns[0], pa.date32()),
        "tag_id": pa.array(columns[1], pa.string()),
        "tag_index": pa.array(columns[2], pa.int32()),
        "tag_name": pa.array(columns[3], pa.string()),
        "category": pa.array(columns[4], pa.string()),
    })


@pytest.fixture(scope="session")
def data() -> SimpleNamespace:
    """The inline rows, for the tests' own hand computations."""
    return SimpleNamespace(D1=D1, D2=D2, rows=PROFILE_ROWS, tags=TAGS, odd_user=ODD_USER)


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory) -> Paths:
    root = tmp_path_factory.mktemp("analyst")
    paths = Paths(raw=str(root / "raw"), warehouse=str(root / "warehouse"), models=str(root / "models"))
    delta.write_arrow(_profiles_table(), f"{paths.warehouse}/user_tag_profiles", mode="overwrite",
                      partition_by=["dt"])
    delta.write_arrow(_tags_table(), f"{paths.warehouse}/tags", mode="overwrite", partition_by=["dt"])
    return paths


@pytest.fixture(scope="session")
def warehouse_with_tags(tmp_path_factory, warehouse):
    """A function: a copy of `warehouse` whose tags table also holds the given tag ids on both dates
    (in nobody's profile), so that a named query accepts them as known tags."""
    def make(extra_tags) -> Paths:
        root = tmp_path_factory.mktemp("tagged")
        paths = Paths(raw=str(root / "raw"), warehouse=str(root / "warehouse"), models=str(root / "models"))
        profiles = delta.read_arrow(f"{warehouse.warehouse}/user_tag_profiles")
        delta.write_arrow(profiles, f"{paths.warehouse}/user_tag_profiles", mode="overwrite", partition_by=["dt"])
        tags = _tags_table()
        rows = [(day, tag) for day in (D1, D2) for tag in extra_tags]
        extra = pa.table({"dt": pa.array([d for d, _ in rows], pa.date32()), "tag_id": pa.array([t for _, t in rows]),
                          "tag_index": pa.nulls(len(rows), pa.int32()), "tag_name": pa.nulls(len(rows), pa.string()),
                          "category": pa.nulls(len(rows), pa.string())})
        delta.write_arrow(pa.concat_tables([tags, extra]), f"{paths.warehouse}/tags", mode="overwrite",
                          partition_by=["dt"])
        return paths

    return make


@pytest.fixture
def duck(warehouse):
    from analyst.engine import DuckDBEngine

    engine = DuckDBEngine(warehouse)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def spark_engine(spark, warehouse):
    from analyst.engine import SparkEngine

    engine = SparkEngine(spark, warehouse)
    yield engine
    engine.close()
