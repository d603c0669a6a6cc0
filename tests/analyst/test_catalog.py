"""The views: every existing table, only the live files of its version, dt typed DATE, staging prefixed."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from analyst import catalog
from analyst.engine import DuckDBEngine, SparkEngine
from core import delta
from core.config import Paths

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


def _runs(rows) -> pa.Table:
    return pa.table({"dt": pa.array([r[0] for r in rows], pa.date32()),
                     "stage": pa.array([r[1] for r in rows], pa.string()),
                     "rows_out": pa.array([r[2] for r in rows], pa.int64())})


def test_views_show_only_live_files_and_staged_tables_get_a_prefix(spark, tmp_path):
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    runs = f"{paths.warehouse}/runs"
    delta.write_arrow(_runs([(D1, "score", 10), (D2, "score", 20)]), runs, mode="overwrite", partition_by=["dt"])
    # Replacing D1 leaves its old file on disk; only the Delta log says it is gone.
    delta.write_arrow(_runs([(D1, "score", 11), (D1, "publish", 12)]), runs, mode="overwrite",
                      partition_by=["dt"], replace_partitions=[D1.isoformat()])
    delta.write_arrow(_runs([(D2, "gates", 0)]), f"{paths.staging_root}/user_tag_profiles", mode="overwrite")
    assert len(list((tmp_path / "warehouse" / "runs" / "dt=2026-11-01").glob("*.parquet"))) == 2

    assert [(t.name, t.partition_columns) for t in catalog.warehouse_tables(paths)] == [
        ("runs", ("dt",)), ("staging_user_tag_profiles", ())]
    expected = [{"dt": D1, "stage": "publish", "rows_out": 12}, {"dt": D1, "stage": "score", "rows_out": 11},
                {"dt": D2, "stage": "score", "rows_out": 20}]
    sql = "SELECT dt, stage, rows_out FROM runs WHERE dt >= DATE '2026-11-01' ORDER BY dt, stage"
    duck = DuckDBEngine(paths)
    spark_engine = SparkEngine(spark, paths)
    try:
        for engine in (duck, spark_engine):
            assert engine.run(sql).to_pylist() == expected, engine.dialect
        assert duck.run("SELECT stage FROM staging_user_tag_profiles").to_pylist() == [{"stage": "gates"}]
        assert duck.run("SELECT typeof(dt) AS t FROM runs LIMIT 1").to_pylist() == [{"t": "DATE"}]
    finally:
        duck.close()
        spark_engine.close()
    assert not spark.catalog.tableExists("runs")


def test_an_empty_warehouse_has_no_views_and_no_published_dates(tmp_path):
    paths = Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    assert catalog.warehouse_tables(paths) == [] and catalog.published_dates(catalog.warehouse_tables(paths)) == []
    engine = DuckDBEngine(paths)
    try:
        assert engine.run("SELECT 1 AS one").to_pylist() == [{"one": 1}]
    finally:
        engine.close()


def test_duckdb_reads_a_warehouse_given_as_a_file_uri_in_a_folder_with_a_space(tmp_path):
    from urllib.parse import quote

    root = tmp_path / "ware house"
    delta.write_arrow(_runs([(D1, "score", 1), (D2, "score", 2)]), str(root / "runs"), mode="overwrite",
                      partition_by=["dt"])
    for warehouse in (str(root), "file://" + quote(str(root))):
        paths = Paths(raw=str(tmp_path / "raw"), warehouse=warehouse, models=str(tmp_path / "models"))
        engine = DuckDBEngine(paths)
        try:
            assert engine.run("SELECT dt, rows_out FROM runs ORDER BY dt").to_pylist() == [
                {"dt": D1, "rows_out": 1}, {"dt": D2, "rows_out": 2}], warehouse
        finally:
            engine.close()


def test_a_table_with_a_missing_data_file_fails_only_the_queries_that_read_it(spark, tmp_path):
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    delta.write_arrow(_runs([(D1, "score", 10)]), f"{paths.warehouse}/runs", mode="overwrite", partition_by=["dt"])
    staged = f"{paths.staging_root}/user_tag_profiles"
    delta.write_arrow(_runs([(D2, "gates", 0)]), staged, mode="overwrite")
    for data_file in (tmp_path / "warehouse").rglob("*.parquet"):
        if "_staging" in data_file.parts:
            data_file.unlink()
    duck, spark_engine = DuckDBEngine(paths), SparkEngine(spark, paths)
    try:
        for engine in (duck, spark_engine):
            assert engine.run("SELECT stage, rows_out FROM runs").to_pylist() == [
                {"stage": "score", "rows_out": 10}], engine.dialect
        with pytest.raises(catalog.MissingDataFileError, match="lists a data file that is gone"):
            duck.run("SELECT * FROM staging_user_tag_profiles")
    finally:
        duck.close()
        spark_engine.close()
