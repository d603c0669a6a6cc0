"""The doctor job in-process on the local session: executor reports and the path checks."""
import json

import pytest

from jobs import doctor


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
    assert reports and all(set(r) == {"host", "pid", "python", "project_code", "torch", "horovod", "deltalake",
                                      "pyarrow", "petastorm"} for r in reports)


@pytest.mark.parametrize("key", ["raw", "warehouse", "models"])
def test_a_path_that_is_or_sits_under_a_file_is_a_problem(spark, tmp_path, capsys, key):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    for path in (blocker, blocker / "below"):  # the root itself a file; a file in the way of creating it
        code, _, problems = _run(tmp_path, capsys, **{key: str(path)})
        assert code == 1
        assert problems == [f"paths.{key}={path}: {blocker} is a file, not a folder"]
