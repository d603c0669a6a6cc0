"""What a training run for date D reads: the window's samples and snapshots, fields and id-space sizes.

The window is the `train.window_days` days before D (dt in [D - window_days, D - 1]). Each
sample of day X is joined to the user_features snapshot of the same day X (events before X)
by `features.examples.training_examples`. Every table is read at the version recorded
before reading, and those versions go into the artifact (the model version is named by the
examples' content, `jobs.train.content_digest`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import delta
from core.config import Config, ValidationSplit
from core.tables import Warehouse, warehouse_uri
from mvke.fields import FieldSpec
from training.errors import EmptyWindowError, MissingSamplesError, TrainingError, VocabularyMismatchError

DAY = dt.timedelta(days=1)
# Not `tags`: each sample carries its tag_index and category_id, resolved by the feature job from
# that day's tag catalogue, so the tags table is not read again.
READ_TABLES = (Warehouse.SAMPLES, Warehouse.USER_FEATURES, Warehouse.FIELDS, Warehouse.VOCABULARY)
TAG_VOCABULARY, CATEGORY_VOCABULARY = "tag", "category"
VALIDATION_FLAG = "is_validation"
USER_SPLIT_BUCKETS = 10_000


@dataclass(frozen=True)
class TrainingInputs:
    """The examples of the window (with a validation flag) and what the model is built from."""

    window: tuple[dt.date, ...]
    versions: dict[str, int | None]
    fields: tuple[FieldSpec, ...]
    num_tags: int
    num_categories: int
    examples: DataFrame
    definitions: dict[str, str] = field(default_factory=dict)  # field: what its ids mean (fields table)


def window_days(date: dt.date, days: int) -> tuple[dt.date, ...]:
    """The sample days a run for `date` trains on: date - days .. date - 1."""
    return tuple(date - (days - i) * DAY for i in range(days))


def missing_days(config: Config, window: Sequence[dt.date]) -> dict[str, list[dt.date]]:
    """{table: days of the window without a partition} for samples and user_features (empty lists dropped)."""
    out = {}
    for table in (Warehouse.SAMPLES, Warehouse.USER_FEATURES):
        present = set(delta.partition_values(warehouse_uri(config.paths, table)))
        days = [d for d in window if d.isoformat() not in present]
        if days:
            out[table.value] = days
    return out


def backfill_dates(missing: dict[str, list[dt.date]]) -> list[dt.date]:
    """Feature-job run dates that write the missing partitions: run D writes user_features dt=D, samples dt=D-1."""
    runs = {d + DAY for d in missing.get(Warehouse.SAMPLES.value, [])}
    runs |= set(missing.get(Warehouse.USER_FEATURES.value, []))
    return sorted(runs)


def ensure_window(spark: SparkSession, config: Config, window: Sequence[dt.date]) -> list[dt.date]:
    """Check the window's partitions; backfill them once with the feature job if allowed.

    Returns the feature-job run dates that were backfilled (empty when nothing was missing).
    A feature job that refuses to run (its raw input breaks the contract, too many bad rows)
    is a MissingSamplesError carrying its message.
    """
    missing = missing_days(config, window)
    if not missing:
        return []
    if not config.train.build_missing:
        raise _missing_error(missing, window, f"set train.build_missing=true, or run the feature job for run dates "
                                              f"{_days(backfill_dates(missing))} (a run of day X writes the samples "
                                              f"of X-1)")
    from jobs import features as features_job

    runs = backfill_dates(missing)
    print(f"[train] backfilling with the feature job for run dates {_days(runs)}", flush=True)
    try:
        features_job.run(spark, config, runs)
    except ValueError as exc:  # ContractError, TooManyBadRows, a run date after today: tables unchanged
        raise MissingSamplesError(f"training window {window[0]}..{window[-1]} is incomplete and the feature job "
                                  f"backfill for run dates {_days(runs)} failed: {exc}") from exc
    still = missing_days(config, window)
    if still:
        hint = f"the feature job backfill for {_days(runs)} did not write them"
        if Warehouse.SAMPLES.value in still:  # the likely cause, not the backfill's failure
            hint += ("; the feature job writes no samples for a day without impressions: check the raw "
                     "events of the samples days named")
        raise _missing_error(still, window, hint)
    return runs


def _missing_error(missing: dict[str, list[dt.date]], window: Sequence[dt.date], hint: str) -> TrainingError:
    details = "; ".join(f"{table} has no partition for {_days(days)}" for table, days in missing.items())
    cls = EmptyWindowError if len(missing.get(Warehouse.SAMPLES.value, [])) == len(window) else MissingSamplesError
    return cls(f"training window {window[0]}..{window[-1]} is incomplete: {details}; {hint}")


def read_inputs(spark: SparkSession, config: Config, date: dt.date) -> TrainingInputs:
    """Pinned table versions, fields, id-space sizes and the window's examples with a validation flag."""
    from features.examples import training_examples
    from features.schema import read_field_definitions, read_fields

    window = window_days(date, config.train.window_days)
    uris = {t.value: warehouse_uri(config.paths, t) for t in READ_TABLES}
    versions = {name: delta.table_version(uri) for name, uri in uris.items()}
    absent = sorted(name for name, v in versions.items() if v is None)
    if absent:
        raise MissingSamplesError(f"tables {absent} do not exist under {config.paths.warehouse}; run the feature job")
    fields = tuple(read_fields(uris[Warehouse.FIELDS.value], versions[Warehouse.FIELDS.value]))
    sizes = id_space_sizes(spark, uris[Warehouse.VOCABULARY.value], versions[Warehouse.VOCABULARY.value])
    samples = _window_rows(spark, uris[Warehouse.SAMPLES.value], versions[Warehouse.SAMPLES.value], window)
    snapshots = _window_rows(spark, uris[Warehouse.USER_FEATURES.value], versions[Warehouse.USER_FEATURES.value],
                             window)
    check_not_empty(samples, window, config.train.validation)
    check_vocabulary(samples, snapshots, fields, *sizes)
    examples = training_examples(samples, snapshots, fields, config.features.max_multi_len)
    flagged = with_validation_flag(examples, config.train.validation, window[-1], config.train.validation_user_share,
                                   config.train.seed)
    definitions = read_field_definitions(uris[Warehouse.FIELDS.value], versions[Warehouse.FIELDS.value])
    return TrainingInputs(window, versions, fields, *sizes, flagged, definitions)


