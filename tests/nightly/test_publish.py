import contextlib
import datetime as dt
import os

import pytest
from pyspark.testing import assertDataFrameEqual

from core import delta, registry
from core.config import Paths
from core.registry import ModelStatus
from core.tables import Warehouse, warehouse_uri
from nightly import publish, runlog
from tests.racing import commits_first

D0, D1, D2 = dt.date(2026, 11, 9), dt.date(2026, 11, 10), dt.date(2026, 11, 11)
SCHEMA = "dt date, user_id string, objective string, rank int, tag_id string, score double, model_version string"


@pytest.fixture
def paths(tmp_path):
    return Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))


def _stage(spark, paths, rows):
    df = spark.createDataFrame(rows, SCHEMA)
    date = rows[0][0]
    delta.write_table(df, publish.candidate_uri(paths), mode="overwrite", partition_by=["dt"],
                      replace_partitions=[date.isoformat()])
    return df


def _latest(spark, paths):
    return delta.read_table(spark, warehouse_uri(paths, Warehouse.PROFILES_LATEST))


def test_publish_copies_the_candidate_and_latest_follows_the_newest_date(spark, paths):
    first = _stage(spark, paths, [(D1, "u1", "ctr", 1, "t1", 0.9, "m1")])
    publish.publish(spark, paths, D1, "r1")
    second = _stage(spark, paths, [(D2, "u1", "ctr", 1, "t2", 0.8, "m1"), (D2, "u2", "ctr", 1, "t1", 0.7, "m1")])
    publish.publish(spark, paths, D2, "r2")
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), first.union(second))
    assertDataFrameEqual(_latest(spark, paths), second)
    assert publish.previous_published(paths, D2) == D1
    assert publish.previous_published(paths, D1) is None
    # republishing the older date does not move latest back
    publish.publish(spark, paths, D1, "r3")
    assertDataFrameEqual(_latest(spark, paths), second)


def test_a_refresh_failing_after_the_publish_commit_says_the_profiles_are_live(spark, paths, monkeypatch):
    """The night's exit message must not read as "nothing published": D's profiles landed, and a
    rerun of the night brings profiles_latest to them."""
    staged = _stage(spark, paths, [(D1, "u1", "ctr", 1, "t1", 0.9, "m1")])
    real = publish.refresh_latest

    def lost(spark, paths):
        raise delta.ConcurrentCommitError("profiles_latest: another writer committed first; nothing was committed")

    monkeypatch.setattr(publish, "refresh_latest", lost)
    with pytest.raises(publish.PartlyPublishedError) as failed:
        publish.publish(spark, paths, D1, "r1", "m1")
    assert str(failed.value) == (
        f"the profiles of dt={D1} are committed ({publish.profiles_uri(paths)} version 0, model m1), but the "
        f"profiles_latest refresh failed: ConcurrentCommitError: profiles_latest: another writer committed first; "
        f"nothing was committed; run the same command again to finish it")
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), staged)
    assert not delta.table_exists(warehouse_uri(paths, Warehouse.PROFILES_LATEST))
    monkeypatch.setattr(publish, "refresh_latest", real)
    publish.publish(spark, paths, D1, "r1-again", "m1")
    assertDataFrameEqual(_latest(spark, paths), staged)


def test_rollback_restores_the_previous_publish_then_removes_the_first(spark, paths):
    v1 = _stage(spark, paths, [(D1, "u1", "ctr", 1, "t1", 0.9, "m1")])
    publish.publish(spark, paths, D1, "r1")
    _stage(spark, paths, [(D1, "u1", "ctr", 1, "t9", 0.1, "m2")])
    publish.publish(spark, paths, D1, "r2")
    message = publish.rollback_date(spark, paths, D1)
    assert "undoing version" in message
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), v1)
    assertDataFrameEqual(_latest(spark, paths), v1)
    publish.rollback_date(spark, paths, D1)
    assert publish.published_dates(paths) == []
    with pytest.raises(ValueError, match="nothing to roll back for 2026-11-10"):
        publish.rollback_date(spark, paths, D1)


def test_rollback_to_version_restores_the_whole_table(spark, paths):
    v1 = _stage(spark, paths, [(D1, "u1", "ctr", 1, "t1", 0.9, "m1")])
    publish.publish(spark, paths, D1, "r1")
    _stage(spark, paths, [(D2, "u1", "ctr", 1, "t2", 0.5, "m1")])
    publish.publish(spark, paths, D2, "r2")
    publish.rollback_to_version(spark, paths, 0)
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), v1)
    assertDataFrameEqual(_latest(spark, paths), v1)
    with pytest.raises(ValueError, match="--to-version must be between 0 and 1"):
        publish.rollback_to_version(spark, paths, 5)


def _published(spark, paths):
    return delta.read_table(spark, publish.profiles_uri(paths))


