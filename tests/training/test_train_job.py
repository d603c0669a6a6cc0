"""The training job end to end on a tiny inline warehouse: 2 Horovod processes on the local[2] session.

Outputs are compared with independent computations: the artifact's predictions with rank 0's
in-memory model, its validation metrics with metrics recomputed here from the raw tables.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core import delta, registry
from core.config import ConfigError
from core.registry import ModelStatus
from core.tables import Warehouse, warehouse_uri
from jobs import train, vacuum
from mvke import load_model
from nightly.lock import RunInProgressError, exclusive, holder, train_lock
from training import artifact, leftovers
from training.checkpoint import CheckpointMismatchError, checkpoint_path
from training.errors import (EmptyWindowError, MissingSamplesError, ModelMismatchError, NonFiniteLossError,
                             TrainingInProgressError, VocabularyMismatchError, WorkerFailedError)
from training.inputs import ensure_window, window_days, with_validation_flag
from training.metrics import objective_metrics
from training.worker import FaultInjection

from tests.training.warehouse import DAYS, FIELD_DEFINITIONS, RUN_DATE, training_config, write_warehouse

pytestmark = pytest.mark.integration
ARTIFACT_FILES = ["DONE", "curves.png", "metrics.json", "model.json", "model.safetensors", "training.json"]


@pytest.fixture
def config(tmp_path):
    config = training_config(tmp_path)
    write_warehouse(config.paths.warehouse)
    return config


def assert_nothing_published(config):
    models = Path(config.paths.models)
    done = [p for p in models.glob("*/DONE")] if models.exists() else []
    assert done == []
    assert registry.list_models(config.paths) == []
    assert not delta.table_exists(warehouse_uri(config.paths, Warehouse.TRAIN_METRICS))


def validation_day_inputs(config) -> tuple[dict, np.ndarray]:
    """The validation day's batch built by hand from the raw tables (not through Spark), and its user ids."""
    samples = _day_rows(config, Warehouse.SAMPLES)
    features = {r["user_id"]: r for r in _day_rows(config, Warehouse.USER_FEATURES)}
    users = [features[s["user_id"]] for s in samples]
    batch = {
        "city": torch.tensor([u["city"] for u in users]),
        "clicked_tags": torch.tensor([u["clicked_tags"] for u in users]),
        "clicked_tags_weights": torch.tensor([u["clicked_tags_weights"] for u in users]),
        "tag": torch.tensor([s["tag_index"] for s in samples]),
        "tag_category": torch.tensor([s["category_id"] for s in samples]),
        "click": torch.tensor([float(s["click"]) for s in samples]),
        "conversion": torch.tensor([float(s["conversion"]) for s in samples]),
    }
    return batch, np.array([s["user_id"] for s in samples])


def _day_rows(config, table):
    rows = delta.read_arrow(warehouse_uri(config.paths, table)).to_pylist()
    return [r for r in rows if r["dt"] == DAYS[-1]]


def assert_artifact_matches_rank0(config, result):
    """The artifact reloads (safetensors + JSON: nothing unpickled) to rank 0's logits on the probe
    batch, and its metrics.json equals the metrics recomputed from the raw validation day.
    Returns the loaded model and the metrics."""
    folder = Path(result.path)
    model = load_model(folder)
    probe = {k: torch.as_tensor(v) for k, v in result.probe["batch"].items()}
    with torch.no_grad():
        reloaded = model(probe)
    for objective, logits in result.probe["logits"].items():
        np.testing.assert_allclose(reloaded[objective].numpy(), logits, rtol=0, atol=1e-6)

    batch, users = validation_day_inputs(config)
    with torch.no_grad():
        logits = {o: v.numpy() for o, v in model(batch).items()}
    expected = objective_metrics(logits, batch["click"].numpy(), batch["conversion"].numpy(), users,
                                 cvr_mode="clicked")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics.keys() == expected.keys() == {"ctr", "cvr"}
    for objective in expected:
        assert metrics[objective] == pytest.approx(expected[objective], abs=1e-5)
    return model, metrics


