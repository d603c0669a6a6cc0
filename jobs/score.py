"""Score every user against every tag for one day: top-N tags per user and objective.

`./spark-submit.sh score --date D [--set score.top_n=10 --set score.model_version=...]`
(default model: the latest published one). See docs/scoring.md.

Order of work: every check first (model version, field encodings, tags, user_features for D),
then the writes: tag_index for the model version (once), user_tag_profiles for dt = D (one
atomic partition replace; then `profiles_latest` is copied again), and optionally user_vectors.
A failed check writes nothing. The nightly scores into staging with user_vectors off and writes them after its publish
(`write_user_vectors`), so no vectors reach the warehouse before the night's gates pass.
On the command line the job holds the date's lock (`nightly.lock.date_lock`): exit 3 while the
night of D or a `rollback --date D` runs.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import delta, registry
from core.cli import job_parser, parse_job_args
from core.config import Config, ConfigError
from core.spark import raised_on_executor, spark_session
from core.tables import Warehouse, warehouse_uri
from features.examples import model_inputs
from mvke.artifact import load_model, weights_id
from mvke.base import ProfileModel
from nightly.lock import RunInProgressError, check_lock_folder, date_lock, exclusive
from nightly.publish import PartlyPublishedError, after_profiles_commit, refresh_latest
from scoring import inputs
from scoring.executor import (PROFILE_SCHEMA, USER_VECTOR_SCHEMA, ModelReplacedError, ScanTask, score_users,
                              user_vectors)
from scoring.scan import ScanPlan, scan_plan
from scoring.tag_index import ensure_tag_index, probe_sides, scan_tags
from scoring.topn import UndefinedScoreError
from training.artifact import TRAINING_FILE


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    args, config = parse_job_args(parser, argv)
    try:
        check_lock_folder(config.paths)  # a usage error, before Spark starts
    except ConfigError as exc:
        parser.error(str(exc))
    spark = spark_session(config.spark)
    run_id = f"score-{args.date.isoformat()}-{uuid.uuid4().hex[:8]}"
    try:
        # the date's lock, as its night and its rollback take it: one writer of the date's profiles at a time
        with exclusive(config.paths, date_lock(args.date), run_id):
            summary = run(spark, config, args.date, run_id=run_id)
    except RunInProgressError as exc:
        print(f"score: nothing scored: {exc}", file=sys.stderr)
        return 3
    except (ValueError, delta.ConcurrentCommitError, PartlyPublishedError) as exc:  # UnknownModelError,
        # ScoringInputError, a bad artifact or setting, another score of the date committing first, a
        # step after the profiles commit: all say why
        print(f"score: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(json.dumps(summary, sort_keys=True))
    return 0


def run(spark: SparkSession, config: Config, date: dt.date, *, output_uri: str | None = None,
        run_id: str | None = None) -> dict:
    """Score dt = `date`; write the profiles to `output_uri` (default: the warehouse's user_tag_profiles).

    Returns the summary: users scored, users with missing fields, rows written, model version,
    tag counts and the table versions committed. Raises before writing anything on bad score.*
    settings (ConfigError), an unknown model version (registry.UnknownModelError), inputs that do
    not fit the model (inputs.ScoringInputError) or a top_n_per_objective key the model does not
    score (ValueError). A failure after the profiles commit (the profiles_latest refresh, the
    user_vectors write) raises nightly.publish.PartlyPublishedError naming the committed profiles version.
    """
    paths, conf = config.paths, config.score
    run_id = run_id or uuid.uuid4().hex
    night = _checked_inputs(spark, config, date)
    commit_info = {"job": "score", "run_id": run_id, "dt": date.isoformat(), "model_version": night.version}
    sides = probe_sides(night.model)
    index = ensure_tag_index(warehouse_uri(paths, Warehouse.TAG_INDEX), night.model, night.version,
                             night.tags.seen, commit_info)
    scan = scan_tags(index.rows, night.scanned, sides)
    task = _scan_task(spark, config, night, date)
    users = _model_users(spark, config, night)
    uri = output_uri or warehouse_uri(paths, Warehouse.USER_TAG_PROFILES)
    broadcast = spark.sparkContext.broadcast(scan)
    try:
        # The profile rows go from the scan straight into the Parquet writer, never becoming Spark rows.
        profiles = delta.ArrowMap(functools.partial(score_users, task=task, tags=broadcast), PROFILE_SCHEMA)
        versions = {"user_tag_profiles": delta.write_table(users, uri, mode="overwrite", partition_by=["dt"],
                                                           replace_partitions=[date.isoformat()],
                                                           commit_info=commit_info, through=profiles),
                    "tag_index": index.table_version}
    except Exception as exc:  # a NaN score, or other weights, found on an executor: said in one line
        raise executor_error(exc) from None
    finally:
        broadcast.destroy()
    committed = functools.partial(after_profiles_commit, date, uri, versions["user_tag_profiles"], night.version)
    if output_uri is None:  # the warehouse's profiles changed: profiles_latest follows their newest date
        with committed("the profiles_latest refresh"):
            refresh_latest(spark, paths)
    if conf.write_user_vectors:
        with committed("the user_vectors write"):
            versions["user_vectors"] = _write_vectors(users, task, warehouse_uri(paths, Warehouse.USER_VECTORS),
                                                      commit_info)
    return {
        "dt": date.isoformat(),
        "run_id": run_id,
        "model_version": night.version,
        "weights_id": night.weights_id,
        "objectives": list(night.plan.top_n),
        "users_scored": night.users["users"],
        "users_with_missing_fields": night.users["missing"],
        "users_with_unknown_ids": night.users["unknown"],
        "rows_written": delta.partition_rows(uri, date.isoformat(), versions["user_tag_profiles"]),
        "tags_scored": scan.num_tags,
        "tags_unseen_by_model": night.tags.unseen.num_rows,
        "tags_excluded": night.tags.seen.num_rows - night.scanned.num_rows,
        "tag_index_written": index.written,
        "output_uri": uri,
        "table_versions": versions,
    }


def write_user_vectors(spark: SparkSession, config: Config, date: dt.date, *, run_id: str | None = None,
                       weights: str | None = None) -> dict:
    """Write only the `user_vectors` partition of dt = `date`, with the model of `score.model_version`,
    as one atomic partition replace (the nightly calls it after its publish, naming the published
    profiles' model). Same checks as `run`, made before writing; returns model version, table
    version and rows written. `weights` (the `weights_id` the profiles were scored with, from
    `run`'s summary): other weights in the model folder now raise ModelReplacedError.
    """
    night = _checked_inputs(spark, config, date)
    if weights is not None and night.weights_id != weights:
        raise ModelReplacedError(f"{night.model_path} holds other weights than the published profiles were scored "
                                 f"with (weights_id {night.weights_id}, expected {weights}): the model version was "
                                 f"saved again since; no vectors were written; roll {date} back, or rerun its night")
    uri = warehouse_uri(config.paths, Warehouse.USER_VECTORS)
    commit_info = {"job": "user_vectors", "run_id": run_id or uuid.uuid4().hex, "dt": date.isoformat(),
                   "model_version": night.version}
    version = _write_vectors(_model_users(spark, config, night), _scan_task(spark, config, night, date), uri,
                             commit_info)
    return {"model_version": night.version, "table_version": version,
            "rows_written": delta.partition_rows(uri, date.isoformat(), version)}


def executor_error(exc: Exception) -> Exception:
    """The job's own error an executor raised (a NaN score, other weights than the driver loaded),
    rebuilt from Spark's exception to be reported in one line; else `exc` itself."""
    for error in (UndefinedScoreError, ModelReplacedError):
        found = raised_on_executor(exc, error)
        if found is not None:
            return found
    return exc


def _write_vectors(users: DataFrame, task: ScanTask, uri: str, commit_info: dict) -> int:
    """x_k(u) of every user of `users` into the partition dt = task.date of `uri`; returns the version."""
    vectors = delta.ArrowMap(functools.partial(user_vectors, task=task), USER_VECTOR_SCHEMA)
    try:
        return delta.write_table(users, uri, mode="overwrite", partition_by=["dt"],
                                 replace_partitions=[task.date.isoformat()], commit_info=commit_info, through=vectors)
    except Exception as exc:  # other weights than the driver loaded, found on an executor: said in one line
        raise executor_error(exc) from None


def _scan_task(spark: SparkSession, config: Config, night: CheckedInputs, date: dt.date) -> ScanTask:
    return ScanTask(model_path=night.model_path, model_version=night.version, date=date, plan=night.plan,
                    block_size=config.score.block_size, weights_id=night.weights_id,
                    threads=int(spark.sparkContext.getConf().get("spark.task.cpus", "1")))


def _model_users(spark: SparkSession, config: Config, night: CheckedInputs) -> DataFrame:
    """user_features of D as the model's inputs, spread over the cluster's cores, each list cut to the
    length the model was trained with."""
    return _spread(model_inputs(night.features, night.model.spec.fields, night.multi_len), spark)


def training_record(model_path: str) -> dict:
    """The model's training.json; {} for a model folder without one (a model saved outside `train`)."""
    training = Path(model_path) / TRAINING_FILE
    return json.loads(training.read_text()) if training.is_file() else {}


def trained_multi_len(model_path: str, default: int) -> int:
    """The `features.max_multi_len` the model was trained with (its training.json), so a multi field
    is cut as in training when the setting has grown since; `default` (the setting now) for a model
    folder whose training.json does not say."""
    return int(training_record(model_path).get("config", {}).get("max_multi_len", default))


@dataclass(frozen=True)
class CheckedInputs:
    """Everything a run needs, checked against the model; nothing has been written yet."""

    version: str
    model_path: str
    model: ProfileModel
    plan: ScanPlan
    features: DataFrame  # user_features of D
    multi_len: int  # values of a multi field the model sees, as in its training
    tags: inputs.TagSet
    scanned: pa.Table  # the tags to scan: seen by the model, not excluded
    users: dict[str, int]
    weights_id: str | None  # of the weights loaded here: the executors must score with the same


def _checked_inputs(spark: SparkSession, config: Config, date: dt.date) -> CheckedInputs:
    paths, conf = config.paths, config.score
    conf.validate()  # a Config built in Python has not been through the loader's checks
    record = registry.resolve(paths, conf.model_version, as_of=date)
    model_path = _local_path(record.path or registry.model_dir(paths, record.model_version))
    loaded_id = weights_id(model_path)
    model = load_model(model_path)
    if weights_id(model_path) != loaded_id:
        raise inputs.ScoringInputError(f"{model_path} was saved again while it was loaded; nothing was written; "
                                       f"run the job again")
    plan = scan_plan(model.objectives, output=model.output, temperature=model.temperature, top_n=conf.top_n,
                     top_n_per_objective=conf.top_n_per_objective, min_score=conf.min_score,
                     combined=conf.combined)
    fields = model.spec.fields
    inputs.check_fields(fields, *inputs.read_fields(paths), training_record(model_path).get("field_definitions", {}))
    features = inputs.read_user_features(spark, paths, date)
    inputs.check_feature_columns(features.schema, fields)
    tags = inputs.split_tags(inputs.read_tags(paths, date), model.spec.num_tags)
    scanned = inputs.drop_excluded(tags.seen, conf.exclude_tags)
    if scanned.num_rows == 0:
        raise inputs.ScoringInputError(
            f"no tag left to score for dt={date}: {tags.seen.num_rows} known to model {record.model_version} "
            f"(tag vocabulary of {model.spec.num_tags} ids), {tags.unseen.num_rows} newer than it, "
            f"{tags.seen.num_rows - scanned.num_rows} excluded by score.exclude_tags")
    multi_len = trained_multi_len(model_path, config.features.max_multi_len)
    seen = inputs.cut_lists(features, fields, multi_len)  # the values that reach the model
    users = _count_users(seen, fields)
    if users["users"] == 0:
        raise inputs.ScoringInputError(f"user_features has no rows for dt={date}")
    if users["invalid"]:
        example = seen.where(inputs.invalid_any(fields)).select("user_id", *(f.name for f in fields)).first()
        raise inputs.ScoringInputError(
            f"user_features for dt={date}: {users['invalid']} of {users['users']} rows cannot be scored (no "
            f"user_id, or a negative feature id), e.g. {example.asDict()}; nothing was written")
    if users["distinct"] != users["users"]:
        example = seen.groupBy("user_id").count().where(F.col("count") > 1).first()
        raise inputs.ScoringInputError(
            f"user_features for dt={date}: {users['users']} rows hold {users['distinct']} user ids, e.g. "
            f"{example['user_id']!r} {example['count']} times: each would get its own top-N rows under one id; "
            f"rerun the feature job for {date}; nothing was written")
    return CheckedInputs(version=record.model_version, model_path=model_path, model=model, plan=plan,
                         features=features, multi_len=multi_len,
                         tags=tags, scanned=scanned, users=users, weights_id=loaded_id)


def _count_users(features: DataFrame, fields) -> dict[str, int]:
    row = features.agg(
        F.count(F.lit(1)).alias("users"),
        F.count(F.when(inputs.missing_any(fields), 1)).alias("missing"),
        F.count(F.when(inputs.unknown_any(fields), 1)).alias("unknown"),
        F.count(F.when(inputs.invalid_any(fields), 1)).alias("invalid"),
        F.countDistinct("user_id").alias("distinct"),
    ).first()
    return {k: row[k] for k in ("users", "missing", "unknown", "invalid", "distinct")}


def _spread(df: DataFrame, spark: SparkSession) -> DataFrame:
    """At least one partition per core, so the scan uses the whole cluster even on few input files."""
    cores = spark.sparkContext.defaultParallelism
    return df.repartition(cores) if df.rdd.getNumPartitions() < cores else df


def _local_path(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


if __name__ == "__main__":
    sys.exit(main())
