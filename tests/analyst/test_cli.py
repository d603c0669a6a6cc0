"""The commands analysts type: `spark-submit.sh sql`, `python -m analyst.query`, their errors and outputs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from core.config import Paths
from jobs import sql as sql_job

ROOT = Path(__file__).resolve().parents[2]


def _overrides(paths) -> list[str]:
    return [f"--set=paths.{k}={getattr(paths, k)}" for k in ("raw", "warehouse", "models")]


def _holders(data, tag, day, max_rank, objective="ctr"):
    return len({u for d, u, o, r, t, _, _ in data.rows if d == day and o == objective and t == tag and r <= max_rank})


def _expected_change_line(data, tag, max_rank):
    now, before = _holders(data, tag, data.D2, max_rank), _holders(data, tag, data.D1, max_rank)
    assert now != before  # the case must show a change
    return [tag, "ctr", str(max_rank), "2026-11-02", str(now), "2026-11-01", str(before), str(now - before)]


def _table_rows(stdout: str) -> list[list[str]]:
    """The rows of the printed table (spark-submit also sends the driver's stderr and logs to stdout)."""
    lines = stdout.strip().splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line.replace(" ", "")) == {"-"})
    end = next(i for i in range(rule, len(lines)) if lines[i].startswith("("))
    return [line.split() for line in lines[rule + 1:end]]


@pytest.fixture
def no_spark(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the duckdb engine must not build a SparkSession")

    monkeypatch.setattr("core.spark.spark_session", refuse)


def test_sql_job_on_duckdb_prints_the_change_without_spark(warehouse, data, no_spark, capsys):
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--name", "tag_audience_change",
                         "--param", "tag=t1", "--param", "max_rank=2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _table_rows(captured.out) == [_expected_change_line(data, "t1", 2)]
    assert captured.out.strip().endswith("(1 row)")
    assert "tag_audience_change on duckdb: tag=t1, date=2026-11-02, previous_date=2026-11-01" in captured.err


def test_sql_job_writes_csv_and_parquet(warehouse, data, no_spark, tmp_path, capsys):
    out = tmp_path / "counts.csv"
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--date", "2026-11-01",
                         "--query", "SELECT dt, COUNT(*) AS n FROM user_tag_profiles WHERE dt = :date GROUP BY dt",
                         "--output", str(out)])
    assert code == 0
    assert f"wrote 1 rows to {out}" in capsys.readouterr().out
    assert pcsv.read_csv(out).to_pylist() == [{"dt": data.D1, "n": sum(1 for r in data.rows if r[0] == data.D1)}]


def test_a_nested_result_is_refused_for_csv_and_written_to_parquet(warehouse, data, no_spark, tmp_path, capsys):
    query = ["--query", "SELECT user_id, list(tag_id ORDER BY rank) AS tags FROM user_tag_profiles "
                        "WHERE dt = :date AND objective = 'ctr' GROUP BY user_id ORDER BY user_id"]
    csv_out = tmp_path / "profiles.csv"
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", *query, "--output", str(csv_out)])
    assert code == 2
    assert (f"error: output {str(csv_out)!r}: CSV cannot hold the nested column(s) tags (list<l: string>); "
            "write a .parquet file instead") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    parquet_out = tmp_path / "profiles.parquet"
    assert sql_job.main([*_overrides(warehouse), "--engine", "duckdb", *query, "--output", str(parquet_out)]) == 0
    ranked = sorted((u, r, t) for d, u, o, r, t, _, _ in data.rows if d == data.D2 and o == "ctr")
    expected = [{"user_id": user, "tags": [t for u, _, t in ranked if u == user]}
                for user in sorted({u for u, _, _ in ranked})]
    assert pq.read_table(parquet_out).to_pylist() == expected


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_an_interval_result_is_one_line_naming_its_column_and_the_cast(warehouse, no_spark, tmp_path, capsys, suffix):
    # DuckDB's timestamp difference is an INTERVAL, which neither CSV nor Parquet can hold.
    query = ["--query", "SELECT TIMESTAMP '2026-11-12 03:00:00' - TIMESTAMP '2026-11-12 01:00:00' AS took"]
    out = tmp_path / f"took.{suffix}"
    assert sql_job.main([*_overrides(warehouse), "--engine", "duckdb", *query, "--output", str(out)]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"spark-submit.sh sql: error: output {str(out)!r}: {suffix} cannot hold a column of")
    assert last.endswith("its columns: took (month_day_nano_interval); cast that column in the query "
                         "(e.g. CAST(x AS VARCHAR), or epoch(x) for an interval's seconds)")
    assert list(tmp_path.iterdir()) == []
    query = ["--query", "SELECT epoch(TIMESTAMP '2026-11-12 03:00:00' - TIMESTAMP '2026-11-12 01:00:00') AS took"]
    assert sql_job.main([*_overrides(warehouse), "--engine", "duckdb", *query, "--output", str(out)]) == 0
    read = pcsv.read_csv(out) if suffix == "csv" else pq.read_table(out)
    assert read.to_pylist() == [{"took": 7200.0}]


