"""Publishing candidate profiles, the `profiles_latest` table, and rollback.

The scoring job writes a candidate partition to staging. Publishing copies it into the
warehouse `user_tag_profiles` as one atomic partition replace, then rewrites
`profiles_latest` (the newest published date only). Each publish commit carries
`job=publish, dt=<date>` in the Delta log, which is what rollback reads.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import delta
from core.config import Paths
from core.tables import Warehouse, staging_uri, warehouse_uri


def profiles_uri(paths: Paths) -> str:
    return warehouse_uri(paths, Warehouse.USER_TAG_PROFILES)


def candidate_uri(paths: Paths) -> str:
    return staging_uri(paths, Warehouse.USER_TAG_PROFILES)


def published_dates(paths: Paths) -> list[dt.date]:
    return [dt.date.fromisoformat(v) for v in delta.partition_values(profiles_uri(paths))]


def previous_published(paths: Paths, date: dt.date) -> dt.date | None:
    earlier = [d for d in published_dates(paths) if d < date]
    return earlier[-1] if earlier else None


def read_profiles(spark: SparkSession, uri: str, date: dt.date, version: int | None = None) -> DataFrame:
    return delta.read_table(spark, uri, version).where(F.col("dt") == F.lit(date))


def publish(spark: SparkSession, paths: Paths, date: dt.date, run_id: str) -> int:
    """Copy the candidate partition of `date` from staging into the warehouse; return the version."""
    candidate = read_profiles(spark, candidate_uri(paths), date)
    version = delta.write_table(
        candidate, profiles_uri(paths), mode="overwrite", partition_by=["dt"],
        replace_partitions=[date.isoformat()], commit_info={"job": "publish", "dt": date.isoformat(), "run_id": run_id},
    )
    refresh_latest(spark, paths)
    return version


def refresh_latest(spark: SparkSession, paths: Paths) -> None:
    """`profiles_latest` holds exactly the newest published date of `user_tag_profiles`.

    Two nights publishing side by side can both refresh it: each copy commits only on top of
    the `profiles_latest` version it started from, and the one that loses the race reads the
    profiles again, so an older night's copy cannot land after a newer one's.
    """
    target = warehouse_uri(paths, Warehouse.PROFILES_LATEST)
    uri = profiles_uri(paths)

    def once() -> None:
        read = delta.snapshot(target)
        source = delta.table_version(uri)
        dates = delta.partition_values(uri, version=source)
        latest = (read_profiles(spark, uri, dt.date.fromisoformat(dates[-1]), source) if dates
                  else delta.read_table(spark, uri, source).limit(0))
        delta.write_table(latest, target, mode="overwrite", based_on=read,
                          commit_info={"job": "refresh_latest", "dt": dates[-1] if dates else ""})

    delta.retry_on_conflict(once)


def rollback_date(spark: SparkSession, paths: Paths, date: dt.date) -> str:
    """Undo the publish of `date` whose rows the partition holds now.

    The partition is restored to what it was just before that publish (or removed, if
    that publish created it), as a new commit: history is kept, and it can be undone too.
    Which publish is in effect is read from the Delta log (`in_effect`), so a publish that a
    rollback or a whole-table restore already undid is never brought back.
    """
    uri = profiles_uri(paths)
    state = in_effect(delta.history(uri), date)
    if state.publish is None:
        raise ValueError(_nothing_to_roll_back(uri, paths, date, state))
    target = state.publish
    if target == 0:  # that publish created the table: before it, there was nothing
        before = delta.read_table(spark, uri).limit(0)
    else:
        before = read_profiles(spark, uri, date, version=target - 1)
    delta.write_table(before, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[date.isoformat()],
                      commit_info={"job": "rollback", "dt": date.isoformat(), "undoes": str(target)})
    refresh_latest(spark, paths)
    return f"rolled back {date}: restored the partition as of version {target - 1} (undoing version {target})"


@dataclass(frozen=True)
class PartitionState:
    """Which publish's rows a date's partition holds (None: none), and what last changed that."""

    publish: int | None
    publishes: tuple[int, ...]  # every publish of the date in the log
    last_change: str


def in_effect(history: list[dict], date: dt.date) -> PartitionState:
    """Replay the Delta log, oldest first, to find the publish whose rows the partition of `date` holds.

    A publish of `date` puts its own rows there; a rollback of `date` undoing version P puts
    back what the partition held at P - 1; a restore to version R puts back what it held at R;
    any other commit leaves the partition as it was.
    """
    day = date.isoformat()
    source: dict[int, object] = {}  # table version -> the publish whose rows dt=day held then (or None)
    publishes, last_change = [], "no commit"

    def at(version: int) -> object:
        return None if version < 0 else source.get(version, _UNKNOWN)

    for entry in sorted(history, key=lambda e: e["version"]):
        version, before = entry["version"], at(entry["version"] - 1)
        if entry.get("dt") == day and entry.get("job") == "publish":
            source[version] = version
            publishes.append(version)
            last_change = f"version {version} (a publish)"
        elif entry.get("dt") == day and entry.get("job") == "rollback":
            source[version] = at(int(entry["undoes"]) - 1)
            last_change = f"version {version} (a rollback undoing version {entry['undoes']})"
        elif entry.get("operation") == "RESTORE":
            to_version = entry.get("operationParameters", {}).get("version")
            source[version] = _UNKNOWN if to_version is None else at(int(to_version))
            if source[version] is not before:
                last_change = f"version {version} (a restore to version {to_version})"
        else:
            source[version] = before
    current = at(max(source)) if source else None
    if current is _UNKNOWN:
        raise ValueError(f"cannot tell which publish of {day} the table holds: the Delta log no longer has the "
                         f"commits that decide it (restore the table with --to-version instead)")
    return PartitionState(publish=current, publishes=tuple(publishes), last_change=last_change)


_UNKNOWN = object()


def _nothing_to_roll_back(uri: str, paths: Paths, date: dt.date, state: PartitionState) -> str:
    if not state.publishes:
        return (f"nothing to roll back for {date}: no publish of that date in {uri}'s history "
                f"(published dates: {', '.join(map(str, published_dates(paths))) or 'none'})")
    return (f"nothing to roll back for {date}: its publishes (versions {', '.join(map(str, state.publishes))}) "
            f"are no longer in effect: {state.last_change} left the partition without any publish's rows")


def rollback_to_version(spark: SparkSession, paths: Paths, version: int) -> str:
    """Restore the whole `user_tag_profiles` table to `version` (a new commit)."""
    uri = profiles_uri(paths)
    current = delta.table_version(uri)
    if current is None:
        raise ValueError(f"no published profiles at {uri}")
    if not 0 <= version < current:
        raise ValueError(f"--to-version must be between 0 and {current - 1} (current version {current})")
    delta.restore(uri, version)
    refresh_latest(spark, paths)
    return f"restored {uri} to version {version} (was {current})"
