"""./spark-submit.sh nightly --date D: the whole night, safely."""
from __future__ import annotations

import datetime as dt
import sys

from core.cli import job_parser, parse_job_args
from core.config import Paths
from core.delta import ConcurrentCommitError
from core.spark import spark_session
from nightly.gates import QualityGateError
from nightly.lock import RunInProgressError
from nightly.night import new_run_id, run_night
from nightly.publish import PartlyPublishedError
from nightly.runlog import read_runs
from training.errors import TrainingError


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("features -> train -> score -> quality gates -> publish -> vectors -> report, for one date")
    parser.add_argument("--run-id", default=None, help="an id for this run (default: <date>-<random>)")
    args, config = parse_job_args(parser, argv)
    spark = spark_session(config.spark)
    run_id = args.run_id or new_run_id(args.date)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        result = run_night(spark, config, args.date, run_id=run_id)
    except (QualityGateError, RunInProgressError) as exc:
        print(f"[nightly] {args.date}: {exc}", file=sys.stderr)
        return 3
    except (ValueError, TrainingError, ConcurrentCommitError, PartlyPublishedError) as exc:  # bad raw data, a
        # setting, no model to score with, a commit another job won, a refresh failing after the publish
        print(f"[nightly] {args.date}: {failed_stage(config.paths, run_id, started)}{type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    print(f"[nightly] {args.date}: published with model {result.model_version}; report {result.report_path}")
    return 0


def failed_stage(paths: Paths, run_id: str, since: dt.datetime) -> str:
    """`stage S failed: ` for the stage of `run_id` that the `runs` table records as failed from `since`
    on ("" when none did: the attempt failed before its first stage; an earlier attempt under a
    reused --run-id does not count)."""
    failed = [r["stage"] for r in read_runs(paths)
              if r["run_id"] == run_id and r["status"] == "failed" and r["started_at"] >= since]
    return f"stage {failed[-1]} failed: " if failed else ""


if __name__ == "__main__":
    sys.exit(main())
