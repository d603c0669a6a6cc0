"""The published dates and the rows come from one version of each table, even when a rollback
commits between binding the parameters and running the query."""
from __future__ import annotations

import contextlib
import datetime as dt

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from analyst import audience as audience_module
from analyst import query as query_module
from analyst.catalog import published_dates, warehouse_tables
from analyst.engine import SparkEngine
from core import delta
from core.config import Paths

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
# dt, user_id, rank, tag_id (objective ctr)
ROWS = [(D1, "u1", 1, "t1"), (D1, "u2", 2, "t1"), (D1, "u3", 1, "t2"),
        (D2, "u1", 1, "t1"), (D2, "u2", 1, "t1"), (D2, "u3", 2, "t1"), (D2, "u4", 1, "t2")]


def _profiles(rows) -> pa.Table:
    columns = list(zip(*rows)) or [[], [], [], []]
    n = len(rows)
    return pa.table({
        "dt": pa.array(columns[0], pa.date32()), "user_id": pa.array(columns[1], pa.string()),
        "objective": pa.array(["ctr"] * n, pa.string()), "rank": pa.array(columns[2], pa.int32()),
        "tag_id": pa.array(columns[3], pa.string()), "score": pa.array([0.5] * n, pa.float64()),
        "model_version": pa.array(["v1"] * n, pa.string()),
    })


@pytest.fixture
def warehouse(tmp_path) -> Paths:
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    delta.write_arrow(_profiles(ROWS), f"{paths.warehouse}/user_tag_profiles", mode="overwrite", partition_by=["dt"])
    return paths


def _roll_back_latest_date(paths: Paths) -> None:
    """What `rollback --date D2` commits: the partition of D2 replaced by nothing."""
    delta.write_arrow(_profiles([]), f"{paths.warehouse}/user_tag_profiles", mode="overwrite",
                      partition_by=["dt"], replace_partitions=[D2.isoformat()])


def _rollback_before_the_engine_opens(monkeypatch, module, paths: Paths) -> None:
    real_open_engine = module.open_engine

    @contextlib.contextmanager
    def open_after_a_rollback(*args, **kwargs):
        _roll_back_latest_date(paths)
        with real_open_engine(*args, **kwargs) as engine:
            yield engine

    monkeypatch.setattr(module, "open_engine", open_after_a_rollback)


def _overrides(paths: Paths) -> list[str]:
    return [f"--set=paths.{k}={getattr(paths, k)}" for k in ("raw", "warehouse", "models")]


def _holders(day: dt.date, tag: str, max_rank: int) -> int:
    return len({u for d, u, r, t in ROWS if d == day and t == tag and r <= max_rank})


def test_a_rollback_between_binding_and_running_does_not_change_the_answer(warehouse, monkeypatch, capsys):
    _rollback_before_the_engine_opens(monkeypatch, query_module, warehouse)
    code = query_module.main([*_overrides(warehouse), "--engine", "duckdb", "--name", "tag_audience_change",
                              "--param", "tag=t1", "--param", "max_rank=2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    now, before = _holders(D2, "t1", 2), _holders(D1, "t1", 2)
    row = captured.out.strip().splitlines()[2].split()
    assert row == ["t1", "ctr", "2", D2.isoformat(), str(now), D1.isoformat(), str(before), str(now - before)]
    # The rollback did commit: a new command sees only D1.
    assert published_dates(warehouse_tables(warehouse)) == [D1]


def test_an_audience_is_cut_from_the_version_its_date_was_checked_on(warehouse, monkeypatch, tmp_path, capsys):
    _rollback_before_the_engine_opens(monkeypatch, audience_module, warehouse)
    out = tmp_path / "audience.csv"
    code = audience_module.main([*_overrides(warehouse), "--engine", "duckdb", "--tags", "t1", "--max-rank", "2",
                                 "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    users = sorted(u for d, u, r, t in ROWS if d == D2 and t == "t1" and r <= 2)
    assert pcsv.read_csv(out).column("user_id").to_pylist() == users


def test_both_engines_read_the_pinned_versions(spark, warehouse):
    from analyst.engine import DuckDBEngine

    tables = warehouse_tables(warehouse)
    _roll_back_latest_date(warehouse)
    sql = "SELECT dt, COUNT(*) AS n FROM user_tag_profiles GROUP BY dt ORDER BY dt"
    expected = [{"dt": day, "n": sum(1 for row in ROWS if row[0] == day)} for day in (D1, D2)]
    duck, on_spark = DuckDBEngine(warehouse, tables), SparkEngine(spark, warehouse, tables)
    try:
        assert duck.run(sql).to_pylist() == on_spark.run(sql).to_pylist() == expected
    finally:
        duck.close()
        on_spark.close()
    assert published_dates(tables) == [D1, D2]
