"""Consecutive nights end to end on a small synthetic world: real Spark, Delta, Horovod."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os

import numpy as np
import pytest
import torch
from pyspark.testing import assertDataFrameEqual

from core import delta, registry
from core.config import config_from_dict
from core.contract import read_raw
from core.tables import Raw, Warehouse, warehouse_uri
from mvke.artifact import load_model
from mvke.fields import weights_key
from nightly import night, plan, publish
from nightly.gates import QUANTILES, QualityGateError
from nightly.runlog import read_runs

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 1)
D1, D2, D3 = START + dt.timedelta(days=4), START + dt.timedelta(days=5), START + dt.timedelta(days=6)
PUBLISHED = (Warehouse.USER_TAG_PROFILES, Warehouse.PROFILES_LATEST)


def _config(root, train_every=30, vectors=False, **gates):
    return config_from_dict({
        "paths": {"raw": f"{root}/raw", "warehouse": f"{root}/wh", "models": f"{root}/models"},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "generate": {"users": 240, "items": 60, "tags": 20, "categories": 4, "facets": 4, "days": 7,
                     "start_date": START.isoformat(), "partitions": 2},
        "model": {"embedding_dim": 8, "hidden_dim": 16},
        "train": {"num_proc": 2, "window_days": 3, "epochs": 2, "batch_size": 128, "learning_rate": 0.02,
                  "publish_if": {"min_auc": 0.0, "max_auc_drop": 1.0}},
        "score": {"top_n": 5, "write_user_vectors": vectors},
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
    # rows in and out of each stage of n2: the events of D2's window (every earlier day of this world),
    # the users scored and their rows, the rows published; no vectors tonight
    events = read_raw(spark, config.paths, Raw.EVENTS).where(f"event_time < TIMESTAMP'{D2} 00:00:00'").count()
    counts = {r["stage"]: (r["rows_in"], r["rows_out"]) for r in read_runs(config.paths) if r["run_id"] == "n2"}
    assert counts == {"features": (events, None), "train": (None, None), "score": (len(users), len(day)),
                      "gates": (None, None), "publish": (len(day), len(day)), "vectors": (None, None),
                      "report": (None, None)}
    report = second.report_path
    assert os.path.exists(report)
    text = open(report).read()
    for png in ("training_curves.png", "auc_across_nights.png", "score_distributions.png",
                "kernel_by_category.png", "coverage_and_stability.png"):
        assert f"]({png})" in text and os.path.getsize(os.path.join(os.path.dirname(report), png)) > 1000
    assert "top_n_stability" in text
    # the first night has nothing to compare with; the second compares with the first, as recomputed here
    assert [r.describe() for r in first.gate_results if r.value is None] == [
        f"{name}: skipped (no previously published date to compare with)"
        for name in ("score_shift", "top_n_stability")]
    before = publish.read_profiles(spark, publish.profiles_uri(config.paths), D1).toPandas()
    tops = lambda frame: frame.groupby(["user_id", "objective"])["tag_id"].agg(frozenset)  # noqa: E731
    pairs = tops(day).to_frame("today").join(tops(before).to_frame("before"), how="inner")
    jaccard = [len(a & b) / len(a | b) for a, b in zip(pairs["today"], pairs["before"])]
    measured = {r.name: r.value for r in second.gate_results}
    assert measured["top_n_stability"] == pytest.approx(sum(jaccard) / len(jaccard), abs=1e-9)
    # the largest move of a score quantile of any objective: percentile_approx is exact at these sizes
    # (the smallest score with at least a share q of the scores at or below it)
    quantiles = lambda frame, o: np.quantile(frame[frame["objective"] == o]["score"], QUANTILES,  # noqa: E731
                                             method="inverted_cdf")
    moves = [np.abs(quantiles(day, o) - quantiles(before, o)).max() for o in sorted(set(day["objective"]))]
    assert measured["score_shift"] == pytest.approx(max(moves), abs=1e-12)


def test_rerunning_a_night_gives_identical_tables(spark, world):
    config = _config(world)
    tables = (Warehouse.USER_TAG_PROFILES, Warehouse.PROFILES_LATEST, Warehouse.USER_FEATURES,
              Warehouse.SAMPLES, Warehouse.TAGS, Warehouse.VOCABULARY)
    before = {t: _table(spark, config, t).toPandas() for t in tables}
    night.run_night(spark, config, D2, run_id="n2-again")
    for table in tables:
        after = _table(spark, config, table)
        assertDataFrameEqual(after, spark.createDataFrame(before[table], schema=after.schema))


def test_a_report_failing_after_the_publish_names_the_commit(spark, world, monkeypatch):
    """A disk that fills up after the night's check of its report folder: the profiles are live, so
    the night says which version is committed, not a bare traceback."""
    config = _config(world)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nightly.report.write_report", disk_full)
    with pytest.raises(publish.PartlyPublishedError) as failed:
        night.run_night(spark, config, D2, run_id="n2-disk-full")
    version = delta.table_version(publish.profiles_uri(config.paths))
    model = registry.latest_published(config.paths).model_version
    assert str(failed.value) == (
        f"the profiles of dt={D2} are committed ({publish.profiles_uri(config.paths)} version {version}, model "
        f"{model}), but the report failed: OSError: [Errno 28] No space left on device; run the same command "
        f"again to finish it")
    assert [(r["stage"], r["status"]) for r in read_runs(config.paths) if r["run_id"] == "n2-disk-full"] == [
        *((s, "succeeded") for s in night.STAGES[:-1]), ("report", "failed")]


def test_a_failed_gate_publishes_nothing_and_says_why(spark, world, tmp_path, capsys):
    """Through the command's `main`: exit 3, the gates' lines on stderr."""
    from jobs import nightly as nightly_job

    config = _config(world, min_auc=1.0)  # no model reaches it
    before = _versions(config)
    auc = registry.latest_published(config.paths).metrics["ctr"]["auc"]  # the model the night reuses
    conf = tmp_path / "night.yaml"
    conf.write_text(json.dumps(config.to_dict()))  # JSON is YAML
    capsys.readouterr()
    assert nightly_job.main(["--conf", str(conf), "--date", D3.isoformat(), "--run-id", "n3-gate"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"[nightly] {D3}: quality gates failed, nothing published:\n")
    assert (f"  model_auc_ctr: {auc:.4f} (must be >= 1.0) FAILED by {1 - auc:.4f}; validation AUC of the model "
            f"used") in err.splitlines()
    assert _versions(config) == before
    assert publish.published_dates(config.paths) == [D1, D2]
    # the candidate stays in staging for inspection: D3's users, top 5 per objective, by the reused model
    staged = publish.read_profiles(spark, publish.candidate_uri(config.paths), D3).toPandas()
    users = _table(spark, config, Warehouse.USER_FEATURES).where(f"dt = DATE'{D3}'").toPandas()["user_id"]
    assert set(staged["user_id"]) == set(users) and set(staged["model_version"]) == {
        registry.latest_published(config.paths).model_version}
    ranks = staged.groupby(["user_id", "objective"])["rank"].agg(sorted)
    assert len(ranks) == len(users) * 3 and all(r == [1, 2, 3, 4, 5] for r in ranks)
    gate_rows = [r for r in read_runs(config.paths) if r["run_id"] == "n3-gate" and r["stage"] == "gates"]
    assert gate_rows[0]["status"] == "failed" and "model_auc_ctr" in gate_rows[0]["message"]


def test_a_model_trained_tonight_whose_gates_fail_stops_being_the_published_model(spark, world):
    config = _config(world, train_every=1, min_auc=1.0)
    reused = registry.latest_published(config.paths)  # trained on the first night
    before = _versions(config)
    with pytest.raises(QualityGateError) as failed:
        night.run_night(spark, config, D3, run_id="n3-trained-gate")
    trained = [r for r in registry.list_models(config.paths) if r.trained_for == D3]
    assert [r.status for r in trained] == [registry.ModelStatus.GATE_FAILED]
    assert str(failed.value).endswith(f"model {trained[0].model_version}, trained for {D3}, is now gate_failed; "
                                      f"the latest published model for {D3} is {reused.model_version}")
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
    earlier = {d: publish.read_profiles(spark, publish.profiles_uri(config.paths), d).toPandas() for d in (D1, D2)}
    monkeypatch.setenv(night.FAULT_ENV, "score")
    with pytest.raises(night.InjectedCrash):
        night.run_night(spark, config, D3, run_id="n3-crash")
    assert _versions(config) == before
    scored = publish.read_profiles(spark, publish.candidate_uri(config.paths), D3).toPandas()  # by the crashed run
    monkeypatch.delenv(night.FAULT_ENV)
    night.run_night(spark, config, D3, run_id="n3")
    assert publish.published_dates(config.paths) == [D1, D2, D3]
    assert [(r["stage"], r["status"]) for r in read_runs(config.paths) if r["run_id"] == "n3"] == [
        (s, "succeeded") for s in night.STAGES]
    profiles = publish.profiles_uri(config.paths)
    d3 = publish.read_profiles(spark, profiles, D3)
    assertDataFrameEqual(d3, spark.createDataFrame(scored, schema=d3.schema))  # what the crashed night scored
    assert set(scored["model_version"]) == {registry.latest_published(config.paths).model_version}
    assertDataFrameEqual(_table(spark, config, Warehouse.PROFILES_LATEST), d3)
    for d, rows in earlier.items():  # the nights before are untouched
        again = publish.read_profiles(spark, profiles, d)
        assertDataFrameEqual(again, spark.createDataFrame(rows, schema=again.schema))


def test_rollback_restores_the_previous_state(spark, world):
    config = _config(world)
    d2 = publish.read_profiles(spark, publish.profiles_uri(config.paths), D2)
    publish.rollback_date(spark, config.paths, D3)
    assert publish.published_dates(config.paths) == [D1, D2]
    assertDataFrameEqual(_table(spark, config, Warehouse.PROFILES_LATEST), d2)


# user_vectors: written by the nightly only after its publish, with the published profiles' model.

def _vectors(spark, config, date):
    return _table(spark, config, Warehouse.USER_VECTORS).where(f"dt = DATE'{date}'")


def _model_vectors(spark, config, date, version):
    """(user ids, x(u) [U, K*E], mask [U, K]) of every user of `date`, from the registered model's own
    user tower in one call on inputs built here from user_features (no Spark scan, no executor code)."""
    record = registry.get_model(config.paths, version)
    model = load_model(record.path or registry.model_dir(config.paths, version))
    rows = sorted(_table(spark, config, Warehouse.USER_FEATURES).where(f"dt = DATE'{date}'").collect(),
                  key=lambda r: r["user_id"])
    width, batch = config.features.max_multi_len, {}
    for f in model.spec.fields:
        known = lambda i, size=f.vocab_size: i if i < size else 1  # noqa: E731 (ids newer than the model: unknown)
        if f.kind == "single":
            batch[f.name] = torch.tensor([known(r[f.name] or 0) for r in rows])
            continue
        ids = [[known(i) for i in (r[f.name] or [])[:width]] for r in rows]
        weights = [list(r[weights_key(f.name)] or [])[:width] for r in rows]
        batch[f.name] = torch.tensor([v + [0] * (width - len(v)) for v in ids])
        batch[weights_key(f.name)] = torch.tensor([w + [0.0] * (width - len(w)) for w in weights], dtype=torch.float32)
    with torch.no_grad():
        vectors, mask = model.user_vectors(batch), model.user_mask(batch)
    if mask is None:
        mask = torch.ones(vectors.shape[:2], dtype=torch.bool)
    return [r["user_id"] for r in rows], vectors.reshape(len(rows), -1).numpy(), mask.numpy()


def test_a_published_night_writes_the_user_vectors_of_the_published_model_and_a_rerun_rewrites_them(spark, world):
    config = _config(world, vectors=True)
    uri = warehouse_uri(config.paths, Warehouse.USER_VECTORS)
    result = night.run_night(spark, config, D3, run_id="n3-vectors")
    assert publish.published_dates(config.paths) == [D1, D2, D3]
    published = publish.read_profiles(spark, publish.profiles_uri(config.paths), D3)
    assert {r["model_version"] for r in published.select("model_version").distinct().collect()} == \
        {result.model_version}
    assert delta.partition_values(uri) == [D3.isoformat()]  # only the published date, nothing from staging
    written = sorted(_vectors(spark, config, D3).collect(), key=lambda r: r["user_id"])
    assert {r["model_version"] for r in written} == {result.model_version}
    users, expected, mask = _model_vectors(spark, config, D3, result.model_version)
    assert [r["user_id"] for r in written] == users
    np.testing.assert_allclose(np.array([r["user_vector"] for r in written]), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.array([r["vector_mask"] for r in written]), mask)
    rows = {r["stage"]: r for r in read_runs(config.paths) if r["run_id"] == "n3-vectors"}
    assert [s for s in night.STAGES if rows[s]["status"] == "succeeded"] == list(night.STAGES)
    assert rows["vectors"]["rows_in"] == rows["vectors"]["rows_out"] == len(users)
    assert "user_vectors" not in rows["score"]["metrics"]["table_versions"]  # the score stage wrote none

    before, version = _table(spark, config, Warehouse.USER_VECTORS).toPandas(), delta.table_version(uri)
    night.run_night(spark, config, D3, run_id="n3-vectors-again")
    assert delta.table_version(uri) == version + 1  # one partition replace
    after = _table(spark, config, Warehouse.USER_VECTORS)
    assertDataFrameEqual(after, spark.createDataFrame(before, schema=after.schema), rtol=0.0, atol=0.0)


def test_rolling_back_nights_that_wrote_vectors_restores_the_vectors_of_the_night_before(spark, world):
    """After the test above: D3 holds the profiles and vectors of n3-vectors-again, on top of n3-vectors,
    on top of nothing (an earlier rollback removed D3's publish of n3, a night without vectors)."""
    config = _config(world, vectors=True)
    uri = warehouse_uri(config.paths, Warehouse.USER_VECTORS)
    first = next(e["version"] for e in delta.history(uri) if e.get("run_id") == "n3-vectors")
    expected = delta.read_table(spark, uri, first).toPandas()  # the first night's vectors, as it wrote them
    published = next(e["version"] for e in delta.history(publish.profiles_uri(config.paths))
                     if e.get("job") == "publish" and e.get("run_id") == "n3-vectors")
    profiles = publish.read_profiles(spark, publish.profiles_uri(config.paths), D3, published).toPandas()
    message = publish.rollback_date(spark, config.paths, D3)
    assert f"user_vectors of {D3}: restored the vectors of run n3-vectors (version {first}" in message
    after = _table(spark, config, Warehouse.USER_VECTORS)
    assertDataFrameEqual(after, spark.createDataFrame(expected, schema=after.schema), rtol=0.0, atol=0.0)
    restored = publish.read_profiles(spark, publish.profiles_uri(config.paths), D3)
    assertDataFrameEqual(restored, spark.createDataFrame(profiles, schema=restored.schema), rtol=0.0, atol=0.0)
    message = publish.rollback_date(spark, config.paths, D3)  # n3-vectors created both partitions
    assert message.endswith(f"user_vectors of {D3}: removed, undoing version {first} of run n3-vectors "
                            f"(the date had no vectors before the undone runs wrote theirs)")
    assert publish.published_dates(config.paths) == [D1, D2]
    assert delta.partition_values(uri) == []


def test_a_night_whose_gates_fail_leaves_user_vectors_as_they_were(spark, world):
    config = _config(world, vectors=True, min_auc=1.0)
    uri = warehouse_uri(config.paths, Warehouse.USER_VECTORS)
    before = delta.table_version(uri), delta.partition_values(uri)
    assert D2.isoformat() not in before[1]
    with pytest.raises(QualityGateError, match="model_auc_ctr") as gated:
        night.run_night(spark, config, D2, run_id="n2-vectors-gate")
    assert (delta.table_version(uri), delta.partition_values(uri)) == before
    # D2 stays published by its first night, which the message says: the gates undid nothing
    profiles = publish.profiles_uri(config.paths)
    last = max((e for e in delta.history(profiles) if e.get("job") == "publish" and e.get("dt") == D2.isoformat()),
               key=lambda e: e["version"])
    assert str(gated.value).endswith(
        f"dt={D2} is still published from version {last['version']} of {profiles} (run {last['run_id']}, model "
        f"{last['model_version']}): an earlier run of this date published it; `rollback --date {D2}` undoes it")
    stages = {r["stage"] for r in read_runs(config.paths) if r["run_id"] == "n2-vectors-gate"}
    assert "vectors" not in stages and "publish" not in stages


def test_the_night_scores_with_the_model_its_gates_judge(spark, world, monkeypatch):
    """A night for another date can publish a newer model while this one runs (each night locks
    only its own date): the profiles must still come from the model the train stage resolved."""
    config = _config(world)
    current = registry.latest_published(config.paths)
    newer = dataclasses.replace(current, model_version=current.model_version + "-newer",
                                created_at=current.created_at + dt.timedelta(seconds=1))
    real_resolve = registry.resolve

    def resolve_then_another_night_publishes(paths, model_version="latest", as_of=None):
        record = real_resolve(paths, model_version, as_of)
        monkeypatch.setattr(registry, "resolve", real_resolve)
        registry.register(paths, newer)  # a real registry commit, landing right after the train stage's read
        return record

    monkeypatch.setattr(registry, "resolve", resolve_then_another_night_publishes)
    try:
        result = night.run_night(spark, config, D3, run_id="n3-race")
        assert registry.latest_published(config.paths).model_version == newer.model_version  # the race happened
        day = publish.read_profiles(spark, publish.profiles_uri(config.paths), D3)
        assert [r.model_version for r in day.select("model_version").distinct().collect()] == \
            [current.model_version] == [result.model_version]
    finally:
        registry.set_status(config.paths, newer.model_version, registry.ModelStatus.REJECTED)



def test_a_model_withdrawn_while_the_night_runs_publishes_nothing(spark, world, monkeypatch):
    """Nights of two dates run side by side; the other date's gates (or a rollback) withdraw the
    model this night chose as `latest`: publishing it would put back what was undone."""
    config = _config(world)
    current = registry.latest_published(config.paths)
    before = _versions(config)
    real_measure = night.measure_gates

    def gates_then_withdrawn(spark, config, date, model):
        results = real_measure(spark, config, date, model)
        registry.set_status(config.paths, model.model_version, registry.ModelStatus.ROLLED_BACK)
        return results

    monkeypatch.setattr(night, "measure_gates", gates_then_withdrawn)
    try:
        with pytest.raises(QualityGateError) as held:
            night.run_night(spark, config, D3, run_id="n3-withdrawn")
        # D3's own model failed its gates earlier in this module: with `current` withdrawn, a rerun of D3
        # would get that one back, not train a new one, so the message does not say "rerun"
        (own,) = [r.model_version for r in registry.list_models(config.paths) if r.trained_for == D3]
        assert str(held.value) == (
            f"model {current.model_version} became rolled_back while this night ran; nothing published, the "
            f"candidate stays in staging; no published model for {D3} is left, and a rerun of {D3} with the same "
            f"inputs and settings gets {own} back, which stays withdrawn: change a model or train setting to train "
            f"a new version, or pin score.model_version={own} to score with it anyway")
        assert _versions(config) == before
        stages = [(r["stage"], r["status"]) for r in read_runs(config.paths) if r["run_id"] == "n3-withdrawn"]
        assert stages[-2:] == [("gates", "succeeded"), ("publish", "failed")]
    finally:
        registry.set_status(config.paths, current.model_version, registry.ModelStatus.PUBLISHED)