def test_rollback_of_a_date_refuses_when_a_restore_already_removed_its_publishes(spark, paths):
    a1 = _stage(spark, paths, [(D1, "u1", "ctr", 1, "A1", 0.5, "m1")])
    publish.publish(spark, paths, D1, "r1")  # version 0
    _stage(spark, paths, [(D2, "u1", "ctr", 1, "B1", 0.5, "m1")])
    publish.publish(spark, paths, D2, "r2")  # version 1
    _stage(spark, paths, [(D2, "u1", "ctr", 1, "B2", 0.5, "m1")])
    publish.publish(spark, paths, D2, "r3")  # version 2
    publish.rollback_to_version(spark, paths, 0)  # version 3: only D1 A1 is left
    with pytest.raises(ValueError, match=r"nothing to roll back for 2026-11-11: its publishes \(versions 1, 2\) "
                                         r"are no longer in effect: version 3 \(a restore to version 0\) "
                                         r"left the partition without any publish's rows"):
        publish.rollback_date(spark, paths, D2)
    assert delta.table_version(publish.profiles_uri(paths)) == 3  # nothing written
    assertDataFrameEqual(_published(spark, paths), a1)
    assertDataFrameEqual(_latest(spark, paths), a1)


def test_rollback_of_a_date_undoes_the_publish_a_restore_brought_back(spark, paths):
    a1 = _stage(spark, paths, [(D1, "u1", "ctr", 1, "A1", 0.5, "m1")])
    publish.publish(spark, paths, D1, "r1")  # version 0
    b1 = _stage(spark, paths, [(D2, "u1", "ctr", 1, "B1", 0.5, "m1")])
    publish.publish(spark, paths, D2, "r2")  # version 1
    _stage(spark, paths, [(D2, "u1", "ctr", 1, "B2", 0.5, "m1")])
    publish.publish(spark, paths, D2, "r3")  # version 2
    publish.rollback_to_version(spark, paths, 1)  # version 3: D2 holds B1 (the publish of version 1) again
    assertDataFrameEqual(_published(spark, paths), a1.union(b1))
    message = publish.rollback_date(spark, paths, D2)
    assert message == ("rolled back 2026-11-11: removed the partition, which no publish held before (undoing "
                       "version 1); user_vectors of 2026-11-11: none to restore: the table holds no vectors of the "
                       "date")
    assertDataFrameEqual(_published(spark, paths), a1)
    assertDataFrameEqual(_latest(spark, paths), a1)
    # a publish after the restore is the one in effect, and is undone to the restored state
    b3 = _stage(spark, paths, [(D2, "u1", "ctr", 1, "B3", 0.5, "m1")])
    publish.publish(spark, paths, D2, "r4")  # version 5
    assertDataFrameEqual(_published(spark, paths), a1.union(b3))
    publish.rollback_date(spark, paths, D2)
    assertDataFrameEqual(_published(spark, paths), a1)
    with pytest.raises(ValueError, match=r"nothing to roll back for 2026-11-11: its publishes \(versions 1, 2, 5\) "
                                         r"are no longer in effect: version 6 \(a rollback undoing version 5\)"):
        publish.rollback_date(spark, paths, D2)


# user_vectors follow a rollback: the nightly writes them after its publish, tagged with the same run_id.

VECTORS = "dt date, user_id string, model_version string, user_vector array<float>, vector_mask array<boolean>"


def _night(spark, paths, date, tag, run_id, model, vectors=True):
    """A night as `nightly.night` leaves it: the publish of `date`, then (if `vectors`) its user_vectors."""
    profiles = _stage(spark, paths, [(date, "u1", "ctr", 1, tag, 0.5, model)])
    publish.publish(spark, paths, date, run_id, model)
    written = _write_vectors(spark, paths, date, run_id, model) if vectors else None
    return profiles, written


def _write_vectors(spark, paths, date, run_id, model, job="user_vectors"):
    """The user_vectors partition of `date`, committed as `jobs.score.write_user_vectors` commits it."""
    seed = float(sum(map(ord, run_id)))
    df = spark.createDataFrame([(date, "u1", model, [seed, 1.0], [True]), (date, "u2", model, [seed, 2.0], [True])],
                               VECTORS)
    delta.write_table(df, publish.vectors_uri(paths), mode="overwrite", partition_by=["dt"],
                      replace_partitions=[date.isoformat()],
                      commit_info={"job": job, "dt": date.isoformat(), "run_id": run_id, "model_version": model})
    return df


def _all_vectors(spark, paths):
    return delta.read_table(spark, publish.vectors_uri(paths))


def test_rollback_of_a_date_restores_the_vectors_of_the_night_before_then_removes_them(spark, paths):
    p1, v1 = _night(spark, paths, D1, "A1", "r1", "m1")
    _, other_date = _night(spark, paths, D2, "B1", "r2", "m1")
    _night(spark, paths, D1, "A2", "r3", "m2")
    message = publish.rollback_date(spark, paths, D1)
    assert message.endswith("user_vectors of 2026-11-10: restored the vectors of run r1 (version 0, model m1), "
                            "undoing version 2 of run r3")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p1)
    assertDataFrameEqual(_all_vectors(spark, paths), v1.union(other_date))
    # the first night of the date: both partitions go
    message = publish.rollback_date(spark, paths, D1)
    assert message.endswith("user_vectors of 2026-11-10: removed, undoing version 0 of run r1 "
                            "(the date had no vectors before the undone runs wrote theirs)")
    assert publish.published_dates(paths) == [D2]
    assertDataFrameEqual(_all_vectors(spark, paths), other_date)
    # nothing left: a clear refusal, and neither table changes
    versions = delta.table_version(publish.profiles_uri(paths)), delta.table_version(publish.vectors_uri(paths))
    with pytest.raises(ValueError, match=r"nothing to roll back for 2026-11-10: its publishes \(versions 0, 2\)"):
        publish.rollback_date(spark, paths, D1)
    assert (delta.table_version(publish.profiles_uri(paths)),
            delta.table_version(publish.vectors_uri(paths))) == versions


