"""The training job: the window's samples -> Petastorm -> Horovod workers -> a model version (docs/training.md).

    ./spark-submit.sh train --date 2026-11-12 [--set train.num_proc=2 --set model.name=mvke ...]

Trains on the samples of the `train.window_days` days before D (each joined to its own-day
user_features snapshot), validates on the last day (or a share of users), writes the
artifact under `paths.models/<model_version>/`, the curves to `train_metrics`, and registers
the version as published or rejected by `train.publish_if`. Exit status 1 on a training error
(also when another run is training the same version: a nightly of the same date).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import registry
from core.cli import job_parser, parse_job_args
from core.config import Config, ConfigError, Paths
from core.delta import ConcurrentCommitError
from core.registry import ModelStatus
from mvke.builder import check_conf_fits, check_fields
from nightly.lock import RunInProgressError, check_lock_folder, exclusive, train_lock
from training import artifact, publish, report
from training.checkpoint import prepare_start, remove_checkpoints
from training.data import model_columns, petastorm_converters
from training.errors import EmptyWindowError, ModelMismatchError, TrainingError, TrainingInProgressError
from training.inputs import VALIDATION_FLAG, TrainingInputs, ensure_window, read_inputs, window_days
from training.worker import FaultInjection, WorkerSpec, launch


@dataclass(frozen=True)
class TrainResult:
    """What a run produced; `probe` holds one validation batch and rank 0's in-memory logits for it.

    `judged_again`: the version was trained to the end before (the same inputs, settings and code);
    nothing was trained, its recorded metrics were judged by today's rules. `versions` are then
    the table versions it was trained on."""

    model_version: str
    status: ModelStatus
    path: str
    metrics: dict
    reasons: tuple[str, ...]
    start_epoch: int
    versions: dict
    backfilled: tuple[dt.date, ...]
    probe: dict
    judged_again: bool = False


def run(spark: SparkSession, config: Config, date: dt.date, *, fault: FaultInjection | None = None,
        run_id: str | None = None) -> TrainResult:
    """Train the model for run date `date`; raise a TrainingError (nothing published) when it cannot.

    `run_id` names this run to another one that finds the version's lock held (the nightly passes
    its own; default `train-<date>-<random>`)."""
    check_publish_objectives(config)
    check_lock_folder(config.paths)  # before any work, not after it
    run_id = run_id or f"train-{date.isoformat()}-{uuid.uuid4().hex[:8]}"
    backfilled = ensure_window(spark, config, window_days(date, config.train.window_days))
    inputs = read_inputs(spark, config, date)
    check_model_fits(config, inputs)
    examples = model_examples(inputs, config.features.max_multi_len)
    try:
        rows = split_counts(examples, config.train.num_proc, config.train.validation)
        fingerprint = version_fingerprint(config, date, inputs, content_digest(examples))
        version = artifact.model_version(config.model.name, date, fingerprint)
        inputs_key = inputs_key_of(config.model.name, date, fingerprint)
        with version_lock(config.paths, version, run_id):
            done = trained_before(config.paths, version)
            if done is not None:
                return judge_again(config, date, inputs, done, inputs_key, backfilled)
            staging = artifact.staging_dir(config.paths, version)
            shutil.rmtree(staging, ignore_errors=True)
            print(f"[train] {version}: window {inputs.window[0]}..{inputs.window[-1]}, tables {inputs.versions}",
                  flush=True)
            spec = worker_spec(config, inputs, version, rows["train"], staging, fault)
            prepare_start(spec.checkpoint_dir, spec.fingerprint(), resume=spec.resume)
            with petastorm_converters(spark, split_frames(examples), config.paths.petastorm_root,
                                      config.train.num_proc, seed=config.train.seed) as data:
                result = launch(spec, data["train"], data["validation"], config.train.num_proc,
                                horovod_nics(config.train.nics, spark.sparkContext.master))
            return publish_version(config, date, inputs, version, inputs_key, staging, result, rows, backfilled)
    finally:
        examples.unpersist()


@contextmanager
def version_lock(paths: Paths, version: str, run_id: str) -> Iterator[None]:
    """One run per model version: two would share its staging, checkpoints and folder (a nightly
    and a hand-started rerun of the same date compute the same version)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive(paths, train_lock(version), run_id))
        except RunInProgressError as exc:  # only the lock's own refusal, not one from the body
            raise TrainingInProgressError(f"{version}: {exc}; then rerun, which judges the version again or "
                                          f"resumes it") from None
        yield


