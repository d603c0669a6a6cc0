import datetime as dt
import os

import duckdb
import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from core import delta
from tests.racing import at_once, commits_first

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


def _rows(spark, rows):
    return spark.createDataFrame(rows, "dt date, user_id string, score double, tags array<int>")


def test_create_then_read_back_every_row(spark, tmp_path):
    uri = str(tmp_path / "t")
    df = _rows(spark, [(D1, "a", 1.0, [1, 2]), (D1, "b", 2.0, []), (D2, "c", 3.0, None)])
    version = delta.write_table(df, uri, mode="overwrite", partition_by=["dt"])
    assert version == 0
    assertDataFrameEqual(delta.read_table(spark, uri), df)
    assert delta.partition_values(uri) == ["2026-11-01", "2026-11-02"]


def test_copy_partition_replaces_the_target_with_that_partitions_rows(spark, tmp_path):
    """Row groups streamed file by file by the executors, the partition column written into the copy."""
    uri, target = str(tmp_path / "t"), str(tmp_path / "latest")
    rows = [(D1, "a", 1.0, [1, 2]), (D2, "b", 2.0, []), (D2, "c", None, None), (D2, "d", 4.0, [7])]
    delta.write_table(_rows(spark, rows).repartition(3), uri, mode="overwrite", partition_by=["dt"])
    delta.write_table(_rows(spark, rows[:1]), target, mode="overwrite")  # an earlier copy, of D1
    source = delta.table_version(uri)
    version = delta.copy_partition(spark, uri, source, "dt", D2.isoformat(), target, commit_info={"job": "copy"})
    assert version == 1 and DeltaTable(target).metadata().partition_columns == []
    copied = delta.read_table(spark, target)
    assert copied.schema == delta.read_table(spark, uri).schema  # the same columns, in order, and types
    assertDataFrameEqual(copied, _rows(spark, [r for r in rows if r[0] == D2]))
    assert delta.partition_rows(uri, D2.isoformat()) == 3
    empty = delta.copy_partition(spark, uri, source, "dt", "2026-10-01", target)  # no such partition: no rows
    assert delta.read_table(spark, target, empty).collect() == []
    with pytest.raises(ValueError, match="'user_id' is not a partition column"):
        delta.copy_partition(spark, uri, source, "user_id", "a", target)
    # D2 replaced by rows without `tags`: the table keeps the column, and its copy reads null there
    narrow = spark.createDataFrame([(D2, "e", 5.0)], "dt date, user_id string, score double")
    delta.write_table(narrow, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D2.isoformat()])
    version = delta.copy_partition(spark, uri, delta.table_version(uri), "dt", D2.isoformat(), target)
    assertDataFrameEqual(delta.read_table(spark, target, version), _rows(spark, [(D2, "e", 5.0, None)]))


def test_replacing_a_partition_is_idempotent_and_keeps_the_others(spark, tmp_path):
    uri = str(tmp_path / "t")
    delta.write_table(_rows(spark, [(D1, "a", 1.0, [1]), (D2, "b", 2.0, [2])]), uri,
                      mode="overwrite", partition_by=["dt"])
    new_d1 = _rows(spark, [(D1, "x", 9.0, [9]), (D1, "y", 8.0, [8])])
    for _ in range(2):
        delta.write_table(new_d1, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D1.isoformat()])
    expected = _rows(spark, [(D1, "x", 9.0, [9]), (D1, "y", 8.0, [8]), (D2, "b", 2.0, [2])])
    assertDataFrameEqual(delta.read_table(spark, uri), expected)
    assert delta.table_version(uri) == 2


def test_rows_outside_the_replaced_partition_are_refused_and_nothing_changes(spark, tmp_path):
    uri = str(tmp_path / "t")
    original = _rows(spark, [(D1, "a", 1.0, [1])])
    delta.write_table(original, uri, mode="overwrite", partition_by=["dt"])
    with pytest.raises(ValueError, match="outside the partitions being replaced"):
        delta.write_table(_rows(spark, [(D2, "b", 2.0, [2])]), uri, mode="overwrite",
                          partition_by=["dt"], replace_partitions=[D1.isoformat()])
    assert delta.table_version(uri) == 0
    assertDataFrameEqual(delta.read_table(spark, uri), original)


def test_a_failure_before_the_commit_leaves_the_table_as_it_was(spark, tmp_path):
    uri = str(tmp_path / "t")
    original = _rows(spark, [(D1, "a", 1.0, [1])])
    delta.write_table(original, uri, mode="overwrite", partition_by=["dt"])
    # Executors write their files, then the driver dies before committing.
    written = delta.write_files(_rows(spark, [(D1, "z", 5.0, [5])]), uri, partition_by=["dt"])
    assert written.num_records == 1 and all(os.path.exists(f"{uri}/{a.path}") for a in written.adds)
    assert delta.table_version(uri) == 0
    assertDataFrameEqual(delta.read_table(spark, uri), original)
    # vacuum removes the orphans, and only them
    removed = delta.vacuum(uri, retention_hours=0)
    assert sorted(os.path.relpath(p, uri) if os.path.isabs(p) else p for p in removed) == \
        sorted(a.path for a in written.adds)
    assertDataFrameEqual(delta.read_table(spark, uri), original)


def test_failing_task_writes_nothing_visible(spark, tmp_path):
    uri = str(tmp_path / "t")
    original = _rows(spark, [(D1, "a", 1.0, [1])])
    delta.write_table(original, uri, mode="overwrite", partition_by=["dt"])

    bad = spark.createDataFrame([(D1, "q", 1.0, [1])], "dt date, user_id string, score double, tags array<int>")
    from pyspark.sql import functions as F
    exploding = bad.withColumn("score", F.when(F.col("user_id") == "q", F.raise_error("boom")).otherwise(F.col("score")))
    with pytest.raises(Exception, match="boom"):
        delta.write_table(exploding, uri, mode="append", partition_by=["dt"])
    assert delta.table_version(uri) == 0
    assertDataFrameEqual(delta.read_table(spark, uri), original)


