"""Validation metrics as pure numpy functions: AUC, GAUC, log loss, calibration.

Definitions (docs/training.md repeats them):
- AUC: probability that a random positive scores above a random negative, ties counting
  one half (the Mann-Whitney statistic, computed from average ranks).
- GAUC: the AUC of each user who has both a positive and a negative sample, averaged over
  those users, weighted by the user's number of samples ("impressions") or equally
  ("uniform"). Users with one class only are skipped.
- log loss: mean binary cross entropy of the predicted probability, clipped to [eps, 1 - eps].
- calibration: mean predicted probability / observed positive rate (1 is perfect,
  > 1 over-predicts).
Each returns NaN when undefined (no positives, no negatives, no samples). A NaN score makes
AUC and GAUC NaN (it has no rank), and `binary_metrics` gives NaN for every metric of an
objective with any non-finite prediction, so the publish rules reject such a model.
`objective_metrics` ranks samples for AUC and GAUC by their log-probability, computed from the
logits: sigmoid rounds every logit above ~37 to exactly 1.0 in float64, which would tie samples
the model orders. An infinite logit (a finite probability of 0 or 1) counts as non-finite.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

GaucWeighting = Literal["impressions", "uniform"]
EPS = 1e-7


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp = np.exp(logits[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve from average ranks (ties count 1/2); NaN without both classes or with a NaN score."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        return float("nan")
    positives = labels > 0.5
    num_pos = int(positives.sum())
    num_neg = labels.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positives].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray,
         weighting: GaucWeighting = "impressions") -> float:
    """Per-group AUC averaged over groups that hold both classes; NaN if no group does or a score is NaN."""
    if weighting not in ("impressions", "uniform"):
        raise ValueError(f"weighting={weighting!r}; valid: 'impressions', 'uniform'")
    labels, scores, groups = np.asarray(labels), np.asarray(scores, dtype=np.float64), np.asarray(groups)
    if np.isnan(scores).any():
        return float("nan")  # a group with a NaN score would otherwise be skipped like a one-class group
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ends = np.r_[starts[1:], sorted_groups.size]
    values, weights = [], []
    for start, end in zip(starts, ends):
        members = order[start:end]
        value = auc(labels[members], scores[members])
        if not np.isnan(value):
            values.append(value)
            weights.append(end - start if weighting == "impressions" else 1)
    if not values:
        return float("nan")
    return float(np.average(values, weights=weights))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = EPS) -> float:
    """Mean binary cross entropy; NaN for no samples."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.size == 0:
        return float("nan")
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean predicted probability / observed positive rate; NaN without positives."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.size == 0 or labels.sum() == 0:
        return float("nan")
    return float(np.mean(probs) / np.mean(labels))


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)), distinct where sigmoid(x) rounds to 1.0; NaN for a non-finite logit."""
    logits = np.asarray(logits, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(logits), -np.logaddexp(0.0, -logits), np.nan)


UNDEFINED = dict.fromkeys(("auc", "gauc", "log_loss", "calibration"), float("nan"))


def binary_metrics(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray,
                   weighting: GaucWeighting = "impressions", *, scores: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of one objective, plus the sample and positive counts; NaN metrics for non-finite predictions.

    `scores` rank the samples for AUC and GAUC (default `probs`): an increasing function of `probs`
    that does not round to ties where `probs` do, such as the log-probability.
    """
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    scores = probs if scores is None else np.asarray(scores, dtype=np.float64)
    counts = {"samples": float(labels.size), "positives": float(labels.sum())}
    if not (np.isfinite(probs).all() and np.isfinite(scores).all()):
        return {**UNDEFINED, **counts}
    return {
        "auc": auc(labels, scores),
        "gauc": gauc(labels, scores, groups, weighting),
        "log_loss": log_loss(labels, probs),
        "calibration": calibration(labels, probs),
        **counts,
    }


def objective_metrics(logits: Mapping[str, np.ndarray], click: np.ndarray, conversion: np.ndarray,
                      groups: np.ndarray, *, cvr_mode: Literal["clicked", "esmm"],
                      weighting: GaucWeighting = "impressions") -> dict[str, dict[str, float]]:
    """{objective: metrics} from the model's logits and the labels of the same samples.

    ctr: p = sigmoid(ctr logit) against click on every sample. cvr, cvr_mode="clicked":
    sigmoid(cvr logit) against conversion on clicked samples only. cvr, cvr_mode="esmm":
    p_ctr * p_cvr against click * conversion on every sample (what the ESMM loss trains).
    """
    out = {}
    for objective in logits:
        probs, log_probs, labels, keep = _objective_view(objective, logits, click, conversion, cvr_mode)
        out[objective] = binary_metrics(labels[keep], probs[keep], np.asarray(groups)[keep], weighting,
                                        scores=log_probs[keep])
        if not np.isfinite(log_probs).all():  # also where no label is kept: the model scores every user
            out[objective].update(UNDEFINED)
    return out


def _objective_view(objective: str, logits: Mapping[str, np.ndarray], click: np.ndarray,
                    conversion: np.ndarray, cvr_mode: str) -> tuple[np.ndarray, ...]:
    """(probability, log-probability, label, samples kept) of one objective."""
    click = np.asarray(click, dtype=np.float64)
    conversion = np.asarray(conversion, dtype=np.float64)
    everything = np.ones(click.shape, dtype=bool)
    if objective == "ctr":
        return sigmoid(logits["ctr"]), log_sigmoid(logits["ctr"]), click, everything
    if objective != "cvr":
        raise ValueError(f"no label for objective {objective!r}; valid: ctr, cvr")
    if cvr_mode == "clicked":
        return sigmoid(logits["cvr"]), log_sigmoid(logits["cvr"]), conversion, click > 0.5
    probs = sigmoid(logits["ctr"]) * sigmoid(logits["cvr"])
    return probs, log_sigmoid(logits["ctr"]) + log_sigmoid(logits["cvr"]), click * conversion, everything


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    average = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks
