"""The nightly feature job: raw contract tables -> vocabulary, fields, user_features, tags,
samples and quarantine Delta tables (docs/features.md, docs/tables.md).

    ./spark-submit.sh features --date 2026-11-12
    ./spark-submit.sh features --from 2026-11-01 --to 2026-11-12   # a backfill, one Spark job

For each run date D: user_features and tags dt=D (events strictly before D, within
features.window_days), samples dt=D-1 (the labels of day D-1), quarantine dt=D (the bad
rows D read). Raw inputs are checked first and the bad-row gate runs before the first
write, so a contract error or too many bad rows change no table at all.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import uuid
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import delta
from core.cli import iso_date, job_parser, parse_job_args
from core.config import Config, FeaturesConf
from core.contract import ContractError, drop_ignored, read_raw, user_attributes
from core.tables import Raw, Warehouse, warehouse_uri
from features import quality, vocabulary as vocab
from features.behaviour import window_activity, window_entries
from features.samples import SAMPLE_COLUMNS, label_samples, sampled_negatives
from features.schema import FieldDef, define_fields, fields_table
from features.tags import daily_tag_counts, item_field_values, item_tags, tag_catalogue, tag_snapshots
from features.users import attribute_ids, user_snapshots
from features.windows import DAY, dates_seeing, window_start

EVENTS = Raw.EVENTS.value
SESSION_TIME_ZONE = "spark.sql.session.timeZone"


class TooManyBadRows(ValueError):
    """A run date read more bad events than features.max_bad_fraction allows; nothing was written."""


@dataclass(frozen=True)
class DateQuality:
    """What one run date read: raw events, and bad rows by (source, reason)."""

    date: dt.date
    events_read: int
    bad: dict[tuple[str, str], int]

    @property
    def bad_events(self) -> int:
        return sum(n for (source, _), n in self.bad.items() if source == EVENTS)

    @property
    def bad_fraction(self) -> float:
        return self.bad_events / self.events_read if self.events_read else 0.0

    def as_dict(self) -> dict:
        return {
            "events_read": self.events_read,
            "bad_events": self.bad_events,
            "bad_fraction": self.bad_fraction,
            "bad": {f"{source}/{reason}": n for (source, reason), n in sorted(self.bad.items())},
        }

    def lines(self) -> list[str]:
        head = (f"{self.date}: {self.events_read} events read, {self.bad_events} bad "
                f"({self.bad_fraction:.2%})")
        return [head, *[f"  {source}/{reason}: {n}" for (source, reason), n in sorted(self.bad.items())]]


@dataclass(frozen=True)
class Inputs:
    """The raw tables split into clean rows and bad rows, after the contract checks."""

    classified: DataFrame  # features.quality.classify_events
    users: DataFrame
    items: DataFrame
    tags: DataFrame
    dimension_bad: DataFrame  # source, reason, record
    fields: list[FieldDef]
    cached: tuple[DataFrame, ...] = ()

    def unpersist(self) -> None:
        for df in self.cached:
            df.unpersist()


def run(
    spark: SparkSession,
    config: Config,
    dates: Sequence[dt.date],
    *,
    run_id: str | None = None,
    as_of: dt.date | None = None,
) -> dict:
    """Compute and publish the feature tables for `dates` in one Spark job; return the summary.

    `as_of` (default: today, UTC, by the wall clock) is the last day that can have happened:
    events dated after it are quarantined as future. Events after a run date but not after
    `as_of` are legitimate (a backfill of past dates sees later days) and simply lie
    outside that date's window. Raises ContractError or TooManyBadRows
    before any table changes. The summary (plain JSON types): run_id, dates, as_of,
    quality per date (events_read, bad_events, bad_fraction, bad by "source/reason"),
    new_vocabulary (values added) and table_versions.
    """
    dates = tuple(sorted(set(dates)))
    if not dates:
        raise ValueError("run needs at least one date")
    as_of = checked_as_of(dates, as_of)
    run_id = run_id or f"features-{dates[-1]}-{uuid.uuid4().hex[:12]}"
    conf = config.features
    with utc_session(spark):
        inputs = read_inputs(spark, config, dates, as_of=as_of)
        try:
            qualities = measure_quality(inputs, dates=dates, window_days=conf.window_days)
            check_bad_fraction(qualities, conf.max_bad_fraction)
            published = publish(spark, config, inputs, dates=dates, run_id=run_id)
        finally:
            inputs.unpersist()
    return {
        "run_id": run_id,
        "dates": [d.isoformat() for d in dates],
        "as_of": as_of.isoformat(),
        "quality": {q.date.isoformat(): q.as_dict() for q in qualities},
        **published,
    }


@contextlib.contextmanager
def utc_session(spark: SparkSession) -> Iterator[None]:
    """The session's time zone set to UTC for the block, then given back.

    Event days, windows and the times of quarantine records are UTC (docs/features.md); Spark
    reads them in the session time zone, which `spark.extra` may set to another.
    """
    before = spark.conf.get(SESSION_TIME_ZONE)
    spark.conf.set(SESSION_TIME_ZONE, "UTC")
    try:
        yield
    finally:
        spark.conf.set(SESSION_TIME_ZONE, before)


def checked_horizon(as_of: dt.date | None, dates: Sequence[dt.date] = (), *,
                    today: dt.date | None = None) -> dt.date | None:
    """`--as-of` as given; ValueError when it is after tomorrow (UTC, one day of slack for clocks
    ahead of UTC: every event up to it would pass as real, none as `future`), or when a run date
    is after today, whatever `--as-of` says: the night of D runs during day D, once day D-1 ended.
    Only the command line checks this; `run(as_of=...)` may pin any horizon (synthetic worlds)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if as_of is not None and as_of > today + DAY:
        raise ValueError(f"--as-of {as_of} is after {today + DAY} (tomorrow, UTC): "
                         f"events up to it would not be quarantined as future")
    if dates and max(dates) > today:
        raise ValueError(_not_yet(max(dates), today))
    return as_of