def test_old_versions_stay_readable(spark, tmp_path):
    uri = str(tmp_path / "t")
    first = _rows(spark, [(D1, "a", 1.0, [1])])
    delta.write_table(first, uri, mode="overwrite", partition_by=["dt"])
    delta.write_table(_rows(spark, [(D1, "b", 2.0, [2])]), uri, mode="overwrite", partition_by=["dt"],
                      replace_partitions=[D1.isoformat()])
    assertDataFrameEqual(delta.read_table(spark, uri, version=0), first)
    with pytest.raises(ValueError, match="no version 7"):
        delta.read_table(spark, uri, version=7)
    assert [h["operation"] for h in delta.history(uri)] == ["WRITE", "CREATE TABLE"]


def test_append_and_unpartitioned_tables(spark, tmp_path):
    uri = str(tmp_path / "u")
    a = spark.createDataFrame([("a", 1)], "k string, v long")
    b = spark.createDataFrame([("b", 2)], "k string, v long")
    delta.write_table(a, uri, mode="append")
    delta.write_table(b, uri, mode="append")
    assertDataFrameEqual(delta.read_table(spark, uri), a.union(b))
    assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: r["k"]) == [{"k": "a", "v": 1}, {"k": "b", "v": 2}]


def test_a_table_written_here_reads_the_same_in_duckdb_and_pandas(spark, tmp_path):
    uri = str(tmp_path / "t")
    rows = [(D1, "a", 1.0, [1, 2]), (D2, "b", 2.5, [3])]
    delta.write_table(_rows(spark, rows), uri, mode="overwrite", partition_by=["dt"])
    files = DeltaTable(uri).file_uris()
    got = duckdb.sql(
        f"select dt::date as dt, user_id, score, tags from read_parquet({files!r}, hive_partitioning=true) order by user_id"
    ).fetchall()
    assert got == [(D1, "a", 1.0, [1, 2]), (D2, "b", 2.5, [3])]
    frame = delta.read_arrow(uri).to_pandas().sort_values("user_id").reset_index(drop=True)
    expected = pd.DataFrame({"user_id": ["a", "b"], "score": [1.0, 2.5]})
    pd.testing.assert_frame_equal(frame[["user_id", "score"]], expected)
    assert [list(t) for t in frame["tags"]] == [[1, 2], [3]]
    assert list(frame["dt"]) == [D1, D2]


def test_bad_arguments_are_refused_early(spark, tmp_path):
    df = _rows(spark, [(D1, "a", 1.0, [1])])
    with pytest.raises(ValueError, match="mode must be"):
        delta.write_table(df, str(tmp_path / "t"), mode="upsert")
    with pytest.raises(ValueError, match="partition columns"):
        delta.write_table(df, str(tmp_path / "t"), mode="append", partition_by=["day"])
    with pytest.raises(ValueError, match="needs mode='overwrite'"):
        delta.write_table(df, str(tmp_path / "t"), mode="append", partition_by=["dt"], replace_partitions=["x"])
    assert not os.path.exists(tmp_path / "t" / "_delta_log")


def _replace_day(uri: str, writer: int, rounds: int, start) -> list[str]:
    """One of two processes replacing the same partition over and over, without any lock."""
    import re

    import pyarrow as pa

    from core import delta as d

    start.wait()
    outcomes = []
    for i in range(rounds):
        rows = pa.table({"dt": pa.array(["2026-11-10"] * 3), "writer": pa.array([writer] * 3),
                         "round": pa.array([i] * 3), "k": pa.array([0, 1, 2])})
        try:
            d.write_arrow(rows, uri, mode="overwrite", partition_by=["dt"], replace_partitions=["2026-11-10"])
            outcomes.append("committed")
        except d.ConcurrentCommitError as exc:  # lost the race: this commit failed and changed nothing
            said = re.fullmatch(r".*/t: another writer changed dt=2026-11-10 \(version [0-9]+\) while this job was "
                                r"replacing it; nothing was committed to this table, and the rows there are that "
                                r"writer's; run the job again if its output should be there", str(exc))
            outcomes.append("conflict" if said else str(exc))
    return outcomes


def test_two_processes_replacing_one_partition_never_leave_both_writers_rows(tmp_path):
    """Delta's optimistic concurrency without the nightly lock: after every race the partition holds
    exactly one commit's rows (one writer, one round, 3 rows), never a mix or a duplicate."""
    import pyarrow as pa

    uri = str(tmp_path / "t")
    delta.write_arrow(pa.table({"dt": pa.array(["2026-11-10"]), "writer": pa.array([-1]), "round": pa.array([-1]),
                                "k": pa.array([0])}), uri, mode="overwrite", partition_by=["dt"])
    outcomes = at_once(_replace_day, [(uri, w, 15) for w in (0, 1)])
    live = delta.read_arrow(uri).to_pandas()
    assert sorted(live["k"]) == [0, 1, 2]
    assert live[["writer", "round"]].drop_duplicates().shape[0] == 1
    # every committed write is one version, a failed one none; each version's partition is one write
    assert set(outcomes[0] + outcomes[1]) <= {"committed", "conflict"}
    committed = sum(o.count("committed") for o in outcomes)
    assert delta.table_version(uri) == committed
    for version in range(1, committed + 1):
        rows = delta.read_arrow(uri, version=version).to_pandas()
        assert sorted(rows["k"]) == [0, 1, 2] and rows[["writer", "round"]].drop_duplicates().shape[0] == 1


