"""./spark-submit.sh rollback --date D | --to-version V: restore published profiles from Delta history."""
from __future__ import annotations

import sys

from core.cli import iso_date, job_parser, parse_job_args
from core.spark import spark_session
from nightly.publish import rollback_date, rollback_to_version


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("undo the latest publish of a date, or restore user_tag_profiles to a version",
                        needs_date=False)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--date", type=iso_date, help="undo the most recent publish of this date")
    target.add_argument("--to-version", type=int, help="restore the whole table to this Delta version")
    args, config = parse_job_args(parser, argv)
    spark = spark_session(config.spark)
    if args.date is not None:
        message = rollback_date(spark, config.paths, args.date)
    else:
        message = rollback_to_version(spark, config.paths, args.to_version)
    print(f"[rollback] {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
