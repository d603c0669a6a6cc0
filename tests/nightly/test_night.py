"""Consecutive nights end to end on a small synthetic world: real Spark, Delta, Horovod."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from pyspark.testing import assertDataFrameEqual

from core import delta, registry
from core.config import config_from_dict
from core.tables import Warehouse, warehouse_uri
from nightly import night, plan, publish
from nightly.gates import QualityGateError
from nightly.runlog import read_runs

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 1)
D1, D2, D3 = START + dt.timedelta(days=4), START + dt.timedelta(days=5), START + dt.timedelta(days=6)
PUBLISHED = (Warehouse.USER_TAG_PROFILES, Warehouse.PROFILES_LATEST)


def _config(root, train_every=30, **gates):
    return config_from_dict({
        "paths": {"raw": f"{root}/raw", "warehouse": f"{root}/wh", "models": f"{root}/models"},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "generate": {"users": 240, "items": 60, "tags": 20, "categories": 4, "facets": 4, "days": 7,
                     "start_date": START.isoformat(), "partitions": 2},
        "model": {"embedding_dim": 8, "hidden_dim": 16},
        "train": {"num_proc": 2, "window_days": 3, "epochs": 2, "batch_size": 128, "learning_rate": 0.02,
                  "publish_if": {"min_auc": 0.0, "max_auc_drop": 1.0}},
        "score": {"top_n": 5},
        "nightly": {"train_every": train_every, "gates": {"min_auc": 0.0, "min_stability": 0.0, "max_score_shift": 1.0,
                                                  "min_tag_coverage": 0.1, **gates}},
    })


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    from synthetic.dataset import generate

    root = tmp_path_factory.mktemp("nights")
    config = _config(root)
    generate(spark, config.generate, config.paths)
    return root


def _versions(config):
    return {t: delta.table_version(warehouse_uri(config.paths, t)) for t in PUBLISHED}


def _table(spark, config, table):
    return delta.read_table(spark, warehouse_uri(config.paths, table))


def test_two_consecutive_nights_publish_profiles_and_a_report(spark, world):
    config = _config(world)
    first = night.run_night(spark, config, D1, run_id="n1")
    second = night.run_night(spark, config, D2, run_id="n2")
    assert first.trained and not second.trained
    assert first.model_version == second.model_version == registry.latest_published(config.paths).model_version
    assert publish.published_dates(config.paths) == [D1, D2]
    latest = _table(spark, config, Warehouse.PROFILES_LATEST)
    assertDataFrameEqual(latest, publish.read_profiles(spark, publish.profiles_uri(config.paths), D2))
    # every user of the night has exactly top_n rows per objective, ranks 1..5, scores descending
    day = publish.read_profiles(spark, publish.profiles_uri(config.paths), D2).toPandas()
    users = _table(spark, config, Warehouse.USER_FEATURES).where(f"dt = DATE'{D2}'").select("user_id").toPandas()
    assert set(day["user_id"]) == set(users["user_id"])
    for (_, _), group in day.groupby(["user_id", "objective"]):
        assert list(group.sort_values("rank")["rank"]) == [1, 2, 3, 4, 5]
        assert list(group.sort_values("rank")["score"]) == sorted(group["score"], reverse=True)
    stages = [(r["run_id"], r["stage"], r["status"]) for r in read_runs(config.paths)]
    for run_id in ("n1", "n2"):
        assert [s for s in stages if s[0] == run_id] == [(run_id, s, "succeeded") for s in night.STAGES]
    report = second.report_path
    assert os.path.exists(report)
    text = open(report).read()
    for png in ("training_curves.png", "auc_across_nights.png", "score_distributions.png",
                "kernel_by_category.png", "coverage_and_stability.png"):
        assert f"]({png})" in text and os.path.getsize(os.path.join(os.path.dirname(report), png)) > 1000
    assert "top_n_stability" in text


def test_rerunning_a_night_gives_identical_tables(spark, world):
    config = _config(world)
    tables = (Warehouse.USER_TAG_PROFILES, Warehouse.PROFILES_LATEST, Warehouse.USER_FEATURES,
              Warehouse.SAMPLES, Warehouse.TAGS, Warehouse.VOCABULARY)
    before = {t: _table(spark, config, t).toPandas() for t in tables}
    night.run_night(spark, config, D2, run_id="n2-again")
    for table in tables:
        after = _table(spark, config, table)
        assertDataFrameEqual(after, spark.createDataFrame(before[table], schema=after.schema))


def test_a_failed_gate_publishes_nothing_and_says_why(spark, world):
    config = _config(world, min_profile_share=1.5)
    before = _versions(config)
    with pytest.raises(QualityGateError, match=r"profile_share: 1\.0000 \(must be >= 1\.5\) FAILED by 0\.5000"):
        night.run_night(spark, config, D3, run_id="n3-gate")
    assert _versions(config) == before
    assert publish.published_dates(config.paths) == [D1, D2]
    staged = publish.read_profiles(spark, publish.candidate_uri(config.paths), D3)
    assert staged.count() > 0  # the candidate stays in staging for inspection
    gate_rows = [r for r in read_runs(config.paths) if r["run_id"] == "n3-gate" and r["stage"] == "gates"]
    assert gate_rows[0]["status"] == "failed" and "profile_share" in gate_rows[0]["message"]


def test_a_model_trained_tonight_whose_gates_fail_stops_being_the_published_model(spark, world):
    config = _config(world, train_every=1, min_profile_share=1.5)
    reused = registry.latest_published(config.paths)  # trained on the first night
    before = _versions(config)
    with pytest.raises(QualityGateError) as failed:
        night.run_night(spark, config, D3, run_id="n3-trained-gate")
    trained = [r for r in registry.list_models(config.paths) if r.trained_for == D3]
    assert [r.status for r in trained] == [registry.ModelStatus.GATE_FAILED]
    assert str(failed.value).endswith(f"model {trained[0].model_version}, trained for {D3}, is now gate_failed; "
                                      f"the latest published model is {reused.model_version} again")
    assert registry.latest_published(config.paths) == reused
    assert registry.resolve(config.paths).model_version == reused.model_version  # what standalone score uses
    assert not plan.training_due(_config(world), D3)  # with train_every=30 the next night reuses it
    assert _versions(config) == before
    assert publish.published_dates(config.paths) == [D1, D2]
    gate_rows = [r for r in read_runs(config.paths) if r["run_id"] == "n3-trained-gate" and r["stage"] == "gates"]
    assert gate_rows[0]["status"] == "failed" and "is now gate_failed" in gate_rows[0]["message"]


def test_a_crash_between_stages_then_the_rerun_completes(spark, world, monkeypatch):
    config = _config(world)
    before = _versions(config)
    monkeypatch.setenv(night.FAULT_ENV, "score")
    with pytest.raises(night.InjectedCrash):
        night.run_night(spark, config, D3, run_id="n3-crash")
    assert _versions(config) == before
    monkeypatch.delenv(night.FAULT_ENV)
    night.run_night(spark, config, D3, run_id="n3")
    assert publish.published_dates(config.paths) == [D1, D2, D3]


def test_rollback_restores_the_previous_state(spark, world):
    config = _config(world)
    d2 = publish.read_profiles(spark, publish.profiles_uri(config.paths), D2)
    publish.rollback_date(spark, config.paths, D3)
    assert publish.published_dates(config.paths) == [D1, D2]
    assertDataFrameEqual(_table(spark, config, Warehouse.PROFILES_LATEST), d2)
