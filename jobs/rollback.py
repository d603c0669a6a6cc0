"""./spark-submit.sh rollback --date D | --to-version V: restore published profiles from Delta history.

The user_vectors of each date whose profiles change follow them (`nightly.publish.align_vectors`),
and so does the registry: a model trained for an undone night becomes `rolled_back`
(`nightly.publish.align_models`).
`--date D` holds the per-date lock of the nightly run (`nightly.lock`) while it works, so it
cannot race a publish of D: while a run of D holds the lock it fails at once (exit 3).
`--to-version` changes every date: it refuses while any night or rollback holds a lock (exit 3).
Both refuse while a vacuum runs, and a vacuum while either runs (exit 3): the vacuum would delete
the old files a restore makes live again.
Nothing to roll back, or a --to-version out of range, is one line on stderr and exit 1; so is a
profiles_latest refresh failing after the rollback's commit, naming that commit (rerun to finish).
"""
from __future__ import annotations

import datetime as dt
import sys
import uuid

from core.cli import iso_date, job_parser, parse_job_args
from core.delta import ConcurrentCommitError
from core.spark import spark_session
from nightly.lock import VACUUM_LOCK, RunInProgressError, date_lock, exclusive, held_locks, shared
from nightly.publish import PartlyPublishedError, rollback_date, rollback_to_version


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("undo the publish of a date in effect (and its user_vectors), or restore "
                        "user_tag_profiles to a version", needs_date=False)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--date", type=iso_date, help="undo the publish of this date that is in effect")
    target.add_argument("--to-version", type=int, help="restore the whole table to this Delta version")
    args, config = parse_job_args(parser, argv)
    try:
        with shared(config.paths, VACUUM_LOCK):  # no vacuum deletes the files a restore makes live again
            if args.date is not None:
                with exclusive(config.paths, date_lock(args.date), rollback_id(args.date)):
                    message = rollback_date(spark_session(config.spark), config.paths, args.date)
            else:
                running = held_locks(config.paths)
                if running:
                    raise RunInProgressError("; ".join(f"{path} is held by {who}" for path, who in running.items()))
                message = rollback_to_version(spark_session(config.spark), config.paths, args.to_version)
    except RunInProgressError as exc:
        target = args.date if args.date is not None else f"--to-version {args.to_version}"
        print(f"[rollback] {target}: nothing rolled back: {exc}", file=sys.stderr)
        return 3
    except (ValueError, ConcurrentCommitError, PartlyPublishedError) as exc:  # nothing to roll back, a version
        # out of range, a log that cannot tell, a commit another job won, a refresh after the commit: all say why
        print(f"[rollback] {exc}", file=sys.stderr)
        return 1
    print(f"[rollback] {message}")
    return 0


def rollback_id(date: dt.date) -> str:
    """The holder id the lock file records, e.g. rollback-2026-11-12-1a2b3c4d."""
    return f"rollback-{date.isoformat()}-{uuid.uuid4().hex[:8]}"


if __name__ == "__main__":
    sys.exit(main())
