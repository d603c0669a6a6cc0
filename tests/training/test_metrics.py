"""Metrics against independent computations: pairwise AUC by brute force, GAUC and the rest by hand."""
import itertools
import math

import numpy as np
import pytest

from training.metrics import auc, binary_metrics, calibration, gauc, log_loss, objective_metrics, sigmoid


def brute_force_auc(labels, scores):
    """Share of (positive, negative) pairs ordered correctly, ties counting 1/2."""
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y == 0]
    if not pos or not neg:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_equals_brute_force_on_hand_data():
    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.8, 0.8, 0.3, 0.1, 0.3, 0.5, 0.6]
    # pairs by hand: 0.9 beats all 4 negatives (4); 0.8 beats 0.6, 0.3, 0.1 and ties 0.8 (3.5);
    # 0.3 beats 0.1 and ties 0.3 (1.5); 0.5 beats 0.1, 0.3 (2) -> 11 / 16
    assert auc(labels, scores) == pytest.approx(11 / 16)
    assert brute_force_auc(labels, scores) == pytest.approx(11 / 16)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_brute_force_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 8, 60) / 8.0  # many ties
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_edge_cases():
    assert auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auc([1, 0], [0.5, 0.5]) == 0.5
    assert math.isnan(auc([1, 1], [0.1, 0.2]))
    assert math.isnan(auc([], []))


def test_gauc_by_hand_both_weightings():
    # user a: 3 samples, AUC 1; user b: 4 samples, AUC 0.5 (pairs (0.7>0.2)=1, (0.7<0.9)=0, 0.4 vs: 1, 0 ->
    # 2 of 4); user c: only positives -> skipped
    groups = ["a", "a", "a", "b", "b", "b", "b", "c", "c"]
    labels = [1, 0, 0, 1, 1, 0, 0, 1, 1]
    scores = [0.9, 0.1, 0.2, 0.7, 0.4, 0.2, 0.9, 0.3, 0.6]
    assert brute_force_auc(labels[3:7], scores[3:7]) == 0.5
    assert gauc(labels, scores, groups, "impressions") == pytest.approx((3 * 1.0 + 4 * 0.5) / 7)
    assert gauc(labels, scores, groups, "uniform") == pytest.approx((1.0 + 0.5) / 2)
    assert math.isnan(gauc([1, 0], [0.2, 0.3], ["x", "y"]))
    with pytest.raises(ValueError, match="weighting"):
        gauc(labels, scores, groups, "clicks")


def test_gauc_with_integer_user_keys_matches_per_user_brute_force():
    rng = np.random.default_rng(3)
    groups = rng.integers(-5, 5, 200) * 1_000_003  # int64 hashes, negative ones too
    labels = rng.integers(0, 2, 200)
    scores = rng.random(200)
    per_user = []
    for g in np.unique(groups):
        mask = groups == g
        value = brute_force_auc(labels[mask], scores[mask])
        if not math.isnan(value):
            per_user.append((value, mask.sum()))
    expected = sum(v * n for v, n in per_user) / sum(n for _, n in per_user)
    assert gauc(labels, scores, groups) == pytest.approx(expected)


def test_log_loss_and_calibration_by_hand():
    labels = [1, 0, 1, 0]
    probs = [0.8, 0.4, 0.5, 0.1]
    expected = -(math.log(0.8) + math.log(0.6) + math.log(0.5) + math.log(0.9)) / 4
    assert log_loss(labels, probs) == pytest.approx(expected)
    assert calibration(labels, probs) == pytest.approx((1.8 / 4) / 0.5)
    assert math.isnan(calibration([0, 0], [0.1, 0.2]))
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))


def test_sigmoid_is_stable_and_exact():
    x = np.array([-1000.0, -2.0, 0.0, 3.0, 1000.0])
    expected = [0.0, 1 / (1 + math.exp(2)), 0.5, 1 / (1 + math.exp(-3)), 1.0]
    np.testing.assert_allclose(sigmoid(x), expected, rtol=1e-12, atol=1e-300)


def test_objective_metrics_cvr_on_clicked_samples_and_esmm_on_all():
    ctr = np.array([2.0, -1.0, 0.5, -2.0, 1.0, 0.0])
    cvr = np.array([1.0, 3.0, -1.0, 2.0, -0.5, 0.2])
    click = np.array([1, 0, 1, 0, 1, 1])
    conversion = np.array([1, 0, 0, 0, 0, 1])
    users = np.array([1, 1, 2, 2, 3, 3])
    clicked = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="clicked")
    mask = click == 1
    assert clicked["ctr"] == binary_metrics(click, sigmoid(ctr), users)
    assert clicked["cvr"] == binary_metrics(conversion[mask], sigmoid(cvr[mask]), users[mask])
    assert clicked["cvr"]["samples"] == 4.0
    assert clicked["cvr"]["auc"] == pytest.approx(brute_force_auc(conversion[mask], cvr[mask]))
    esmm = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="esmm")
    p = sigmoid(ctr) * sigmoid(cvr)
    assert esmm["cvr"] == binary_metrics(click * conversion, p, users)
    assert esmm["cvr"]["samples"] == 6.0


