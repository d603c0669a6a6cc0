"""Quality gates: measured on the candidate profiles before anything is published.

Each gate compares one number with a threshold from `nightly.gates`; the numbers are
computed by Spark aggregations, and only a handful of scalars reach the driver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core.config import Gates

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class QualityGateError(RuntimeError):
    """One or more gates failed; the message says which and by how much."""


@dataclass(frozen=True)
class GateResult:
    name: str
    value: float | None
    threshold: float
    direction: Literal["min", "max"]
    passed: bool
    detail: str

    def describe(self) -> str:
        if self.value is None:
            return f"{self.name}: {'skipped' if self.passed else 'FAILED'} ({self.detail})"
        sign = ">=" if self.direction == "min" else "<="
        verdict = "ok" if self.passed else f"FAILED by {abs(self.value - self.threshold):.4f}"
        return f"{self.name}: {self.value:.4f} (must be {sign} {self.threshold}) {verdict}; {self.detail}"


def profile_share(profiles: DataFrame, user_features: DataFrame) -> float:
    """Share of the day's users that received at least one profile row."""
    users = user_features.select("user_id").distinct().count()
    profiled = profiles.join(user_features.select("user_id").distinct(), on="user_id", how="inner") \
        .select("user_id").distinct().count()
    return profiled / users if users else 0.0


def tag_coverage(profiles: DataFrame, tags: DataFrame, excluded: Sequence[str] = (),
                 model_tags: int | None = None) -> float:
    """Share of the day's tags that appear in any profile. Tags of `excluded` (`score.exclude_tags`,
    never scored by design) are not counted: excluding tags must not fail the gate. Nor are, with
    `model_tags` (the model's tag vocabulary size), the tags created after the model (tag_index >=
    it), which it cannot score: a model reused for nights (`nightly.train_every`) must not fail
    the gate by its age alone."""
    scorable = tags.where(~F.col("tag_id").isin(list(excluded)))
    if model_tags is not None:
        scorable = scorable.where(F.col("tag_index") < model_tags)
    scorable = scorable.select("tag_id").distinct()
    total = scorable.count()
    covered = profiles.select("tag_id").distinct().join(scorable, "tag_id", "inner").count()
    return covered / total if total else 0.0


def score_quantiles(profiles: DataFrame) -> dict[str, list[float]]:
    """Per objective, the score at each of QUANTILES."""
    rows = profiles.groupBy("objective").agg(
        F.percentile_approx("score", list(QUANTILES), 10000).alias("q")).collect()
    return {r["objective"]: [float(v) for v in r["q"]] for r in rows}


NO_SHARED_OBJECTIVE = "no objective is scored on both dates"


def score_shift(today: dict[str, list[float]], previous: dict[str, list[float]]) -> float | None:
    """The largest absolute move of any score quantile of any shared objective (None: none shared)."""
    shared = sorted(set(today) & set(previous))
    if not shared:
        return None
    return max(abs(a - b) for o in shared for a, b in zip(today[o], previous[o]))


def top_n_stability(profiles: DataFrame, previous: DataFrame) -> float:
    """Mean Jaccard similarity of each user's top-N tag set with the previous date's, per objective.

    Users present on both dates only; averaged over (user, objective) pairs. No such pair is 0: every
    user id changed (an upstream re-keying) is what this gate alone can catch.
    """
    def sets(df: DataFrame, name: str) -> DataFrame:
        return df.groupBy("user_id", "objective").agg(F.collect_set("tag_id").alias(name))

    joined = sets(profiles, "today").join(sets(previous, "before"), on=["user_id", "objective"], how="inner")
    jaccard = F.size(F.array_intersect("today", "before")) / F.size(F.array_union("today", "before"))
    value = joined.agg(F.avg(jaccard).alias("j")).first()["j"]
    return float(value) if value is not None else 0.0


def evaluate(
    gates: Gates,
    *,
    share: float,
    coverage: float,
    shift: float | None,
    stability: float | None,
    model_auc: dict[str, float | None],
    has_previous: bool | None = None,
) -> list[GateResult]:
    """Compare the measured numbers with the thresholds. A shift or stability of None is skipped:
    there is no previous date (`has_previous` false, the default when both are None), or, for the
    shift, no objective scored on both dates."""
    if has_previous is None:
        has_previous = shift is not None or stability is not None
    no_previous = "no previously published date to compare with"
    results = [
        _at_least("profile_share", share, gates.min_profile_share, "users with a profile / users in user_features"),
        _at_least("tag_coverage", coverage, gates.min_tag_coverage,
                  "tags in any profile / tags of the day not in score.exclude_tags"),
        _at_most("score_shift", shift, gates.max_score_shift,
                 "largest move of a score quantile (p10..p90) since the previous date",
                 NO_SHARED_OBJECTIVE if has_previous else no_previous),
        _at_least("top_n_stability", stability, gates.min_stability,
                  "mean Jaccard of each user's top-N with the previous date's", no_previous),
    ]
    for objective, auc in sorted(model_auc.items()):
        if auc is None:  # NaN when measured (training records it as null): nothing says the model ranks
            results.append(GateResult(f"model_auc_{objective}", None, gates.min_auc, "min", gates.min_auc <= 0,
                                      "the validation AUC of the model used is undefined"))
        else:
            results.append(_at_least(f"model_auc_{objective}", auc, gates.min_auc, "validation AUC of the model used"))
    if not model_auc:
        results.append(GateResult("model_auc", None, gates.min_auc, "min", gates.min_auc <= 0,
                                  "no validation AUC is recorded with the model used"))
    return results


def check(results: list[GateResult]) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        raise QualityGateError("quality gates failed, nothing published:\n" +
                               "\n".join("  " + r.describe() for r in failed))


def _at_least(name, value, threshold, detail, skipped=""):
    if value is None:
        return GateResult(name, None, threshold, "min", True, skipped)
    return GateResult(name, float(value), threshold, "min", value >= threshold, detail)


def _at_most(name, value, threshold, detail, skipped=""):
    if value is None:
        return GateResult(name, None, threshold, "max", True, skipped)
    return GateResult(name, float(value), threshold, "max", value <= threshold, detail)