def _replace_own_day(uri: str, writer: int, rounds: int, start) -> list[str]:
    """One of several processes replacing its own date's partition `rounds` times, no lock."""
    import pyarrow as pa

    from core import delta as d

    day = f"2026-11-1{writer}"
    start.wait()
    outcomes = []
    for i in range(rounds):
        rows = pa.table({"dt": pa.array([day] * 2), "writer": pa.array([writer] * 2), "round": pa.array([i] * 2),
                         "k": pa.array([0, 1])})
        try:
            d.write_arrow(rows, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[day])
            outcomes.append("committed")
        except d.ConcurrentCommitError as exc:
            outcomes.append(f"conflict: {exc}")
    return outcomes


def test_two_processes_replacing_different_partitions_both_always_commit(tmp_path):
    """Two nights of different dates publishing at once: Delta's own check refused about a third
    of these commits ('a concurrent transaction deleted data this operation read') although no
    partition was shared. Every replace now lands, and each date ends with its last round."""
    import pyarrow as pa

    uri = str(tmp_path / "t")
    delta.write_arrow(pa.table({"dt": pa.array(["2026-11-09"]), "writer": pa.array([-1]), "round": pa.array([-1]),
                                "k": pa.array([0])}), uri, mode="overwrite", partition_by=["dt"])
    rounds = 15
    outcomes = at_once(_replace_own_day, [(uri, w, rounds) for w in (0, 1)])
    assert outcomes == [["committed"] * rounds] * 2
    assert delta.table_version(uri) == 2 * rounds
    live = sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: (r["dt"], r["k"]))
    assert live == [{"dt": "2026-11-09", "writer": -1, "round": -1, "k": 0}] + [
        {"dt": f"2026-11-1{w}", "writer": w, "round": rounds - 1, "k": k} for w in (0, 1) for k in (0, 1)]


def _counter(value: int, writer: str):
    import pyarrow as pa

    return pa.table({"value": pa.array([value], pa.int64()), "writer": pa.array([writer])})


def _day_rows(day: str, writer: int):
    import pyarrow as pa

    return pa.table({"dt": pa.array([day] * 2), "writer": pa.array([writer] * 2), "k": pa.array([0, 1])})


def test_a_first_write_that_finds_the_table_created_meanwhile_lands_on_top_of_it(tmp_path, monkeypatch):
    """Two first nights of different dates at once: both saw no table; the second create fails
    (the table exists now) and its partition is then replaced on top of the first one's commit."""
    uri = str(tmp_path / "t")
    delta.write_arrow(_day_rows("2026-11-10", 0), uri, mode="overwrite", partition_by=["dt"],
                      replace_partitions=["2026-11-10"])  # the other night's create, which won
    real = delta.table_exists
    answers = [False]  # what the second writer saw before that create landed
    monkeypatch.setattr(delta, "table_exists", lambda u: answers.pop() if answers else real(u))
    version = delta.write_arrow(_day_rows("2026-11-11", 1), uri, mode="overwrite", partition_by=["dt"],
                                replace_partitions=["2026-11-11"])
    assert version == 1
    assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: (r["dt"], r["k"])) == [
        {"dt": d, "writer": w, "k": k} for d, w in (("2026-11-10", 0), ("2026-11-11", 1)) for k in (0, 1)]

    # a read-modify-write that saw no table must not land on one created since
    answers.append(False)
    with pytest.raises(delta.ConcurrentCommitError):
        delta.write_arrow(_day_rows("2026-11-12", 2), uri, mode="overwrite", partition_by=["dt"],
                          based_on=delta.Snapshot(uri, None))
    assert delta.table_version(uri) == 1


def test_a_first_append_that_finds_the_table_created_meanwhile_lands_on_top_of_it(tmp_path, monkeypatch):
    """Two first nights appending run-log rows at once: the second create fails, and its append lands
    on top of the first one's commit (it used to fail with a TypeError, hiding the stage's own error)."""
    uri = str(tmp_path / "t")
    delta.write_arrow(_day_rows("2026-11-10", 0), uri, mode="append", partition_by=["dt"])  # the create that won
    real = delta.table_exists
    answers = [False]  # what the second writer saw before that create landed
    monkeypatch.setattr(delta, "table_exists", lambda u: answers.pop() if answers else real(u))
    assert delta.write_arrow(_day_rows("2026-11-10", 1), uri, mode="append", partition_by=["dt"]) == 1
    assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: (r["writer"], r["k"])) == [
        {"dt": "2026-11-10", "writer": w, "k": k} for w in (0, 1) for k in (0, 1)]


@pytest.mark.parametrize("replace, message", [
    (["2026-11-10"], r"another writer changed dt=2026-11-10 since this job found no table while this job was "
                     r"replacing it; nothing was committed"),
    (["2026-11-11", "2026-11-10"], r"another writer changed dt=2026-11-11, 2026-11-10 since this job found no table"),
    (None, r"another writer created the table while this job was overwriting it; nothing was committed"),
])
def test_a_first_write_does_not_replace_rows_of_a_table_created_meanwhile(tmp_path, monkeypatch, replace, message):
    """Both writers found no table, so neither knew of the other's rows: the second must not remove them
    (a backfill and a night of the same date on a new warehouse, or a whole-table overwrite)."""
    uri = str(tmp_path / "t")
    delta.write_arrow(_day_rows("2026-11-10", 0), uri, mode="overwrite", partition_by=["dt"],
                      replace_partitions=["2026-11-10"])  # the other writer's create, which won
    before = delta.read_arrow(uri).to_pylist()
    real = delta.table_exists
    answers = [False]  # what the second writer saw before that create landed
    monkeypatch.setattr(delta, "table_exists", lambda u: answers.pop() if answers else real(u))
    with pytest.raises(delta.ConcurrentCommitError, match=message):
        delta.write_arrow(_day_rows("2026-11-10", 1), uri, mode="overwrite", partition_by=["dt"],
                          replace_partitions=replace)
    assert delta.table_version(uri) == 0
    assert delta.read_arrow(uri).to_pylist() == before