def test_two_process_training_end_to_end(spark, config):
    result = train.run(spark, config, RUN_DATE)

    folder = Path(result.path)
    assert folder == Path(config.paths.models) / result.model_version
    assert result.model_version.startswith("mvke-2026-11-05-") and result.start_epoch == 0
    assert sorted(os.listdir(folder)) == ARTIFACT_FILES
    _, metrics = assert_artifact_matches_rank0(config, result)
    assert metrics["ctr"]["samples"] == 192 and metrics["cvr"]["samples"] == 96  # clicked samples only

    record = registry.get_model(config.paths, result.model_version)
    assert (record.status, record.trained_for, record.path) == (ModelStatus.PUBLISHED, RUN_DATE, str(folder))
    assert delta.table_version(registry.models_uri(config.paths)) == 0  # one commit: never a candidate row alone
    assert record.metrics == metrics and result.status is ModelStatus.PUBLISHED

    training = json.loads((folder / "training.json").read_text())
    assert training["table_versions"] == {"samples": 0, "user_features": 0, "fields": 0, "vocabulary": 0}
    assert training["field_definitions"] == FIELD_DEFINITIONS  # what scoring checks the fields table against
    assert training["rows"] == {"train": 384, "validation": 192}
    assert training["window"] == ["2026-11-02", "2026-11-04"] and len(training["code_version"]["source_sha256"]) == 64
    assert training["publish"]["status"] == "published"

    rows = delta.read_arrow(warehouse_uri(config.paths, Warehouse.TRAIN_METRICS)).to_pylist()
    steps = sorted({r["step"] for r in rows if r["metric"] == "loss"})
    assert steps == [2, 4, 6, 8, 10, 12]  # 384 rows / (32 x 2 ranks) = 6 steps per epoch, logged every 2
    last = {(r["objective"], r["metric"]): r["value"] for r in rows if r["split"] == "validation" and r["epoch"] == 1}
    assert last == pytest.approx({(o, m): metrics[o][m] for o in metrics
                                  for m in ("auc", "gauc", "log_loss", "calibration")})
    assert len(rows) == 6 * 2 + 2 * 2 + 2 * 8
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not artifact_leftovers(config)

    # another run of the same version (a hand-started rerun while the night trains) waits for none:
    # it stops before touching the version's staging, checkpoints, folder or registry row
    registry_version = delta.table_version(registry.models_uri(config.paths))
    with exclusive(config.paths, train_lock(result.model_version), "2026-11-05-night"):
        with pytest.raises(TrainingInProgressError, match=rf"^{result.model_version}: another run holds "
                                                          rf"\S+/train-{result.model_version}.lock: run "
                                                          rf"2026-11-05-night \(pid {os.getpid()}"):
            train.run(spark, config, RUN_DATE)
        with pytest.raises(RunInProgressError, match="nothing vacuumed"):
            vacuum.run(config)  # nor is training scratch swept meanwhile
    assert delta.table_version(registry.models_uri(config.paths)) == registry_version
    assert sorted(os.listdir(folder)) == ARTIFACT_FILES


def test_tag_fields_train_end_to_end_with_one_copy_of_the_tag_table(spark, tmp_path):
    """model.tag_fields through the 2-process job: the artifact keeps the setting, holds the tag id
    table once (no clicked_tags table of its own) and reproduces rank 0's logits and metrics."""
    config = training_config(tmp_path)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, tag_fields=("clicked_tags",)))
    write_warehouse(config.paths.warehouse)
    result = train.run(spark, config, RUN_DATE)

    model, _ = assert_artifact_matches_rank0(config, result)
    assert model.spec.conf.tag_fields == ("clicked_tags",)
    names = set(load_file(Path(result.path) / "model.safetensors"))
    assert "tag_tower.id_embedding.weight" in names
    assert not any(name.startswith("field_embedding.tables.clicked_tags") for name in names)


