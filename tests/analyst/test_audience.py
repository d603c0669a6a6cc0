"""Audience exports: content against a hand computation, atomic writes, clear errors."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from analyst import audience as audience_module
from analyst import output as output_module
from analyst.audience import AudienceSpec, UnknownTagError, export_audience
from analyst.catalog import UnpublishedDateError, published_dates
from analyst.engine import DuckDBEngine, SparkEngine
from core import delta
from core.config import Paths

CSV_TYPES = {"user_id": pa.string(), "tag_id": pa.string(), "rank": pa.int32(), "score": pa.float64(),
             "matched_tags": pa.int64()}


def expect_audience(data, day, objective, tags, max_rank=None, min_score=None):
    """(rows of the export, users per tag), computed from the inline rows."""
    qualified = [(u, t, r, s) for d, u, o, r, t, s, _ in data.rows
                 if d == day and o == objective and t in tags
                 and (max_rank is None or r <= max_rank) and (min_score is None or s >= min_score)]
    by_user: dict[str, list] = {}
    for u, t, r, s in qualified:
        by_user.setdefault(u, []).append((r, -s, t, s))
    rows = []
    for user in sorted(by_user):
        r, _, t, s = min(by_user[user])
        rows.append({"user_id": user, "tag_id": t, "rank": r, "score": s, "matched_tags": len(by_user[user])})
    per_tag = {t: len({u for u, x, _, _ in qualified if x == t}) for t in tags}
    return rows, per_tag


def _read_csv(path) -> list[dict]:
    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=CSV_TYPES)).to_pylist()


def test_csv_export_on_duckdb(duck, warehouse, data, tmp_path):
    spec = AudienceSpec(tags=("t1", "t4", "t6"), max_rank=3)
    summary = export_audience(duck, spec, tmp_path / "out" / "audience.csv")
    rows, per_tag = expect_audience(data, data.D2, "ctr", spec.tags, max_rank=3)
    assert summary.date == data.D2 and summary.users == len(rows) and summary.per_tag == per_tag
    assert per_tag["t6"] == 0 and any(r["matched_tags"] == 2 for r in rows)
    assert any(r["user_id"] == data.odd_user for r in rows)
    assert _read_csv(summary.output) == rows
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["audience.csv"]


def test_parquet_export_on_spark_with_a_score_threshold_and_a_date(spark_engine, warehouse, data, tmp_path):
    spec = AudienceSpec(tags=("t1", "t3"), objective="ctr", date=data.D1, min_score=0.3)
    summary = export_audience(spark_engine, spec, tmp_path / "audience.parquet")
    rows, per_tag = expect_audience(data, data.D1, "ctr", spec.tags, min_score=0.3)
    assert len(rows) >= 3 and summary.per_tag == per_tag and summary.users == len(rows)
    assert pq.read_table(summary.output).to_pylist() == rows


def test_the_same_audience_on_both_engines(duck, spark_engine, warehouse, data, tmp_path):
    spec = AudienceSpec(tags=("t2", "t4"), objective="cvr", max_rank=3, min_score=0.05)
    published = published_dates(spark_engine.tables)
    on_duck = export_audience(duck, spec, tmp_path / "d.parquet", published)
    on_spark = export_audience(spark_engine, spec, tmp_path / "s.parquet", published)
    expected, per_tag = expect_audience(data, data.D2, "cvr", spec.tags, 3, 0.05)
    assert pq.read_table(on_duck.output).to_pylist() == pq.read_table(on_spark.output).to_pylist() == expected
    assert on_duck.per_tag == on_spark.per_tag == per_tag


def test_a_date_without_profiles_lists_the_published_dates(duck, warehouse, tmp_path):
    spec = AudienceSpec(tags=("t1",), date=dt.date(2026, 11, 3))
    with pytest.raises(UnpublishedDateError,
                       match="no published profiles for 2026-11-03; published dates: 2026-11-01, 2026-11-02"):
        export_audience(duck, spec, tmp_path / "a.csv")
    with pytest.raises(UnpublishedDateError, match="no published profiles yet"):
        export_audience(duck, AudienceSpec(tags=("t1",)), tmp_path / "a.csv", [])
    assert list(tmp_path.iterdir()) == []


def test_unknown_tags_and_objectives_are_named(duck, warehouse, tmp_path):
    published = published_dates(duck.tables)
    with pytest.raises(UnknownTagError, match=r"unknown tag\(s\) on 2026-11-02: t11 \(close: t1\); zz"):
        export_audience(duck, AudienceSpec(tags=("t1", "t11", "zz")), tmp_path / "a.csv", published)
    with pytest.raises(ValueError, match="objective 'ctr_x_cvr' has no profiles on 2026-11-02; objectives: ctr, cvr"):
        export_audience(duck, AudienceSpec(tags=("t1",), objective="ctr_x_cvr"), tmp_path / "a.csv", published)
    with pytest.raises(ValueError, match="max_rank must be >= 1"):
        export_audience(duck, AudienceSpec(tags=("t1",), max_rank=0), tmp_path / "a.csv", published)
    with pytest.raises(ValueError, match="must end with .csv or .parquet"):
        export_audience(duck, AudienceSpec(tags=("t1",)), tmp_path / "a.json", published)
    assert list(tmp_path.iterdir()) == []


def _tags_by_date(days_tags) -> pa.Table:
    rows = [(day, tag) for day, tags in days_tags.items() for tag in tags]
    return pa.table({"dt": pa.array([d for d, _ in rows], pa.date32()), "tag_id": pa.array([t for _, t in rows])})


def test_a_tag_only_another_date_knows_is_unknown(spark, warehouse, data, tmp_path):
    # t7 was retired after D1, t8 is new on D2 and in nobody's profile yet.
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    profiles = delta.read_arrow(f"{warehouse.warehouse}/user_tag_profiles")
    delta.write_arrow(profiles, f"{paths.warehouse}/user_tag_profiles", mode="overwrite", partition_by=["dt"])
    catalogue = sorted(data.tags)
    delta.write_arrow(_tags_by_date({data.D1: [*catalogue, "t7"], data.D2: [*catalogue, "t8"]}),
                      f"{paths.warehouse}/tags", mode="overwrite", partition_by=["dt"])
    for engine in (DuckDBEngine(paths), SparkEngine(spark, paths)):
        try:
            with pytest.raises(UnknownTagError, match=r"^unknown tag\(s\) on 2026-11-02: t7$"):
                export_audience(engine, AudienceSpec(tags=("t1", "t7")), tmp_path / "a.csv")
            assert not (tmp_path / "a.csv").exists()
            on_d2 = export_audience(engine, AudienceSpec(tags=("t1", "t8")), tmp_path / "d2.csv")
            assert (_read_csv(on_d2.output), on_d2.per_tag) == expect_audience(data, data.D2, "ctr", ("t1", "t8"))
            on_d1 = export_audience(engine, AudienceSpec(tags=("t1", "t7"), date=data.D1), tmp_path / "d1.csv")
            assert (_read_csv(on_d1.output), on_d1.per_tag) == expect_audience(data, data.D1, "ctr", ("t1", "t7"))
            with pytest.raises(UnknownTagError, match=r"^unknown tag\(s\) on 2026-11-01: t8$"):
                export_audience(engine, AudienceSpec(tags=("t8",), date=data.D1), tmp_path / "a.csv")
        finally:
            engine.close()


@pytest.mark.parametrize("name,writer", [("audience.parquet", "pq.write_table"), ("audience.csv", "pcsv.write_csv")])
def test_a_failed_write_leaves_no_partial_file_and_keeps_the_old_one(duck, warehouse, tmp_path, monkeypatch,
                                                                      name, writer):
    target = tmp_path / name
    target.write_bytes(b"the previous audience")
    module_name, function = writer.split(".")

    def write_half_then_fail(table, where, *args, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(getattr(output_module, module_name), function, write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_audience(duck, AudienceSpec(tags=("t1",)), target)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert target.read_bytes() == b"the previous audience"


def test_the_cli_prints_sizes_per_tag_without_spark(warehouse, data, tmp_path, monkeypatch, capsys):
    def no_spark(*args, **kwargs):
        raise AssertionError("the duckdb engine must not build a SparkSession")

    monkeypatch.setattr("core.spark.spark_session", no_spark)
    overrides = [f"--set=paths.{k}={getattr(warehouse, k)}" for k in ("raw", "warehouse", "models")]
    out = tmp_path / "a.csv"
    code = audience_module.main([*overrides, "--tags", "t3,t1", "--max-rank", "2", "--output", str(out),
                                 "--engine", "duckdb"])
    rows, per_tag = expect_audience(data, data.D2, "ctr", ("t3", "t1"), max_rank=2)
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"audience of 2026-11-02 (objective ctr, rank <= 2): {len(rows)} users -> {out}"
    assert [line.split() for line in lines[2:]] == [[t, str(n)] for t, n in per_tag.items()]
    assert _read_csv(out) == rows
    code = audience_module.main([*overrides, "--tags", "t1", "--date", "2026-10-01", "--output", str(out),
                                 "--engine", "duckdb"])
    assert code == 2
    assert "no published profiles for 2026-10-01" in capsys.readouterr().err


def test_the_cli_prints_the_score_threshold_it_applied(warehouse, data, tmp_path, capsys):
    # 0.4500001 leaves out u2's t1 at 0.45: printed rounded ("score >= 0.45") it would seem to let it in.
    overrides = [f"--set=paths.{k}={getattr(warehouse, k)}" for k in ("raw", "warehouse", "models")]
    out = tmp_path / "a.csv"
    code = audience_module.main([*overrides, "--tags", "t1", "--min-score", "0.4500001", "--output", str(out),
                                 "--engine", "duckdb"])
    rows, _ = expect_audience(data, data.D2, "ctr", ("t1",), min_score=0.4500001)
    assert code == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        f"audience of 2026-11-02 (objective ctr, score >= 0.4500001): {len(rows)} users -> {out}"
    written = _read_csv(out)
    assert written == rows and "u2" not in [r["user_id"] for r in written]


def test_the_cli_reports_an_engine_error_in_one_line_and_returns_1(warehouse, tmp_path, capsys):
    """A data file of the profiles gone (deleted by hand, a vacuum with a short retention): the
    engine's own message, as analyst.query gives it, not a traceback."""
    paths = _warehouse_with_rows(tmp_path, warehouse, [])
    profiles = Path(paths.warehouse) / "user_tag_profiles"
    for data_file in profiles.glob("dt=2026-11-02/*.parquet"):
        data_file.unlink()
    overrides = [f"--set=paths.{k}={getattr(paths, k)}" for k in ("raw", "warehouse", "models")]
    code = audience_module.main([*overrides, "--tags", "t1", "--output", str(tmp_path / "a.csv"),
                                 "--engine", "duckdb"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert re.fullmatch(rf"python -m analyst\.audience: error: table {profiles} \(version 0\) lists a data file "
                        rf"that is gone: {profiles}/dt=2026-11-02/part-\S+\.parquet; it was deleted outside the "
                        rf"pipeline \(or by a vacuum with a short retention\): restore it, or roll the table back",
                        err), err
    assert not (tmp_path / "a.csv").exists()


def _warehouse_with_rows(tmp_path, warehouse, rows) -> Paths:
    """A copy of the test warehouse whose user_tag_profiles also hold `rows` (dt, user, objective, rank, tag,
    score, model_version), appended as a commit of their own (none: an exact copy)."""
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    profiles = delta.read_arrow(f"{warehouse.warehouse}/user_tag_profiles")
    delta.write_arrow(profiles, f"{paths.warehouse}/user_tag_profiles", mode="overwrite", partition_by=["dt"])
    delta.write_arrow(delta.read_arrow(f"{warehouse.warehouse}/tags"), f"{paths.warehouse}/tags", mode="overwrite",
                      partition_by=["dt"])
    if not rows:
        return paths
    columns = list(zip(*rows))
    extra = pa.table([pa.array(values, field.type) for values, field in zip(columns, profiles.schema)],
                     schema=profiles.schema)
    delta.write_arrow(extra, f"{paths.warehouse}/user_tag_profiles", mode="append", partition_by=["dt"])
    return paths


def test_a_duplicated_profile_row_counts_its_tag_once(spark, warehouse, data, tmp_path):
    # u1's t1 (rank 2) twice on D2: COUNT(*) made matched_tags 3 for the two tags t1, t2.
    duplicate = next(row for row in data.rows if row[:3] == (data.D2, "u1", "ctr") and row[4] == "t1")
    paths = _warehouse_with_rows(tmp_path, warehouse, [duplicate])
    assert len(delta.read_arrow(f"{paths.warehouse}/user_tag_profiles")) == len(data.rows) + 1
    spec = AudienceSpec(tags=("t1", "t2"))
    expected, per_tag = expect_audience(data, data.D2, "ctr", spec.tags)
    assert {"user_id": "u1", "tag_id": "t2", "rank": 1, "score": 0.85, "matched_tags": 2} in expected
    for engine in (DuckDBEngine(paths), SparkEngine(spark, paths)):
        try:
            summary = export_audience(engine, spec, tmp_path / f"{engine.dialect}.parquet")
            assert pq.read_table(summary.output).to_pylist() == expected, engine.dialect
            assert summary.per_tag == per_tag and summary.users == len(expected)
        finally:
            engine.close()


def test_a_null_rank_sorts_last_on_both_engines(spark, warehouse, data, tmp_path):
    # u9 holds t2 with no rank (and the higher score) and t1 at rank 3. Spark sorts an ascending NULL
    # first and DuckDB last, so each engine picked a different best tag for the same audience.
    extra = [(data.D2, "u9", "ctr", None, "t2", 0.99, "v2"), (data.D2, "u9", "ctr", 3, "t1", 0.10, "v2")]
    paths = _warehouse_with_rows(tmp_path, warehouse, extra)
    spec = AudienceSpec(tags=("t1", "t2"))
    qualified = [(u, t, r, s) for d, u, o, r, t, s, _ in [*data.rows, *extra]
                 if d == data.D2 and o == "ctr" and t in spec.tags]
    expected = []
    for user in sorted({u for u, _, _, _ in qualified}):
        mine = [(r is None, r or 0, -s, t, r, s) for u, t, r, s in qualified if u == user]
        *_, tag, rank, score = min(mine)
        expected.append({"user_id": user, "tag_id": tag, "rank": rank, "score": score,
                         "matched_tags": len({t for _, _, _, t, _, _ in mine})})
    assert {"user_id": "u9", "tag_id": "t1", "rank": 3, "score": 0.10, "matched_tags": 2} in expected
    for engine in (DuckDBEngine(paths), SparkEngine(spark, paths)):
        try:
            summary = export_audience(engine, spec, tmp_path / f"{engine.dialect}.parquet")
            assert pq.read_table(summary.output).to_pylist() == expected, engine.dialect
        finally:
            engine.close()


def test_export_audience_refuses_an_output_inside_the_pipeline_folders(spark, warehouse, data, tmp_path):
    # Only the command line refused these: from Python, a live data file of the table was replaced.
    paths = dataclasses.replace(_warehouse_with_rows(tmp_path, warehouse, []), staging=str(tmp_path / "staging"))
    live = sorted((tmp_path / "warehouse" / "user_tag_profiles" / "dt=2026-11-02").glob("*.parquet"))[0]
    before = live.read_bytes()
    targets = {live: "warehouse", tmp_path / "warehouse" / "new.csv": "warehouse",
               tmp_path / "warehouse" / "_staging" / "a.parquet": "warehouse",
               tmp_path / "staging" / "a.parquet": "staging",
               tmp_path / "raw" / "a.csv": "raw", tmp_path / "models" / "a.csv": "models"}
    spec = AudienceSpec(tags=("t1",))
    for engine in (DuckDBEngine(paths), SparkEngine(spark, paths)):
        try:
            for target, folder in targets.items():
                with pytest.raises(ValueError, match=f"^output {str(target)!r} is inside paths.{folder} "):
                    export_audience(engine, spec, target)
            summary = export_audience(engine, spec, tmp_path / "out" / f"{engine.dialect}.csv")
            written = pcsv.read_csv(summary.output, convert_options=pcsv.ConvertOptions(column_types=CSV_TYPES))
            assert written.to_pylist() == expect_audience(data, data.D2, "ctr", spec.tags)[0]
        finally:
            engine.close()
    assert live.read_bytes() == before
    assert not (tmp_path / "warehouse" / "new.csv").exists()
    assert not any((tmp_path / name).exists() for name in ("raw", "models", "staging", "warehouse/_staging"))
    assert delta.read_arrow(f"{paths.warehouse}/user_tag_profiles").num_rows == len(data.rows)