def test_a_rollback_that_died_after_its_vectors_commit_is_finished_by_its_rerun(spark, paths):
    p1, v1 = _night(spark, paths, D1, "A1", "r1", "m1")
    _night(spark, paths, D1, "A2", "r2", "m2")
    # what a rollback that died between its two commits leaves: the vectors commit (made first), no profiles one
    notes = publish.align_vectors(spark, paths, {D1: publish.RunChange(undone=("r2",), restored="r1")})
    assert notes[D1].startswith("restored the vectors of run r1")
    assertDataFrameEqual(_all_vectors(spark, paths), v1)
    vectors_version = delta.table_version(publish.vectors_uri(paths))
    message = publish.rollback_date(spark, paths, D1)  # the rerun undoes r2's publish, not r1's too
    assert message == ("rolled back 2026-11-10: restored the partition as of version 0 (undoing version 1); "
                       "user_vectors of 2026-11-10: unchanged: they hold the vectors of run r1 (version 0), "
                       "the run of the restored profiles")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p1)
    assertDataFrameEqual(_all_vectors(spark, paths), v1)
    assert delta.table_version(publish.vectors_uri(paths)) == vectors_version


def test_vectors_the_undone_run_did_not_write_are_left_as_they_are(spark, paths):
    p1, v1 = _night(spark, paths, D1, "A1", "r1", "m1")
    _night(spark, paths, D1, "A2", "r2", "m2", vectors=False)  # score.write_user_vectors off that night
    vectors_version = delta.table_version(publish.vectors_uri(paths))
    message = publish.rollback_date(spark, paths, D1)
    assert message.endswith("user_vectors of 2026-11-10: unchanged: they hold the vectors of run r1 (version 0), "
                            "the run of the restored profiles")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p1)
    assertDataFrameEqual(_all_vectors(spark, paths), v1)
    assert delta.table_version(publish.vectors_uri(paths)) == vectors_version
    # a standalone score wrote the date's vectors after the night: they are not the night's to undo
    _night(spark, paths, D1, "A3", "r3", "m2")
    by_score = _write_vectors(spark, paths, D1, "s1", "m3", job="score")
    message = publish.rollback_date(spark, paths, D1)
    assert message.endswith("user_vectors of 2026-11-10: left as they are: they hold the vectors of run s1 "
                            "(version 2, model m3), not written by run r3; check them against the restored "
                            "profiles, or rerun the night of the date to rewrite both")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p1)
    assertDataFrameEqual(_all_vectors(spark, paths), by_score)


def test_rollback_to_version_brings_the_vectors_of_each_changed_date_in_line(spark, paths):
    p1, v1 = _night(spark, paths, D1, "A1", "r1", "m1")  # profiles version 0, vectors version 0
    _night(spark, paths, D2, "B1", "r2", "m1")  # profiles version 1, vectors version 1
    _night(spark, paths, D2, "B2", "r3", "m2")  # profiles version 2, vectors version 2
    message = publish.rollback_to_version(spark, paths, 0)
    assert message == (f"restored {publish.profiles_uri(paths)} to version 0 (was 2); user_vectors: 2026-11-11: "
                       f"removed, undoing version 2 of run r3 (the date had no vectors before the undone runs "
                       f"wrote theirs)")
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), p1)
    assertDataFrameEqual(_all_vectors(spark, paths), v1)
    # back to version 2 (the restore is a commit like any other): r3's profiles and vectors of D2 return
    p3 = publish.read_profiles(spark, publish.profiles_uri(paths), D2, version=2)
    v3 = delta.read_table(spark, publish.vectors_uri(paths), 2).where("dt = DATE'2026-11-11'")
    message = publish.rollback_to_version(spark, paths, 2)
    assert message.endswith("user_vectors: 2026-11-11: restored the vectors of run r3 (version 2, model m2)")
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), p1.union(p3))
    assertDataFrameEqual(_all_vectors(spark, paths), v1.union(v3))
    # a rerun changes no vectors: every date is in line already
    vectors_version = delta.table_version(publish.vectors_uri(paths))
    assert publish.rollback_to_version(spark, paths, 2).endswith("user_vectors: no date changes publish")
    assert delta.table_version(publish.vectors_uri(paths)) == vectors_version


