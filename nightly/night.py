"""One night, end to end: features -> train (when due) -> score -> gates -> publish -> vectors -> report.

Every stage appends a row to `runs`. Nothing reaches the published tables before the
gates pass: scoring writes to staging (without user_vectors), publishing is one atomic
partition replace, and only then are the user_vectors of the date written, with the model
of the published profiles (when `score.write_user_vectors`). A crash before the publish
leaves the published tables as they were; a rerun redoes the night.
"""
from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from core import delta, registry
from core.config import Config, Paths
from core.tables import Warehouse, warehouse_uri
from mvke.artifact import saved_num_tags
from nightly import gates, plan, publish
from nightly.lock import date_lock, exclusive
from nightly.runlog import stage

if TYPE_CHECKING:
    from jobs.train import TrainResult

STAGES = ("features", "train", "score", "gates", "publish", "vectors", "report")
FAULT_ENV = "MVKE_FAULT_CRASH_AFTER"  # test-only: raise after the named stage


class InjectedCrash(RuntimeError):
    """Raised after a stage named in $MVKE_FAULT_CRASH_AFTER, to test reruns."""


@dataclass
class NightResult:
    run_id: str
    date: dt.date
    model_version: str = ""
    trained: bool = False  # the model it scored with was trained for this night: tonight, or by an earlier run
    by_earlier_run: bool = False  # ... by an earlier run of the night (tonight's training judged it again, or
    # was not due)
    judged_again: bool = False  # ... and tonight's training job judged it again
    gate_results: list[gates.GateResult] = field(default_factory=list)
    report_path: str = ""


def new_run_id(date: dt.date) -> str:
    return f"{date.isoformat()}-{uuid.uuid4().hex[:8]}"


def run_night(spark: SparkSession, config: Config, date: dt.date, *, run_id: str | None = None) -> NightResult:
    from jobs import features as features_job
    from jobs import score as score_job
    from jobs import train as train_job
    from nightly import report

    paths = config.paths
    result = NightResult(run_id=run_id or new_run_id(date), date=date)
    report.check_report_folder(paths, date)  # a report it cannot write fails the night now, not after its publish
    with exclusive(paths, date_lock(date), result.run_id):
        training = plan.training_due(config, date)

        with stage(paths, result.run_id, "features", date) as out:
            dates = plan.feature_dates(config, date, training=training)
            summary = features_job.run(spark, config, dates, run_id=result.run_id)
            out.metrics = {"dates": [d.isoformat() for d in dates], "summary": summary}
            out.rows_in = summary["quality"][date.isoformat()]["events_read"]  # the window of D
        _maybe_crash("features")

        with stage(paths, result.run_id, "train", date) as out:
            trained = train_job.run(spark, config, date, run_id=result.run_id) if training else None
            if trained is not None:
                out.metrics = _plain(trained)
            model = registry.resolve(paths, config.score.model_version, as_of=date)
            result.model_version = model.model_version
            # the training rules may reject tonight's model (or score.model_version pin another): then it is reused
            trained_tonight = trained is not None and trained.model_version == model.model_version
            result.trained = trained_tonight or model.trained_for == date
            result.judged_again = trained_tonight and trained.judged_again
            result.by_earlier_run = result.trained and (result.judged_again or not trained_tonight)
            out.message = training_message(trained) + f"scoring with {model.model_version}"
        _maybe_crash("train")

        with stage(paths, result.run_id, "score", date) as out:
            # The model resolved above, which the gates judge: `latest` may have moved since, if a night
            # for another date published a model meanwhile. Vectors come after the publish.
            staged = replace(config, score=replace(config.score, model_version=model.model_version,
                                                   write_user_vectors=False))
            scored = score_job.run(spark, staged, date, output_uri=publish.candidate_uri(paths), run_id=result.run_id)
            out.metrics = _plain(scored)
            out.rows_in, out.rows_out = scored["users_scored"], scored["rows_written"]
        _maybe_crash("score")

        with stage(paths, result.run_id, "gates", date) as out:
            result.gate_results = measure_gates(spark, config, date, model)
            out.metrics = {r.name: r.value for r in result.gate_results}
            out.message = "; ".join(r.describe() for r in result.gate_results if not r.passed)
            try:
                gates.check(result.gate_results)
            except gates.QualityGateError as exc:
                # tonight's model (or one an earlier attempt of this night trained) steps back; an older one
                # passed its own night and stays
                notes = []
                if registry.change_status(paths, model.model_version, date, registry.ModelStatus.PUBLISHED,
                                          registry.ModelStatus.GATE_FAILED):
                    notes.append(f"model {model.model_version}, trained for {date}, is now "
                                 f"{registry.ModelStatus.GATE_FAILED.value}; {registry.current_for(paths, date)}")
                notes += [note] if (note := publish.still_published(paths, date)) else []
                if not notes:
                    raise
                out.message += "; " + "; ".join(notes)
                raise gates.QualityGateError("\n".join([str(exc), *notes])) from None
        _maybe_crash("gates")

        with stage(paths, result.run_id, "publish", date) as out:
            check_still_published(paths, config.score.model_version, model, date)
            version = publish.publish(spark, paths, date, result.run_id, scored["model_version"])
            out.metrics = {"version": version}
            out.rows_in = scored["rows_written"]
            out.rows_out = delta.partition_rows(publish.profiles_uri(paths), date.isoformat(), version)
            check_still_published(paths, config.score.model_version, model, date, committed=version)
        _maybe_crash("publish")

        with stage(paths, result.run_id, "vectors", date) as out:
            with publish.after_profiles_commit(date, publish.profiles_uri(paths), version, scored["model_version"],
                                               "the user_vectors write"):
                out.metrics = write_vectors(spark, config, date, scored["model_version"], result.run_id,
                                            scored["weights_id"])
            if out.metrics:
                out.rows_in, out.rows_out = scored["users_scored"], out.metrics["rows_written"]
            out.message = (f"user_vectors of {date} written with {scored['model_version']}" if out.metrics
                           else "skipped: score.write_user_vectors is off")
        _maybe_crash("vectors")

        with stage(paths, result.run_id, "report", date) as out:
            with publish.after_profiles_commit(date, publish.profiles_uri(paths), version, scored["model_version"],
                                               "the report"):  # a disk that filled up since the check
                written = report.write_report(spark, config, date, result)
            result.report_path = written.path
            out.message = written.path + (f"; not computed: {', '.join(written.not_computed)}"
                                          if written.not_computed else "")
    return result


