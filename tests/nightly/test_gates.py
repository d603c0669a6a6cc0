import datetime as dt

import pytest

from core.config import Gates
from nightly import gates

D = dt.date(2026, 11, 10)
SCHEMA = "user_id string, objective string, rank int, tag_id string, score double"


def test_profile_share_tag_coverage_and_stability_equal_hand_computation(spark):
    today = spark.createDataFrame([
        ("u1", "ctr", 1, "a", 0.9), ("u1", "ctr", 2, "b", 0.8),
        ("u2", "ctr", 1, "a", 0.7), ("u2", "ctr", 2, "c", 0.6),
    ], SCHEMA)
    before = spark.createDataFrame([
        ("u1", "ctr", 1, "a", 0.9), ("u1", "ctr", 2, "c", 0.5),   # jaccard {a,b} vs {a,c} = 1/3
        ("u2", "ctr", 1, "a", 0.7), ("u2", "ctr", 2, "c", 0.6),   # identical = 1
        ("u3", "ctr", 1, "d", 0.1),                              # not scored today: ignored
    ], SCHEMA)
    users = spark.createDataFrame([("u1",), ("u2",), ("u3",), ("u4",)], "user_id string")
    tags = spark.createDataFrame([(t, i) for i, t in enumerate("abcde", start=2)], "tag_id string, tag_index int")
    assert gates.profile_share(today, users) == pytest.approx(2 / 4)
    assert gates.tag_coverage(today, tags) == pytest.approx(3 / 5)
    assert gates.tag_coverage(today, tags, excluded=("d", "e", "zz")) == pytest.approx(3 / 3)  # never scored
    assert gates.tag_coverage(today, tags, excluded=("a",)) == pytest.approx(2 / 4)
    # d (index 5) and e (6) came after a model of 5 tag ids (0..4): it cannot score them
    assert gates.tag_coverage(today, tags, model_tags=5) == pytest.approx(3 / 3)
    assert gates.tag_coverage(today, tags, excluded=("a",), model_tags=6) == pytest.approx(2 / 3)
    assert gates.top_n_stability(today, before) == pytest.approx((1 / 3 + 1) / 2)


def test_score_shift_is_the_largest_quantile_move():
    today = {"ctr": [0.1, 0.2, 0.3, 0.4, 0.5], "cvr": [0.0] * 5}
    before = {"ctr": [0.1, 0.2, 0.35, 0.4, 0.5], "cvr": [0.0, 0.0, 0.0, 0.0, 0.25], "old": [9.0] * 5}
    assert gates.score_shift(today, before) == pytest.approx(0.25)


def test_no_user_in_common_fails_stability_and_no_objective_in_common_skips_the_shift(spark):
    """Every user id changed (an upstream re-keying) is what the stability gate alone catches: 0, not
    skipped. Objectives of which none is scored on both dates give no shift: skipped, saying why."""
    today = spark.createDataFrame([("u1", "ctr", 1, "a", 0.9)], SCHEMA)
    before = spark.createDataFrame([("u9", "ctr", 1, "a", 0.9)], SCHEMA)
    assert gates.top_n_stability(today, before) == 0.0
    assert gates.score_shift({"ctr": [0.1] * 5}, {"cvr": [0.1] * 5}) is None
    results = gates.evaluate(Gates(min_stability=0.5, max_score_shift=0.1), share=1.0, coverage=1.0, shift=None,
                             stability=0.0, model_auc={"ctr": 0.7}, has_previous=True)
    assert [(r.name, r.value, r.passed) for r in results[2:]] == [("score_shift", None, True),
                                                                  ("top_n_stability", 0.0, False),
                                                                  ("model_auc_ctr", 0.7, True)]
    assert results[2].describe() == f"score_shift: skipped ({gates.NO_SHARED_OBJECTIVE})"


def test_failed_gates_say_which_and_by_how_much():
    results = gates.evaluate(Gates(min_profile_share=0.95, min_auc=0.6), share=0.80, coverage=0.5, shift=None,
                             stability=None, model_auc={"ctr": 0.7, "cvr": 0.55})
    assert [(r.name, r.passed) for r in results] == [
        ("profile_share", False), ("tag_coverage", True), ("score_shift", True),
        ("top_n_stability", True), ("model_auc_ctr", True), ("model_auc_cvr", False)]
    with pytest.raises(gates.QualityGateError) as failure:
        gates.check(results)
    text = str(failure.value)
    assert "profile_share: 0.8000 (must be >= 0.95) FAILED by 0.1500" in text
    assert "model_auc_cvr: 0.5500 (must be >= 0.6) FAILED by 0.0500" in text
    assert "tag_coverage" not in text
    assert "skipped (no previously published date" in results[2].describe()


def test_an_undefined_or_unrecorded_model_auc_fails_its_gate():
    """Training records a NaN AUC as null; such a model (pinned by score.model_version) used to
    pass with no AUC gate for that objective at all."""
    from core.registry import ModelRecord, ModelStatus
    from nightly.night import model_auc

    record = ModelRecord("m1", dt.date(2026, 11, 1), ModelStatus.REJECTED, dt.datetime(2026, 11, 1, 3),
                         {"ctr": {"auc": 0.7, "gauc": 0.65}, "cvr": {"auc": None, "log_loss": 0.5}}, "/m/m1")
    assert model_auc(record) == {"ctr": 0.7, "cvr": None}
    results = gates.evaluate(Gates(min_auc=0.6), share=1.0, coverage=1.0, shift=None, stability=None,
                             model_auc=model_auc(record))
    assert [(r.name, r.value, r.passed) for r in results[4:]] == [("model_auc_ctr", 0.7, True),
                                                                 ("model_auc_cvr", None, False)]
    with pytest.raises(gates.QualityGateError, match=r"\n  model_auc_cvr: FAILED \(the validation AUC of the "
                                                     r"model used is undefined\)$"):
        gates.check(results)
    nothing = gates.evaluate(Gates(min_auc=0.6), share=1.0, coverage=1.0, shift=None, stability=None, model_auc={})
    assert [(r.name, r.passed, r.describe()) for r in nothing[4:]] == [
        ("model_auc", False, "model_auc: FAILED (no validation AUC is recorded with the model used)")]


def test_min_auc_0_turns_the_undefined_and_unrecorded_auc_gates_off():
    for model_auc in ({"ctr": 0.7, "cvr": None}, {}):
        results = gates.evaluate(Gates(min_auc=0.0), share=1.0, coverage=1.0, shift=None, stability=None,
                                 model_auc=model_auc)
        gates.check(results)  # nothing fails
        assert [r.describe() for r in results[4:] if r.value is None] == [
            "model_auc_cvr: skipped (the validation AUC of the model used is undefined)" if model_auc else
            "model_auc: skipped (no validation AUC is recorded with the model used)"]
