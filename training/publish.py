"""Publish rules: a trained candidate becomes `published` or `rejected` (its artifact is kept either way).

For every objective: validation AUC >= the floor (`min_auc_by_objective[o]`, else `min_auc`), and
AUC >= (the AUC for that objective of the last published model trained for the same day or earlier)
- `max_auc_drop`. An undefined AUC (the validation set held one class only, or the model predicted
NaN or inf) fails the floor.
Objectives the last published model did not report are judged by the floor alone, and so is an
objective whose AUC it measured another way (CVR AUC over clicked samples against an ESMM model's
over every impression, `auc_measures`): the two numbers are not comparable. An objective the last
published model serves and the candidate does not train fails, unless `max_auc_drop` is 1 (any
drop): published, the candidate would silently stop that objective's profiles.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import registry
from core.config import Paths, PublishRules
from core.registry import ModelRecord, ModelStatus
from training.artifact import TRAINING_FILE


@dataclass(frozen=True)
class PublishDecision:
    status: ModelStatus
    reasons: tuple[str, ...]
    compared_with: str | None = None


def decide(metrics: Mapping[str, Mapping[str, float]], rules: PublishRules, objectives: Sequence[str],
           previous: ModelRecord | None, *, measures: Mapping[str, str] | None = None,
           previous_measures: Mapping[str, str] | None = None) -> PublishDecision:
    """Judge validation `metrics` ({objective: {"auc": ...}}) against the rules and the last published model.

    `measures` and `previous_measures` say how the candidate's and the previous model's AUC of an
    objective were measured (`auc_measures`); where either is unknown (None), the same way."""
    failures, notes = [], []
    for objective in objectives:
        value = metrics.get(objective, {}).get("auc", math.nan)
        failures += _floor_failures(objective, value, rules.floor(objective))
        if previous is None:
            continue
        if None not in (measures, previous_measures) and measures.get(objective) != previous_measures.get(objective):
            notes.append(f"{objective}: judged by the floor alone: its AUC is measured with "
                         f"{measures.get(objective)}, that of the last published model {previous.model_version} "
                         f"with {previous_measures.get(objective)}")
        else:
            failures += _drop_failures(objective, value, previous, rules.max_auc_drop)
    if previous is not None and rules.max_auc_drop < 1:
        failures += [f"{objective}: this model does not train it, but the last published model "
                     f"{previous.model_version} serves it: published, it would stop the {objective} profiles "
                     f"(train.publish_if.max_auc_drop=1 publishes it anyway)"
                     for objective in sorted(set(previous.metrics) - set(objectives))]
    if failures:
        return PublishDecision(ModelStatus.REJECTED, (*failures, *notes), _version(previous))
    return PublishDecision(ModelStatus.PUBLISHED, ("every objective passed the AUC floor and drop rules", *notes),
                           _version(previous))


def auc_measures(model: Mapping[str, Any]) -> dict[str, str]:
    """How a model's validation AUC per objective is measured, from its `model` settings (a dict, as
    in training.json): CVR AUC on clicked samples (cvr_mode=clicked) or, for an ESMM model,
    pCTR x pCVR on every impression (cvr_mode=esmm). Settings written before cvr_mode existed
    were clicked."""
    return {"cvr": f"cvr_mode={model.get('cvr_mode', 'clicked')}"}


def recorded_auc_measures(paths: Paths, record: ModelRecord) -> dict[str, str] | None:
    """`auc_measures` of a registered model, from its training.json; None (unknown) where that
    cannot be read, e.g. a folder deleted by hand."""
    training = Path(record.path or registry.model_dir(paths, record.model_version)) / TRAINING_FILE
    try:
        return auc_measures(json.loads(training.read_text())["config"]["model"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _floor_failures(objective: str, value: float, floor: float) -> list[str]:
    if value is None or math.isnan(value):
        return [f"{objective}: AUC is undefined (a validation set with one class only, "
                f"or non-finite predictions)"]
    if value < floor:
        return [f"{objective}: AUC {value:.4f} is below the floor {floor:.4f}"]
    return []


def _drop_failures(objective: str, value: float, previous: ModelRecord, max_drop: float) -> list[str]:
    before = previous.metrics.get(objective, {}).get("auc")
    if before is None or value is None or math.isnan(value) or math.isnan(before):
        return []
    if value < before - max_drop:
        return [f"{objective}: AUC {value:.4f} is more than {max_drop:.4f} below {before:.4f} of the last "
                f"published model {previous.model_version}"]
    return []


def _version(record: ModelRecord | None) -> str | None:
    return None if record is None else record.model_version


def last_published(paths: Paths, excluding: str, as_of: dt.date) -> ModelRecord | None:
    """The latest published model trained for `as_of` or earlier, other than `excluding` (a rerun is
    not compared with itself, and a rerun of an old night not with a model trained after it)."""
    published = [r for r in registry.list_models(paths) if r.status is ModelStatus.PUBLISHED
                 and r.model_version != excluding and r.trained_for <= as_of]
    return published[-1] if published else None


WITHDRAWN = (ModelStatus.GATE_FAILED, ModelStatus.ROLLED_BACK)


def keep_withdrawal(paths: Paths, model_version: str, inputs_key: str, trained_for: dt.date,
                    decision: PublishDecision) -> PublishDecision:
    """A version withdrawn after its night (failed gates, a rollback), trained again from the same
    inputs and settings (the same version, or after a code deploy another one with the same
    `inputs_key` in its training.json), stays withdrawn: published again by the rules, it would
    score the next nights and republish what was undone. Pinning `score.model_version` still uses it."""
    def same_inputs(record: ModelRecord) -> bool:
        if record.model_version == model_version:
            return True
        training = Path(record.path or registry.model_dir(paths, record.model_version)) / TRAINING_FILE
        return (record.trained_for == trained_for and training.is_file()
                and json.loads(training.read_text()).get("inputs_key") == inputs_key)

    earlier = next((r for r in registry.list_models(paths) if r.status in WITHDRAWN and same_inputs(r)), None)
    if earlier is None:
        return decision
    kept = (f"{'this version' if earlier.model_version == model_version else earlier.model_version} (the same "
            f"inputs and settings) was {earlier.status.value} after its night, and this version stays so; pin "
            f"score.model_version={model_version} to score with it")
    return PublishDecision(earlier.status, (*decision.reasons, kept), decision.compared_with)


def register(paths: Paths, decision: PublishDecision, *, model_version: str, trained_for: dt.date,
             metrics: dict, path: str) -> None:
    """Register the version with its decided status, in one registry commit: a job that dies around
    it leaves either no row (its rerun resumes from the last checkpoint and registers) or the row."""
    registry.register(paths, ModelRecord(model_version=model_version, trained_for=trained_for, status=decision.status,
                                         created_at=dt.datetime.now(dt.timezone.utc), metrics=metrics, path=path))