def checked_as_of(dates: Sequence[dt.date], as_of: dt.date | None, *, today: dt.date | None = None) -> dt.date:
    """`as_of` (default: today, UTC, by the wall clock); ValueError for a night that has not happened.

    A given `as_of` is the last day whose events can have happened, so a run date up to one day
    after it is accepted. The default is today, which has not ended: a run date after it would
    build the samples of today and a snapshot of days that are still going on."""
    if as_of is None:
        today = today or dt.datetime.now(dt.timezone.utc).date()
        if max(dates) > today:
            raise ValueError(_not_yet(max(dates), today))
        return today
    if max(dates) - DAY > as_of:
        raise ValueError(f"run date {max(dates)} is more than one day after as_of {as_of}: "
                         f"that night has not happened yet")
    return as_of


def _not_yet(date: dt.date, today: dt.date) -> str:
    return (f"run date {date} is after today ({today}, UTC): that night has not happened yet, and day "
            f"{date - DAY} has not ended")


def format_summary(summary: dict) -> str:
    """The summary as the lines the job prints: per date, bad rows by source and reason."""
    lines = [f"features run {summary['run_id']}: dates {summary['dates'][0]}..{summary['dates'][-1]} "
             f"(as of {summary['as_of']})"]
    for date, q in summary["quality"].items():
        lines.append(f"{date}: {q['events_read']} events read, {q['bad_events']} bad ({q['bad_fraction']:.2%})")
        lines += [f"  {key}: {n}" for key, n in sorted(q["bad"].items())]
    lines.append(f"vocabulary: {summary['new_vocabulary']} new values")
    lines += [f"{table}: version {v}" for table, v in sorted(summary["table_versions"].items())]
    return "\n".join(lines)


