"""`spark-submit.sh score` entry point: arguments in, a clear message and status 1 on refusal."""
from __future__ import annotations

import os
import re

import pytest

from jobs import score
from nightly.lock import date_lock, exclusive
from tests.scoring.warehouse import D1, make_tags, make_users


def test_main_reports_a_refusal_in_one_line_and_returns_1(spark, world, tmp_path, capsys, monkeypatch):
    world.publish("v1")
    world.day(D1, make_users(3, seed=1), make_tags())
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"paths:\n  raw: {world.paths.raw}\n  warehouse: {world.paths.warehouse}\n"
                    f"  models: {world.paths.models}\n")
    stopped = []
    monkeypatch.setattr(score, "spark_session", lambda conf: spark)
    monkeypatch.setattr(spark, "stop", lambda: stopped.append(1))  # main must stop it; the tests share it
    status = score.main(["--conf", str(conf), "--date", D1.isoformat(), "--set", "score.model_version=v7"])
    assert status == 1 and stopped == [1]
    assert capsys.readouterr().err.strip() == ("score: UnknownModelError: unknown model version 'v7'; "
                                               "available: v1 (published)")


def test_main_rejects_a_bad_setting_before_starting_spark(world, tmp_path, capsys):
    conf = tmp_path / "conf.yaml"
    conf.write_text("paths:\n  raw: r\n  warehouse: w\n  models: m\n")
    with pytest.raises(SystemExit) as stopped:
        score.main(["--conf", str(conf), "--date", D1.isoformat(), "--set", "score.min_score=2"])
    assert stopped.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert ": error: score.min_score is a probability" in last


def test_main_waits_for_no_night_of_the_date_and_scores_nothing_while_it_runs(spark, world, tmp_path, capsys,
                                                                            monkeypatch):
    """The date's lock: a night of D (or a rollback of D) holds it; a standalone score of D would
    race the night's publish or the rollback's commits."""
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"paths:\n  raw: {world.paths.raw}\n  warehouse: {world.paths.warehouse}\n"
                    f"  models: {world.paths.models}\n")
    monkeypatch.setattr(score, "spark_session", lambda conf: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)  # the session is shared with the other tests
    with exclusive(world.paths, date_lock(D1), "2026-11-10-night"):
        status = score.main(["--conf", str(conf), "--date", D1.isoformat()])
    assert status == 3
    assert re.fullmatch(rf"score: nothing scored: another run holds \S+/nightly-{D1}.lock: run 2026-11-10-night "
                        rf"\(pid {os.getpid()} .*", capsys.readouterr().err.strip())
    assert not os.path.exists(f"{world.paths.warehouse}/user_tag_profiles")


def test_main_refuses_a_lock_folder_on_a_store_before_starting_spark(tmp_path, capsys):
    conf = tmp_path / "conf.yaml"
    conf.write_text("paths:\n  raw: s3://b/raw\n  warehouse: s3://b/wh\n  models: /m\n")
    with pytest.raises(SystemExit) as stopped:
        score.main(["--conf", str(conf), "--date", D1.isoformat()])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: the run lock needs a filesystem path, not 's3://b/wh/_locks': set paths.locks to a local or mounted "
        "folder that every driver of this pipeline sees")