def test_a_replace_guarded_by_a_version_of_a_table_that_is_gone_says_so(tmp_path):
    uri = str(tmp_path / "t")
    with pytest.raises(ValueError, match=r"t: no table, so no version 0 to guard the replace with"):
        delta.write_arrow(_day_rows("2026-11-10", 0), uri, mode="overwrite", partition_by=["dt"],
                          replace_partitions=["2026-11-10"], replaced_as_of=0)
    assert not delta.table_exists(uri)


@pytest.mark.parametrize("other_mode", ["append", "overwrite"])
def test_a_read_modify_write_does_not_land_on_top_of_another_writers_commit(tmp_path, other_mode):
    """Plain Delta lets an overwrite land after a concurrent append (and an append after anything):
    with the snapshot it read, the commit is refused and the other writer's rows stay."""
    uri = str(tmp_path / "t")
    delta.write_arrow(_counter(0, "setup"), uri, mode="overwrite")
    read = delta.snapshot(uri)
    delta.write_arrow(_counter(1, "other"), uri, mode=other_mode)
    after_other = delta.read_arrow(uri).to_pylist()
    for mode in ("overwrite", "append"):
        with pytest.raises(delta.ConcurrentCommitError, match="committed version 1 after this job read version 0"):
            delta.write_arrow(_counter(1, "late"), uri, mode=mode, based_on=read)
    assert delta.table_version(uri) == 1
    assert delta.read_arrow(uri).to_pylist() == after_other


def test_a_read_modify_write_on_its_snapshot_commits_the_next_version(tmp_path):
    uri = str(tmp_path / "t")
    absent = delta.snapshot(uri)
    assert absent.version is None
    assert delta.write_arrow(_counter(0, "a"), uri, mode="overwrite", based_on=absent) == 0
    with pytest.raises(delta.ConcurrentCommitError, match="after this job read no table"):
        delta.write_arrow(_counter(0, "b"), uri, mode="overwrite", based_on=absent)
    assert delta.write_arrow(_counter(1, "a"), uri, mode="overwrite", based_on=delta.snapshot(uri)) == 1
    assert delta.read_arrow(uri).to_pylist() == [{"value": 1, "writer": "a"}]
    with pytest.raises(ValueError, match="cannot guard"):
        delta.write_arrow(_counter(2, "a"), uri, mode="overwrite", based_on=delta.snapshot(str(tmp_path / "u")))


def _increment(uri: str, writer: str, rounds: int, start) -> None:
    """One of two processes adding 1 to a one-row counter table, read-modify-write, no lock."""
    from core import delta as d

    def once() -> None:
        read = d.snapshot(uri)
        value = d.read_arrow(uri, version=read.version).column("value")[0].as_py()
        d.write_arrow(_counter(value + 1, writer), uri, mode="overwrite", based_on=read)

    start.wait()
    for _ in range(rounds):
        d.retry_on_conflict(once, attempts=100)


def test_two_processes_incrementing_one_counter_lose_no_update(tmp_path):
    """The lost update that a blind overwrite allows: with snapshots and retries every increment
    lands, one per version, each on top of the previous value."""
    uri = str(tmp_path / "counter")
    delta.write_arrow(_counter(0, "setup"), uri, mode="overwrite")
    at_once(_increment, [(uri, w, 12) for w in ("a", "b")])
    assert [delta.read_arrow(uri, version=v).column("value")[0].as_py() for v in range(25)] == list(range(25))
    writers = [delta.read_arrow(uri, version=v).column("writer")[0].as_py() for v in range(1, 25)]
    assert sorted(writers) == ["a"] * 12 + ["b"] * 12


def _small_table():
    import pyarrow as pa

    return pa.table({"dt": pa.array([D1, D2], pa.date32()), "k": ["a", "b"], "v": [1, 2]})


def test_arrow_filesystem_resolves_local_paths_and_file_uris(tmp_path, monkeypatch):
    from pyarrow import fs

    monkeypatch.chdir(tmp_path)
    filesystem, root, files = delta.arrow_filesystem("rel/t", ["dt=2026-11-01/part%20a.parquet"])
    assert isinstance(filesystem, fs.LocalFileSystem)
    assert (root, files) == (f"{tmp_path}/rel/t", [f"{tmp_path}/rel/t/dt=2026-11-01/part a.parquet"])
    filesystem, root, _ = delta.arrow_filesystem("file:///data/ware%20house/t/")
    assert isinstance(filesystem, fs.LocalFileSystem) and root == "/data/ware house/t"
    for outside in ["/elsewhere/part.parquet", "s3://other/part.parquet"]:
        with pytest.raises(ValueError, match="not inside the table folder"):
            delta.arrow_filesystem(str(tmp_path), [outside])


