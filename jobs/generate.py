"""`spark-submit.sh generate [--conf F] [--set k=v ...]`: write synthetic raw tables under paths.raw."""
from __future__ import annotations

from core.cli import job_parser, parse_job_args
from core.spark import spark_session
from synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("Write synthetic behaviour logs (events, items, tags, users, ground_truth).",
                        needs_date=False)
    _, config = parse_job_args(parser, argv)
    spark = spark_session(config.spark)
    try:
        summary = generate(spark, config.generate, config.paths)
    finally:
        spark.stop()
    print(f"synthetic raw tables under {config.paths.raw} (seed {config.generate.seed}):")
    for table, rows in summary.rows.items():
        print(f"  {table:<13} {rows:>12,d} rows")
    print("  events by type: " + ", ".join(f"{k} {v:,d}" for k, v in summary.events_by_type.items()))
    print(f"  CTR (clicks/impressions) {summary.click_through_rate:.4f}, "
          f"CVR (conversions/clicks) {summary.conversion_rate:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
