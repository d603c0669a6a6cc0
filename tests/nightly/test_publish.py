import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri
from nightly import publish

D1, D2 = dt.date(2026, 11, 10), dt.date(2026, 11, 11)
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
    assert message == "rolled back 2026-11-11: restored the partition as of version 0 (undoing version 1)"
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
