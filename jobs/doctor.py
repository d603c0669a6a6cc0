"""./spark-submit.sh doctor [--master URL]: check a cluster before scheduling the nightly run.

Runs one small task per executor core and reports, per executor host and process: the
Python version, where the project's code was imported from (the shipped archive on a
cluster), and the versions of torch, horovod, deltalake and pyarrow. Also checks that
the configured paths (the data roots and staging, reports, locks, petastorm cache, defaults
included) are usable from the driver. Exits non-zero if anything is off.
"""
from __future__ import annotations

import json
import os
import sys

from core.cli import job_parser, parse_job_args
from core.spark import spark_session


def probe_executor(_: object) -> list[dict]:
    import platform
    import socket

    import core
    report = {"host": socket.gethostname(), "pid": os.getpid(), "python": platform.python_version(),
              "project_code": os.path.dirname(os.path.dirname(core.__file__))}
    for name in ("torch", "horovod", "deltalake", "pyarrow", "petastorm"):
        try:
            report[name] = __import__(name).__version__
        except Exception as exc:  # reported, not raised: the point is to see every problem
            report[name] = f"MISSING ({type(exc).__name__}: {exc})"
    return [report]


def check_paths(config) -> list[str]:
    """Every local root a job writes must be a folder, or creatable as one, and writable."""
    paths = config.paths
    roots = {"raw": paths.raw, "warehouse": paths.warehouse, "models": paths.models,
             "staging": paths.staging_root, "reports": paths.reports_root, "locks": paths.locks_root,
             "petastorm_cache": paths.petastorm_root}
    problems = []
    for name, path in roots.items():
        if "://" in path and not path.startswith("file://"):
            continue  # remote storage: checked by the first job that writes
        parent = os.path.abspath(path.removeprefix("file://"))
        while not os.path.exists(parent):  # the nearest existing folder is where it will be created
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):  # nothing can be created in or below a file
            problems.append(f"paths.{name}={path}: {parent} is a file, not a folder")
        elif not os.access(parent, os.W_OK):
            problems.append(f"paths.{name}={path}: {parent} is not writable")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("check executors and paths", needs_date=False)
    args, config = parse_job_args(parser, argv)
    spark = spark_session(config.spark)
    sc = spark.sparkContext
    slots = max(sc.defaultParallelism, 1)
    reports = sc.parallelize(range(slots), slots).mapPartitions(probe_executor).collect()
    seen = {(r["host"], r["pid"]): r for r in reports}
    for report in seen.values():
        print("[doctor] executor " + json.dumps(report, sort_keys=True))
    problems = [f"{k} on {r['host']}:{r['pid']}: {v}" for r in seen.values() for k, v in r.items()
                if isinstance(v, str) and v.startswith("MISSING")]
    problems += check_paths(config)
    print(f"[doctor] master {sc.master}, {len(seen)} executor process(es), {slots} slot(s)")
    for problem in problems:
        print(f"[doctor] PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