def read_inputs(spark: SparkSession, config: Config, dates: Sequence[dt.date], *, as_of: dt.date) -> Inputs:
    """Read and check the raw tables (ContractError on a violation), flag the bad rows."""
    conf, paths = config.features, config.paths
    events = read_raw(spark, paths, Raw.EVENTS)
    items = read_raw(spark, paths, Raw.ITEMS)
    tags = read_raw(spark, paths, Raw.TAGS)
    users = drop_ignored(read_raw(spark, paths, Raw.USERS), conf.ignore_attributes)
    attributes = user_attributes(users, conf.categorical_attributes, conf.numeric_attributes)
    fields = define_fields(attributes, conf)

    flagged = {
        Raw.USERS: quality.flag_dimension_rows(users, key="user_id", max_key_length=conf.max_id_length),
        Raw.ITEMS: quality.flag_dimension_rows(items, key="item_id", max_key_length=conf.max_id_length),
        Raw.TAGS: quality.flag_dimension_rows(tags, key="tag_id"),
    }
    flagged = {t: df.persist(StorageLevel.MEMORY_AND_DISK) for t, df in flagged.items()}
    clean = {t: df.where(F.col("reason").isNull()).select("row.*") for t, df in flagged.items()}
    dimension_bad = [
        df.where(F.col("reason").isNotNull()).select(F.lit(t.value).alias("source"), "reason", "record")
        for t, df in flagged.items()
    ]
    dimension_bad.append(quality.unknown_item_tags(clean[Raw.ITEMS], tags=clean[Raw.TAGS])
                         .select(F.lit(Raw.ITEMS.value).alias("source"), "reason", "record"))
    dimension_bad.append(quality.items_without_known_tags(flagged[Raw.ITEMS].where(F.col("reason").isNull()),
                                                          tags=clean[Raw.TAGS])
                         .select(F.lit(Raw.ITEMS.value).alias("source"), "reason", "record"))

    # Sampled negatives of label day dates[0] - 1 rank tags over that day's own window, which
    # starts one day before dates[0]'s; each run date still uses and counts only its own
    # window (measure_quality, quarantine).
    # Every later aggregation is keyed by user first: one shuffle by user_id serves them all.
    first_window = dates[0] - DAY if conf.negatives != "none" else dates[0]
    start = window_start(first_window, conf.window_days)
    read = events.where(F.col("event_time").isNull() | (F.col("event_time") >= F.lit(start).cast("timestamp")))
    classified = quality.classify_events(read.repartition("user_id"), items=clean[Raw.ITEMS], horizon=as_of + DAY,
                                         max_id_length=config.features.max_id_length)
    classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
    return Inputs(
        classified=classified, users=clean[Raw.USERS], items=clean[Raw.ITEMS], tags=clean[Raw.TAGS],
        dimension_bad=_union(dimension_bad), fields=fields, cached=(classified, *flagged.values()),
    )


def measure_quality(inputs: Inputs, *, dates: Sequence[dt.date], window_days: int) -> tuple[DateQuality, ...]:
    """Per run date: events read and bad rows by reason (small counts, collected once)."""
    events = quality.event_counts(inputs.classified).select(F.lit(EVENTS).alias("source"), "day", "always", "reason",
                                                           "rows")
    dimension = inputs.dimension_bad.groupBy("source", "reason").agg(F.count(F.lit(1)).alias("rows")).select(
        "source", F.lit(None).cast("date").alias("day"), F.lit(True).alias("always"), "reason", "rows")
    counts = events.unionByName(dimension).collect()
    result = []
    for date in dates:
        first = window_start(date, window_days)
        read = [r for r in counts if r["source"] == EVENTS and (r["always"] or first <= r["day"] < date)]
        bad: dict[tuple[str, str], int] = {}
        for r in [*read, *(r for r in counts if r["source"] != EVENTS)]:
            if r["reason"] is not None:
                bad[(r["source"], r["reason"])] = bad.get((r["source"], r["reason"]), 0) + r["rows"]
        result.append(DateQuality(date, sum(r["rows"] for r in read), bad))
    return tuple(result)


def check_bad_fraction(qualities: Sequence[DateQuality], max_fraction: float) -> None:
    over = [q for q in qualities if q.bad_fraction > max_fraction]
    if over:
        details = "\n".join(line for q in over for line in q.lines())
        raise TooManyBadRows(
            f"bad events above features.max_bad_fraction={max_fraction:g} on {len(over)} run date(s); "
            f"no table was changed:\n{details}"
        )


def publish(spark: SparkSession, config: Config, inputs: Inputs, *, dates: Sequence[dt.date], run_id: str) -> dict:
    """Write every table; returns new_vocabulary and the table versions.

    Every output is planned once against an empty vocabulary before the first write: Spark
    analyses a plan as it is built, so a planning error (a column that cannot be resolved)
    stops the run with no table changed, instead of after the vocabulary is committed.
    """
    conf, paths = config.features, config.paths
    uri = {t: warehouse_uri(paths, t) for t in Warehouse}
    info = {"run_id": run_id, "job": "features"}
    categorical = [f.name for f in inputs.fields if f.source.startswith("users.") and f.encoding == "vocab"]
    values = vocab.vocabulary_values(inputs.tags, users=inputs.users, categorical=categorical)
    no_vocabulary = spark.createDataFrame([], vocab.VOCABULARY_SCHEMA)
    no_catalogue = tag_catalogue(inputs.tags, vocabulary=no_vocabulary)
    plan_outputs(inputs, conf=conf, dates=dates, run_id=run_id, vocabulary=no_vocabulary, catalogue=no_catalogue,
                 item_tag_rows=item_tags(inputs.items, catalogue=no_catalogue))

    vocabulary, new_values, vocabulary_version = update_vocabulary(spark, uri[Warehouse.VOCABULARY], values,
                                                                   first_dt=dates[0], commit_info=info)
    catalogue = tag_catalogue(inputs.tags, vocabulary=vocabulary).persist()
    tag_rows = item_tags(inputs.items, catalogue=catalogue).persist()
    try:
        versions = {Warehouse.FIELDS.value: write_fields(spark, inputs.fields, uri[Warehouse.VOCABULARY],
                                                         uri[Warehouse.FIELDS], commit_info=info)}
        outputs = plan_outputs(inputs, conf=conf, dates=dates, run_id=run_id, vocabulary=vocabulary,
                               catalogue=catalogue, item_tag_rows=tag_rows)
        for table, (partitions, df) in outputs.items():
            versions[table.value] = delta.write_table(
                df, uri[table], mode="overwrite", partition_by=["dt"],
                replace_partitions=[d.isoformat() for d in partitions], commit_info=info,
            )
    finally:
        for df in (vocabulary, catalogue, tag_rows):
            df.unpersist()
    versions[Warehouse.VOCABULARY.value] = vocabulary_version
    return {"new_vocabulary": new_values, "table_versions": versions}