def _register(paths, *models):
    """Registry rows (version, trained_for, status), registered in this order, a minute apart."""
    t0 = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)
    for minute, (version, trained_for, status) in enumerate(models):
        registry.register(paths, registry.ModelRecord(version, trained_for, status, t0 + dt.timedelta(minutes=minute),
                                                      {}, f"/m/{version}"))


def _statuses(paths):
    return {r.model_version: r.status.value for r in registry.list_models(paths)}


def test_rollback_of_a_date_withdraws_the_model_trained_for_that_night_and_keeps_older_ones(spark, paths):
    """A bad night's new model must not score the following nights: like a failed gate, rolling the
    night back makes it `rolled_back`, and the previous published model is current again. A model
    of an earlier night that the undone night reused stays published (it passed its own night)."""
    _register(paths, ("m0", D0, ModelStatus.PUBLISHED), ("m1", D1, ModelStatus.PUBLISHED),
              ("m2", D2, ModelStatus.PUBLISHED))
    _night(spark, paths, D1, "A1", "r1", "m1")
    _night(spark, paths, D2, "B1", "r2", "m0")  # D2 reused the model of D0, not its own m2
    message = publish.rollback_date(spark, paths, D1)
    assert message.endswith("; model m1, trained for 2026-11-10, is now rolled_back; "
                            "the latest published model for 2026-11-10 is m0")
    assert _statuses(paths) == {"m0": "published", "m1": "rolled_back", "m2": "published"}
    assert publish.rollback_date(spark, paths, D2).endswith("user_vectors of 2026-11-11: removed, undoing version 1 "
                                                            "of run r2 (the date had no vectors before the undone "
                                                            "runs wrote theirs)")
    assert _statuses(paths) == {"m0": "published", "m1": "rolled_back", "m2": "published"}
    assert registry.resolve(paths).model_version == "m2"


def test_rollback_to_version_withdraws_every_model_trained_for_a_night_it_undoes(spark, paths):
    _register(paths, ("m1", D1, ModelStatus.PUBLISHED), ("m2", D2, ModelStatus.PUBLISHED),
              ("m3", D2, ModelStatus.PUBLISHED))
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 0
    _night(spark, paths, D2, "B1", "r2", "m2")  # version 1
    _night(spark, paths, D2, "B2", "r3", "m3")  # version 2: a rerun of D2 with a retrained model
    message = publish.rollback_to_version(spark, paths, 0)
    assert message.endswith("; model m2, trained for 2026-11-11, is now rolled_back; model m3, trained for "
                            "2026-11-11, is now rolled_back; the latest published model for 2026-11-11 is m1")
    assert _statuses(paths) == {"m1": "published", "m2": "rolled_back", "m3": "rolled_back"}
    assert registry.resolve(paths).model_version == "m1"
    # undoing that restore puts r3's profiles of D2 back, and the model that scored them
    message = publish.rollback_to_version(spark, paths, 2)
    assert message.endswith("; model m3, trained for 2026-11-11, is published again; "
                            "the latest published model for 2026-11-11 is m3")
    assert _statuses(paths) == {"m1": "published", "m2": "rolled_back", "m3": "published"}


def test_rolling_back_a_rerun_keeps_the_model_of_the_restored_profiles(spark, paths):
    """The night of D1 trained m1 and published; its rerun reused m1 and published again. Undoing
    the rerun puts the first publish back, which m1 scored: m1 stays published. Undoing that one
    too withdraws it, and undoing the rollback (a restore) puts it back."""
    _register(paths, ("m0", D0, ModelStatus.PUBLISHED), ("m1", D1, ModelStatus.PUBLISHED))
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 0
    _night(spark, paths, D1, "A2", "r2", "m1")  # version 1
    assert publish.rollback_date(spark, paths, D1).endswith(  # version 2: no model changes
        "user_vectors of 2026-11-10: restored the vectors of run r1 (version 0, model m1), undoing version 1 of run r2")
    assert _statuses(paths) == {"m0": "published", "m1": "published"}
    assert publish.rollback_date(spark, paths, D1).endswith(  # version 3: the partition is removed
        "; model m1, trained for 2026-11-10, is now rolled_back; the latest published model for 2026-11-10 is m0")
    assert publish.rollback_to_version(spark, paths, 2).endswith(
        "; model m1, trained for 2026-11-10, is published again; the latest published model for 2026-11-10 is m1")
    assert _statuses(paths) == {"m0": "published", "m1": "published"}


def _logged_night(spark, paths, date, tag, run_id, model, *, ends="finished"):
    """`_night` with the runs rows the nightly writes: its publish stage, then its vectors and report
    stages. `ends`: "finished"; "killed" right after the publish (no row after it); "refresh failed"
    (the publish committed, then the profiles_latest refresh in the same stage failed)."""
    with contextlib.suppress(RuntimeError), runlog.stage(paths, run_id, "publish", date):
        profiles = _stage(spark, paths, [(date, "u1", "ctr", 1, tag, 0.5, model)])
        publish.publish(spark, paths, date, run_id, model)
        if ends == "refresh failed":
            raise RuntimeError("the profiles_latest refresh lost its race")
    if ends != "finished":
        return profiles
    for name in ("vectors", "report"):
        with runlog.stage(paths, run_id, name, date):
            if name == "vectors":
                _write_vectors(spark, paths, date, run_id, model)
    return profiles


