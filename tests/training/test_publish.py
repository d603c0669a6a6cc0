"""Publish rules: the AUC floor per objective, and the drop against the last published model."""
import datetime as dt
import json
import math
import shutil

import pytest

from core.config import Paths, PublishRules
from jobs import train
from core.registry import ModelRecord, ModelStatus, get_model, list_models
from training.publish import (PublishDecision, auc_measures, decide, last_published, recorded_auc_measures,
                              register)
from tests.training.warehouse import training_config

OBJECTIVES = ("ctr", "cvr")


def _record(version, status, metrics, day=1):
    return ModelRecord(model_version=version, trained_for=dt.date(2026, 11, day), status=status,
                       created_at=dt.datetime(2026, 11, day, tzinfo=dt.timezone.utc), metrics=metrics, path="/m")


def _metrics(ctr, cvr):
    return {"ctr": {"auc": ctr, "gauc": 0.6}, "cvr": {"auc": cvr, "gauc": 0.6}}


def test_first_model_above_the_floor_is_published():
    decision = decide(_metrics(0.70, 0.61), PublishRules(min_auc=0.6), OBJECTIVES, previous=None)
    assert decision == PublishDecision(ModelStatus.PUBLISHED, ("every objective passed the AUC floor and drop rules",),
                                       None)


@pytest.mark.parametrize("metrics, rules, reasons", [
    (_metrics(0.59, 0.70), PublishRules(min_auc=0.6), ["ctr: AUC 0.5900 is below the floor 0.6000"]),
    (_metrics(0.70, 0.61), PublishRules(min_auc=0.6, min_auc_by_objective={"cvr": 0.65}),
     ["cvr: AUC 0.6100 is below the floor 0.6500"]),
    (_metrics(0.50, math.nan), PublishRules(min_auc=0.6),
     ["ctr: AUC 0.5000 is below the floor 0.6000",
      "cvr: AUC is undefined (a validation set with one class only, or non-finite predictions)"]),
    ({"ctr": {"auc": 0.9}}, PublishRules(min_auc=0.6),
     ["cvr: AUC is undefined (a validation set with one class only, or non-finite predictions)"]),
])
def test_floor_rejects_naming_the_objective(metrics, rules, reasons):
    decision = decide(metrics, rules, OBJECTIVES, previous=None)
    assert decision.status is ModelStatus.REJECTED
    assert list(decision.reasons) == reasons


def test_drop_against_the_last_published_model():
    previous = _record("mvke-old", ModelStatus.PUBLISHED, _metrics(0.80, 0.70))
    rules = PublishRules(min_auc=0.5, max_auc_drop=0.02)
    within = decide(_metrics(0.785, 0.69), rules, OBJECTIVES, previous)
    assert within.status is ModelStatus.PUBLISHED and within.compared_with == "mvke-old"
    worse = decide(_metrics(0.77, 0.75), rules, OBJECTIVES, previous)
    assert worse.status is ModelStatus.REJECTED
    assert list(worse.reasons) == ["ctr: AUC 0.7700 is more than 0.0200 below 0.8000 of the last published "
                                   "model mvke-old"]
    no_previous_cvr = _record("mvke-old", ModelStatus.PUBLISHED, {"ctr": {"auc": 0.8}, "cvr": {"auc": None}})
    assert decide(_metrics(0.80, 0.51), rules, OBJECTIVES, no_previous_cvr).status is ModelStatus.PUBLISHED


def test_register_writes_candidate_then_the_decision_and_ignores_itself_as_previous(tmp_path):
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "wh"), models=str(tmp_path / "models"))
    register(paths, PublishDecision(ModelStatus.PUBLISHED, ("ok",)), model_version="mvke-a",
             trained_for=dt.date(2026, 11, 5), metrics=_metrics(0.7, 0.7), path="/m/a")
    register(paths, PublishDecision(ModelStatus.REJECTED, ("bad",)), model_version="mvke-b",
             trained_for=dt.date(2026, 11, 6), metrics=_metrics(0.5, 0.5), path="/m/b")
    assert [(r.model_version, r.status) for r in list_models(paths)] == [
        ("mvke-a", ModelStatus.PUBLISHED), ("mvke-b", ModelStatus.REJECTED)]
    assert get_model(paths, "mvke-a").metrics == _metrics(0.7, 0.7)
    assert last_published(paths, excluding="mvke-b", as_of=dt.date(2026, 11, 6)).model_version == "mvke-a"
    assert last_published(paths, excluding="mvke-a", as_of=dt.date(2026, 11, 6)) is None


def test_a_rerun_of_an_old_night_is_judged_against_the_model_of_its_time(tmp_path):
    """Night 5 published a; night 6 published the much better c. Night 5 rerun (its publish stage had
    died): a is judged again against the model before it, not against c, and stays published."""
    config = training_config(tmp_path, publish_if={"min_auc": 0.55, "max_auc_drop": 0.02})
    paths = config.paths
    register(paths, PublishDecision(ModelStatus.PUBLISHED, ("ok",)), model_version="mvke-old",
             trained_for=dt.date(2026, 11, 4), metrics=_metrics(0.70, 0.70), path="/m/old")
    register(paths, PublishDecision(ModelStatus.PUBLISHED, ("ok",)), model_version="mvke-a",
             trained_for=dt.date(2026, 11, 5), metrics=_metrics(0.70, 0.70), path="/m/a")
    register(paths, PublishDecision(ModelStatus.PUBLISHED, ("ok",)), model_version="mvke-c",
             trained_for=dt.date(2026, 11, 6), metrics=_metrics(0.80, 0.80), path="/m/c")

    assert last_published(paths, excluding="mvke-a", as_of=dt.date(2026, 11, 5)).model_version == "mvke-old"
    assert last_published(paths, excluding="mvke-a", as_of=dt.date(2026, 11, 3)) is None
    rerun = train.judge(config, dt.date(2026, 11, 5), "mvke-a", "key-a", _metrics(0.70, 0.70))
    assert rerun == PublishDecision(ModelStatus.PUBLISHED, ("every objective passed the AUC floor and drop rules",),
                                    "mvke-old")
    tonight = train.judge(config, dt.date(2026, 11, 7), "mvke-d", "key-d", _metrics(0.75, 0.80))
    assert tonight == PublishDecision(ModelStatus.REJECTED, (
        "ctr: AUC 0.7500 is more than 0.0200 below 0.8000 of the last published model mvke-c",), "mvke-c")


