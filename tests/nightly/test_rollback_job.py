"""The rollback job takes the nightly's per-date lock: it cannot race a publish of the same date."""
import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri
from jobs import rollback
from nightly import publish
from nightly.lock import VACUUM_LOCK, date_lock, exclusive

D1 = dt.date(2026, 11, 10)
SCHEMA = "dt date, user_id string, objective string, rank int, tag_id string, score double, model_version string"


@pytest.fixture
def paths(tmp_path):
    return Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))


def _argv(paths, *extra):
    return [*extra, "--set", f"paths.raw={paths.raw}", "--set", f"paths.warehouse={paths.warehouse}",
            "--set", f"paths.models={paths.models}", "--set", "spark.master=local[2]"]


def _publish(spark, paths, tag, run_id):
    df = spark.createDataFrame([(D1, "u1", "ctr", 1, tag, 0.5, "m1")], SCHEMA)
    delta.write_table(df, publish.candidate_uri(paths), mode="overwrite", partition_by=["dt"],
                      replace_partitions=[D1.isoformat()])
    publish.publish(spark, paths, D1, run_id)
    return df


def test_rollback_of_a_date_fails_at_once_while_the_night_holds_its_lock(spark, paths, capsys):
    first = _publish(spark, paths, "t1", "r1")
    _publish(spark, paths, "t2", "r2")
    version = delta.table_version(publish.profiles_uri(paths))
    with exclusive(paths, date_lock(D1), "night-of-d1"):
        assert rollback.main(_argv(paths, "--date", D1.isoformat())) == 3
    err = capsys.readouterr().err
    assert "[rollback] 2026-11-10: nothing rolled back: another run holds " in err
    assert "nightly-2026-11-10.lock: run night-of-d1 (pid " in err
    assert delta.table_version(publish.profiles_uri(paths)) == version  # nothing written
    # with the lock free the same command rolls back, and records itself as the holder meanwhile
    assert rollback.main(_argv(paths, "--date", D1.isoformat())) == 0
    assert "undoing version 1" in capsys.readouterr().out
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), first)


def test_rollback_to_a_version_refuses_while_a_night_of_any_date_holds_its_lock(spark, paths, capsys):
    first = _publish(spark, paths, "t1", "r1")
    _publish(spark, paths, "t2", "r2")
    version = delta.table_version(publish.profiles_uri(paths))
    with exclusive(paths, date_lock(D1 + dt.timedelta(days=3)), "night-of-d4"):  # it restores every date
        assert rollback.main(_argv(paths, "--to-version", "0")) == 3
    err = capsys.readouterr().err
    assert err.startswith("[rollback] --to-version 0: nothing rolled back: ")
    assert "nightly-2026-11-13.lock is held by run night-of-d4" in err
    assert delta.table_version(publish.profiles_uri(paths)) == version
    assert rollback.main(_argv(paths, "--to-version", "0")) == 0
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), first)


@pytest.mark.parametrize("target", [["--date", D1.isoformat()], ["--to-version", "0"]])
def test_rollback_refuses_while_a_vacuum_runs(spark, paths, capsys, target):
    """The vacuum chose what to delete from the versions it read: a RESTORE now would make files of an
    old version live again under it, and it would delete them."""
    _publish(spark, paths, "t1", "r1")
    _publish(spark, paths, "t2", "r2")
    version = delta.table_version(publish.profiles_uri(paths))
    with exclusive(paths, VACUUM_LOCK, "vacuum-1a2b3c4d"):
        assert rollback.main(_argv(paths, *target)) == 3
    named = D1.isoformat() if target[0] == "--date" else "--to-version 0"
    assert capsys.readouterr().err.startswith(f"[rollback] {named}: nothing rolled back: another run holds "
                                              f"{paths.locks_root}/vacuum.lock: run vacuum-1a2b3c4d (pid ")
    assert delta.table_version(publish.profiles_uri(paths)) == version
    assert rollback.main(_argv(paths, *target)) == 0


