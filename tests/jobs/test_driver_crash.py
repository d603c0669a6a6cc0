"""The driver dies after executors wrote data files but before the Delta commit."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import load_config
from core.tables import Warehouse, warehouse_uri
from jobs import features as features_job
from jobs import vacuum

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2026, 11, 1)
NIGHT = START + dt.timedelta(days=3)
FEATURE_TABLES = {Warehouse.VOCABULARY, Warehouse.FIELDS, Warehouse.USER_FEATURES, Warehouse.TAGS, Warehouse.SAMPLES,
                  Warehouse.QUARANTINE}


def _features(conf, env=None):
    return subprocess.run([str(ROOT / "spark-submit.sh"), "features", "--conf", conf, "--date", NIGHT.isoformat()],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, env={**os.environ, **(env or {})})


def _parquet_files(uri):
    return sorted(str(p) for p in Path(uri).rglob("*.parquet"))


def test_table_unchanged_rerun_succeeds_and_vacuum_removes_the_orphans(spark, tmp_path):
    from synthetic.dataset import generate

    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({
        "paths": {"raw": f"{tmp_path}/raw", "warehouse": f"{tmp_path}/wh", "models": f"{tmp_path}/models"},
        "generate": {"users": 100, "items": 30, "tags": 10, "categories": 3, "facets": 3, "days": 4,
                     "start_date": START.isoformat(), "partitions": 2},
        "features": {"window_days": 3},
    }))
    config = load_config(conf)
    generate(spark, config.generate, config.paths)
    warehouse = config.paths.warehouse
    uris = [warehouse_uri(config.paths, t) for t in Warehouse]

    crashed = _features(str(conf), {delta.FAULT_EXIT_BEFORE_COMMIT: "137"})
    assert crashed.returncode == 137, crashed.stderr[-3000:]
    assert [u for u in uris if delta.table_exists(u)] == []  # died before the first commit: no table exists
    orphans = _parquet_files(warehouse)
    assert orphans, "the executors should have written data files before the driver died"

    rerun = _features(str(conf))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    live = sorted(f.removeprefix("file://") for u in uris if delta.table_exists(u)
                  for f in delta.open_table(u).file_uris())
    assert set(orphans).isdisjoint(live)
    # the rerun published what a run that never crashed publishes: the same job into a fresh warehouse
    clean = dataclasses.replace(config, paths=dataclasses.replace(config.paths, warehouse=f"{tmp_path}/clean"))
    features_job.run(spark, clean, [NIGHT], run_id="clean")
    for c in (config, clean):  # the feature job's six tables, and nothing else
        assert {t for t in Warehouse if delta.table_exists(warehouse_uri(c.paths, t))} == FEATURE_TABLES
    for table in FEATURE_TABLES:
        assertDataFrameEqual(*(delta.read_table(spark, warehouse_uri(c.paths, table)).drop("run_id")
                               for c in (config, clean)))

    vacuum.run(config, retention_hours=0, force_retention=True)  # no write in flight here
    assert _parquet_files(warehouse) == live
