"""./spark-submit.sh vacuum [--retention-hours H] [--force-retention] [--dry-run]: delete files no live version needs.

Removes files of old versions and orphans left by writers that died before their commit, and
the scratch of training runs that died (staging folders, checkpoints, Petastorm copies;
`training.leftovers`). Only files older than the retention window are touched. A write in
progress has not committed its files yet, so they look like orphans: they are safe only while
they are younger than the window. Two guards keep them so:
- the window is at least MIN_RETENTION_HOURS (24 h, longer than any night may run) unless
  `--force-retention` is given, and 168 h (one week) by default;
- vacuum refuses to start while a nightly run, a `rollback --date`, a command-line `score` (the
  date's lock) or a `train` (its version's lock) holds its lock.
It also holds `nightly.lock.VACUUM_LOCK` exclusively, which every rollback shares: a RESTORE
committed while it works would make files live again that it has already chosen to delete.
A `features` backfill started on its own takes no lock: only the window protects it. Time travel
and `rollback --date` reach back as far as the window.
"""
from __future__ import annotations

import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field

from core import delta
from core.cli import job_parser, parse_job_args
from core.tables import Warehouse, staging_uri, warehouse_uri
from nightly.lock import TRAIN_LOCK_PREFIX, VACUUM_LOCK, RunInProgressError, check_lock_folder, exclusive, held_locks
from training import leftovers

DEFAULT_RETENTION_HOURS = 168
MIN_RETENTION_HOURS = 24


@dataclass(frozen=True)
class Vacuumed:
    """What a vacuum removed (or would, with dry_run)."""

    tables: dict[str, int] = field(default_factory=dict)  # table uri: files
    scratch: list[leftovers.Leftover] = field(default_factory=list)  # training scratch folders, deleted
    unregistered: list[leftovers.Leftover] = field(default_factory=list)  # reported, never deleted
    scratch_kept: str = ""  # why the scratch was left this time (a run started while the tables were vacuumed)
    scratch_failed: list[tuple[leftovers.Leftover, str]] = field(default_factory=list)  # not deleted, and why


def run(config, *, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False,
        force_retention: bool = False) -> Vacuumed:
    """Vacuum every warehouse and staging table, and delete training scratch older than the window.

    Raises ValueError for a window below MIN_RETENTION_HOURS without force_retention, and
    RunInProgressError while a nightly, a training run, a rollback or another vacuum holds its lock;
    nothing is deleted then.
    """
    check_retention(retention_hours, force_retention=force_retention or dry_run)
    with ExitStack() as held:
        if not dry_run:
            try:
                held.enter_context(exclusive(config.paths, VACUUM_LOCK, f"vacuum-{uuid.uuid4().hex[:8]}"))
            except RunInProgressError as exc:  # a rollback, or another vacuum
                raise RunInProgressError(f"nothing vacuumed: {exc}") from None
        running = _held(config)
        if running and not dry_run:
            raise RunInProgressError("nothing vacuumed: a run in progress may have written files it has not committed "
                                     "yet; " + "; ".join(f"{path} is held by {who}" for path, who in running.items()))
        removed = {}
        for table in Warehouse:
            for uri in (warehouse_uri(config.paths, table), staging_uri(config.paths, table)):
                if delta.table_exists(uri):
                    removed[uri] = len(delta.vacuum(uri, retention_hours=retention_hours, dry_run=dry_run))
        started = {} if dry_run else _held(config)  # a rerun started meanwhile may resume from an old checkpoint
        scratch, unregistered = leftovers.find(config.paths, retention_hours)  # ages as of now, after the tables
        if started:
            kept = "; ".join(f"{path} is held by {who}" for path, who in started.items())
            return Vacuumed(removed, [], unregistered,
                            scratch_kept=f"a run started while the tables were vacuumed: {kept}")
        if dry_run:
            return Vacuumed(removed, scratch, unregistered)
        failed = leftovers.remove(scratch)
        not_removed = {f.path for f, _ in failed}
        return Vacuumed(removed, [f for f in scratch if f.path not in not_removed], unregistered, scratch_failed=failed)


def _held(config) -> dict[str, str]:
    """The nightly, date and training locks held now, with their holders."""
    return {**held_locks(config.paths), **held_locks(config.paths, prefix=TRAIN_LOCK_PREFIX)}


def check_retention(retention_hours: int, *, force_retention: bool) -> None:
    if retention_hours < 0:
        raise ValueError(f"the retention must be >= 0 hours, got {retention_hours}")
    if retention_hours < MIN_RETENTION_HOURS and not force_retention:
        raise ValueError(f"a retention of {retention_hours} h is below the {MIN_RETENTION_HOURS} h floor: files of a "
                         f"write still in progress, and versions that rollback needs, could be deleted; pass "
                         f"--force-retention only when no job writes and no rollback is needed")


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("vacuum every warehouse and staging Delta table", needs_date=False)
    parser.add_argument("--retention-hours", type=int, default=DEFAULT_RETENTION_HOURS,
                        help=f"keep files younger than this (default {DEFAULT_RETENTION_HOURS}: one week; "
                             f"at least {MIN_RETENTION_HOURS} without --force-retention)")
    parser.add_argument("--force-retention", action="store_true",
                        help=f"allow a window below {MIN_RETENTION_HOURS} h: only when no job is writing")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    args, config = parse_job_args(parser, argv)
    try:
        check_retention(args.retention_hours, force_retention=args.force_retention or args.dry_run)
        check_lock_folder(config.paths)  # it must see the runs in progress
    except ValueError as exc:
        parser.error(str(exc))
    try:
        removed = run(config, retention_hours=args.retention_hours, dry_run=args.dry_run,
                      force_retention=args.force_retention)
    except RunInProgressError as exc:
        print(f"[vacuum] {exc}", file=sys.stderr)
        return 3
    done = "would be removed" if args.dry_run else "removed"
    for uri, count in removed.tables.items():
        print(f"[vacuum] {uri}: {count} file(s) {done}")
    for leftover in removed.scratch:
        print(f"[vacuum] {done}: {leftovers.describe(leftover)}")
    if removed.scratch_kept:
        print(f"[vacuum] training scratch not removed: {removed.scratch_kept}; run vacuum again after it")
    for folder in removed.unregistered:
        print(f"[vacuum] not removed: {leftovers.describe(folder)}; rerun the training of its date to register "
              f"it, or delete it by hand")
    for folder, why in removed.scratch_failed:
        print(f"[vacuum] could not remove {leftovers.describe(folder)}: {why}; it may be partly deleted: delete it "
              f"by hand", file=sys.stderr)
    return 1 if removed.scratch_failed else 0


if __name__ == "__main__":
    sys.exit(main())