@pytest.mark.parametrize("args,code,message", [
    (["--query", "DROP TABLE user_tag_profiles"], 2, "refused: a DROP statement"),
    (["--query", "SELECT 1; DELETE FROM tags"], 2, "refused: multiple statements"),
    (["--name", "tag_audience_change"], 2, "missing parameter(s) tag"),
    (["--name", "tag_audience", "--param", "tag=t1", "--date", "2026-12-24"], 2,
     "no published profiles for 2026-12-24"),
    (["--query", "SELECT 1", "--output", "x.json"], 2, "must end with .csv or .parquet"),
    (["--query", "SELECT no_such_column FROM tags"], 1, "no_such_column"),
])
def test_errors_exit_non_zero_with_a_message(warehouse, no_spark, capsys, args, code, message):
    assert sql_job.main([*_overrides(warehouse), "--engine", "duckdb", *args]) == code
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_data_file_gone_is_one_line_and_exit_1_even_while_checking_parameters(warehouse, tmp_path, capsys,
                                                                                engine):
    """The tag check of a named query reads the profiles before any engine starts: a data file the
    Delta log lists but that is gone is the same one-line engine error there."""
    copy = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    shutil.copytree(warehouse.warehouse, copy.warehouse)
    gone = sorted((Path(copy.warehouse) / "user_tag_profiles").glob("dt=2026-11-02/*.parquet"))
    for data_file in gone:
        data_file.unlink()
    code = sql_job.main([*_overrides(copy), "--engine", engine, "--name", "tag_audience_change", "--param", "tag=t1"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    profiles = re.escape(f"{copy.warehouse}/user_tag_profiles")
    assert re.fullmatch(rf"spark-submit\.sh sql: error: table {profiles} \(version 0\) lists a data file that is "
                        rf"gone: {profiles}/dt=2026-11-02/\S+\.parquet; it was deleted outside the pipeline \(or "
                        rf"by a vacuum with a short retention\): restore it, or roll the table back", err), err


@pytest.mark.parametrize("value", ["-1", "ten", "2.5"])
def test_max_rows_must_be_a_row_count(warehouse, no_spark, capsys, value):
    with pytest.raises(SystemExit) as stopped:
        sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--query", "SELECT 1", "--max-rows", value])
    assert stopped.value.code == 2
    assert f"argument --max-rows: not a row count (a whole number >= 0): {value!r}" in capsys.readouterr().err


def test_max_rows_0_prints_the_row_count_alone(warehouse, data, no_spark, capsys):
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--max-rows", "0",
                         "--query", "SELECT tag_id FROM tags WHERE dt = :date ORDER BY tag_id"])
    assert code == 0
    count = len(data.tags)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"({count} rows; {count} more not shown, use --output or --max-rows)"


def test_list_shows_every_named_query(capsys):
    assert sql_job.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("user_top_tags", "tag_audience", "tag_audience_change", "tag_cooccurrence", "profile_changes"):
        assert f"\n{name}: " in f"\n{out}"


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_python_m_analyst_query_runs_without_spark(warehouse, data):
    result = _run([sys.executable, "-m", "analyst.query", *_overrides(warehouse), "--name", "tag_audience_change",
                   "--param", "tag=t3", "--param", "max_rank=2"])
    assert result.returncode == 0, result.stderr
    assert _table_rows(result.stdout) == [_expected_change_line(data, "t3", 2)]
    assert "on duckdb" in result.stderr


