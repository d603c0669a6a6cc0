"""`make demo` as shipped: conf/local.yaml's world and rules, three nights, every one published.

The other nightly tests use small worlds and permissive publish rules; this one is the only
run of the shipped configuration, so a world too weak for its own AUC floor shows up here.
"""
from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
import yaml

from core import delta, registry
from core.config import load_config
from core.tables import Warehouse, warehouse_uri
from nightly import night
from nightly.runlog import read_runs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_publishes_three_nights_with_the_shipped_configuration(tmp_path):
    shipped = yaml.safe_load((ROOT / "conf/local.yaml").read_text())
    shipped["paths"] = {"raw": f"{tmp_path}/raw", "warehouse": f"{tmp_path}/wh", "models": f"{tmp_path}/models"}
    conf = tmp_path / "demo.yaml"
    conf.write_text(yaml.safe_dump(shipped))
    config = load_config(str(conf))

    run = subprocess.run(["bash", "tools/demo.sh", str(conf)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    last = config.generate.start_date + dt.timedelta(days=config.generate.days)
    nights = [last - dt.timedelta(days=k) for k in (2, 1, 0)]
    stages = sorted((r["dt"], r["stage"], r["status"]) for r in read_runs(config.paths))
    assert stages == sorted((d, s, "succeeded") for d in nights for s in night.STAGES)

    # The first night has no earlier model: its own must clear the shipped publish rules.
    first = [m for m in registry.list_models(config.paths) if m.trained_for == nights[0]]
    assert [m.status for m in first] == [registry.ModelStatus.PUBLISHED]

    latest = delta.read_arrow(warehouse_uri(config.paths, Warehouse.PROFILES_LATEST), columns=["dt"])
    assert set(latest.column("dt").to_pylist()) == {last}
    report = Path(config.paths.reports_root) / last.isoformat() / "report.md"
    assert report.exists() and last.isoformat() in report.read_text()
