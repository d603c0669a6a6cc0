"""`spark-submit.sh sql [--date D] (--query "SELECT ..." | --name NAME --param k=v ... | --list)
[--engine spark|duckdb] [--output out.csv|out.parquet]`: one read-only query over the warehouse.

With `--engine duckdb` no SparkSession is built (`python -m analyst.query` does the same
without launching the JVM at all). See docs/analyst.md.
"""
from __future__ import annotations

from analyst.query import main as run_query


def main(argv: list[str] | None = None) -> int:
    return run_query(argv, default_engine="spark", prog="spark-submit.sh sql")


if __name__ == "__main__":
    raise SystemExit(main())
