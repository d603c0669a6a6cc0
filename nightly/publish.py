"""Publishing candidate profiles, the `profiles_latest` table, and rollback.

The scoring job writes a candidate partition to staging. Publishing copies it into the
warehouse `user_tag_profiles` as one atomic partition replace, then rewrites
`profiles_latest` (the newest published date only). Each publish commit carries
`job=publish, dt=<date>, run_id=<run>, model_version=<model>` in the Delta log, which is what
rollback reads; the
nightly's user_vectors commit of the date carries the same run_id, which is how a rollback
finds the vectors that go with the publish it undoes.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import delta, registry
from core.config import Paths
from core.tables import Warehouse, staging_uri, warehouse_uri
from nightly.runlog import finished_nights


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
    return delta.read_table(spark, uri, version, partition={"dt": date}).where(F.col("dt") == F.lit(date))


class PartlyPublishedError(RuntimeError):
    """The profiles of a date are committed (live), but a step after that commit failed (the
    `profiles_latest` refresh, the `user_vectors` write): rerunning the same command finishes it."""


@contextmanager
def after_profiles_commit(date: dt.date | None, uri: str, version: int, model_version: str | None, step: str
                          ) -> Iterator[None]:
    """Any failure inside becomes PartlyPublishedError naming the committed version, so it never
    reads as "nothing was written". `date` None: a commit that changed every date (a restore)."""
    try:
        yield
    except Exception as exc:
        model = f", model {model_version}" if model_version else ""
        profiles = "the profiles" if date is None else f"the profiles of dt={date.isoformat()}"
        raise PartlyPublishedError(
            f"{profiles} are committed ({uri} version {version}{model}), but {step} "
            f"failed: {type(exc).__name__}: {exc}; run the same command again to finish it") from exc


def publish(spark: SparkSession, paths: Paths, date: dt.date, run_id: str, model_version: str | None = None) -> int:
    """Copy the candidate partition of `date` from staging into the warehouse; return the version.
    The commit records `model_version` (the model that scored the candidate), which a later
    rollback reads instead of the rows, whose files the vacuum may have deleted by then. A
    failed `profiles_latest` refresh after the commit is a PartlyPublishedError."""
    candidate = read_profiles(spark, candidate_uri(paths), date)
    info = {"job": "publish", "dt": date.isoformat(), "run_id": run_id}
    uri = profiles_uri(paths)
    version = delta.write_table(
        candidate, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[date.isoformat()],
        commit_info=info if model_version is None else {**info, "model_version": model_version},
    )
    with after_profiles_commit(date, uri, version, model_version, "the profiles_latest refresh"):
        refresh_latest(spark, paths)
    return version


def still_published(paths: Paths, date: dt.date) -> str | None:
    """For a night whose gates failed: None, or a line saying that an earlier attempt's publish of
    `date` is still in effect (an attempt that died after its publish), which the gates did not undo."""
    uri = profiles_uri(paths)
    state = _in_effect_or_none(delta.history(uri), date, PUBLISH_JOBS) if delta.table_exists(uri) else None
    if state is None or state.write is None:
        return None
    known = ", ".join(f"{what} {value}" for what, value in (("run", state.run_id), ("model", state.model_version))
                      if value is not None)
    return (f"dt={date} is still published from version {state.write} of {uri}{f' ({known})' if known else ''}: an "
            f"earlier run of this date published it; `rollback --date {date}` undoes it")


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
        info = {"job": "refresh_latest", "dt": dates[-1] if dates else "", "source": str(source)}
        if dates:  # the newest date's files, copied by the executors
            delta.copy_partition(spark, uri, source, "dt", dates[-1], target, based_on=read, commit_info=info)
        else:
            delta.write_table(delta.read_table(spark, uri, source).limit(0), target, mode="overwrite", based_on=read,
                              commit_info=info)

    delta.retry_on_conflict(once)


def newest_change(history: list[dict]) -> dict:
    """The newest commit of the log that can change rows (a vacuum's own commits cannot); {} when none."""
    changes = [e for e in history if e.get("operation") not in ("VACUUM START", "VACUUM END")]
    return max(changes, key=lambda e: e["version"], default={})


def latest_is_behind(paths: Paths) -> int | None:
    """The version of `user_tag_profiles` that `profiles_latest` was last copied from, when it is
    older than the table's newest change of rows (a job died between its profiles commit and the
    refresh); else None. A `profiles_latest` whose last copy does not say its source counts as in line."""
    current = newest_change(delta.history(profiles_uri(paths))).get("version")
    copies = [e for e in delta.history(warehouse_uri(paths, Warehouse.PROFILES_LATEST))
              if e.get("job") == "refresh_latest"]
    newest = max(copies, key=lambda e: e["version"], default=None)
    if current is None or newest is None or "source" not in newest:
        return None
    source = int(newest["source"])
    return source if source < current else None


# The commits that put a date's rows into user_tag_profiles: the nightly's publish, and a
# standalone `score` into the warehouse (an operator's rescore), which a rollback undoes alike.
PUBLISH_JOBS = ("publish", "score")
VECTOR_JOBS = ("user_vectors", "score")  # the nightly's vectors stage; a standalone score with write_user_vectors


def vectors_uri(paths: Paths) -> str:
    return warehouse_uri(paths, Warehouse.USER_VECTORS)


def rollback_date(spark: SparkSession, paths: Paths, date: dt.date) -> str:
    """Undo the publish of `date` whose rows the partition holds now, and the user_vectors its run wrote.

    The partition is restored to what it was just before that publish (or removed, if
    that publish created it), as a new commit: history is kept, and it can be undone too.
    Which publish is in effect is read from the Delta log (`in_effect`), so a publish that a
    rollback or a whole-table restore already undid is never brought back. The user_vectors of
    `date` follow the profiles (`align_vectors`) in their own commit, made first: a rollback that
    dies between the two commits leaves the publish in effect, so its rerun finds the same
    publish, sees the vectors already restored and finishes with the profiles.
    """
    uri = profiles_uri(paths)
    history = delta.history(uri)
    read_version = history[0]["version"] if history else None  # the newest: what the decision is made on
    newest = newest_change(history)
    copied = latest_is_behind(paths)
    if copied is not None and newest.get("job") == "rollback" and newest.get("dt") == date.isoformat():
        # the rerun of a rollback that died before its refresh: finish it, undo nothing more
        refresh_latest(spark, paths)
        return (f"finished the rollback of {date} (version {newest['version']}, undoing version "
                f"{newest.get('undoes')}): profiles_latest was copied from version {copied}, now from the "
                f"current one; no other publish undone (run it again to undo one more)")
    state = in_effect(history, date)
    if state.write is None:
        raise ValueError(_nothing_to_roll_back(uri, paths, date, state))
    target, undone = _first_attempt(paths, history, date, state)
    change = RunChange(undone=undone, restored=_run_in_effect(_up_to(history, target - 1), date))
    plan = plan_vectors(paths, {date: change})
    check_reachable([(uri, target - 1, date)] + [(vectors_uri(paths), v, d) for d, v in plan.restores.items()])
    # the rows of the publish in effect are the current version's (its own files may be long gone
    # when a rollback put them back)
    if delta.partition_changed(uri, "dt", [date.isoformat()], read_version):
        raise delta.ConcurrentCommitError(f"{uri}: dt={date} changed since version {read_version}, whose history "
                                          f"chose what to undo; nothing was rolled back; run the rollback again")
    models = align_models(spark, paths, {date: ([delta.table_version(uri)], target - 1)})
    vectors = apply_vectors(spark, paths, plan)
    # lands only if nothing published the date since the history was read (a standalone score takes no lock)
    committed = delta.write_table(
        partition_as_of(spark, uri, date, target - 1), uri, mode="overwrite", partition_by=["dt"],
        replace_partitions=[date.isoformat()], replaced_as_of=read_version,
        commit_info={"job": "rollback", "dt": date.isoformat(), "undoes": str(target)})
    with after_profiles_commit(date, uri, committed, None, "the profiles_latest refresh"):
        refresh_latest(spark, paths)
    undoing = (f"undoing version {target}" if target == state.write else
               f"undoing versions {target} to {state.write}: publishes of the same night with model "
               f"{state.model_version} by runs {', '.join(reversed(undone))}, all but the last by an attempt "
               f"that did not finish the night")
    before = _in_effect_or_none(_up_to(history, target - 1), date, PUBLISH_JOBS)
    restored = ("removed the partition, which no publish held before" if before is not None and before.write is None
                else f"restored the partition as of version {target - 1}")
    return f"rolled back {date}: {restored} ({undoing}); user_vectors of {date}: {vectors[date]}{models}"


def _first_attempt(paths: Paths, history: list[dict], date: dt.date, state: PartitionState
                   ) -> tuple[int, tuple[str, ...]]:
    """The publish a rollback of `date` undoes back to, and the runs whose publishes it undoes.

    That is the publish in effect, and before it every publish of the same night that it
    replaced: a nightly publish with the same model whose attempt did not finish its night (no
    report stage of its run succeeded between that publish and the next; the run died after its
    publish, or stopped on a failure after it, and a rerun published the night again). Undoing
    only the rerun would put the dead attempt's rows back, with its model still published."""
    runs, reports = finished_nights(paths, date)
    target, undone = state.write, [state.run_id] if state.run_id else []
    replaced_at = _commit_time(history, state.write)
    while (earlier := _in_effect_or_none(_up_to(history, target - 1), date, PUBLISH_JOBS)) is not None \
            and earlier.write is not None and earlier.run_id in runs and _job(history, earlier.write) == "publish" \
            and state.model_version is not None and earlier.model_version == state.model_version:
        published_at = _commit_time(history, earlier.write)
        if any(published_at <= started < replaced_at for started in reports.get(earlier.run_id, ())):
            break  # that attempt finished its night: a publish of its own
        target, replaced_at = earlier.write, published_at
        if earlier.run_id not in undone:
            undone.append(earlier.run_id)
    return target, tuple(undone)


def _commit_time(history: list[dict], version: int) -> dt.datetime:
    entry = next(e for e in history if e["version"] == version)
    return dt.datetime.fromtimestamp(entry["timestamp"] / 1000, tz=dt.timezone.utc)


def _job(history: list[dict], version: int) -> str | None:
    return next(e for e in history if e["version"] == version).get("job")


def align_models(spark: SparkSession, paths: Paths, changes: dict[dt.date, tuple[list[int], int]],
                 logged: Mapping[tuple[int, str], str] | None = None) -> str:
    """Bring the registry in line with the profiles a rollback puts in effect; say what changed.

    `changes` maps a date to (the versions of its undone publishes, the version its partition is
    restored to); `logged` gives the model a write of the date records in its commit (by version
    and date, `logged_models`), read instead of its rows.
    A model trained for the date that scored an undone publish, and scores none of the restored
    rows, becomes `rolled_back`: a bad night's model must not score the next nights, as after a
    failed gate. A `rolled_back` model trained for the date that scored the restored
    rows (a rollback undone by another) is `published` again. Models of other nights keep their
    status. Done before the rollback's own commits, so a rerun after a crash finds the publish
    still in effect and finishes. Returns the message's part ("" when no model changed)."""
    uri, notes = profiles_uri(paths), []
    for date, (undone, restored) in sorted(changes.items()):
        recorded = {v: (logged or {}).get((v, date.isoformat())) for v in undone}
        before = set().union(*({recorded[v]} if recorded[v] else _models_in(spark, uri, date, v) for v in undone))
        after = _models_in(spark, uri, date, restored)
        rolled, published = registry.ModelStatus.ROLLED_BACK, registry.ModelStatus.PUBLISHED
        changed = [f"model {v}, trained for {date}, is now {rolled.value}" for v in sorted(before - after)
                   if registry.change_status(paths, v, date, published, rolled)]
        changed += [f"model {v}, trained for {date}, is {published.value} again" for v in sorted(after)
                    if registry.change_status(paths, v, date, rolled, published)]
        if changed:
            notes.append("; ".join(changed) + f"; {registry.current_for(paths, date)}")
    return "".join(f"; {note}" for note in notes)


def _models_in(spark: SparkSession, uri: str, date: dt.date, version: int) -> set[str]:
    rows = partition_as_of(spark, uri, date, version).select("model_version").distinct().collect()
    return {r.model_version for r in rows if r.model_version is not None}


def partition_as_of(spark: SparkSession, uri: str, date: dt.date, version: int) -> DataFrame:
    """The rows of `date` at `version` of `uri`; none before the table's first version (-1)."""
    if version < 0:
        return delta.read_table(spark, uri).limit(0)
    return read_profiles(spark, uri, date, version)


@dataclass(frozen=True)
class RunChange:
    """A rollback's change to a date's profiles: the runs whose publishes it undoes (one, for
    `--date`), and the run whose publish it puts back (None: no publish's rows, or a Delta log
    that cannot tell)."""

    undone: tuple[str, ...]
    restored: str | None


class VacuumedVersionError(ValueError):
    """A rollback needs a version whose files the vacuum has deleted."""


def check_reachable(reads: list[tuple[str, int, dt.date | None]]) -> None:
    """Every (table uri, version, date or None for the whole table) a rollback reads still has its
    files; else VacuumedVersionError, before anything changed."""
    for uri, version, date in reads:
        if version < 0:
            continue  # before the table's first version: nothing to read
        gone = delta.missing_files(uri, version, None if date is None else {"dt": date})
        if gone:
            where = "" if date is None else f" (dt={date})"
            raise VacuumedVersionError(
                f"nothing rolled back: version {version} of {uri}{where} needs {len(gone)} file(s) the vacuum has "
                f"deleted, e.g. {gone[0]}; a rollback reaches back only as far as the vacuum window")


@dataclass(frozen=True)
class VectorsPlan:
    """What `apply_vectors` does: the version each date's vectors are restored to, the write it
    undoes, and a note per date."""

    restores: dict[dt.date, int]
    undoes: dict[str, str]
    notes: dict[dt.date, str]


def align_vectors(spark: SparkSession, paths: Paths, changes: dict[dt.date, RunChange]) -> dict[dt.date, str]:
    """Bring the user_vectors of each date in line with the profiles a rollback restores; say what was done.

    Only vectors written by a run being undone are replaced (the pairing is the `run_id` of the
    commits): by the latest vectors of the date that the run of the restored profiles wrote, else
    (that run wrote none, e.g. `score.write_user_vectors` was off) by the partition as it was before
    the undone runs wrote theirs, which removes it when their first write created it. Vectors of
    any other run (a standalone `score`, a night whose publish is not the one undone) are left as
    they are, and the note names them. All the dates change in one commit; a date already in line is not touched, so a
    rerun changes nothing more.
    """
    return apply_vectors(spark, paths, plan_vectors(paths, changes))


def plan_vectors(paths: Paths, changes: dict[dt.date, RunChange]) -> VectorsPlan:
    """`align_vectors`' decisions, from the user_vectors log alone (nothing is read or written)."""
    history = delta.history(vectors_uri(paths))
    restores: dict[dt.date, int] = {}
    undoes: dict[str, str] = {}
    notes: dict[dt.date, str] = {}
    for date, change in sorted(changes.items()):
        try:
            state = in_effect(history, date, writes=VECTOR_JOBS)
        except ValueError as exc:
            notes[date] = f"left as they are: {exc}"
            continue
        version = _latest_write(history, date, change.restored, VECTOR_JOBS)
        if state.write is not None and change.restored is not None and state.run_id == change.restored:
            notes[date] = (f"unchanged: they hold the vectors of run {state.run_id} (version {state.write}), "
                           f"the run of the restored profiles")
        elif state.write is None and version is None:
            notes[date] = "none to restore: the table holds no vectors of the date"
        elif state.write is None or state.run_id in change.undone:
            restores[date] = _before_runs(history, date, state, change.undone) if version is None else version
            undoes[date.isoformat()] = "" if state.write is None else str(state.write)
            notes[date] = _restored_note(history, date, restores[date], state)
        else:
            undone = (f"run {', '.join(change.undone)}" if change.undone
                      else "the run of the undone publish (the profiles' log no longer names it)")
            notes[date] = (f"left as they are: they hold the vectors of run {state.run_id} (version {state.write}, "
                           f"model {state.model_version}), not written by {undone}; check them against the "
                           f"restored profiles, or rerun the night of the date to rewrite both")
    return VectorsPlan(restores, undoes, notes)


def apply_vectors(spark: SparkSession, paths: Paths, plan: VectorsPlan) -> dict[dt.date, str]:
    """Restore the vectors `plan` names, every date in one commit; returns the notes."""
    if plan.restores:
        uri = vectors_uri(paths)
        rows = [partition_as_of(spark, uri, date, version) for date, version in sorted(plan.restores.items())]
        days = [d.isoformat() for d in sorted(plan.restores)]
        delta.write_table(functools.reduce(DataFrame.unionByName, rows), uri, mode="overwrite", partition_by=["dt"],
                          replace_partitions=days,
                          commit_info={"job": "rollback", "dt": ",".join(days), "undoes": json.dumps(plan.undoes),
                                       "restores": json.dumps({d.isoformat(): v for d, v in plan.restores.items()})})
    return plan.notes


def _restored_note(history: list[dict], date: dt.date, version: int, replaced: PartitionState) -> str:
    """What restoring the vectors of `date` as of `version` does, in place of the write `replaced` names."""
    undoing = "" if replaced.write is None else f", undoing version {replaced.write} of run {replaced.run_id}"
    restored = _in_effect_or_none(_up_to(history, version), date, VECTOR_JOBS)
    if restored is None or restored.write is None:
        return f"removed{undoing} (the date had no vectors before the undone runs wrote theirs)"
    return (f"restored the vectors of run {restored.run_id} (version {restored.write}, model "
            f"{restored.model_version}){undoing}")


def _before_runs(history: list[dict], date: dt.date, state: PartitionState, runs: tuple[str, ...]) -> int:
    """The version whose vectors of `date` no run of `runs` wrote, walking back from the write in effect."""
    version = state.write - 1
    while (earlier := _in_effect_or_none(_up_to(history, version), date, VECTOR_JOBS)) is not None \
            and earlier.write is not None and earlier.run_id in runs:
        version = earlier.write - 1
    return version


def _latest_write(history: list[dict], date: dt.date, run_id: str | None, writes: tuple[str, ...]) -> int | None:
    """The newest commit of `writes` for `date` made by `run_id` (None: none, or no run)."""
    if run_id is None:
        return None
    versions = [e["version"] for e in history
                if e.get("job") in writes and e.get("dt") == date.isoformat() and e.get("run_id") == run_id]
    return max(versions, default=None)


def _up_to(history: list[dict], version: int) -> list[dict]:
    """The log as it was at `version` (empty before the first one)."""
    return [e for e in history if e["version"] <= version]


def _in_effect_or_none(history: list[dict], date: dt.date, writes: tuple[str, ...]) -> PartitionState | None:
    try:
        return in_effect(history, date, writes)
    except ValueError:  # the log no longer decides it
        return None


def _run_in_effect(history: list[dict], date: dt.date) -> str | None:
    state = _in_effect_or_none(history, date, PUBLISH_JOBS)
    return None if state is None else state.run_id


@dataclass(frozen=True)
class PartitionState:
    """Which write's rows a date's partition holds (None: none), and what last changed that."""

    write: int | None  # the table version of that write (a publish, for the profiles)
    writes: tuple[int, ...]  # every write of the date in the log
    last_change: str
    run_id: str | None = None  # the commit info of the write in effect
    model_version: str | None = None


def in_effect(history: list[dict], date: dt.date, writes: tuple[str, ...] = PUBLISH_JOBS) -> PartitionState:
    """Replay the Delta log, oldest first, to find the write whose rows the partition of `date` holds.

    A write of `date` (a commit whose `job` is in `writes`: a publish, for the profiles) puts its
    own rows there; a rollback puts back what the partition held at the version it names (a
    profiles rollback undoing version P: P - 1; a vectors rollback: its `restores` per date); a
    restore to version R puts back what it held at R; any other commit leaves the partition as it was.
    """
    day = date.isoformat()
    source: dict[int, object] = {}  # table version -> the write whose rows dt=day held then (or None)
    found, last_change = [], "no commit"

    def at(version: int) -> object:
        return None if version < 0 else source.get(version, _UNKNOWN)

    for entry in sorted(history, key=lambda e: e["version"]):
        version, before, restored = entry["version"], at(entry["version"] - 1), _restored(entry)
        if entry.get("dt") == day and entry.get("job") in writes:
            source[version] = version
            found.append(version)
            last_change = f"version {version} ({'a publish' if entry['job'] == 'publish' else 'a write'})"
        elif day in restored:
            source[version] = at(restored[day])
            last_change = f"version {version} ({_describe_rollback(entry, day)})"
        elif entry.get("operation") == "RESTORE":
            to_version = entry.get("operationParameters", {}).get("version")
            source[version] = _UNKNOWN if to_version is None else at(int(to_version))
            if source[version] is not before:
                last_change = f"version {version} (a restore to version {to_version})"
        else:
            source[version] = before
    current = at(max(source)) if source else None
    if current is _UNKNOWN:
        raise ValueError(f"cannot tell which {writes[0]} of {day} the table holds: the Delta log no longer has the "
                         f"commits that decide it (restore the table with --to-version instead)")
    info = next((e for e in history if e["version"] == current), {}) if current is not None else {}
    return PartitionState(write=current, writes=tuple(found), last_change=last_change,
                          run_id=info.get("run_id"), model_version=info.get("model_version"))


def _restored(entry: dict) -> dict[str, int]:
    """{date: version} for a rollback commit: the partition of each date holds what it held at that version."""
    if entry.get("job") != "rollback":
        return {}
    if "restores" in entry:
        return {day: int(version) for day, version in json.loads(entry["restores"]).items()}
    return {entry["dt"]: int(entry["undoes"]) - 1} if "dt" in entry and "undoes" in entry else {}


def _describe_rollback(entry: dict, day: str) -> str:
    if "restores" in entry:
        return f"a rollback restoring the partition of version {json.loads(entry['restores'])[day]}"
    return f"a rollback undoing version {entry['undoes']}"


_UNKNOWN = object()


def _nothing_to_roll_back(uri: str, paths: Paths, date: dt.date, state: PartitionState) -> str:
    if not state.writes:
        return (f"nothing to roll back for {date}: no publish of that date in {uri}'s history "
                f"(published dates: {', '.join(map(str, published_dates(paths))) or 'none'})")
    return (f"nothing to roll back for {date}: its publishes (versions {', '.join(map(str, state.writes))}) "
            f"are no longer in effect: {state.last_change} left the partition without any publish's rows")


def rollback_to_version(spark: SparkSession, paths: Paths, version: int) -> str:
    """Restore the whole `user_tag_profiles` table to `version` (a new commit), with user_vectors in line.

    Each date whose publish in effect differs between now and `version` gets its user_vectors
    aligned as `rollback --date` does (`align_vectors`), in one commit made before the restore:
    a rerun after a crash between the two finds the same dates, leaves the vectors already
    aligned as they are and restores the profiles.
    """
    uri = profiles_uri(paths)
    current = delta.table_version(uri)
    if current is None:
        raise ValueError(f"no published profiles at {uri}")
    if not 0 <= version < current:
        raise ValueError(f"--to-version must be between 0 and {current - 1} (current version {current})")
    history = delta.history(uri)
    changed = _changed_runs(history, version)
    logged = logged_models(history)
    plan = plan_vectors(paths, {date: change for date, (change, _) in changed.items()})
    check_reachable([(uri, version, None)]
                    + [(uri, v, d) for d, (_, undone) in changed.items() for v in undone
                       if (v, d.isoformat()) not in logged]
                    + [(vectors_uri(paths), v, d) for d, v in plan.restores.items()])
    models = align_models(spark, paths, {date: (undone, version) for date, (_, undone) in changed.items()}, logged)
    vectors = apply_vectors(spark, paths, plan)
    delta.restore(uri, version)
    with after_profiles_commit(None, uri, delta.table_version(uri), None, "the profiles_latest refresh"):
        refresh_latest(spark, paths)
    notes = "; ".join(f"{date}: {note}" for date, note in sorted(vectors.items()))
    return f"restored {uri} to version {version} (was {current}); user_vectors: {notes or 'no date changes publish'}{models}"


def logged_models(history: list[dict]) -> dict[tuple[int, str], str]:
    """{(version, date): model} of the writes of profiles whose commit records the model that scored them."""
    return {(e["version"], e["dt"]): e["model_version"] for e in history
            if e.get("job") in PUBLISH_JOBS and e.get("dt") and e.get("model_version")}


def _changed_runs(history: list[dict], version: int) -> dict[dt.date, tuple[RunChange, list[int]]]:
    """The dates whose publish in effect now differs from the one at `version`, each with the runs
    and the table versions holding the rows of the publishes undone, and the run of the publish
    in effect at `version` (restored). Undone are the publishes after `version` and the publish in
    effect now, which may be older than `version` when a rollback after it brought it back; its
    rows are read from the current version."""
    then = _up_to(history, version)
    current = max((e["version"] for e in history), default=-1)
    changes = {}
    for day in sorted({e["dt"] for e in history if e.get("job") in PUBLISH_JOBS and e.get("dt")}):
        date = dt.date.fromisoformat(day)
        now, before = _in_effect_or_none(history, date, PUBLISH_JOBS), _in_effect_or_none(then, date, PUBLISH_JOBS)
        if now is not None and before is not None and now.write == before.write:
            continue
        restored = before.run_id if before is not None else None
        later = [e for e in history if e.get("job") in PUBLISH_JOBS and e.get("dt") == day and e["version"] > version]
        undone = {e.get("run_id") for e in later} - {restored, None}
        writes = {e["version"] for e in later}
        if now is not None and now.write is not None:
            undone |= {now.run_id} - {restored, None}
            writes = (writes - {now.write}) | {current}  # its rows, live in the current version
        changes[date] = (RunChange(undone=tuple(sorted(undone)), restored=restored), sorted(writes))
    return changes
