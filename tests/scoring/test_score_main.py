"""`spark-submit.sh score` entry point: arguments in, a clear message and status 1 on refusal."""
from __future__ import annotations

import pytest

from jobs import score
from tests.scoring.warehouse import D1, make_tags, make_users


def test_main_reports_a_refusal_in_one_line_and_returns_1(world, tmp_path, capsys, monkeypatch):
    world.publish("v1")
    world.day(D1, make_users(3, seed=1), make_tags())
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"paths:\n  raw: {world.paths.raw}\n  warehouse: {world.paths.warehouse}\n"
                    f"  models: {world.paths.models}\n")
    stopped = []

    class Session:  # run() refuses before using Spark; main must still stop the session
        def stop(self):
            stopped.append(1)

    monkeypatch.setattr(score, "spark_session", lambda conf: Session())
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