def artifact_leftovers(config):
    models = Path(config.paths.models)
    return [p for sub in ("_checkpoints", "_petastorm_cache") for p in (models / sub).glob("*")]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # Horovod's Spark thread
def test_killed_rank_fails_clearly_then_a_rerun_resumes_from_the_checkpoint(spark, config, tmp_path, monkeypatch):
    fault = FaultInjection.from_env({"MVKE_FAULT_KILL_RANK": "1:0"})
    with pytest.raises(WorkerFailedError, match=r"failed or was killed.*are kept \(up to epoch 1\): rerun the same command to resume$"):
        train.run(spark, config, RUN_DATE, fault=fault)
    assert_nothing_published(config)
    [checkpoints] = list((Path(config.paths.models) / "_checkpoints").iterdir())
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-0"]
    assert torch.load(checkpoints / "checkpoint-0" / "state.pt", weights_only=True)["model"]
    # vacuum's sweep sees the checkpoint as a dead run's scratch, and keeps it while it is young
    assert [(f.path, f.kind) for f in leftovers.find(config.paths, 0)[0]] == [(str(checkpoints), "checkpoints")]
    assert vacuum.run(config).scratch == [] and checkpoints.exists()

    meta = checkpoint_path(checkpoints, 0) / "meta.json"
    original = meta.read_text()
    tampered = json.loads(original)
    tampered["fingerprint"]["fields"][0][2] = 99  # as if written for another city vocabulary
    meta.write_text(json.dumps(tampered))
    with pytest.raises(CheckpointMismatchError, match=r"fields: checkpoint has .*'city', 'single', 99"):
        train.run(spark, config, RUN_DATE)
    assert_nothing_published(config)
    meta.write_text(original)

    # a rerun of the night runs the feature job first: the same rows, under new table versions
    write_warehouse(config.paths.warehouse)
    result = train.run(spark, config, RUN_DATE)
    assert result.start_epoch == 1 and result.model_version == checkpoints.name
    assert json.loads((Path(result.path) / "training.json").read_text())["table_versions"] == dict.fromkeys(
        ["samples", "user_features", "fields", "vocabulary"], 1)
    rows = delta.read_arrow(warehouse_uri(config.paths, Warehouse.TRAIN_METRICS)).to_pylist()
    assert sorted({(r["epoch"], r["step"]) for r in rows if r["metric"] == "loss"}) == [
        (0, 2), (0, 4), (0, 6), (1, 8), (1, 10), (1, 12)]  # epoch 0 from the checkpoint's history
    assert json.loads((Path(result.path) / "training.json").read_text())["start_epoch"] == 1
    assert registry.get_model(config.paths, result.model_version).status is result.status
    assert not checkpoints.exists()

    # the resumed run reads epoch 1 as an uninterrupted run does, so both train the same weights
    uninterrupted = training_config(tmp_path / "uninterrupted")
    write_warehouse(uninterrupted.paths.warehouse)
    whole = train.run(spark, uninterrupted, RUN_DATE)
    assert whole.model_version == result.model_version and whole.start_epoch == 0
    resumed, expected = (load_file(Path(r.path) / "model.safetensors") for r in (result, whole))
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)

    # a rerun for the same inputs and code is the same version, trained already: it is not trained
    # again (its folder stays as it is) but judged again; withdrawn after its night (here: its
    # profiles rolled back), it stays withdrawn instead of being published again by the rules
    finished = (Path(result.path) / "DONE").read_text()  # when the folder was put in place
    registry.set_status(config.paths, result.model_version, ModelStatus.ROLLED_BACK)
    write_warehouse(config.paths.warehouse)  # the same rows again, under table versions 2
    again = train.run(spark, config, RUN_DATE)
    assert (again.model_version, again.status, again.start_epoch) == (result.model_version, ModelStatus.ROLLED_BACK,
                                                                      config.train.epochs)
    assert not result.judged_again and again.judged_again
    assert again.versions == result.versions == dict.fromkeys(result.versions, 1)  # what it was trained on
    assert (Path(result.path) / "DONE").read_text() == finished
    assert again.reasons[-1] == (f"this version (the same inputs and settings) was rolled_back after its night, and "
                                 f"this version stays so; pin score.model_version={result.model_version} to score "
                                 f"with it")
    assert registry.get_model(config.paths, result.model_version).status is ModelStatus.ROLLED_BACK
    assert registry.latest_published(config.paths) is None

    # after a deploy (any change to the source) the same inputs train a new version, which stays
    # withdrawn too: a code change is not a reason to republish what was undone
    checkout = tmp_path / "deployed"
    for package in artifact.CODE_PACKAGES:
        (checkout / package).mkdir(parents=True)
        (checkout / package / "m.py").write_text("changed = True\n")
    monkeypatch.setattr(artifact, "ROOT", checkout)
    deployed = train.run(spark, config, RUN_DATE)
    assert deployed.model_version != result.model_version and deployed.start_epoch == 0
    assert deployed.status is ModelStatus.ROLLED_BACK
    assert deployed.reasons[-1] == (f"{result.model_version} (the same inputs and settings) was rolled_back after its "
                                    f"night, and this version stays so; pin score.model_version="
                                    f"{deployed.model_version} to score with it")
    assert registry.latest_published(config.paths) is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # Horovod's Spark thread
