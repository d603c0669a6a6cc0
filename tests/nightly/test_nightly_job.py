"""The nightly job's exits: a night that cannot run says why in one line, with the stage that failed."""
import datetime as dt

import pytest

from core.config import Paths
from jobs import nightly
from nightly.runlog import read_runs

FUTURE = dt.date(2099, 1, 1)


@pytest.fixture
def paths(tmp_path):
    return Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))


def _argv(paths, *extra):
    return ["--date", FUTURE.isoformat(), *extra, "--set", f"paths.raw={paths.raw}",
            "--set", f"paths.warehouse={paths.warehouse}", "--set", f"paths.models={paths.models}",
            "--set", "spark.master=local[2]"]


def test_a_night_that_has_not_happened_yet_fails_in_one_line_naming_the_stage(spark, paths, capsys):
    assert nightly.main(_argv(paths, "--run-id", "future")) == 1
    today = dt.datetime.now(dt.timezone.utc).date()
    err = capsys.readouterr().err
    assert err == (f"[nightly] {FUTURE}: stage features failed: ValueError: run date {FUTURE} is after today "
                   f"({today}, UTC): that night has not happened yet, and day 2098-12-31 has not ended\n")
    assert [(r["run_id"], r["stage"], r["dt"], r["status"]) for r in read_runs(paths)] == \
        [("future", "features", FUTURE, "failed")]


def test_a_lock_folder_on_an_object_store_fails_in_one_line_before_any_stage(spark, paths, capsys):
    assert nightly.main(_argv(paths, "--set", "paths.locks=s3://bucket/locks")) == 1
    err = capsys.readouterr().err
    assert err == (f"[nightly] {FUTURE}: ConfigError: the run lock needs a filesystem path, not "
                   f"'s3://bucket/locks': set paths.locks to a local or mounted folder that every driver "
                   f"of this pipeline sees\n")
    assert read_runs(paths) == []


def test_a_report_folder_on_an_object_store_fails_in_one_line_before_any_stage(spark, paths, capsys):
    """Its default lies under the warehouse; on a store, os.makedirs made a local folder named 's3:'."""
    assert nightly.main(_argv(paths, "--set", "paths.reports=s3://bucket/wh/_reports")) == 1
    assert capsys.readouterr().err == (
        f"[nightly] {FUTURE}: ConfigError: the night's report needs a filesystem path, not 's3://bucket/wh/_reports': "
        f"set paths.reports to a local or mounted folder\n")
    assert read_runs(paths) == []


def test_a_report_folder_the_night_cannot_write_fails_in_one_line_before_any_stage(spark, paths, tmp_path, capsys):
    """It used to be found after the publish: a traceback, with the night's profiles already live."""
    blocked = tmp_path / "reports"
    blocked.write_text("a file where the folder should be")
    assert nightly.main(_argv(paths, "--set", f"paths.reports={blocked}")) == 1
    assert capsys.readouterr().err == (
        f"[nightly] {FUTURE}: ConfigError: the night's report cannot be written to {blocked}/{FUTURE}: Not a "
        f"directory; set paths.reports to a folder this job can write\n")
    assert read_runs(paths) == [] and blocked.read_text() == "a file where the folder should be"


def test_an_attempt_under_a_reused_run_id_names_only_its_own_failed_stage(spark, paths, capsys):
    assert nightly.main(_argv(paths, "--run-id", "night-1")) == 1  # features fails
    capsys.readouterr()
    # the same run id again, failing before any stage: the first attempt's stage is not this one's
    assert nightly.main(_argv(paths, "--run-id", "night-1", "--set", "paths.locks=s3://bucket/locks")) == 1
    assert capsys.readouterr().err.startswith(f"[nightly] {FUTURE}: ConfigError: the run lock needs a filesystem")