def trained_before(paths: Paths, version: str) -> registry.ModelRecord | None:
    """The registry row of `version` when it was trained to the end before (row and complete folder)."""
    record = next((r for r in registry.list_models(paths) if r.model_version == version), None)
    done = record is not None and artifact.is_complete(record.path or registry.model_dir(paths, version))
    return record if done else None


def judge_again(config: Config, date: dt.date, inputs: TrainingInputs, record: registry.ModelRecord,
                inputs_key: str, backfilled: list[dt.date]) -> TrainResult:
    """A rerun for the same inputs, settings and code: the same version, already trained. It is not
    trained again (that would replace a folder scoring may be reading, and cost the whole run); its
    recorded metrics are judged by today's publish rules, and a withdrawn version stays withdrawn.
    `start_epoch` is then train.epochs: no epoch was run."""
    paths, version = config.paths, record.model_version
    decision = judge(config, date, version, inputs_key, record.metrics)
    remove_checkpoints(artifact.checkpoint_dir(paths, version))  # a run killed after registering left them
    if decision.status is not record.status:
        registry.set_status(paths, version, decision.status)
    folder = Path(record.path or registry.model_dir(paths, version))
    print(f"[train] {version}: trained before from the same inputs; {record.status.value} -> "
          f"{decision.status.value} ({'; '.join(decision.reasons)}) at {folder}", flush=True)
    trained_on = json.loads((folder / artifact.TRAINING_FILE).read_text())["table_versions"]
    return TrainResult(version, decision.status, str(folder), record.metrics, decision.reasons, config.train.epochs,
                       trained_on, tuple(backfilled), {}, judged_again=True)


def judge(config: Config, date: dt.date, version: str, inputs_key: str, metrics: dict) -> publish.PublishDecision:
    """The publish rules on `metrics` against the last published model; a withdrawal of the same inputs stands."""
    paths = config.paths
    previous = publish.last_published(paths, excluding=version, as_of=date)
    decision = publish.decide(
        metrics, config.train.publish_if, trained_objectives(config), previous,
        measures=publish.auc_measures(asdict(config.model)),
        previous_measures=None if previous is None else publish.recorded_auc_measures(paths, previous))
    return publish.keep_withdrawal(paths, version, inputs_key, date, decision)


def trained_objectives(config: Config) -> tuple[str, ...]:
    """The objectives the model has logits for (a two-tower model has one)."""
    model = config.model
    return (model.two_tower_objective,) if model.name == "two_tower" else model.objectives


def check_publish_objectives(config: Config) -> None:
    """Every AUC floor names an objective this model trains (a two_tower model trains one)."""
    trained = trained_objectives(config)
    unknown = sorted(set(config.train.publish_if.min_auc_by_objective) - set(trained))
    if unknown:
        raise ConfigError(f"train.publish_if.min_auc_by_objective names {unknown}, which model "
                          f"{config.model.name} does not train; valid: {list(trained)}")


def check_model_fits(config: Config, inputs: TrainingInputs) -> None:
    """The builder's checks of the model conf against the fields table and vocabulary sizes, on the driver:
    failing first in every Horovod rank, a misfit surfaced as a worker failure to rerun and resume."""
    try:
        check_fields(inputs.fields)
        check_conf_fits(config.model, inputs.fields, inputs.num_tags, inputs.num_categories)
    except ValueError as exc:
        raise ModelMismatchError(f"the model settings do not fit the fields table: {exc}") from None


def horovod_nics(nics: tuple[str, ...], master: str) -> tuple[str, ...]:
    """The configured interfaces; on a local master the loopback (every rank is on this host)."""
    return nics or (("lo",) if master.startswith("local") else ())


def version_fingerprint(config: Config, date: dt.date, inputs: TrainingInputs, examples: str) -> dict:
    """What makes a model: the date, model conf, the training settings that change weights, the
    fields and id spaces, the examples' content (`content_digest`) and the code that trains it (a
    fix deployed between a killed run and its rerun trains anew instead of resuming old-code
    checkpoints, and is judged as a new version).

    num_proc is one of them: it sets the global batch, the steps per epoch and the split into files;
    reader_workers sets the batch order, gauc_weighting the recorded metrics.
    Content, not table versions: the nightly's feature stage runs before training and rewrites the
    window's last samples partition with the same rows under a new table version, so a version
    named by table versions changed on every rerun of a night and never resumed its checkpoints.
    """
    train = config.train
    settings = {k: getattr(train, k) for k in ("num_proc", "window_days", "epochs", "batch_size", "learning_rate",
                                                 "validation", "validation_user_share", "shuffle_buffer", "seed",
                                                 "reader_workers", "gauc_weighting")}
    return {"date": date.isoformat(), "model": asdict(config.model), "train": settings,
            "max_multi_len": config.features.max_multi_len, "fields": [asdict(f) for f in inputs.fields],
            "field_definitions": inputs.definitions, "num_tags": inputs.num_tags,
            "num_categories": inputs.num_categories, "examples": examples,
            "code": artifact.code_version()["source_sha256"]}


NOT_INPUTS = ("code", "field_definitions")


def inputs_key_of(model_name: str, date: dt.date, fingerprint: dict) -> str:
    """The version's name without what a deploy changes, the code and what the fingerprint gained
    since keys were first recorded (field_definitions: the examples' digest already holds the ids
    they give): the same inputs and settings keep their key across deploys, which is how a
    withdrawal outlives one (`training.publish.keep_withdrawal`)."""
    return artifact.model_version(model_name, date, {k: v for k, v in fingerprint.items() if k not in NOT_INPUTS})


def content_digest(examples: DataFrame) -> str:
    """`<rows>:<sum of the rows' 64-bit hashes>` over every column: the same rows give the same
    digest whatever their order or the files and table versions that hold them. Spark's hash skips
    nulls, so each row's null pattern goes in too: the padding slots of multi fields are null, and
    without it [5, 7] in one field and [] in the next would hash as [5] and [7]."""
    nulls = [F.isnull(c) for c in examples.columns]
    row = examples.agg(F.count(F.lit(1)).alias("rows"),
                       F.sum(F.xxhash64(*examples.columns, *nulls).cast("decimal(38,0)")).alias("hashes")).first()
    return f"{row['rows']}:{row['hashes']}"


def model_examples(inputs: TrainingInputs, multi_len: int) -> DataFrame:
    """The batch columns plus the validation flag, persisted: counted once, converted twice."""
    columns = model_columns(inputs.examples, inputs.fields, multi_len, keep=(VALIDATION_FLAG,))
    return columns.persist(StorageLevel.MEMORY_AND_DISK)


def split_counts(examples: DataFrame, num_proc: int, validation: str = "last_day") -> dict[str, int]:
    """Rows per split; each split needs at least one row per worker (a Petastorm shard each)."""
    counts = {bool(r[VALIDATION_FLAG]): r["count"] for r in examples.groupBy(VALIDATION_FLAG).count().collect()}
    rows = {"train": counts.get(False, 0), "validation": counts.get(True, 0)}
    advice = {  # what adds rows to that split
        ("train", "last_day"): "widen train.window_days",
        ("validation", "last_day"): "check the samples of the window's last day (its whole validation split)",
        ("train", "user_split"): "widen train.window_days or lower train.validation_user_share",
        ("validation", "user_split"): "widen train.window_days or raise train.validation_user_share",
    }
    for split, n in rows.items():
        if n < num_proc:
            raise EmptyWindowError(f"the {split} split holds {n} samples, fewer than train.num_proc={num_proc} "
                                   f"workers; {advice.get((split, validation), 'widen train.window_days')}, or "
                                   f"lower train.num_proc")
    return rows


