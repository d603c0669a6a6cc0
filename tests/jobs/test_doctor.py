"""The doctor job in-process on the local session: executor reports and the path checks."""
import json
import os
import platform
import socket
from pathlib import Path

import pytest

from jobs import doctor

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, capsys, **paths: str) -> tuple[int, list[dict], list[str]]:
    """Run doctor with paths under tmp_path (overridden by `paths`): (exit code, executor reports, problems)."""
    settings = {"raw": tmp_path / "raw", "warehouse": tmp_path / "wh", "models": tmp_path / "models", **paths}
    code = doctor.main([f"--set=paths.{k}={v}" for k, v in settings.items()] + ["--set=spark.master=local[2]"])
    out, err = capsys.readouterr()
    reports = [json.loads(line.removeprefix("[doctor] executor ")) for line in out.splitlines()
               if line.startswith("[doctor] executor ")]
    problems = [line.removeprefix("[doctor] PROBLEM ") for line in err.splitlines()
                if line.startswith("[doctor] PROBLEM ")]
    return code, reports, problems


def test_a_healthy_setup_passes_and_reports_every_executor_process(spark, tmp_path, capsys):
    code, reports, problems = _run(tmp_path, capsys)
    assert (code, problems) == (0, [])
    # every Python worker of this local session runs this interpreter and this checkout
    here = {"host": socket.gethostname(), "python": platform.python_version(), "project_code": str(ROOT),
            **{name: __import__(name).__version__ for name in ("torch", "horovod", "deltalake", "pyarrow", "petastorm")}}
    assert reports and [{k: v for k, v in r.items() if k != "pid"} for r in reports] == [here] * len(reports)
    assert len({r["pid"] for r in reports}) == len(reports) and os.getpid() not in {r["pid"] for r in reports}


@pytest.mark.parametrize("key", ["raw", "warehouse", "models"])
def test_a_path_that_is_or_sits_under_a_file_is_a_problem(spark, tmp_path, capsys, key):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    for path in (blocker, blocker / "below"):  # the root itself a file; a file in the way of creating it
        code, _, problems = _run(tmp_path, capsys, **{key: str(path)})
        assert code == 1
        # the default staging, reports and locks live in the warehouse, the petastorm cache in models
        derived = {"warehouse": ["staging", "reports", "locks"], "models": ["petastorm_cache"]}.get(key, [])
        defaults = {"staging": "_staging", "reports": "_reports", "locks": "_locks",
                    "petastorm_cache": "_petastorm_cache"}
        assert problems == [f"paths.{key}={path}: {blocker} is a file, not a folder"] + [
            f"paths.{name}={path}/{defaults[name]}: {blocker} is a file, not a folder" for name in derived]


@pytest.mark.parametrize("key", ["staging", "reports", "locks", "petastorm_cache"])
def test_the_other_roots_jobs_write_are_checked_too(spark, tmp_path, capsys, key):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    code, _, problems = _run(tmp_path, capsys, **{key: str(blocker / key)})
    assert code == 1
    assert problems == [f"paths.{key}={blocker / key}: {blocker} is a file, not a folder"]


def test_the_default_roots_beside_the_warehouse_are_checked_where_they_will_be(spark, tmp_path, capsys):
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / "_locks").write_text("a file where the default locks folder goes")
    code, _, problems = _run(tmp_path, capsys)
    assert code == 1
    assert problems == [f"paths.locks={tmp_path}/wh/_locks: {tmp_path}/wh/_locks is a file, not a folder"]