def test_arrow_filesystem_gives_paths_without_scheme_on_a_non_local_filesystem():
    # pyarrow's in-memory mock:// filesystem stands in for an object store (no network here).
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from pyarrow import fs

    table = _small_table()
    filesystem, root, files = delta.arrow_filesystem("mock://bucket/wh/t", ["dt=2026-11-01/a.parquet",
                                                                           "dt=2026-11-02/b.parquet"])
    assert not isinstance(filesystem, fs.LocalFileSystem)
    assert all("://" not in f and f.startswith(f"{root}/") for f in files)
    for path, day in zip(files, (D1, D2)):
        filesystem.create_dir(path.rsplit("/", 1)[0])
        day_rows = table.filter(pc.equal(table.column("dt"), pa.scalar(day, pa.date32())))
        pq.write_table(day_rows.drop_columns(["dt"]), path, filesystem=filesystem)
    partitioning = ds.partitioning(table.select(["dt"]).schema, flavor="hive")
    read = ds.dataset(files, format="parquet", filesystem=filesystem, partitioning=partitioning,
                      partition_base_dir=root, schema=table.schema).to_table()
    assert sorted(read.to_pylist(), key=lambda r: r["k"]) == table.to_pylist()


def test_read_arrow_reads_a_table_in_a_folder_with_a_space_by_path_and_by_file_uri(tmp_path):
    from urllib.parse import quote

    uri = str(tmp_path / "ware house" / "t")
    delta.write_arrow(_small_table(), uri, mode="overwrite", partition_by=["dt"])
    for given in (uri, "file://" + quote(uri)):
        assert sorted(delta.read_arrow(given).to_pylist(), key=lambda r: r["k"]) == _small_table().to_pylist()


@pytest.mark.parametrize("value", ["a/b", "..", "x=y", "50%", ""])
def test_a_partition_value_that_is_not_a_plain_folder_name_is_refused(tmp_path, value):
    import pyarrow as pa

    uri = str(tmp_path / "t")
    with pytest.raises(ValueError, match="cannot be a folder name"):
        delta.write_arrow(pa.table({"part": [value], "k": [1]}), uri, mode="overwrite", partition_by=["part"])
    assert not delta.table_exists(uri)


def test_write_arrow_refuses_rows_outside_the_replaced_partition_and_changes_nothing(tmp_path):
    import pyarrow as pa

    uri = str(tmp_path / "t")
    delta.write_arrow(_small_table(), uri, mode="overwrite", partition_by=["dt"])
    both_days = pa.table({"dt": pa.array([D1, D2], pa.date32()), "k": ["x", "y"], "v": [9, 8]})
    with pytest.raises(ValueError, match=r"rows for dt in \['2026-11-02'\] are outside the partitions being replaced"):
        delta.write_arrow(both_days, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D1.isoformat()])
    with pytest.raises(ValueError, match="replace_partitions needs mode='overwrite'"):
        delta.write_arrow(both_days.slice(0, 1), uri, mode="append", partition_by=["dt"],
                          replace_partitions=[D1.isoformat()])
    assert delta.table_version(uri) == 0
    assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: r["k"]) == _small_table().to_pylist()


def test_writes_go_to_file_uris_and_to_relative_paths_of_the_drivers_working_directory(spark, tmp_path, monkeypatch):
    """Executors resolve nothing themselves: a `file://` URI is not a folder name, and a relative path is
    relative to where the command runs, not to the executor JVM's working directory."""
    from urllib.parse import quote

    import pyarrow as pa

    monkeypatch.chdir(tmp_path)
    df = _rows(spark, [(D1, "a", 1.0, [1]), (D2, "b", 2.0, [2])])
    expected = [{"dt": D1, "user_id": "a", "score": 1.0, "tags": [1]}, {"dt": D2, "user_id": "b", "score": 2.0, "tags": [2]}]
    small = pa.table({"k": ["z"], "v": [7]})
    for uri, folder in [("file://" + quote(f"{tmp_path}/ware house/t"), tmp_path / "ware house" / "t"),
                        ("rel/t", tmp_path / "rel" / "t")]:
        assert delta.write_table(df, uri, mode="overwrite", partition_by=["dt"]) == 0
        assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: r["user_id"]) == expected
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")) == \
            sorted(DeltaTable(str(folder)).get_add_actions(flatten=True).column("path").to_pylist())
        assert delta.write_arrow(small, uri + "_small", mode="overwrite") == 0
        assert delta.read_arrow(uri + "_small").to_pylist() == small.to_pylist()
    assert sorted(os.listdir(tmp_path)) == ["rel", "ware house"]


def test_read_table_reads_folders_with_spaces_file_uris_and_relative_paths(spark, tmp_path, monkeypatch):
    """delta-rs hands out file paths with `%20`, and Spark would resolve a relative path against the JVM's
    working directory: read_table gives Spark absolute, decoded paths."""
    from urllib.parse import quote

    import pyarrow as pa

    monkeypatch.chdir(tmp_path)
    table = pa.table({"part": ["a b", "c", "c"], "k": ["x", "y", "z"], "v": [1, 2, 3]})
    expected = spark.createDataFrame([("a b", "x", 1), ("c", "y", 2), ("c", "z", 3)], "part string, k string, v long")
    delta.write_arrow(table, str(tmp_path / "ware house" / "t"), mode="overwrite", partition_by=["part"])
    delta.write_arrow(table, "rel/t", mode="overwrite", partition_by=["part"])
    for uri in [str(tmp_path / "ware house" / "t"), "file://" + quote(f"{tmp_path}/ware house/t/"), "rel/t"]:
        assertDataFrameEqual(delta.read_table(spark, uri), expected)
        assertDataFrameEqual(delta.read_table(spark, uri, version=0), expected)


