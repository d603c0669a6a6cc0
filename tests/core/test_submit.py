"""spark-submit.sh run from another directory: relative paths are the caller's, as with mvke-submit."""
import datetime as dt
import subprocess
from pathlib import Path

import pyarrow as pa

from core import delta

ROOT = Path(__file__).resolve().parents[2]


def test_relative_conf_and_paths_resolve_against_the_callers_directory(tmp_path):
    caller = tmp_path / "oncall"
    table = caller / "wh" / "user_tag_profiles"
    delta.write_arrow(pa.table({"dt": [dt.date(2026, 11, 4)], "user_id": ["u0"]}), str(table), mode="overwrite")
    (table / "orphan.parquet").write_bytes(b"left by a dead writer")
    (caller / "conf.yaml").write_text("paths:\n  raw: r\n  warehouse: not-this-one\n  models: m\n")
    done = subprocess.run([str(ROOT / "spark-submit.sh"), "vacuum", "--conf", "conf.yaml",
                           "--set", "paths.warehouse=wh", "--dry-run", "--retention-hours", "0", "--master", "local[1]"],
                          cwd=caller, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"[vacuum] {table}: 1 file(s) would be removed" in done.stdout, done.stdout  # resolved where it ran
    assert (table / "orphan.parquet").exists()
    assert not (ROOT / "wh").exists() and not (ROOT / "not-this-one").exists()


def test_submits_started_together_each_ship_a_whole_code_archive(tmp_path):
    """They shared one temporary file: all but one failed to rename it, or shipped a zip two wrote into."""
    import zipfile
    from concurrent.futures import ThreadPoolExecutor

    from core.submit import PACKAGES, code_archive

    target = tmp_path / "build" / "mvke_code.zip"
    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(lambda _: code_archive(target), range(4)))
    assert built == [target] * 4
    expected = sorted(path.relative_to(ROOT).as_posix()
                      for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == expected
    assert [p.name for p in target.parent.iterdir()] == ["mvke_code.zip"]


def test_the_configs_master_and_memory_reach_spark_submit_unless_its_options_set_them(tmp_path, monkeypatch):
    """A session cannot size the JVM spark-submit already started: spark.driver_memory (and the
    master, and executor memory) of the config went nowhere, and `make demo` ran on 1g."""
    from core.spark import prepare_environment
    from core.submit import split_argv, submit_command

    prepare_environment()
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    conf = tmp_path / "prod.yaml"
    conf.write_text("paths: {raw: /r, warehouse: /w, models: /m}\n"
                    "spark: {master: 'spark://m:7077', driver_memory: 6g, executor_memory: 10g}\n")

    def options(job_args, master=None, extra=()):
        argv = ["doctor", *job_args, *(["--master", master] if master else []), "--", *extra]
        command = submit_command(*split_argv(argv))
        run_job = command.index(str(ROOT / "core" / "run_job.py"))
        given = command[1:run_job]
        return {flag: given[given.index(flag) + 1] for flag in ("--master", "--driver-memory", "--executor-memory")
                if flag in given}, command[run_job + 1:]

    job = ["--conf", str(conf)]
    assert options(job) == ({"--master": "spark://m:7077", "--driver-memory": "6g", "--executor-memory": "10g"},
                            ["doctor", *job])
    assert options([*job, "--set", "spark.driver_memory=7g"], "yarn", ["--executor-memory", "3g"])[0] == {
        "--master": "yarn", "--driver-memory": "7g", "--executor-memory": "3g"}
    assert options(job, "local[1]", ["--conf", "spark.driver.memory=2g"])[0] == {
        "--master": "local[1]", "--executor-memory": "10g"}
    # a config the job cannot load: spark-submit's defaults, and the job reports the config (exit 2)
    assert options(["--conf", str(tmp_path / "missing.yaml")])[0] == {"--master": "local[*]"}
    # memory the config does not set stays the site's (spark-defaults.conf, --properties-file)
    bare = tmp_path / "bare.yaml"
    bare.write_text("paths: {raw: /r, warehouse: /w, models: /m}\n")
    assert options(["--conf", str(bare)])[0] == {"--master": "local[*]"}
    monkeypatch.setenv("SPARK_MASTER", "spark://env:7077")
    assert options(job)[0]["--master"] == "spark://env:7077"


def test_the_dispatchers_usage_errors_exit_2_and_its_help_0():
    """A scheduler tells a typo (2) from a failed job (1); the dispatcher's own errors exited 1."""
    from core.submit import available_jobs

    usage = ("usage: spark-submit.sh <job> [--conf FILE] [--date YYYY-MM-DD] [--set key=value ...] [--master URL] "
             f"[-- spark-submit options]\njobs: {', '.join(available_jobs())}\n")
    for argv, error in (([], "a job is required"),
                        (["nosuch"], f"unknown job 'nosuch'; available jobs: {', '.join(available_jobs())}"),
                        (["vacuum", "--master"], "--master needs a URL")):
        done = subprocess.run([str(ROOT / "spark-submit.sh"), *argv], capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", f"{usage}spark-submit.sh: error: {error}\n")
    done = subprocess.run([str(ROOT / "spark-submit.sh"), "--help"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, usage, "")