def test_rollback_to_a_version_with_locks_on_a_store_stops_before_reading_anything(spark, paths, capsys):
    """It cannot see a night's lock there; it used to go ahead as if none was held."""
    _publish(spark, paths, "t1", "r1")
    _publish(spark, paths, "t2", "r2")
    assert rollback.main(_argv(paths, "--to-version", "0", "--set", "paths.locks=s3://bucket/locks")) == 1
    assert capsys.readouterr().err == ("[rollback] the run lock needs a filesystem path, not 's3://bucket/locks': set "
                                       "paths.locks to a local or mounted folder that every driver of this pipeline "
                                       "sees\n")
    assert delta.table_version(publish.profiles_uri(paths)) == 1


VECTORS = "dt date, user_id string, model_version string, user_vector array<float>, vector_mask array<boolean>"


def _vectors(spark, paths, run_id, model, value):
    df = spark.createDataFrame([(D1, "u1", model, [value], [True])], VECTORS)
    delta.write_table(df, publish.vectors_uri(paths), mode="overwrite", partition_by=["dt"],
                      replace_partitions=[D1.isoformat()],
                      commit_info={"job": "user_vectors", "dt": D1.isoformat(), "run_id": run_id, "model_version": model})
    return df


def test_rollback_of_a_date_undoes_the_nights_vectors_then_says_in_one_line_when_nothing_is_left(spark, paths, capsys):
    first = _publish(spark, paths, "t1", "r1")
    first_vectors = _vectors(spark, paths, "r1", "m1", 1.0)
    _publish(spark, paths, "t2", "r2")
    _vectors(spark, paths, "r2", "m1", 2.0)
    assert rollback.main(_argv(paths, "--date", D1.isoformat())) == 0
    out = capsys.readouterr().out
    assert out.startswith("[rollback] rolled back 2026-11-10: restored the partition as of version 0")
    assert "user_vectors of 2026-11-10: restored the vectors of run r1 (version 0, model m1)" in out
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), first)
    assertDataFrameEqual(delta.read_table(spark, publish.vectors_uri(paths)), first_vectors)
    assert rollback.main(_argv(paths, "--date", D1.isoformat())) == 0  # the first night: both partitions go
    assert delta.partition_values(publish.vectors_uri(paths)) == []
    capsys.readouterr()
    assert rollback.main(_argv(paths, "--date", D1.isoformat())) == 1
    err = capsys.readouterr().err
    assert err.startswith("[rollback] nothing to roll back for 2026-11-10: its publishes (versions 0, 1)")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("target", ["--date", "--to-version"])
def test_a_refresh_failing_after_the_rollbacks_commit_names_it_and_a_rerun_finishes(spark, paths, capsys,
                                                                                     monkeypatch, target):
    """The rolled-back profiles are live once committed: a refresh losing its race must not read as
    "nothing was committed", and the same command again brings profiles_latest in line."""
    first = _publish(spark, paths, "t1", "r1")
    _publish(spark, paths, "t2", "r2")
    argv = _argv(paths, target, D1.isoformat() if target == "--date" else "0")

    def lost_race(spark, paths):
        raise delta.ConcurrentCommitError(f"{paths.warehouse}/profiles_latest: another writer committed first; "
                                          f"nothing was committed")

    monkeypatch.setattr(publish, "refresh_latest", lost_race)
    assert rollback.main(argv) == 1
    profiles = publish.profiles_uri(paths)
    which = f"the profiles of dt={D1}" if target == "--date" else "the profiles"
    assert capsys.readouterr().err == (
        f"[rollback] {which} are committed ({profiles} version 2), but the profiles_latest refresh failed: "
        f"ConcurrentCommitError: {paths.warehouse}/profiles_latest: another writer committed first; nothing was "
        f"committed; run the same command again to finish it\n")
    assertDataFrameEqual(publish.read_profiles(spark, profiles, D1), first)
    monkeypatch.undo()
    assert rollback.main(argv) == 0
    assertDataFrameEqual(delta.read_table(spark, warehouse_uri(paths, Warehouse.PROFILES_LATEST)), first)
    assertDataFrameEqual(publish.read_profiles(spark, profiles, D1), first)
