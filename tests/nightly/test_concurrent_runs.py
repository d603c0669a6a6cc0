"""Two schedulers start the same night at the same moment: two real `nightly` processes."""
from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
import yaml

from core import delta
from core.config import load_config
from core.tables import Warehouse, warehouse_uri
from nightly import publish
from nightly.runlog import read_runs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2026, 11, 1)
NIGHT = START + dt.timedelta(days=3)
TOP_N = 4


def _conf_file(root: Path) -> str:
    conf = {
        "paths": {"raw": f"{root}/raw", "warehouse": f"{root}/wh", "models": f"{root}/models"},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "1500m"},
        "generate": {"users": 120, "items": 40, "tags": 12, "categories": 3, "facets": 3, "days": 4,
                     "start_date": START.isoformat(), "partitions": 2},
        "model": {"embedding_dim": 4, "hidden_dim": 8},
        "train": {"num_proc": 2, "window_days": 2, "epochs": 1, "batch_size": 128,
                  "publish_if": {"min_auc": 0.0, "max_auc_drop": 1.0}},
        "score": {"top_n": TOP_N},
        "nightly": {"gates": {"min_auc": 0.0, "min_tag_coverage": 0.0}},
    }
    path = root / "conf.yaml"
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def test_two_runs_of_one_night_started_together_one_publishes_the_other_fails_clearly(spark, tmp_path):
    from synthetic.dataset import generate

    conf_file = _conf_file(tmp_path)
    config = load_config(conf_file)
    generate(spark, config.generate, config.paths)

    runs = {run_id: subprocess.Popen([str(ROOT / "spark-submit.sh"), "nightly", "--conf", conf_file,
                                      "--date", NIGHT.isoformat(), "--run-id", run_id],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for run_id in ("scheduler-a", "scheduler-b")}
    outputs = {run_id: (p.communicate(timeout=1200), p.returncode) for run_id, p in runs.items()}
    codes = {run_id: code for run_id, (_, code) in outputs.items()}
    assert sorted(codes.values()) == [0, 3], {r: (c, o[1][-3000:]) for r, (o, c) in outputs.items()}
    winner = next(r for r, c in codes.items() if c == 0)
    loser = next(r for r, c in codes.items() if c == 3)
    said = "".join(outputs[loser][0])  # spark-submit merges the driver's stderr into its stdout
    assert f"another run holds {tmp_path}/wh/_locks/nightly-{NIGHT}.lock: run {winner} (pid" in said

    # the winner ran every stage; the loser left no stage behind
    stages = read_runs(config.paths)
    assert {r["run_id"] for r in stages} == {winner}
    assert all(r["status"] == "succeeded" for r in stages)
    # one publish commit for the night, and it holds one well-formed profile per user and objective
    publishes = [h for h in delta.history(publish.profiles_uri(config.paths)) if h.get("job") == "publish"]
    assert [(h["dt"], h["run_id"]) for h in publishes] == [(NIGHT.isoformat(), winner)]
    profiles = publish.read_profiles(spark, publish.profiles_uri(config.paths), NIGHT).toPandas()
    users = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.USER_FEATURES)) \
        .where(f"dt = DATE'{NIGHT}'").select("user_id").toPandas()
    ranks = profiles.groupby(["user_id", "objective"])["rank"].apply(sorted)
    assert set(profiles["user_id"]) == set(users["user_id"])
    assert all(r == list(range(1, TOP_N + 1)) for r in ranks)
    assert (tmp_path / "wh" / "_locks" / f"nightly-{NIGHT}.lock").read_text() == ""  # released