def plan_outputs(
    inputs: Inputs,
    *,
    conf: FeaturesConf,
    dates: Sequence[dt.date],
    run_id: str,
    vocabulary: DataFrame,
    catalogue: DataFrame,
    item_tag_rows: DataFrame,
) -> dict[Warehouse, tuple[list[dt.date], DataFrame]]:
    """The partitioned tables to write, in that order, each with the dates of the partitions it replaces.

    The quarantine goes first: a run that fails part way through (a lost race, a lost executor)
    has then published no features of a date without the record of the rows it set aside."""
    label_days = [d - DAY for d in dates]
    events = quality.clean_events(inputs.classified)
    return {
        Warehouse.QUARANTINE: (list(dates), quarantine(inputs, dates=dates, window_days=conf.window_days,
                                                       run_id=run_id)),
        Warehouse.USER_FEATURES: (list(dates), user_features(events, inputs, conf=conf, dates=dates,
                                                             vocabulary=vocabulary, item_tag_rows=item_tag_rows)),
        Warehouse.TAGS: (list(dates), tag_snapshots(daily_tag_counts(events, item_tag_rows=item_tag_rows),
                                                    catalogue=catalogue, dates=dates, window_days=conf.window_days)),
        Warehouse.SAMPLES: (label_days, samples(events, conf=conf, catalogue=catalogue, item_tag_rows=item_tag_rows,
                                                label_days=label_days)),
    }


def write_fields(spark: SparkSession, fields: Sequence[FieldDef], vocabulary_uri: str, fields_uri: str, *,
                 commit_info: dict[str, str]) -> int:
    """Overwrite `fields` with the sizes of the newest vocabulary; returns the version committed.

    Two feature jobs at once (nights of two dates) may both add values. The sizes come from the
    vocabulary's latest version, read after the fields version this commit lands on, so a job
    that finishes last never shrinks the sizes another already published ids for: when the other
    job's fields commit came in between, this one reads again.
    """
    def once() -> int:
        read = delta.snapshot(fields_uri)
        latest = delta.read_table(spark, vocabulary_uri)
        sizes = {r["field"]: r["vocab_size"] for r in vocab.vocabulary_sizes(latest).collect()}
        return delta.write_arrow(fields_table(fields, sizes), fields_uri, mode="overwrite", commit_info=commit_info,
                                 based_on=read)

    return delta.retry_on_conflict(once)


class VocabularyUpdate(NamedTuple):
    """The whole vocabulary the job's outputs use (cached), the values it added, and its table version."""

    table: DataFrame
    added: int
    version: int


def update_vocabulary(
    spark: SparkSession, uri: str, values: DataFrame, *, first_dt: dt.date, commit_info: dict[str, str]
) -> VocabularyUpdate:
    """Append the values the vocabulary lacks (next ids); return the whole vocabulary, the count
    added and the version that holds it (this job's append, or the version read when nothing was
    new: not the table's latest, which may be another job's later append).

    The next ids come from the version read, so the append commits only on top of that
    version: when another job's append landed in between, this one reads again and
    recomputes (two appends would otherwise give two values one id). The returned
    vocabulary (the version read plus the rows appended) is cached; the caller unpersists it.
    """

    def once() -> VocabularyUpdate:
        read = delta.snapshot(uri)
        current = (spark.createDataFrame([], vocab.VOCABULARY_SCHEMA) if read.version is None
                   else delta.read_table(spark, uri, read.version))
        new = vocab.new_vocabulary_entries(values, vocabulary=current, first_dt=first_dt).persist()
        try:
            added = new.count()
            version = read.version
            if added or read.version is None:
                version = delta.write_table(new, uri, mode="append", commit_info=commit_info, based_on=read)
            vocabulary = current.unionByName(new).persist()
            vocabulary.count()
        finally:
            new.unpersist()
        return VocabularyUpdate(vocabulary, added, version)

    return delta.retry_on_conflict(once)


