"""Spark reads an analyst query as Spark does: no script, no reflection, no file, no `${...}` substitution.

The exploit strings are the ones that ran a shell command or called Java through
`SparkEngine.run` before the guard read the query with Spark's own parser.
"""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.errors import AnalysisException

from analyst import spark_guard
from analyst.engine import SparkEngine
from analyst.query import prepare
from analyst.sqltext import ReadOnlyError, check_read_only, scan

REFLECT_BEHIND_RAW_STRING = '''SELECT R"\\", reflect('java.lang.System','getProperty','user.name') AS x --"'''
REFLECT_BEHIND_COMMENT = "SELECT 1 AS a -- \\\n' \n, reflect('java.lang.System','getProperty','java.version') AS b --'"


def transform_behind_raw_string(target: str) -> str:
    return f'''SELECT TRANSFORM(R"\\") USING 'id > {target}; echo done' AS (x) FROM range(1) --"'''


EXPLOITS = [
    (transform_behind_raw_string("/tmp/x"), "TRANSFORM"),
    (REFLECT_BEHIND_RAW_STRING, "REFLECT"),
    (REFLECT_BEHIND_COMMENT, "REFLECT"),
]


@pytest.fixture
def guarded(spark_engine):
    """The engine's own session (analyst settings), for checking plans without the text scanner."""
    return spark_engine.spark


@pytest.mark.parametrize("sql,kind", EXPLOITS)
def test_the_text_check_reads_raw_strings_and_comments_as_spark_does(sql, kind):
    with pytest.raises(ReadOnlyError) as refused:
        check_read_only(sql, "spark")
    assert refused.value.kind == kind


def test_raw_strings_and_comment_continuations_per_dialect():
    texts = [t.text for t in scan('SELECT R"\\", r\'\\\' AS y -- a\\\nb\n, c', "spark")]
    assert texts == ["SELECT", 'R"\\"', ",", "r'\\'", "AS", "y", ",", "c"]
    # DuckDB ends a -- comment at the line's end, backslash or not; both end it at a CR.
    assert [t.text for t in scan("SELECT 1 -- a\\\nb", "duckdb")] == ["SELECT", "1", "b"]
    assert [t.text for t in scan("SELECT 1 -- a\rb", "spark")] == ["SELECT", "1", "b"]


def test_the_comment_rule_matches_spark_and_duckdb(spark_engine, duck):
    sql = "SELECT 1 AS a -- note\\\n, 2 AS b"
    assert spark_engine.run(sql).to_pylist() == [{"a": 1}]
    assert duck.run(sql).to_pylist() == [{"a": 1, "b": 2}]
    assert spark_engine.run("SELECT 1 AS a -- note\r, 2 AS b").to_pylist() == [{"a": 1, "b": 2}]


def test_the_script_exploit_is_refused_and_runs_nothing(spark_engine, tmp_path):
    target = tmp_path / "pwned"
    sql = transform_behind_raw_string(str(target))
    with pytest.raises(ReadOnlyError, match="TRANSFORM"):
        spark_engine.run(sql)
    # Spark's parser refuses it on its own too (a check that does not depend on the text scanner).
    with pytest.raises(ReadOnlyError) as refused:
        spark_guard.check_plan(spark_engine.spark, sql)
    assert refused.value.kind == "TRANSFORM USING"
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sql", [REFLECT_BEHIND_RAW_STRING, REFLECT_BEHIND_COMMENT])
def test_the_reflect_exploits_are_refused_by_both_checks(spark_engine, sql):
    with pytest.raises(ReadOnlyError, match="REFLECT"):
        spark_engine.run(sql)
    with pytest.raises(ReadOnlyError) as refused:
        spark_guard.check_plan(spark_engine.spark, sql)
    assert refused.value.kind == "REFLECT"


def test_a_reflection_call_with_a_side_effect_never_runs(spark, spark_engine):
    tmpdir = spark._jvm.java.lang.System.getProperty("java.io.tmpdir")
    from pathlib import Path

    before = set(Path(tmpdir).glob("analyst_guard_*"))
    for sql in ['''SELECT R"\\", reflect('java.io.File','createTempFile','analyst_guard_','.probe') AS x --"''',
                "SELECT IDENTIFIER('ref' || 'lect')('java.io.File','createTempFile','analyst_guard_','.probe') AS x",
                "SELECT java_method('java.io.File','createTempFile','analyst_guard_','.probe') AS x"]:
        with pytest.raises(ReadOnlyError):
            spark_engine.run(sql)
    assert set(Path(tmpdir).glob("analyst_guard_*")) == before


