"""`spark-submit.sh <job> [--conf F] [--date D] [--set k=v ...] [--master M] [-- spark-submit options]`.

Dispatches to `jobs/<job>.py:main` through Spark's own `spark-submit`. The master is
`--master`, else `$SPARK_MASTER`, else the config's `spark.master`; with a cluster master the
project's code is zipped and shipped to the executors with `--py-files`, as on any cluster.
The project's own files are found by absolute path; relative paths in the job's arguments
and configuration stay relative to the caller's working directory, which the driver keeps.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
import zipfile
from pathlib import Path

import yaml

from core.cli import DEFAULT_CONF
from core.config import ConfigError, SparkConf, load_config
from core.spark import prepare_environment

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("analyst", "core", "features", "jobs", "mvke", "nightly", "scoring", "synthetic", "training")
JOBS_DIR = ROOT / "jobs"


def available_jobs() -> list[str]:
    return sorted(p.stem for p in JOBS_DIR.glob("*.py") if not p.stem.startswith("_"))


def usage() -> str:
    return (f"usage: spark-submit.sh <job> [--conf FILE] [--date YYYY-MM-DD] [--set key=value ...] "
            f"[--master URL] [-- spark-submit options]\njobs: {', '.join(available_jobs())}")


def usage_error(message: str) -> SystemExit:
    """Exit status 2, as every job's own usage errors: the usage, then the error, on stderr."""
    print(f"{usage()}\nspark-submit.sh: error: {message}", file=sys.stderr)
    return SystemExit(2)


def split_argv(argv: list[str]) -> tuple[str, list[str], str | None, list[str]]:
    """(job, job arguments, master or None, extra spark-submit options)."""
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0)
    if not argv:
        raise usage_error("a job is required")
    job, rest = argv[0], argv[1:]
    if job not in available_jobs():
        raise usage_error(f"unknown job {job!r}; available jobs: {', '.join(available_jobs())}")
    extra: list[str] = []
    if "--" in rest:
        cut = rest.index("--")
        rest, extra = rest[:cut], rest[cut + 1:]
    master = os.environ.get("SPARK_MASTER") or None
    job_args: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] == "--master":
            if i + 1 >= len(rest):
                raise usage_error("--master needs a URL")
            master = rest[i + 1]
            i += 2
        elif rest[i].startswith("--master="):
            master = rest[i].split("=", 1)[1]
            i += 1
        else:
            job_args.append(rest[i])
            i += 1
    return job, job_args, master, extra


def code_archive(target: Path) -> Path:
    """Zip the project's packages for executors that do not share this checkout. Each call writes its
    own temporary file and renames it into place: submits started together (nights of several dates)
    each ship a whole archive."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            for path in sorted((ROOT / package).rglob("*.py")):
                archive.write(path, path.relative_to(ROOT).as_posix())
    tmp.replace(target)
    return target


def configured_spark(job_args: list[str]) -> SparkConf | None:
    """The `spark` section of the config the job will load (its --conf and --set), or None when that
    config cannot be loaded: the job itself then says why, as a usage error."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--conf", default=str(DEFAULT_CONF))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args, _ = parser.parse_known_args(job_args)
    try:
        return load_config(args.conf, args.overrides).spark
    except (ConfigError, yaml.YAMLError):
        return None


def _given(extra: list[str], flag: str, key: str) -> bool:
    """Whether the spark-submit options already set `flag` (`--driver-memory`) or its `--conf key=...`."""
    return any(o == flag or o.startswith(f"{flag}=") or o.startswith(f"{key}=") or o.startswith(f"--conf={key}=")
               for o in extra)


def submit_command(job: str, job_args: list[str], master: str | None, extra: list[str]) -> list[str]:
    """spark-submit's command line. The master is --master, else $SPARK_MASTER, else the config's
    `spark.master`; the driver's and executors' memory are the config's `spark.driver_memory` and
    `spark.executor_memory`, where it sets them and the spark-submit options do not (the driver's
    JVM is started by spark-submit, so a session cannot set its own memory)."""
    spark = configured_spark(job_args)
    spark_submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent)) or "spark-submit"
    master = master or (spark.master if spark else None) or "local[*]"
    memory = []
    for flag, key, value in (("--driver-memory", "spark.driver.memory", spark and spark.driver_memory),
                             ("--executor-memory", "spark.executor.memory", spark and spark.executor_memory)):
        if value and not _given(extra, flag, key):
            memory += [flag, value]
    command = [spark_submit, "--master", master, *memory,
               "--conf", f"spark.pyspark.python={os.environ['PYSPARK_PYTHON']}",
               "--conf", f"spark.pyspark.driver.python={os.environ['PYSPARK_DRIVER_PYTHON']}",
               "--conf", "spark.driver.extraJavaOptions=-Dlog4j2.level=warn"]
    if not master.startswith("local"):
        command += ["--py-files", str(code_archive(ROOT / "build" / "mvke_code.zip"))]
    return [*command, *extra, str(ROOT / "core" / "run_job.py"), job, *job_args]


def main(argv: list[str] | None = None) -> None:
    prepare_environment()
    job, job_args, master, extra = split_argv(list(sys.argv[1:] if argv is None else argv))
    command = submit_command(job, job_args, master, extra)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