def test_an_append_with_other_columns_is_refused_and_changes_nothing(spark, tmp_path):
    """delta-rs would commit it: the extra column vanished and the missing one read null."""
    import pyarrow as pa

    uri = str(tmp_path / "t")
    original = pa.table({"k": ["a"], "v": pa.array([1], pa.int64())})
    delta.write_arrow(original, uri, mode="overwrite")
    for other in [pa.table({"k": ["b"], "w": [2.5]}), pa.table({"k": ["b"]}),
                  pa.table({"k": ["b"], "v": pa.array([2], pa.int64()), "w": [2.5]})]:
        with pytest.raises(ValueError, match="an append must have the table's columns"):
            delta.write_arrow(other, uri, mode="append")
    with pytest.raises(ValueError, match=r"change column types \(v \"long\" -> \"string\"\)"):
        delta.write_table(spark.createDataFrame([("b", "2")], "k string, v string"), uri, mode="append")
    assert delta.table_version(uri) == 0
    assert delta.read_arrow(uri).to_pylist() == original.to_pylist()
    same = spark.createDataFrame([(2, "b")], "v long, k string")  # column order does not matter
    assert delta.write_table(same, uri, mode="append") == 1
    assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: r["k"]) == [{"k": "a", "v": 1}, {"k": "b", "v": 2}]


def test_replacing_a_partition_keeps_the_other_partitions_columns(spark, tmp_path):
    """The write's schema becomes the table's: a partition written without a column must not drop
    that column from the other partitions, and a new column reads null in them."""
    uri = str(tmp_path / "t")
    delta.write_table(spark.createDataFrame([(D1, "a", 1), (D2, "b", 2)], "dt date, k string, v long"), uri,
                      mode="overwrite", partition_by=["dt"])
    new_d1 = spark.createDataFrame([(D1, "x", 9.5)], "dt date, k string, w double")
    delta.write_table(new_d1, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D1.isoformat()])
    expected = spark.createDataFrame([(D1, "x", 9.5, None), (D2, "b", None, 2)], "dt date, k string, w double, v long")
    assertDataFrameEqual(delta.read_table(spark, uri), expected)
    assert sorted(delta.read_arrow(uri).to_pylist(), key=lambda r: r["k"]) == \
        [{"dt": D2, "k": "b", "w": None, "v": 2}, {"dt": D1, "k": "x", "w": 9.5, "v": None}]
    with pytest.raises(ValueError, match=r"change column types \(v \"long\" -> \"string\"\)"):
        delta.write_table(spark.createDataFrame([(D1, "y", "7")], "dt date, k string, v string"), uri,
                          mode="overwrite", partition_by=["dt"], replace_partitions=[D1.isoformat()])
    assert delta.table_version(uri) == 1
    assertDataFrameEqual(delta.read_table(spark, uri), expected)


def test_a_partial_write_of_non_null_columns_keeps_the_tables_nullable_columns_nullable(spark, tmp_path):
    """The rows a partition replace or an append keeps may hold nulls: a write whose DataFrame has the
    same columns declared non-null (a literal, an aggregate) must not declare them non-null for the
    whole table, or Delta readers that check it (delta-rs's own engine) refuse the table."""
    import pyarrow as pa
    from deltalake import QueryBuilder
    from pyspark.sql import functions as F

    uri = str(tmp_path / "t")
    delta.write_table(spark.createDataFrame([(D1, "a", None, [1, None])], "dt date, k string, v long, tags array<int>"),
                      uri, mode="overwrite", partition_by=["dt"])
    non_null = spark.range(1).select(F.lit(D2).alias("dt"), F.lit("b").alias("k"), F.lit(2).cast("long").alias("v"),
                                     F.array(F.lit(3)).alias("tags"))
    assert not any(f.nullable for f in non_null.schema.fields) and not non_null.schema["tags"].dataType.containsNull
    delta.write_table(non_null, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D2.isoformat()])
    delta.write_table(non_null.withColumn("k", F.lit("c")), uri, mode="append", partition_by=["dt"])
    fields = {f.name: f for f in DeltaTable(uri).schema().fields}
    assert [(n, fields[n].nullable) for n in ("k", "v", "tags")] == [("k", True), ("v", True), ("tags", True)]
    assert fields["tags"].type.contains_null
    # (the engine hands strings back as Arrow string views, which this pyarrow cannot import: k is the order)
    got = QueryBuilder().register("t", DeltaTable(uri)).execute("select dt, v, tags from t order by k").read_all()
    assert pa.table(got).to_pylist() == [{"dt": D1, "v": None, "tags": [1, None]}, {"dt": D2, "v": 2, "tags": [3]},
                                         {"dt": D2, "v": 2, "tags": [3]}]


def test_read_arrow_of_one_partition_opens_that_partitions_files_only(tmp_path):
    import pyarrow as pa

    uri = str(tmp_path / "t")
    rows = pa.table({"dt": pa.array([D1, D2, D1], pa.date32()), "k": ["a", "b", "c"], "v": [1, 2, 3]})
    delta.write_arrow(rows, uri, mode="overwrite", partition_by=["dt"])
    # Spoil the other day's files: reading D1 must not even open them.
    for name in os.listdir(tmp_path / "t" / f"dt={D2.isoformat()}"):
        (tmp_path / "t" / f"dt={D2.isoformat()}" / name).write_bytes(b"not parquet")
    expected_d1 = [{"dt": D1, "k": "a", "v": 1}, {"dt": D1, "k": "c", "v": 3}]
    for value in (D1, D1.isoformat()):
        got = delta.read_arrow(uri, partition={"dt": value})
        assert sorted(got.to_pylist(), key=lambda r: r["k"]) == expected_d1
    assert sorted(delta.read_arrow(uri, columns=["k"], partition={"dt": D1}).column("k").to_pylist()) == ["a", "c"]
    empty = delta.read_arrow(uri, columns=["k", "v"], partition={"dt": dt.date(2020, 1, 1)})
    assert empty.num_rows == 0 and empty.schema.names == ["k", "v"]
    with pytest.raises(ValueError, match="'k' is not a partition column"):
        delta.read_arrow(uri, partition={"k": "a"})