@pytest.mark.parametrize("sql,kind", [
    ("SELECT TRANSFORM(1) USING 'cat' AS (x)", "TRANSFORM USING"),
    ("SELECT reflect('java.lang.System', 'getProperty', 'user.name')", "REFLECT"),
    ("SELECT system.builtin.java_method('java.lang.System', 'getProperty', 'user.name')", "JAVA_METHOD"),
    ("SELECT IDENTIFIER('ref' || 'lect')('java.lang.System', 'getProperty', 'user.name')", "IDENTIFIER function name"),
    ("WITH a AS (SELECT try_reflect('java.lang.System', 'getProperty', 'x') AS r) SELECT * FROM a", "TRY_REFLECT"),
    ("SELECT 1 AS x WHERE EXISTS (SELECT reflect('java.lang.System', 'getProperty', 'x'))", "REFLECT"),
    ("SELECT /*+ REPARTITION(reflect('java.lang.System', 'getProperty', 'x')) */ 1", "REFLECT"),
    ("INSERT INTO tags SELECT * FROM tags", "InsertIntoStatement"),
    ("SET spark.sql.runSQLOnFiles=true", "SetCommand"),
    ("ADD JAR /tmp/x.jar", "AddJarsCommand"),
    ("CREATE TEMPORARY FUNCTION f AS 'x.Y'", "CreateFunctionCommand"),
])
def test_spark_parser_refuses_anything_but_a_plain_query(guarded, sql, kind):
    with pytest.raises(ReadOnlyError) as refused:
        spark_guard.check_plan(guarded, sql)
    assert refused.value.kind == kind


def test_sql_cannot_read_local_files(spark, spark_engine, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show\n")
    for sql in ["SELECT * FROM text.`/etc/hostname`", f"SELECT * FROM text.`{secret}`",
                f"SELECT * FROM csv.`{secret}`"]:
        with pytest.raises(AnalysisException, match="TABLE_OR_VIEW_NOT_FOUND"):
            spark_engine.run(sql)
    # The caller's session (the pipeline's) keeps Spark's defaults.
    assert spark.conf.get("spark.sql.runSQLOnFiles") == "true"


def test_variables_are_not_substituted_in_queries_or_parameter_values(spark, spark_engine, warehouse_with_tags):
    assert spark_engine.run("SELECT '${env:HOME}' AS h, '${spark.app.name}' AS n").to_pylist() == [
        {"h": "${env:HOME}", "n": "${spark.app.name}"}]
    tagged = warehouse_with_tags(["${env:HOME}"])  # a named query's tag must be a known one
    engine = SparkEngine(spark, tagged)
    try:
        prepared = prepare(tagged, "spark", name="tag_audience_change", params=["tag=${env:HOME}"],
                           tables=engine.tables)
        assert [row["tag_id"] for row in engine.run(prepared.sql).to_pylist()] == ["${env:HOME}"]
    finally:
        engine.close()
    assert spark.conf.get("spark.sql.variable.substitute") == "true"


def test_spark_queries_run_in_utc_as_duckdb_does_whatever_the_context_says(spark, warehouse, monkeypatch):
    """spark.extra may give the context another session time zone (the pipeline's jobs pin UTC
    themselves), and a new session starts from it; the analyst session pins UTC, as DuckDB's is
    (analyst.catalog), or a timestamp's date and hour differ between the engines."""
    new_session = spark.newSession

    def from_a_pacific_context():
        session = new_session()
        session.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
        return session

    monkeypatch.setattr(spark, "newSession", from_a_pacific_context)
    engine = SparkEngine(spark, warehouse)
    try:
        got = engine.run("SELECT CAST(TIMESTAMP '2026-11-10 03:30:00+00:00' AS DATE) AS d, "
                         "hour(TIMESTAMP '2026-11-10 03:30:00+00:00') AS h").to_pylist()
    finally:
        engine.close()
    assert got == [{"d": dt.date(2026, 11, 10), "h": 3}]


def test_the_plan_check_needs_the_analyst_settings(spark):
    with pytest.raises(ValueError, match="analyst_session"):
        spark_guard.check_plan(spark, "SELECT 1")


def test_a_query_refused_by_spark_parser_exits_2_like_any_refused_statement(spark_engine, warehouse, monkeypatch,
                                                                             capsys):
    import contextlib

    from analyst import query as query_module

    @contextlib.contextmanager
    def the_test_engine(*args, **kwargs):
        yield spark_engine

    monkeypatch.setattr(query_module, "open_engine", the_test_engine)
    overrides = [f"--set=paths.{k}={getattr(warehouse, k)}" for k in ("raw", "warehouse", "models")]
    code = query_module.main([*overrides, "--engine", "spark", "--query", "SELECT * FROM IDENTIFIER('tags')"])
    assert code == 2
    assert "refused: Spark reads the query as PlanWithUnresolvedIdentifier" in capsys.readouterr().err