@pytest.mark.parametrize("ends", ["killed", "refresh failed"])
def test_rolling_back_a_night_rerun_after_its_first_attempt_died_past_the_publish_undoes_both(spark, paths, ends):
    """r1 published D1 with m1 and never finished (killed, or its publish stage failed after the commit);
    the rerun r2 published the same night again. Undoing only r2 put r1's rows back: the same bad
    night, m1 still published, and no vectors."""
    _register(paths, ("m0", D0, ModelStatus.PUBLISHED), ("m1", D1, ModelStatus.PUBLISHED))
    before = _logged_night(spark, paths, D0, "Z0", "r0", "m0")  # version 0
    _logged_night(spark, paths, D1, "A1", "r1", "m1", ends=ends)  # version 1
    _logged_night(spark, paths, D1, "A2", "r2", "m1")  # version 2
    message = publish.rollback_date(spark, paths, D1)
    assert message == ("rolled back 2026-11-10: removed the partition, which no publish held before (undoing "
                       "versions 1 to 2: "
                       "publishes of the same night with model m1 by runs r1, r2, all but the last by an attempt "
                       "that did not finish the night); user_vectors of 2026-11-10: removed, undoing version 1 of "
                       "run r2 (the date had no vectors before the undone runs wrote theirs); model m1, trained for "
                       "2026-11-10, is now rolled_back; the latest published model for 2026-11-10 is m0")
    assert publish.published_dates(paths) == [D0]
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D0), before)
    assert _statuses(paths) == {"m0": "published", "m1": "rolled_back"}
    assert [r["dt"] for r in delta.read_arrow(publish.vectors_uri(paths)).to_pylist()] == [D0, D0]


def test_a_dead_attempt_and_its_rerun_under_the_same_run_id_are_undone_together(spark, paths):
    _register(paths, ("m1", D1, ModelStatus.PUBLISHED))
    _logged_night(spark, paths, D1, "A1", "r1", "m1", ends="killed")  # version 0
    _logged_night(spark, paths, D1, "A2", "r1", "m1")  # version 1: `--run-id r1` again
    assert publish.rollback_date(spark, paths, D1) == (
        "rolled back 2026-11-10: removed the partition, which no publish held before (undoing versions 0 to 1: "
        "publishes of the same night with model m1 by runs r1, all but the last by an attempt that did not finish "
        "the night); user_vectors of 2026-11-10: removed, undoing version 0 of run r1 (the date had no vectors "
        "before the undone runs wrote theirs); model m1, trained for 2026-11-10, is now rolled_back; no published "
        "model for 2026-11-10 is left, and a rerun of 2026-11-10 with the same inputs and settings gets m1 back, "
        "which stays withdrawn: change a model or train setting to train a new version, or pin "
        "score.model_version=m1 to score with it anyway")
    assert publish.published_dates(paths) == []
    assert _statuses(paths) == {"m1": "rolled_back"}


@pytest.mark.parametrize("second_run", ["r2", "r1"])
def test_a_finished_night_rerun_with_the_same_model_is_still_undone_one_publish_at_a_time(spark, paths, second_run):
    """Both attempts finished their night (under another run id, or the same one reused): the rerun is a
    publish of its own, and undoing it puts the first one back."""
    _register(paths, ("m1", D1, ModelStatus.PUBLISHED))
    first = _logged_night(spark, paths, D1, "A1", "r1", "m1")  # version 0
    _logged_night(spark, paths, D1, "A2", second_run, "m1")  # version 1
    vectors = ("unchanged: they hold the vectors of run r1 (version 1), the run of the restored profiles"
               if second_run == "r1" else "restored the vectors of run r1 (version 0, model m1), undoing version 1 "
                                          "of run r2")
    assert publish.rollback_date(spark, paths, D1) == (
        f"rolled back 2026-11-10: restored the partition as of version 0 (undoing version 1); user_vectors of "
        f"2026-11-10: {vectors}")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), first)
    assert _statuses(paths) == {"m1": "published"}


def test_undoing_a_rollback_by_version_puts_back_the_vectors_and_the_model_of_the_publish_it_restores(spark, paths):
    """The publish in effect before the restore can be older than the version restored to (a
    rollback brought it back): it is undone too, with its vectors and model."""
    _register(paths, ("m1", D1, ModelStatus.PUBLISHED), ("m2", D1, ModelStatus.PUBLISHED))
    _night(spark, paths, D1, "A1", "r1", "m1")  # profiles version 0
    p2, v2 = _night(spark, paths, D1, "A2", "r2", "m2")  # profiles version 1: a rerun with a retrained model
    publish.rollback_date(spark, paths, D1)  # version 2: r1's rows, vectors and model are back
    assert _statuses(paths) == {"m1": "published", "m2": "rolled_back"}
    message = publish.rollback_to_version(spark, paths, 1)
    assert message == (f"restored {publish.profiles_uri(paths)} to version 1 (was 2); user_vectors: 2026-11-10: "
                       f"restored the vectors of run r2 (version 1, model m2), undoing version 0 of run r1; "
                       f"model m1, trained for 2026-11-10, is now rolled_back; model m2, trained for 2026-11-10, "
                       f"is published again; the latest published model for 2026-11-10 is m2")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p2)
    assertDataFrameEqual(_all_vectors(spark, paths), v2)
    assert _statuses(paths) == {"m1": "rolled_back", "m2": "published"}