def _ranked(batches):
    """Each input row (dt, user_id, n) becomes rows rank 1..n with score rank * 0.5; n < 0 fails."""
    import pyarrow as pa

    for batch in batches:
        rows = batch.to_pylist()
        if any(r["n"] < 0 for r in rows):
            raise ValueError("negative n")
        out = [{"dt": r["dt"], "user_id": r["user_id"], "rank": k, "score": k * 0.5}
               for r in rows for k in range(1, r["n"] + 1)]
        yield pa.RecordBatch.from_pylist(out, schema=pa.schema([("dt", pa.date32()), ("user_id", pa.string()),
                                                                ("rank", pa.int32()), ("score", pa.float64())]))


RANKED = delta.ArrowMap(_ranked, T.StructType([T.StructField("dt", T.DateType()), T.StructField("user_id", T.StringType()),
                                               T.StructField("rank", T.IntegerType()),
                                               T.StructField("score", T.DoubleType())]))


def test_a_write_through_an_arrow_map_commits_the_maps_output(spark, tmp_path):
    uri = str(tmp_path / "t")
    users = spark.createDataFrame([(D1, "a", 2), (D1, "b", 0), (D2, "c", 3)], "dt date, user_id string, n int")
    delta.write_table(users, uri, mode="overwrite", partition_by=["dt"], through=RANKED)
    rerun_d2 = spark.createDataFrame([(D2, "c", 1), (D2, "d", 1)], "dt date, user_id string, n int")
    delta.write_table(rerun_d2, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D2.isoformat()],
                      through=RANKED)
    expected = spark.createDataFrame(
        [(D1, "a", 1, 0.5), (D1, "a", 2, 1.0), (D2, "c", 1, 0.5), (D2, "d", 1, 0.5)],
        "dt date, user_id string, rank int, score double")
    assertDataFrameEqual(delta.read_table(spark, uri), expected)


def test_a_write_through_an_arrow_map_checks_the_maps_columns_and_fails_whole(spark, tmp_path):
    uri = str(tmp_path / "t")
    users = spark.createDataFrame([(D1, "a", 1)], "dt date, user_id string, n int")
    with pytest.raises(ValueError, match=r"partition columns \['n'\] are not in"):
        delta.write_table(users, uri, mode="overwrite", partition_by=["n"], through=RANKED)
    delta.write_table(users, uri, mode="overwrite", partition_by=["dt"], through=RANKED)
    broken = spark.createDataFrame([(D1, "x", 1), (D1, "y", -1)], "dt date, user_id string, n int").coalesce(1)
    with pytest.raises(Exception, match="negative n"):
        delta.write_table(broken, uri, mode="overwrite", partition_by=["dt"], replace_partitions=[D1.isoformat()],
                          through=RANKED)
    assert delta.table_version(uri) == 0
    assertDataFrameEqual(delta.read_table(spark, uri),
                         spark.createDataFrame([(D1, "a", 1, 0.5)], "dt date, user_id string, rank int, score double"))


def test_reading_one_partition_names_a_column_the_table_is_not_partitioned_by(spark, tmp_path):
    import pyarrow as pa

    uri = str(tmp_path / "t")
    delta.write_arrow(pa.table({"dt": ["2026-11-10"], "k": [1]}), uri, mode="overwrite")  # not partitioned
    with pytest.raises(ValueError, match=r"t/? is not partitioned by dt \(partition columns: \[\]\)"):
        delta.read_table(spark, uri, partition={"dt": "2026-11-10"})


# Interleavings of two writers, made exact (`commits_first`).

def _day(day: str, values: list[int], **extra):
    import pyarrow as pa

    return pa.table({"dt": pa.array([day] * len(values)), "v": pa.array(values, pa.int64()),
                     **{k: pa.array(v, pa.int64()) for k, v in extra.items()}})


def _live(uri: str) -> list[tuple[str, int]]:
    return sorted((r["dt"], r["v"]) for r in delta.read_arrow(uri).to_pylist())


@pytest.mark.parametrize("seeded", [False, True])
def test_a_replace_refuses_when_the_partition_changed_meanwhile_even_if_it_was_absent(tmp_path, monkeypatch, seeded):
    """Two replaces of a date (seeded: the date already had rows), or an append into it, landing
    between planning and commit: this replace fails and the partition holds only the other's rows.
    delta-rs alone sees the other commit as a blind append and lands both writers' rows."""
    uri = str(tmp_path / "t")
    delta.write_arrow(_day("2026-11-09", [1]), uri, mode="overwrite", partition_by=["dt"])
    if seeded:
        delta.write_arrow(_day("2026-11-10", [5]), uri, mode="append", partition_by=["dt"])
    for theirs, mode in (([100, 101], "overwrite"), ([7], "append")):
        before = _live(uri)
        commits_first(monkeypatch, lambda: delta.write_arrow(
            _day("2026-11-10", theirs), uri, mode=mode, partition_by=["dt"],
            replace_partitions=["2026-11-10"] if mode == "overwrite" else None))
        version = delta.table_version(uri)
        with pytest.raises(delta.ConcurrentCommitError, match=rf"another writer changed dt=2026-11-10 \(version "
                                                              rf"{version + 1}\) while this job was replacing it"):
            delta.write_arrow(_day("2026-11-10", [900, 901]), uri, mode="overwrite", partition_by=["dt"],
                              replace_partitions=["2026-11-10"])
        kept = [r for r in before if r[0] != "2026-11-10"] if mode == "overwrite" else before
        assert _live(uri) == sorted(kept + [("2026-11-10", v) for v in theirs])
        assert delta.table_version(uri) == version + 1  # theirs only


