"""./spark-submit.sh nightly --date D: the whole night, safely."""
from __future__ import annotations

import sys

from core.cli import job_parser, parse_job_args
from core.spark import spark_session
from nightly.gates import QualityGateError
from nightly.lock import RunInProgressError
from nightly.night import run_night


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("features -> train -> score -> quality gates -> publish -> vectors -> report, for one date")
    parser.add_argument("--run-id", default=None, help="an id for this run (default: <date>-<random>)")
    args, config = parse_job_args(parser, argv)
    spark = spark_session(config.spark)
    try:
        result = run_night(spark, config, args.date, run_id=args.run_id)
    except (QualityGateError, RunInProgressError) as exc:
        print(f"[nightly] {args.date}: {exc}", file=sys.stderr)
        return 3
    print(f"[nightly] {args.date}: published with model {result.model_version}; report {result.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