def split_frames(examples: DataFrame) -> dict[str, DataFrame]:
    """{"train": ..., "validation": ...} without the flag column."""
    return {split: examples.where(F.col(VALIDATION_FLAG) == (split == "validation")).drop(VALIDATION_FLAG)
            for split in ("train", "validation")}


def worker_spec(config: Config, inputs: TrainingInputs, version: str, train_rows: int, staging: Path,
                fault: FaultInjection | None) -> WorkerSpec:
    train = config.train
    return WorkerSpec(
        model_conf=config.model, fields=inputs.fields, num_tags=inputs.num_tags,
        num_categories=inputs.num_categories, multi_len=config.features.max_multi_len, epochs=train.epochs,
        steps_per_epoch=max(1, math.ceil(train_rows / (train.batch_size * train.num_proc))), num_proc=train.num_proc,
        batch_size=train.batch_size, learning_rate=train.learning_rate,
        checkpoint_dir=str(artifact.checkpoint_dir(config.paths, version)), output_dir=str(staging),
        resume=train.resume, shuffle_buffer=train.shuffle_buffer, reader_workers=train.reader_workers,
        seed=train.seed, log_every=train.log_every, gauc_weighting=train.gauc_weighting,
        torch_threads=train.torch_threads, fault=fault,
    )


def publish_version(config: Config, date: dt.date, inputs: TrainingInputs, version: str, inputs_key: str,
                    staging: Path,
                    result: dict, rows: dict, backfilled: list[dt.date]) -> TrainResult:
    """Artifact, train_metrics, registry row and publish decision for a finished training run."""
    paths = config.paths
    history = result["history"]
    metrics = artifact.json_safe(history["epochs"][-1]["validation"])
    decision = judge(config, date, version, inputs_key, metrics)
    report.plot_curves(history, staging / artifact.PLOT_FILE, title=version)
    training = {**training_record(config, date, inputs, version, result, rows, backfilled, decision),
                "inputs_key": inputs_key}
    final = artifact.finalize(staging, paths, version, training, metrics)
    report.write_train_metrics(paths, version, report.metric_rows(version, history))
    publish.register(paths, decision, model_version=version, trained_for=date, metrics=metrics, path=str(final))
    remove_checkpoints(artifact.checkpoint_dir(paths, version))
    print(f"[train] {version}: {decision.status.value} ({'; '.join(decision.reasons)}) -> {final}", flush=True)
    return TrainResult(version, decision.status, str(final), metrics, decision.reasons, result["start_epoch"],
                       inputs.versions, tuple(backfilled), result["probe"])


def training_record(config: Config, date: dt.date, inputs: TrainingInputs, version: str, result: dict,
                    rows: dict, backfilled: list[dt.date], decision: publish.PublishDecision) -> dict:
    """The content of training.json."""
    return {
        "model_version": version, "trained_for": date, "window": [inputs.window[0], inputs.window[-1]],
        "validation": {"split": config.train.validation, "user_share": config.train.validation_user_share},
        "rows": rows, "table_versions": inputs.versions, "code_version": artifact.code_version(),
        "config": {"model": asdict(config.model), "train": asdict(config.train),
                   "max_multi_len": config.features.max_multi_len},
        "fields": [asdict(f) for f in inputs.fields], "field_definitions": inputs.definitions,
        "num_tags": inputs.num_tags, "num_categories": inputs.num_categories, "start_epoch": result["start_epoch"],
        "backfilled_run_dates": backfilled,
        "publish": {"status": decision.status.value, "reasons": list(decision.reasons),
                    "compared_with": decision.compared_with},
    }


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    args, config = parse_job_args(parser, argv)
    from core.spark import spark_session

    spark = spark_session(config.spark)
    try:
        result = run(spark, config, args.date, fault=FaultInjection.from_env(os.environ))
    except (TrainingError, ConfigError, ConcurrentCommitError) as exc:
        print(f"train: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(f"train: {result.model_version} {result.status.value} at {result.path}")
    print("  " + "\n  ".join(f"{o}: " + ", ".join(f"{k} {v}" for k, v in m.items()) for o, m in result.metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