def test_a_killed_rank_without_resume_says_how_to_resume(spark, tmp_path):
    # "rerun the same command to resume" was false here: the same command starts from scratch
    config = training_config(tmp_path, resume=False)
    write_warehouse(config.paths.warehouse)
    with pytest.raises(WorkerFailedError, match=r"are kept \(up to epoch 1\), but train.resume=false starts the "
                                                 r"same command from scratch: rerun with --set train.resume=true to "
                                                 r"resume$"):
        train.run(spark, config, RUN_DATE, fault=FaultInjection.from_env({"MVKE_FAULT_KILL_RANK": "1:0"}))
    assert_nothing_published(config)


def test_nan_loss_fails_naming_the_step_and_publishes_nothing(spark, tmp_path):
    config = training_config(tmp_path, learning_rate=1e30)
    write_warehouse(config.paths.warehouse)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf) at epoch 1 step \d+"):
        train.run(spark, config, RUN_DATE)
    assert_nothing_published(config)


def test_vocabulary_mismatch_fails_before_training(spark, tmp_path):
    config = training_config(tmp_path)
    write_warehouse(config.paths.warehouse, city_vocab_size=4)  # the data holds city ids up to 5
    with pytest.raises(VocabularyMismatchError, match=r"city has id 5 but its vocab_size is 4"):
        train.run(spark, config, RUN_DATE)
    assert_nothing_published(config)


@pytest.mark.parametrize("model, message", [
    ({"tag_fields": ("interests",)}, r"model.tag_fields: 'interests' is not a feature field; "
                                      r"fields: \['city', 'clicked_tags'\]"),
    ({"name": "mind", "sequence_field": "city"}, r"model.sequence_field='city' must be a multi-valued field"),
])
def test_a_model_conf_that_does_not_fit_the_fields_fails_before_any_worker_starts(spark, config, model, message):
    """The builder's checks run on the driver against the fields table, not first in every Horovod rank,
    where they surfaced as a WorkerFailedError saying 'rerun the same command to resume'."""
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, **model))
    with pytest.raises(ModelMismatchError, match="the model settings do not fit the fields table: " + message):
        train.run(spark, config, RUN_DATE)
    assert_nothing_published(config)
    assert not artifact_leftovers(config)  # no checkpoint folder, no Petastorm cache


