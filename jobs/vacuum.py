"""./spark-submit.sh vacuum [--retention-hours H] [--dry-run]: delete files no live version needs.

Removes files of old versions and orphans left by writers that died before their commit.
Only files older than the retention window are touched, so a write in flight (whose
files are new and not yet committed) is never deleted; time travel works within it.
"""
from __future__ import annotations

import sys

from core import delta
from core.cli import job_parser, parse_job_args
from core.tables import Warehouse, staging_uri, warehouse_uri

DEFAULT_RETENTION_HOURS = 168


def run(config, *, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False) -> dict[str, int]:
    removed = {}
    for table in Warehouse:
        for uri in (warehouse_uri(config.paths, table), staging_uri(config.paths, table)):
            if delta.table_exists(uri):
                removed[uri] = len(delta.vacuum(uri, retention_hours=retention_hours, dry_run=dry_run))
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("vacuum every warehouse and staging Delta table", needs_date=False)
    parser.add_argument("--retention-hours", type=int, default=DEFAULT_RETENTION_HOURS,
                        help=f"keep files younger than this (default {DEFAULT_RETENTION_HOURS}: one week)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    args, config = parse_job_args(parser, argv)
    if args.retention_hours < 1 and not args.dry_run:
        parser.error("--retention-hours must be >= 1: a shorter window could delete a write in flight")
    for uri, count in run(config, retention_hours=args.retention_hours, dry_run=args.dry_run).items():
        print(f"[vacuum] {uri}: {count} file(s) {'would be ' if args.dry_run else ''}removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