def test_undoing_a_rollback_by_version_reads_the_rows_in_effect_from_the_live_files(spark, paths):
    """r1's rows are in effect as a rollback's copy; the files of r1's own publish are gone."""
    _register(paths, ("m1", D1, ModelStatus.PUBLISHED), ("m2", D1, ModelStatus.PUBLISHED))
    _night(spark, paths, D1, "A1", "r1", "m1")  # profiles version 0
    p2, v2 = _night(spark, paths, D1, "A2", "r2", "m2")  # profiles version 1
    publish.rollback_date(spark, paths, D1)  # version 2
    uri = publish.profiles_uri(paths)
    [r1_file] = [f for f in delta.open_table(uri, 0).file_uris()]
    os.remove(r1_file.removeprefix("file://"))  # as a vacuum that reached version 0's replaced files
    assert delta.missing_files(uri, 1) == []
    assert publish.rollback_to_version(spark, paths, 1).endswith("; model m1, trained for 2026-11-10, is now "
                                                                 "rolled_back; model m2, trained for 2026-11-10, is "
                                                                 "published again; the latest published model for "
                                                                 "2026-11-10 is m2")
    assertDataFrameEqual(publish.read_profiles(spark, uri, D1), p2)
    assertDataFrameEqual(_all_vectors(spark, paths), v2)


def test_a_rollback_past_the_vacuum_window_is_refused_before_anything_changes(spark, paths, tmp_path, capsys):
    import json

    from jobs import rollback

    _register(paths, ("m1", D1, ModelStatus.PUBLISHED), ("m2", D1, ModelStatus.PUBLISHED))
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 0
    p2, v2 = _night(spark, paths, D1, "A2", "r2", "m2")  # version 1: replaces version 0's files of D1
    _, other = _night(spark, paths, D2, "B1", "r3", "m1")  # version 2
    latest = _latest(spark, paths)
    for uri in (publish.profiles_uri(paths), publish.vectors_uri(paths)):
        delta.vacuum(uri, retention_hours=0)  # version 0's files of D1 are gone
    versions = delta.table_version(publish.profiles_uri(paths)), delta.table_version(publish.vectors_uri(paths))
    with pytest.raises(publish.VacuumedVersionError, match=r"^nothing rolled back: version 0 of .*/user_tag_profiles "
                                                           r"\(dt=2026-11-10\) needs 1 file\(s\) the vacuum has "
                                                           r"deleted, e\.g\. .*; a rollback reaches back only as far "
                                                           r"as the vacuum window$"):
        publish.rollback_date(spark, paths, D1)
    with pytest.raises(publish.VacuumedVersionError, match=r"version 0 of .*/user_tag_profiles needs 1 file"):
        publish.rollback_to_version(spark, paths, 0)
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"paths": {"raw": paths.raw, "warehouse": paths.warehouse, "models": paths.models},
                                "spark": {"master": "local[1]"}}))
    capsys.readouterr()
    assert rollback.main(["--conf", str(conf), "--date", D1.isoformat()]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("[rollback] nothing rolled back: version 0 of ")
    # nothing changed: tables, registry, latest
    assert (delta.table_version(publish.profiles_uri(paths)),
            delta.table_version(publish.vectors_uri(paths))) == versions
    assert _statuses(paths) == {"m1": "published", "m2": "published"}
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p2)
    assertDataFrameEqual(_all_vectors(spark, paths), v2.union(other))
    assertDataFrameEqual(_latest(spark, paths), latest)
    # a rollback that needs only files still there works: D2's first publish created its partition
    assert publish.rollback_date(spark, paths, D2).startswith("rolled back 2026-11-11: removed the partition, which "
                                                              "no publish held before (undoing version 2)")