def test_empty_window_names_the_days(spark, config):
    with pytest.raises(EmptyWindowError, match="2026-11-28, 2026-11-29, 2026-11-30"):
        train.run(spark, config, dt.date(2026, 12, 1))
    assert_nothing_published(config)


def test_missing_days_fail_without_build_missing(spark, config):
    with pytest.raises(MissingSamplesError, match="samples has no partition for 2026-11-05; "
                                                  "user_features has no partition for 2026-11-05; set "
                                                  r"train.build_missing=true, or run the feature job for run dates "
                                                  r"2026-11-05, 2026-11-06 \(a run of day X writes the samples of "
                                                  r"X-1\)$"):
        train.run(spark, config, dt.date(2026, 11, 6))
    assert_nothing_published(config)


def test_build_missing_runs_the_feature_job_once_for_the_missing_days(spark, tmp_path, monkeypatch):
    from jobs import features as features_job

    config = training_config(tmp_path, build_missing=True)
    write_warehouse(config.paths.warehouse, days=DAYS[:2])
    calls = []

    def backfill(spark_, config_, dates):
        calls.append(list(dates))
        write_warehouse(config_.paths.warehouse)  # the same tables with all three days

    monkeypatch.setattr(features_job, "run", backfill)
    window = window_days(RUN_DATE, 3)
    assert ensure_window(spark, config, window) == [dt.date(2026, 11, 4), dt.date(2026, 11, 5)]
    assert calls == [[dt.date(2026, 11, 4), dt.date(2026, 11, 5)]]  # snapshot of the 4th, samples of the 4th
    assert ensure_window(spark, config, window) == [] and len(calls) == 1

    shutil.rmtree(config.paths.warehouse)
    write_warehouse(config.paths.warehouse, days=DAYS[:2])
    monkeypatch.setattr(features_job, "run", lambda *args: None)
    with pytest.raises(MissingSamplesError, match="the feature job backfill for 2026-11-04, 2026-11-05 did not write "
                                                  "them; the feature job writes no samples for a day without "
                                                  "impressions: check the raw events of the samples days named"):
        ensure_window(spark, config, window)


def test_user_split_keeps_each_user_on_one_side_every_day(spark):
    rows = [(day, f"u{i}") for day in DAYS for i in range(400)]
    frame = spark.createDataFrame(rows, "dt date, user_id string")
    flagged = with_validation_flag(frame, "user_split", DAYS[-1], 0.25, seed=3).collect()
    sides = {}
    for r in flagged:
        sides.setdefault(r["user_id"], set()).add(r["is_validation"])
    assert all(len(s) == 1 for s in sides.values())
    share = sum(True in s for s in sides.values()) / len(sides)
    assert 0.18 < share < 0.32
    other_seed = {r["user_id"]: r["is_validation"] for r in with_validation_flag(frame, "user_split", DAYS[-1], 0.25,
                                                                                   seed=4).collect()}
    assert other_seed != {u: True in s for u, s in sides.items()}
    last_day = with_validation_flag(frame, "last_day", DAYS[-1], 0.25, seed=3).collect()
    assert all(r["is_validation"] == (r["dt"] == DAYS[-1]) for r in last_day)


