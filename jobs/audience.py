"""`spark-submit.sh audience [--date D] --tags t1,t2 [--objective ctr] [--max-rank N] [--min-score S]
--output PATH [--engine spark|duckdb]`: export an audience's user ids for ad targeting.

See `analyst.audience` and docs/analyst.md.
"""
from __future__ import annotations

from analyst.audience import main as run_audience


def main(argv: list[str] | None = None) -> int:
    return run_audience(argv, default_engine="spark", prog="spark-submit.sh audience")


if __name__ == "__main__":
    raise SystemExit(main())