def user_features(
    events: DataFrame,
    inputs: Inputs,
    *,
    conf: FeaturesConf,
    dates: Sequence[dt.date],
    vocabulary: DataFrame,
    item_tag_rows: DataFrame,
) -> DataFrame:
    """The user_features rows of `dates`."""
    list_fields = [f for f in inputs.fields if f.kind == "multi"]
    window = {"dates": dates, "window_days": conf.window_days}
    attribute_fields = [f for f in inputs.fields if f.source.startswith("users.")]
    return user_snapshots(
        attribute_ids(inputs.users, fields=attribute_fields, vocabulary=vocabulary),
        activity=window_activity(events, **window),
        entries=window_entries(events, item_values=item_field_values(item_tag_rows, fields=list_fields),
                               half_life_days=conf.decay_half_life_days, **window),
        dates=dates, fields=inputs.fields, max_len=conf.max_multi_len,
    )


def samples(
    events: DataFrame,
    *,
    conf: FeaturesConf,
    catalogue: DataFrame,
    item_tag_rows: DataFrame,
    label_days: Sequence[dt.date],
) -> DataFrame:
    """The samples of `label_days`, plus sampled negatives when the conf asks for them."""
    labelled = label_samples(events, item_tag_rows=item_tag_rows, label_days=label_days)
    if conf.negatives == "none":
        return labelled
    daily = daily_tag_counts(events, item_tag_rows=item_tag_rows)
    ranks = tag_snapshots(daily, catalogue=catalogue, dates=label_days, window_days=conf.window_days)
    negatives = sampled_negatives(labelled, tag_ranks=ranks, method=conf.negatives,
                                  per_user_day=conf.negatives_per_user_day, seed=conf.seed)
    return labelled.unionByName(negatives).select(*SAMPLE_COLUMNS)


def quarantine(inputs: Inputs, *, dates: Sequence[dt.date], window_days: int, run_id: str) -> DataFrame:
    """The quarantine rows of `dates`: each bad row under every run date that read it."""
    all_dates = F.array(*[F.lit(d) for d in dates])
    events = quality.bad_events(inputs.classified).select(
        F.explode(F.when(F.col("always"), all_dates)
                  .otherwise(dates_seeing(F.col("day"), dates=dates, window_days=window_days))).alias("dt"),
        F.lit(EVENTS).alias("source"), "reason", "record",
    )
    dimension = inputs.dimension_bad.select(F.explode(all_dates).alias("dt"), "source", "reason", "record")
    return (
        events.unionByName(dimension)
        .repartition("dt")  # few rows from many small inputs: one file per date
        .select("dt", F.lit(run_id).alias("run_id"), "source", "reason", "record")
    )


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out


def parse_dates(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[dt.date]:
    if args.date and (args.date_from or args.date_to):
        parser.error("give either --date or --from/--to, not both")
    if args.date:
        return [args.date]
    if not (args.date_from and args.date_to):
        parser.error("give --date D, or --from A --to B for a backfill")
    if args.date_from > args.date_to:
        parser.error(f"--from {args.date_from} is after --to {args.date_to}")
    days = (args.date_to - args.date_from).days
    return [args.date_from + i * DAY for i in range(days + 1)]


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0], needs_date=False)
    parser.add_argument("--date", type=iso_date, help="the run date YYYY-MM-DD")
    parser.add_argument("--from", dest="date_from", type=iso_date, help="first run date of a backfill")
    parser.add_argument("--to", dest="date_to", type=iso_date, help="last run date of a backfill")
    parser.add_argument("--as-of", dest="as_of", type=iso_date,
                        help="last day that can have happened (default: today, UTC); later events are future")
    parser.add_argument("--run-id", dest="run_id", help="id recorded in quarantine and commit info")
    args, config = parse_job_args(parser, argv)
    dates = parse_dates(args, parser)
    try:
        as_of = checked_as_of(dates, checked_horizon(args.as_of, dates))
    except ValueError as exc:
        parser.error(str(exc))
    from core.spark import spark_session

    spark = spark_session(config.spark)
    try:
        summary = run(spark, config, dates, run_id=args.run_id, as_of=as_of)
    except (ContractError, TooManyBadRows, delta.ConcurrentCommitError) as exc:
        print(f"features: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