def test_a_replace_lands_on_top_of_a_commit_to_other_partitions_and_keeps_it(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    delta.write_arrow(_day("2026-11-10", [1, 2]), uri, mode="overwrite", partition_by=["dt"])
    commits_first(monkeypatch, lambda: delta.write_arrow(_day("2026-11-09", [3]), uri, mode="append",
                                                                partition_by=["dt"]))
    version = delta.write_arrow(_day("2026-11-10", [9]), uri, mode="overwrite", partition_by=["dt"],
                                replace_partitions=["2026-11-10"])
    assert version == 2 and _live(uri) == [("2026-11-09", 3), ("2026-11-10", 9)]


def test_a_whole_table_overwrite_refuses_when_another_commit_came_in_between(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    delta.write_arrow(_day("2026-11-10", [1]), uri, mode="overwrite")
    commits_first(monkeypatch, lambda: delta.write_arrow(_day("2026-11-10", [2]), uri, mode="append"))
    with pytest.raises(delta.ConcurrentCommitError, match=r"another writer committed version 1 while this job was "
                                                          r"overwriting the table; nothing was committed"):
        delta.write_arrow(_day("2026-11-11", [3]), uri, mode="overwrite")
    assert _live(uri) == [("2026-11-10", 1), ("2026-11-10", 2)]


def test_the_version_returned_is_this_commits_even_when_another_lands_right_after(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    delta.write_arrow(_day("2026-11-10", [1]), uri, mode="overwrite")
    original = DeltaTable.create_write_transaction

    def then_another(self, *args, **kwargs):
        monkeypatch.setattr(DeltaTable, "create_write_transaction", original)
        result = original(self, *args, **kwargs)
        delta.write_arrow(_day("2026-11-10", [3]), uri, mode="append", commit_info={"job": "other"})
        return result

    monkeypatch.setattr(DeltaTable, "create_write_transaction", then_another)
    assert delta.write_arrow(_day("2026-11-10", [2]), uri, mode="append", commit_info={"job": "this"}) == 1
    assert [(h["version"], h.get("job")) for h in delta.history(uri)][:2] == [(2, "other"), (1, "this")]


def test_a_replace_that_adds_a_non_null_column_keeps_the_table_readable_by_delta_rs(tmp_path):
    """Spark marks a coalesced column non-null; the table's older files lack the column altogether."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    uri = str(tmp_path / "t")
    delta.write_arrow(_day("2026-11-09", [1]), uri, mode="overwrite", partition_by=["dt"])
    added = _day("2026-11-10", [2], w=[5])
    added = added.cast(pa.schema([added.schema.field("dt"), added.schema.field("v"),
                                  pa.field("w", pa.int64(), nullable=False)]))
    delta.write_arrow(added, uri, mode="overwrite", partition_by=["dt"], replace_partitions=["2026-11-10"])
    rows = QueryBuilder().register("t", DeltaTable(uri)).execute("select v, w from t order by v").read_all()
    assert pa.table(rows).to_pylist() == [{"v": 1, "w": None}, {"v": 2, "w": 5}]  # (strings come as view types)


def test_partition_changed_compares_the_live_files_with_a_version(tmp_path):
    uri = str(tmp_path / "t")
    delta.write_arrow(_day("2026-11-10", [1]), uri, mode="overwrite", partition_by=["dt"])
    delta.write_arrow(_day("2026-11-09", [2]), uri, mode="append", partition_by=["dt"])
    assert not delta.partition_changed(uri, "dt", ["2026-11-10"], 0)
    assert delta.partition_changed(uri, "dt", ["2026-11-09"], 0)  # absent then
    delta.write_arrow(_day("2026-11-10", [1]), uri, mode="overwrite", partition_by=["dt"],
                      replace_partitions=["2026-11-10"])  # the same rows, new files
    assert delta.partition_changed(uri, "dt", ["2026-11-10"], 1)
    with pytest.raises(ValueError, match="replaced_as_of guards a partition replace: give replace_partitions"):
        delta.commit(uri, [], _day("2026-11-10", [3]).schema, mode="overwrite", partition_by=["dt"], replaced_as_of=0)


@pytest.mark.parametrize("configuration, named", [
    ({"delta.enableDeletionVectors": "true"}, r"deletion vectors \(rows they delete would be read back\)"),
    ({"delta.columnMapping.mode": "name"}, r"column mapping mode 'name' \(columns are stored under other names\)"),
], ids=["deletion vectors", "column mapping"])
def test_tables_with_features_the_reader_cannot_apply_are_refused_by_reads_and_writes(spark, tmp_path, configuration,
                                                                                        named):
    """A warehouse table an engine with those features rewrote (a DELETE that left deletion vectors)."""
    from deltalake import write_deltalake

    uri = str(tmp_path / "t")
    write_deltalake(uri, _day("2026-11-10", [1]), partition_by=["dt"], configuration=configuration)
    refused = rf"^{uri} uses {named}, which this project's Delta reader does not apply; drop the table feature"
    for read in (lambda: delta.read_arrow(uri), lambda: delta.read_table(spark, uri)):
        with pytest.raises(ValueError, match=refused):
            read()
    with pytest.raises(ValueError, match=refused):
        delta.write_arrow(_day("2026-11-10", [2]), uri, mode="overwrite", partition_by=["dt"],
                          replace_partitions=["2026-11-10"])
    assert delta.table_version(uri) == 0