def test_a_rollback_that_died_before_refreshing_latest_is_finished_by_its_rerun(spark, paths, monkeypatch):
    """The profiles commit landed, profiles_latest was not copied again: the rerun copies it and
    undoes no second publish, also when a vacuum committed in between."""
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 0
    _night(spark, paths, D1, "A2", "r2", "m2")  # version 1
    _night(spark, paths, D1, "A3", "r3", "m3")  # version 2
    real = publish.refresh_latest

    def dies(spark, paths):
        raise RuntimeError("driver lost")

    monkeypatch.setattr(publish, "refresh_latest", dies)
    with pytest.raises(RuntimeError, match="driver lost"):
        publish.rollback_date(spark, paths, D1)  # version 3 restores version 1's rows (r2)
    monkeypatch.setattr(publish, "refresh_latest", real)
    r2_rows = publish.read_profiles(spark, publish.profiles_uri(paths), D1)
    assert [r.tag_id for r in r2_rows.collect()] == ["A2"]
    assert [r.tag_id for r in _latest(spark, paths).collect()] == ["A3"]  # stale
    assert publish.latest_is_behind(paths) == 2
    delta.vacuum(publish.profiles_uri(paths), retention_hours=0)  # its commits change no rows: still to finish
    assert publish.newest_change(delta.history(publish.profiles_uri(paths)))["version"] == 3
    assert delta.table_version(publish.profiles_uri(paths)) > 3

    message = publish.rollback_date(spark, paths, D1)
    assert message == ("finished the rollback of 2026-11-10 (version 3, undoing version 2): profiles_latest was "
                       "copied from version 2, now from the current one; no other publish undone (run it again "
                       "to undo one more)")
    assert publish.newest_change(delta.history(publish.profiles_uri(paths)))["version"] == 3
    assertDataFrameEqual(_latest(spark, paths), r2_rows)
    assert publish.latest_is_behind(paths) is None
    # run once more, it would undo the next publish, whose predecessor's files that vacuum deleted
    with pytest.raises(publish.VacuumedVersionError, match=r"version 0 of .* \(dt=2026-11-10\) needs 1 file"):
        publish.rollback_date(spark, paths, D1)
    assertDataFrameEqual(_latest(spark, paths), r2_rows)


def _standalone_score(spark, paths, date, tag, run_id, model):
    """What `jobs.score.run` commits into the warehouse: the profiles of `date`, then its vectors."""
    df = spark.createDataFrame([(date, "u1", "ctr", 1, tag, 0.5, model)], SCHEMA)
    delta.write_table(df, publish.profiles_uri(paths), mode="overwrite", partition_by=["dt"],
                      replace_partitions=[date.isoformat()],
                      commit_info={"job": "score", "dt": date.isoformat(), "run_id": run_id, "model_version": model})
    return df, _write_vectors(spark, paths, date, run_id, model, job="score")


def test_a_standalone_score_between_two_nights_is_a_write_rollback_steps_through(spark, paths):
    p1, v1 = _night(spark, paths, D1, "A1", "r1", "m1")  # profiles version 0
    s1, sv1 = _standalone_score(spark, paths, D1, "S1", "s1", "m3")  # version 1: an operator's rescore
    _night(spark, paths, D1, "A2", "r2", "m2")  # version 2
    message = publish.rollback_date(spark, paths, D1)
    assert message == ("rolled back 2026-11-10: restored the partition as of version 1 (undoing version 2); "
                       "user_vectors of 2026-11-10: restored the vectors of run s1 (version 1, model m3), "
                       "undoing version 2 of run r2")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), s1)
    assertDataFrameEqual(_all_vectors(spark, paths), sv1)
    # the next rollback undoes the rescore and brings the first night back, not an empty date
    message = publish.rollback_date(spark, paths, D1)
    assert message == ("rolled back 2026-11-10: restored the partition as of version 0 (undoing version 1); "
                       "user_vectors of 2026-11-10: restored the vectors of run r1 (version 0, model m1), "
                       "undoing version 1 of run s1")
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), p1)
    assertDataFrameEqual(_all_vectors(spark, paths), v1)
    assertDataFrameEqual(_latest(spark, paths), p1)


def test_a_rollback_refuses_when_a_standalone_score_of_the_date_lands_meanwhile(spark, paths, monkeypatch):
    """The rollback chose what to undo from the history it read; a rescore of the date committed
    before its own commit is not what it chose: it refuses, and the rescore's rows stay."""
    _night(spark, paths, D1, "A1", "r1", "m1")
    _night(spark, paths, D1, "A2", "r2", "m2")
    rescore = spark.createDataFrame([(D1, "u1", "ctr", 1, "S1", 0.5, "m3")], SCHEMA)
    commits_first(monkeypatch, lambda: delta.write_table(  # a score without vectors, before the rollback commits
        rescore, publish.profiles_uri(paths), mode="overwrite", partition_by=["dt"], replace_partitions=["2026-11-10"],
        commit_info={"job": "score", "dt": "2026-11-10", "run_id": "s1", "model_version": "m3"}),
        table=Warehouse.USER_VECTORS.value)
    with pytest.raises(delta.ConcurrentCommitError, match=r"user_tag_profiles: another writer changed "
                                                          r"dt=2026-11-10 since version 1 while this job was "
                                                          r"replacing it; nothing was committed to this table"):
        publish.rollback_date(spark, paths, D1)
    assertDataFrameEqual(publish.read_profiles(spark, publish.profiles_uri(paths), D1), rescore)