@pytest.mark.parametrize("train_yaml, message", [
    ("  build_missing: false\n  window_days: 2\n",
     "train: EmptyWindowError: training window 2026-11-03..2026-11-04 is incomplete"),
    ("  publish_if:\n    min_auc_by_objective: {ctcvr: 0.6}\n",
     "train: ConfigError: train.publish_if.min_auc_by_objective names ['ctcvr'], which model mvke does not train; "
     "valid: ['ctr', 'cvr']"),
    ("  publish_if:\n    min_auc_by_objective: {cvr: 0.6}\nmodel:\n  name: two_tower\n",
     "train: ConfigError: train.publish_if.min_auc_by_objective names ['cvr'], which model two_tower does not train; "
     "valid: ['ctr']"),
], ids=["training_error", "config_error", "floor_of_an_objective_two_tower_does_not_train"])
def test_main_returns_1_with_the_message_in_one_line(spark, tmp_path, capsys, monkeypatch, train_yaml, message):
    conf = tmp_path / "c.yaml"
    conf.write_text(f"paths:\n  raw: {tmp_path}/raw\n  warehouse: {tmp_path}/wh\n  models: {tmp_path}/m\n"
                    "train:\n" + train_yaml)
    monkeypatch.setattr("core.spark.spark_session", lambda conf: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)  # the session is shared with the other tests
    assert train.main(["--conf", str(conf), "--date", "2026-11-05"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


def test_a_backfill_the_feature_job_refuses_fails_in_one_line(spark, tmp_path, capsys, monkeypatch):
    """With train.build_missing=true the feature job's own error (here: no raw tables) came out of
    `main` as a ContractError traceback; it is a MissingSamplesError naming the run dates and the cause."""
    config = training_config(tmp_path)
    write_warehouse(config.paths.warehouse)
    conf = tmp_path / "c.yaml"
    conf.write_text(f"paths:\n  raw: {tmp_path}/raw\n  warehouse: {tmp_path}/warehouse\n  models: {tmp_path}/models\n"
                    "train:\n  window_days: 4\n  build_missing: true\n")
    monkeypatch.setattr("core.spark.spark_session", lambda conf: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)  # the session is shared with the other tests
    assert train.main(["--conf", str(conf), "--date", "2026-11-05"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"train: MissingSamplesError: training window 2026-11-01..2026-11-04 is incomplete and the feature "
                   f"job backfill for run dates 2026-11-01, 2026-11-02 failed: raw table events not found at "
                   f"{tmp_path}/raw/events (expected a Delta table or a Parquet folder)")
    assert_nothing_published(config)
    assert sorted(delta.partition_values(warehouse_uri(config.paths, Warehouse.SAMPLES))) == [
        d.isoformat() for d in DAYS]


def test_the_version_lock_names_the_run_that_holds_it_and_is_released(tmp_path):
    paths = training_config(tmp_path).paths
    with train.version_lock(paths, "mvke-2026-11-05-abc", "2026-11-05-night"):
        assert holder(paths, train_lock("mvke-2026-11-05-abc"))["run_id"] == "2026-11-05-night"
        with pytest.raises(TrainingInProgressError, match="run 2026-11-05-night"):
            with train.version_lock(paths, "mvke-2026-11-05-abc", "train-2026-11-05-0000"):
                pass
    assert holder(paths, train_lock("mvke-2026-11-05-abc")) is None


def test_the_version_lock_converts_only_its_own_refusal(tmp_path):
    """Another lock refused inside the body is that lock's error, not a training already running."""
    paths = training_config(tmp_path).paths
    with pytest.raises(RunInProgressError) as raised:
        with train.version_lock(paths, "mvke-2026-11-05-abc", "train-2026-11-05-0000"):
            raise RunInProgressError("another run holds nightly-2026-11-05")
    assert type(raised.value) is RunInProgressError
    assert str(raised.value) == "another run holds nightly-2026-11-05"
    assert holder(paths, train_lock("mvke-2026-11-05-abc")) is None


def test_a_lock_folder_on_a_store_fails_before_anything_is_read(spark, tmp_path):
    """The version lock needs a filesystem: with the warehouse on a store, paths.locks must be set."""
    config = training_config(tmp_path)
    on_store = dataclasses.replace(config, paths=dataclasses.replace(config.paths, warehouse="s3://bucket/wh"))
    with pytest.raises(ConfigError, match=r"the run lock needs a filesystem path, not 's3://bucket/wh/_locks'"):
        train.run(spark, on_store, RUN_DATE)