@pytest.mark.integration
def test_spark_submit_sql_prints_the_change(warehouse, data):
    result = _run([str(ROOT / "spark-submit.sh"), "sql", *_overrides(warehouse), "--name", "tag_audience_change",
                   "--param", "tag=t1", "--param", "max_rank=2", "--master", "local[1]"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert _table_rows(result.stdout) == [_expected_change_line(data, "t1", 2)]
    assert "tag_audience_change on spark" in result.stdout + result.stderr


def test_columns_with_the_same_name_each_print_their_own_values(warehouse, no_spark, capsys):
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb",
                         "--query", "SELECT tag_id, tag_index AS n, tag_index * 10 AS n FROM tags "
                                    "WHERE dt = :date AND tag_id IN ('t1', 't2') ORDER BY tag_id"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].split() == ["tag_id", "n", "n"]
    assert _table_rows(captured.out) == [["t1", "2", "20"], ["t2", "3", "30"]]


def test_output_inside_the_warehouse_is_refused_and_the_tables_stay_intact(warehouse, data, no_spark, tmp_path,
                                                                          capsys):
    import shutil

    from analyst import audience as audience_module
    from core.config import Paths

    own = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    shutil.copytree(warehouse.warehouse, own.warehouse)
    live = sorted((tmp_path / "warehouse" / "user_tag_profiles" / "dt=2026-11-02").glob("*.parquet"))[0]
    before = live.read_bytes()
    count = ["--query", "SELECT COUNT(*) AS n FROM user_tag_profiles"]
    targets = [live, tmp_path / "warehouse" / "new.csv", tmp_path / "warehouse" / "_staging" / "x.parquet",
               tmp_path / "models" / "x.csv"]
    for target in targets:
        code = sql_job.main([*_overrides(own), "--engine", "duckdb", "--output", str(target), *count])
        err = capsys.readouterr().err
        assert code == 2, (target, err)
        assert "which the analyst commands only read" in err
        code = audience_module.main([*_overrides(own), "--engine", "duckdb", "--tags", "t1", "--output", str(target)])
        assert code == 2
        assert "which the analyst commands only read" in capsys.readouterr().err
    assert live.read_bytes() == before
    assert not (tmp_path / "warehouse" / "new.csv").exists() and not (tmp_path / "models").exists()
    assert sql_job.main([*_overrides(own), "--engine", "duckdb", *count]) == 0
    assert _table_rows(capsys.readouterr().out) == [[str(len(data.rows))]]
    assert sql_job.main([*_overrides(own), "--engine", "duckdb", "--output", str(tmp_path / "n.csv"), *count]) == 0
    assert pcsv.read_csv(tmp_path / "n.csv").to_pylist() == [{"n": len(data.rows)}]


def test_an_output_that_cannot_be_written_stops_with_one_line(warehouse, no_spark, tmp_path, capsys):
    from analyst import audience as audience_module

    (tmp_path / "a_file").write_text("x")
    for target in (tmp_path / "a_file" / "out.csv", tmp_path / "a_file" / "sub" / "out.parquet"):
        code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--output", str(target),
                             "--query", "SELECT 1 AS x"])
        err = capsys.readouterr().err
        assert code == 2
        assert err.splitlines()[-1].startswith(f"spark-submit.sh sql: error: output {str(target)!r} cannot be "
                                               "written: ")
        assert "Traceback" not in err
        code = audience_module.main([*_overrides(warehouse), "--engine", "duckdb", "--tags", "t1",
                                     "--output", str(target)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.splitlines()[-1].startswith(f"python -m analyst.audience: error: output {str(target)!r} cannot "
                                               "be written: ")
    assert (tmp_path / "a_file").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize(("name", "params", "message"), [
    # objective=CTR matched no profile row and printed every tag with 0 users.
    ("tag_audience", ["objective=CTR", "max_rank=2"], "parameter objective='CTR' must be one of ctr, cvr, ctr_x_cvr"),
    # comparing a day with itself printed a difference of 0.
    ("tag_audience_change", ["tag=t1", "previous_date=2026-11-02"],
     "parameter previous_date=2026-11-02 must be before date=2026-11-02"),
    # ctr_x_cvr of dates scored without score.combined printed every tag with 0 users.
    ("tag_audience", ["objective=ctr_x_cvr"], "objective 'ctr_x_cvr' has no profiles on 2026-11-02; objectives: ctr, cvr"),
], ids=["objective_in_the_wrong_case", "previous_date_not_before_date", "objective_not_scored"])
def test_a_bad_named_query_parameter_stops_with_one_line(warehouse, no_spark, capsys, name, params, message):
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--name", name,
                         *[a for p in params for a in ("--param", p)]])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == f"spark-submit.sh sql: error: {message}\n"


def test_an_unknown_tag_stops_with_one_line_naming_it(warehouse, data, no_spark, capsys):
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--name", "tag_audience", "--param", "tag=t11"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == "spark-submit.sh sql: error: unknown tag(s) on 2026-11-02: t11 (close: t1)\n"
    code = sql_job.main([*_overrides(warehouse), "--engine", "duckdb", "--name", "tag_audience", "--param", "tag=t6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _table_rows(captured.out) == [["2026-11-02", "ctr", "t6", "0"]]