def test_rolling_back_a_publish_a_rollback_put_back_needs_only_live_files(spark, paths):
    """The rows of the publish in effect were copied back by a rollback; the files of their
    original publish are vacuumed. Their model is read from the live partition."""
    _register(paths, ("m0", D0, ModelStatus.PUBLISHED), ("m1", D1, ModelStatus.PUBLISHED),
              ("m2", D1, ModelStatus.PUBLISHED))
    _, other = _night(spark, paths, D0, "Z0", "r0", "m0")  # version 0
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 1
    _night(spark, paths, D1, "A2", "r2", "m2")  # version 2
    publish.rollback_date(spark, paths, D1)  # version 3: r1's rows again, m2 rolled back
    for uri in (publish.profiles_uri(paths), publish.vectors_uri(paths)):
        delta.vacuum(uri, retention_hours=0)
    assert delta.missing_files(publish.profiles_uri(paths), 1, {"dt": D1})  # r1's own files are gone
    message = publish.rollback_date(spark, paths, D1)
    assert message.startswith("rolled back 2026-11-10: removed the partition, which no publish held before (undoing "
                              "version 1)")
    assert message.endswith("; model m1, trained for 2026-11-10, is now rolled_back; "
                            "the latest published model for 2026-11-10 is m0")
    assert publish.published_dates(paths) == [D0]
    assertDataFrameEqual(_all_vectors(spark, paths), other)


def test_a_restore_reads_the_models_of_undone_publishes_from_their_commits(spark, paths):
    """r2's publish, undone by a rollback, has its files vacuumed; restoring version 0 needs only
    its model, which its commit records."""
    _register(paths, ("m0", D0, ModelStatus.PUBLISHED), ("m1", D1, ModelStatus.PUBLISHED),
              ("m2", D1, ModelStatus.PUBLISHED))
    p0, v0 = _night(spark, paths, D0, "Z0", "r0", "m0")  # version 0
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 1
    _night(spark, paths, D1, "A2", "r2", "m2")  # version 2
    publish.rollback_date(spark, paths, D1)  # version 3: r1's rows again; m2 rolled back
    for uri in (publish.profiles_uri(paths), publish.vectors_uri(paths)):
        delta.vacuum(uri, retention_hours=0)
    assert delta.missing_files(publish.profiles_uri(paths), 2, {"dt": D1})
    assert publish.logged_models(delta.history(publish.profiles_uri(paths))) == {
        (0, "2026-11-09"): "m0", (1, "2026-11-10"): "m1", (2, "2026-11-10"): "m2"}
    message = publish.rollback_to_version(spark, paths, 0)
    assert message.endswith("; model m1, trained for 2026-11-10, is now rolled_back; "
                            "the latest published model for 2026-11-10 is m0")
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), p0)
    assertDataFrameEqual(_all_vectors(spark, paths), v0)
    assert _statuses(paths) == {"m0": "published", "m1": "rolled_back", "m2": "rolled_back"}


def test_a_restore_withdraws_the_model_of_each_date_it_undoes_not_the_newest_commits(spark, paths):
    """Three nights, restored to the first: D1's publish is undone; the newest commit (D2's,
    which records m2) must not stand for D1's rows."""
    _register(paths, ("m0", D0, ModelStatus.PUBLISHED), ("m1", D1, ModelStatus.PUBLISHED),
              ("m2", D2, ModelStatus.PUBLISHED))
    p0, v0 = _night(spark, paths, D0, "Z0", "r0", "m0")  # version 0
    _night(spark, paths, D1, "A1", "r1", "m1")  # version 1
    _night(spark, paths, D2, "B1", "r2", "m2")  # version 2
    publish.rollback_to_version(spark, paths, 0)
    assert _statuses(paths) == {"m0": "published", "m1": "rolled_back", "m2": "rolled_back"}
    assertDataFrameEqual(delta.read_table(spark, publish.profiles_uri(paths)), p0)
    assertDataFrameEqual(_all_vectors(spark, paths), v0)


def test_a_model_withdrawn_during_the_publish_copy_says_to_roll_the_date_back(paths):
    """Checked before and after the publish commit: before, nothing is published (exit 3); after,
    the profiles are live, and the message says how to undo them."""
    from nightly.gates import QualityGateError
    from nightly.night import check_still_published

    record = registry.ModelRecord("m1", D0, ModelStatus.PUBLISHED, dt.datetime(2026, 11, 9, tzinfo=dt.timezone.utc),
                                  {}, "/m/m1")
    registry.register(paths, record)
    check_still_published(paths, "latest", record, D1)  # still published: nothing to say
    check_still_published(paths, "latest", record, D1, committed=4)
    registry.set_status(paths, "m1", ModelStatus.ROLLED_BACK)
    check_still_published(paths, "m1", record, D1, committed=4)  # pinned by the operator
    with pytest.raises(QualityGateError) as before:
        check_still_published(paths, "latest", record, D1)
    assert str(before.value) == (f"model m1 became rolled_back while this night ran; nothing published, the candidate "
                                 f"stays in staging; no published model for {D1} is left: its next run trains one: "
                                 f"rerun the night to score with it")
    with pytest.raises(publish.PartlyPublishedError) as after:
        check_still_published(paths, "latest", record, D1, committed=4)
    assert str(after.value) == (f"the profiles of dt={D1} are committed ({publish.profiles_uri(paths)} version 4, "
                                f"model m1), but that model became rolled_back while they were published: run "
                                f"rollback --date {D1} to undo them, then rerun the night")