def test_a_cvr_auc_measured_another_way_is_judged_by_the_floor_alone():
    """An ESMM model's CVR AUC (pCTR x pCVR on every impression) runs higher than a clicked-mode
    model's on the same data: compared, a switch to clicked was rejected every night after."""
    previous = _record("mvke-esmm", ModelStatus.PUBLISHED, _metrics(0.80, 0.76))
    rules = PublishRules(min_auc=0.6, max_auc_drop=0.02)
    clicked, esmm = auc_measures({"cvr_mode": "clicked"}), auc_measures({"cvr_mode": "esmm"})
    assert decide(_metrics(0.80, 0.70), rules, OBJECTIVES, previous, measures=clicked,
                  previous_measures=esmm) == PublishDecision(ModelStatus.PUBLISHED, (
        "every objective passed the AUC floor and drop rules",
        "cvr: judged by the floor alone: its AUC is measured with cvr_mode=clicked, that of the last published "
        "model mvke-esmm with cvr_mode=esmm"), "mvke-esmm")
    assert decide(_metrics(0.75, 0.70), rules, OBJECTIVES, previous, measures=clicked,
                  previous_measures=esmm).reasons == (  # CTR is measured the same way: its drop still counts
        "ctr: AUC 0.7500 is more than 0.0200 below 0.8000 of the last published model mvke-esmm",
        "cvr: judged by the floor alone: its AUC is measured with cvr_mode=clicked, that of the last published "
        "model mvke-esmm with cvr_mode=esmm")
    for measures, previous_measures in ((esmm, esmm), (clicked, None)):  # the same way, or unknown: the drop counts
        assert decide(_metrics(0.80, 0.70), rules, OBJECTIVES, previous, measures=measures,
                      previous_measures=previous_measures).status is ModelStatus.REJECTED
    assert auc_measures({}) == clicked  # settings recorded before cvr_mode existed


def test_a_model_that_drops_a_served_objective_is_rejected_unless_any_drop_is_allowed():
    """A two_tower (one objective) after a published mvke: published, scoring stopped the cvr profiles."""
    previous = _record("mvke-old", ModelStatus.PUBLISHED, _metrics(0.80, 0.70))
    metrics = {"ctr": {"auc": 0.80}}
    reason = ("cvr: this model does not train it, but the last published model mvke-old serves it: published, "
              "it would stop the cvr profiles (train.publish_if.max_auc_drop=1 publishes it anyway)")
    assert decide(metrics, PublishRules(min_auc=0.6), ("ctr",), previous) == PublishDecision(
        ModelStatus.REJECTED, (reason,), "mvke-old")
    assert decide(metrics, PublishRules(min_auc=0.6, max_auc_drop=1.0), ("ctr",), previous).status \
        is ModelStatus.PUBLISHED
    assert decide(metrics, PublishRules(min_auc=0.6), ("ctr",), previous=None).status is ModelStatus.PUBLISHED


def test_the_job_reads_how_the_last_published_model_measured_its_auc(tmp_path):
    """train.judge takes the previous model's cvr_mode from its training.json; an unreadable one
    (a folder deleted by hand) counts as measured the same way."""
    config = training_config(tmp_path, publish_if={"min_auc": 0.55, "max_auc_drop": 0.02})
    paths = config.paths
    folder = tmp_path / "models" / "mvke-esmm"
    folder.mkdir(parents=True)
    (folder / "training.json").write_text(json.dumps({"config": {"model": {"cvr_mode": "esmm"}}}))
    register(paths, PublishDecision(ModelStatus.PUBLISHED, ("ok",)), model_version="mvke-esmm",
             trained_for=dt.date(2026, 11, 4), metrics=_metrics(0.70, 0.76), path=str(folder))
    decision = train.judge(config, dt.date(2026, 11, 5), "mvke-a", "key-a", _metrics(0.70, 0.70))
    assert decision == PublishDecision(ModelStatus.PUBLISHED, (
        "every objective passed the AUC floor and drop rules",
        "cvr: judged by the floor alone: its AUC is measured with cvr_mode=clicked, that of the last published "
        "model mvke-esmm with cvr_mode=esmm"), "mvke-esmm")
    record = get_model(paths, "mvke-esmm")
    assert recorded_auc_measures(paths, record) == {"cvr": "cvr_mode=esmm"}
    shutil.rmtree(folder)
    assert recorded_auc_measures(paths, record) is None
    assert train.judge(config, dt.date(2026, 11, 5), "mvke-a", "key-a", _metrics(0.70, 0.70)).reasons == (
        "cvr: AUC 0.7000 is more than 0.0200 below 0.7600 of the last published model mvke-esmm",)