def training_message(trained: "TrainResult | None") -> str:
    if trained is None:
        return "reused; "
    if trained.judged_again:
        return f"judged {trained.model_version} again, trained before from the same inputs ({trained.status.value}); "
    return f"trained {trained.model_version} ({trained.status.value}); "


def write_vectors(spark: SparkSession, config: Config, date: dt.date, model_version: str, run_id: str,
                  weights: str | None = None) -> dict:
    """After a publish: the user_vectors partition of `date` from `model_version`, the model of the
    published profiles (not `latest`, which another date's night may have moved meanwhile), with
    the weights they were scored with (`weights`, their weights_id), in one atomic partition replace.
    Returns the write's summary, {} when `score.write_user_vectors` is off."""
    from jobs import score as score_job

    if not config.score.write_user_vectors:
        return {}
    pinned = replace(config, score=replace(config.score, model_version=model_version))
    return score_job.write_user_vectors(spark, pinned, date, run_id=run_id, weights=weights)


def check_still_published(paths: Paths, pinned: str, model: registry.ModelRecord, date: dt.date,
                          committed: int | None = None) -> None:
    """The model resolved as `latest` must still be published: withdrawn while this night ran (the
    gates of its own night failed, or a rollback undid that night), these profiles would put back
    what was undone. Before the publish: QualityGateError, nothing published. After it (`committed`,
    the profiles version; withdrawn during the copy): PartlyPublishedError saying to roll D back.
    A pinned `score.model_version` is the operator's choice."""
    if pinned != "latest":
        return
    now = registry.get_model(paths, model.model_version)
    if now.status is registry.ModelStatus.PUBLISHED:
        return
    if committed is None:
        rerun = "" if registry.withdrawn_for(paths, date) else ": rerun the night to score with it"
        raise gates.QualityGateError(
            f"model {model.model_version} became {now.status.value} while this night ran; nothing published, the "
            f"candidate stays in staging; {registry.current_for(paths, date)}{rerun}")
    raise publish.PartlyPublishedError(
        f"the profiles of dt={date.isoformat()} are committed ({publish.profiles_uri(paths)} version {committed}, "
        f"model {model.model_version}), but that model became {now.status.value} while they were published: run "
        f"rollback --date {date.isoformat()} to undo them, then rerun the night")


def measure_gates(spark: SparkSession, config: Config, date: dt.date,
                  model: registry.ModelRecord) -> list[gates.GateResult]:
    paths = config.paths
    candidate = publish.read_profiles(spark, publish.candidate_uri(paths), date).cache()
    day = lambda table: delta.read_table(spark, warehouse_uri(paths, table)).where(f"dt = DATE'{date}'")  # noqa: E731
    previous_date = publish.previous_published(paths, date)
    shift = stability = None
    if previous_date is not None:
        previous = publish.read_profiles(spark, publish.profiles_uri(paths), previous_date)
        shift = gates.score_shift(gates.score_quantiles(candidate), gates.score_quantiles(previous))
        stability = gates.top_n_stability(candidate, previous)
    results = gates.evaluate(
        config.nightly.gates,
        share=gates.profile_share(candidate, day(Warehouse.USER_FEATURES)),
        coverage=gates.tag_coverage(candidate, day(Warehouse.TAGS), config.score.exclude_tags,
                                    saved_num_tags(model.path or registry.model_dir(paths, model.model_version))),
        shift=shift, stability=stability, model_auc=model_auc(model), has_previous=previous_date is not None,
    )
    candidate.unpersist()
    return results


def model_auc(model: registry.ModelRecord) -> dict[str, float | None]:
    """The validation AUC per objective recorded with the model ({objective: {"auc": ...}}); None
    where it is undefined (training records a NaN as null), which fails its gate."""
    return {objective: None if values.get("auc") is None else float(values["auc"])
            for objective, values in model.metrics.items() if isinstance(values, dict)}


def _maybe_crash(stage_name: str) -> None:
    if os.environ.get(FAULT_ENV) == stage_name:
        raise InjectedCrash(f"injected crash after stage {stage_name} ({FAULT_ENV})")


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__"):
        return _plain(value.__dict__)
    return str(value)