def id_space_sizes(spark: SparkSession, vocabulary_uri: str, version: int) -> tuple[int, int]:
    """(num_tags, num_categories) from the vocabulary: one more than the largest id, at least 2."""
    from features.vocabulary import FIRST_ID, vocabulary_sizes

    rows = vocabulary_sizes(delta.read_table(spark, vocabulary_uri, version)).collect()
    sizes = {r["field"]: r["vocab_size"] for r in rows}
    return sizes.get(TAG_VOCABULARY, FIRST_ID), sizes.get(CATEGORY_VOCABULARY, FIRST_ID)


def _window_rows(spark: SparkSession, uri: str, version: int, window: Sequence[dt.date]) -> DataFrame:
    return delta.read_table(spark, uri, version).where(F.col("dt").isin([d.isoformat() for d in window]))


def check_not_empty(samples: DataFrame, window: Sequence[dt.date], validation: ValidationSplit) -> None:
    """Raise EmptyWindowError naming the days when the window, or the last_day split's side of it, has no rows."""
    counts = {r["dt"]: r["count"] for r in samples.groupBy(F.col("dt").cast("string").alias("dt")).count().collect()}
    if not counts:
        raise EmptyWindowError(f"training window {window[0]}..{window[-1]} holds no samples "
                               f"(days {_days(window)}); check the feature job's samples for those days")
    if validation == "last_day" and window[-1].isoformat() not in counts:
        raise EmptyWindowError(f"no validation samples: the last day of the window {window[-1]} holds no samples")
    if validation == "last_day" and not set(counts) - {window[-1].isoformat()}:
        raise EmptyWindowError(f"no training samples: the days {_days(window[:-1])} hold no samples")


def check_vocabulary(samples: DataFrame, snapshots: DataFrame, fields: Sequence[FieldSpec], num_tags: int,
                     num_categories: int) -> None:
    """Every id in the window fits its id space (0 <= id < size); raise VocabularyMismatchError otherwise."""
    missing = [f.name for f in fields if f.name not in snapshots.columns]
    if missing:
        raise VocabularyMismatchError(f"user_features has no column for fields {missing} of the fields table; "
                                      f"the fields table and user_features disagree: rerun the feature job")
    problems = _out_of_range(samples, {"tag_index": num_tags, "category_id": num_categories})
    problems += _out_of_range(snapshots, {f.name: f.vocab_size for f in fields})
    if problems:
        raise VocabularyMismatchError(
            "ids in the training data do not fit the model's vocabulary sizes: " + "; ".join(problems)
            + ". The fields/vocabulary tables and the data disagree: rerun the feature job for the window"
        )


def _out_of_range(frame: DataFrame, sizes: dict[str, int]) -> list[str]:
    """One aggregation: the largest and smallest id of each column (array columns included)."""
    aggregates = []
    for name in sizes:
        is_array = frame.schema[name].dataType.typeName() == "array"
        aggregates.append(F.max(F.array_max(name) if is_array else F.col(name)).alias(f"max_{name}"))
        aggregates.append(F.min(F.array_min(name) if is_array else F.col(name)).alias(f"min_{name}"))
    row = frame.agg(*aggregates).first()
    problems = []
    for name, size in sizes.items():
        high, low = row[f"max_{name}"], row[f"min_{name}"]
        if high is not None and high >= size:
            problems.append(f"{name} has id {high} but its vocab_size is {size} (ids must be < {size})")
        if low is not None and low < 0:
            problems.append(f"{name} has a negative id {low}")
    return problems


def with_validation_flag(examples: DataFrame, validation: ValidationSplit, last_day: dt.date, user_share: float,
                         seed: int) -> DataFrame:
    """Add `is_validation`: the last day of the window, or a hashed share of users (same users every day)."""
    if validation == "last_day":
        flag = F.col("dt").cast("string") == F.lit(last_day.isoformat())
    else:
        bucket = F.pmod(F.xxhash64(F.lit(seed), F.col("user_id")), F.lit(USER_SPLIT_BUCKETS))
        flag = bucket < F.lit(int(round(user_share * USER_SPLIT_BUCKETS)))
    return examples.withColumn(VALIDATION_FLAG, flag)


def _days(days: Sequence[dt.date]) -> str:
    return ", ".join(d.isoformat() for d in days)