def test_non_finite_predictions_make_their_objective_metrics_nan_and_the_model_unpublishable():
    """A NaN score used to sort like a number (auc == 0.5 here), so a broken model could pass the floor."""
    from core.config import PublishRules
    from core.registry import ModelStatus
    from training.artifact import json_safe
    from training.publish import decide

    assert math.isnan(auc(np.array([1, 0, 1, 0]), np.array([math.nan, 0.1, 0.2, math.nan])))
    assert math.isnan(gauc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.2, math.nan]), np.array([1, 1, 2, 2])))
    click = np.array([1, 0, 1, 0, 1, 1])
    conversion = np.array([1, 0, 0, 0, 1, 0])
    users = np.array([1, 1, 2, 2, 3, 3])
    ctr = np.array([2.0, -1.0, 0.5, -2.0, 1.0, 0.0])
    cvr = np.array([1.0, 3.0, math.nan, 2.0, -0.5, 0.2])  # the NaN is on a clicked sample
    metrics = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="clicked")
    assert metrics["ctr"] == binary_metrics(click, sigmoid(ctr), users)
    assert all(math.isfinite(v) for v in metrics["ctr"].values())
    nan = math.nan
    assert json_safe(metrics["cvr"]) == json_safe({"auc": nan, "gauc": nan, "log_loss": nan, "calibration": nan,
                                                   "samples": 4.0, "positives": 2.0})
    decision = decide(json_safe(metrics), PublishRules(min_auc=0.0), ("ctr", "cvr"), previous=None)
    assert decision.status is ModelStatus.REJECTED
    assert [r for r in decision.reasons if r.startswith("cvr")] == [
        "cvr: AUC is undefined (a validation set with one class only, or non-finite predictions)"]
    # clicked mode keeps only the clicked samples' labels, but the model scores every user: a
    # non-finite logit on an unclicked sample is as broken
    for bad in (math.nan, math.inf):
        unclicked = np.array([1.0, bad, 0.3, 2.0, -0.5, 0.2])
        metrics = objective_metrics({"ctr": ctr, "cvr": unclicked}, click, conversion, users, cvr_mode="clicked")
        assert json_safe(metrics["cvr"]) == json_safe({"auc": nan, "gauc": nan, "log_loss": nan, "calibration": nan,
                                                       "samples": 4.0, "positives": 2.0})


def test_confident_logits_whose_probabilities_round_to_one_are_still_ranked():
    """sigmoid(x) is exactly 1.0 in float64 above x ~ 37: ranked on probabilities, such samples tied
    (AUC 0.5 for a model that orders every pair right). The metrics rank what the logits order."""
    ctr = np.array([50.0, 40.0, 45.0, 38.0, 60.0, 39.0, -2.0, 1.0])
    cvr = ctr.copy()  # esmm: p = sigmoid(ctr) ** 2, ordered as ctr
    click = np.array([1, 0, 1, 0, 1, 0, 0, 1])
    conversion = click.copy()
    users = np.array([1, 1, 2, 2, 3, 3, 3, 3])
    assert sigmoid(ctr[:6]).tolist() == [1.0] * 6
    clicked = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="clicked")
    assert clicked["ctr"]["auc"] == pytest.approx(brute_force_auc(click, ctr)) == pytest.approx(13 / 16)
    per_user = [brute_force_auc(click[users == u], ctr[users == u]) for u in (1, 2, 3)]
    assert per_user == [1.0, 1.0, 0.75]
    assert clicked["ctr"]["gauc"] == pytest.approx((2 * 1.0 + 2 * 1.0 + 4 * 0.75) / 8)
    assert clicked["ctr"]["log_loss"] == pytest.approx(log_loss(click, sigmoid(ctr)))
    esmm = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="esmm")
    assert esmm["cvr"]["auc"] == pytest.approx(13 / 16)
    assert esmm["cvr"]["gauc"] == pytest.approx(clicked["ctr"]["gauc"])
    assert esmm["cvr"]["calibration"] == pytest.approx(calibration(click, sigmoid(ctr) ** 2))


def test_infinite_logits_make_their_objective_metrics_nan_and_the_model_unpublishable():
    """An infinite logit is a finite probability (0 or 1), so it passed as a prediction; the model overflowed."""
    from core.config import PublishRules
    from core.registry import ModelStatus
    from training.artifact import json_safe
    from training.publish import decide

    click = np.array([1, 0, 1, 0, 1, 1])
    conversion = np.array([1, 0, 0, 0, 1, 0])
    users = np.array([1, 1, 2, 2, 3, 3])
    ctr = np.array([2.0, -1.0, 0.5, -2.0, 1.0, 0.0])
    for bad in (math.inf, -math.inf):
        cvr = np.array([1.0, 3.0, bad, 2.0, -0.5, 0.2])  # on a clicked sample
        metrics = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="clicked")
        assert metrics["ctr"] == binary_metrics(click, sigmoid(ctr), users)
        assert json_safe(metrics["cvr"]) == {"auc": None, "gauc": None, "log_loss": None, "calibration": None,
                                             "samples": 4.0, "positives": 2.0}
        decision = decide(json_safe(metrics), PublishRules(min_auc=0.0), ("ctr", "cvr"), previous=None)
        assert decision.status is ModelStatus.REJECTED
        esmm = objective_metrics({"ctr": ctr, "cvr": cvr}, click, conversion, users, cvr_mode="esmm")
        assert all(math.isnan(esmm["cvr"][m]) for m in ("auc", "gauc", "log_loss", "calibration"))
