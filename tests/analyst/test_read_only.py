"""Only one SELECT/WITH query runs, on both engines; DuckDB's connection cannot touch files."""
from __future__ import annotations

import re

import duckdb
import pytest

from analyst import catalog
from analyst.engine import check_duckdb_statement
from analyst.sqltext import ReadOnlyError, check_read_only, placeholders

REFUSED = [
    ("INSERT INTO user_tag_profiles SELECT * FROM user_tag_profiles", "INSERT"),
    ("CREATE TABLE copy AS SELECT * FROM user_tag_profiles", "CREATE"),
    ("create or replace view tags as select 1 as x", "CREATE"),
    ("DROP TABLE user_tag_profiles", "DROP"),
    ("DELETE FROM user_tag_profiles", "DELETE"),
    ("UPDATE user_tag_profiles SET score = 0", "UPDATE"),
    ("MERGE INTO user_tag_profiles t USING tags s ON t.tag_id = s.tag_id WHEN MATCHED THEN DELETE", "MERGE"),
    ("ALTER TABLE user_tag_profiles RENAME TO gone", "ALTER"),
    ("COPY user_tag_profiles TO 'out.csv'", "COPY"),
    ("ATTACH 'other.db' AS other", "ATTACH"),
    ("INSTALL delta", "INSTALL"),
    ("LOAD delta", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("CALL dbgen(sf = 1)", "CALL"),
    ("TRUNCATE TABLE user_tag_profiles", "TRUNCATE"),
    ("SELECT 1; DROP TABLE user_tag_profiles", "multiple statements"),
    ("SELECT 1; SELECT 2;", "multiple statements"),
    ("/* a comment */ DROP TABLE tags", "DROP"),
    ("(DELETE FROM tags)", "DELETE"),
    ("WITH a AS (SELECT 1 AS x) INSERT INTO tags SELECT x FROM a", "INSERT"),
    ("INSERT OVERWRITE DIRECTORY '/tmp/x' USING parquet SELECT 1", "INSERT"),
    ("SELECT * FROM tags WHERE tag_id IN (SELECT 1); -- trailing\nDROP TABLE tags", "multiple statements"),
    ("SELECT TRANSFORM(user_id) USING 'cat' AS (u) FROM user_tag_profiles", "TRANSFORM"),
    ("SELECT a FROM t MAP a USING 'cat'", "TRANSFORM USING"),
    ("SELECT 1 AS x FROM t WHERE y IN (SELECT load FROM s)", "LOAD"),
    ("SELECT 1 AS x FROM t WHERE set = 1", "SET"),
    ("WITH a AS (SELECT 1) CALL f()", "CALL"),
    ("SELECT reflect('java.lang.Thread', 'sleep', 1000)", "REFLECT"),
    ("EXPORT DATABASE 'somewhere'", "EXPORT"),
    ("UPSERT INTO tags VALUES (1)", "UPSERT"),
    ("DETACH other", "DETACH"),
    ("RESET enable_external_access", "RESET"),
    ("EXECUTE plan_a", "EXECUTE"),
    ("IMPORT DATABASE 'somewhere'", "IMPORT"),
    ("VACUUM tags", "VACUUM"),
    ("CHECKPOINT", "CHECKPOINT"),
    ("GRANT SELECT ON tags TO someone", "GRANT"),
    ("REVOKE SELECT ON tags FROM someone", "REVOKE"),
    ("CACHE TABLE tags", "CACHE"),
    ("UNCACHE TABLE tags", "UNCACHE"),
    ("REFRESH TABLE tags", "REFRESH"),
    ("MSCK REPAIR TABLE tags", "MSCK"),
    ("   ", "empty"),
]


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
@pytest.mark.parametrize("sql,kind", REFUSED)
def test_the_guard_names_each_refused_statement_kind(sql, kind, dialect):
    with pytest.raises(ReadOnlyError) as refused:
        check_read_only(sql, dialect)
    assert refused.value.kind == kind
    assert kind in str(refused.value)


def test_both_engines_refuse_before_running_and_the_tables_survive(duck, spark_engine, data):
    for engine in (duck, spark_engine):
        for sql, kind in REFUSED:
            with pytest.raises(ReadOnlyError) as refused:
                engine.run(sql)
            assert refused.value.kind == kind, (engine.dialect, sql)
    expected = len(data.rows)
    assert duck.run("SELECT COUNT(*) AS n FROM user_tag_profiles").to_pylist() == [{"n": expected}]
    assert spark_engine.run("SELECT COUNT(*) AS n FROM user_tag_profiles").to_pylist() == [{"n": expected}]


def test_keywords_inside_strings_comments_and_quoted_names_are_not_statements(duck):
    sql = """SELECT 'DROP TABLE x; DELETE' AS s, "update" AS u  -- ; DROP TABLE tags
             FROM (SELECT 1 AS "update") /* ; INSERT */ WHERE 'a;b' <> ';'"""
    check_read_only(sql, "duckdb")
    assert duck.run(sql).to_pylist() == [{"s": "DROP TABLE x; DELETE", "u": 1}]


def test_the_scanner_reads_strings_as_each_engine_does(duck, spark_engine):
    # Spark reads \' as a quote inside the string: one statement. DuckDB ends the string at \': two.
    sql = r"SELECT 'a\'; DROP TABLE tags; --' AS s"
    assert spark_engine.run(sql).to_pylist() == [{"s": "a'; DROP TABLE tags; --"}]
    with pytest.raises(ReadOnlyError, match=r"multiple statements \(2\)"):
        duck.run(sql)
    # DuckDB doubles the quote; its E-strings and $-quoted strings hide keywords too.
    assert duck.run("SELECT 'it''s; DROP' AS a, E'x\\'; DROP' AS b, $q$; DROP$q$ AS c").to_pylist() == [
        {"a": "it's; DROP", "b": "x'; DROP", "c": "; DROP"}]


# Texts a scanner that stopped a name at a non-ASCII letter, a number before its glued name, or an
# E-string at '' would read as one statement; DuckDB runs each as several.
DUCKDB_READINGS = [
    "SELECT 1e$$; DROP VIEW user_tag_profiles; CREATE VIEW user_tag_profiles AS SELECT 42 AS x; SELECT 1e$$",
    "SELECT é$$ ; DROP VIEW tags ; SELECT é$$",
    "SELECT €$$; DROP VIEW tags; SELECT €$$",
    "SELECT x€$$; DROP VIEW tags; SELECT x€$$",
    "SELECT ٣$$; DROP VIEW tags; SELECT ٣$$",
    r"SELECT E'''\'' AS a; DROP VIEW tags; SELECT 1 AS b --'",
]


@pytest.mark.parametrize("sql", DUCKDB_READINGS)
def test_the_scanner_ends_names_numbers_and_e_strings_where_duckdb_does(sql):
    statements = len(duckdb.extract_statements(sql))
    assert statements > 1
    with pytest.raises(ReadOnlyError, match=rf"multiple statements \({statements}\)"):
        check_read_only(sql, "duckdb")


def test_duckdbs_own_parser_must_read_one_select(duck, data):
    for sql, kinds in (("SELECT 1; SELECT 2", "2 statements (SELECT, SELECT)"),
                       ("EXPLAIN SELECT 1", "1 statements (EXPLAIN)"), ("", "0 statements (none)")):
        with pytest.raises(ReadOnlyError, match=re.escape(f"refused: DuckDB reads {kinds}")):
            check_duckdb_statement(duck.connection, sql)
    for sql in DUCKDB_READINGS:
        with pytest.raises(ReadOnlyError, match="multiple statements"):
            duck.run(sql)
    assert duck.run("SELECT COUNT(*) AS n FROM user_tag_profiles").to_pylist() == [{"n": len(data.rows)}]


def test_a_pivot_without_its_in_list_is_refused_with_the_hint(duck):
    # DuckDB reads it as CREATE TYPE + SELECT; with its IN list it is one SELECT.
    with pytest.raises(ReadOnlyError, match=r"DuckDB reads 2 statements \(CREATE, SELECT\); .* a PIVOT needs its "
                                            r"IN \(\.\.\.\) list here$"):
        duck.run("SELECT * FROM (PIVOT (SELECT 1 AS a, 2 AS b) ON a USING sum(b))")
    assert duck.run("SELECT * FROM (PIVOT (SELECT 1 AS a, 2 AS b) ON a IN (1) USING sum(b))").to_pylist() == [
        {"1": 2}]


def test_casts_are_not_parameters():
    assert placeholders("SELECT x::DATE, :date, ':nope' FROM t -- :nor_this", "duckdb") == ["date"]


def test_duckdb_connection_cannot_write_or_read_files_even_without_the_guard(warehouse, tmp_path, data):
    connection = catalog.duckdb_connection(warehouse)
    target = tmp_path / "leak.csv"
    try:
        with pytest.raises(duckdb.PermissionException, match="COPY TO is disabled"):
            connection.execute(f"COPY (SELECT * FROM user_tag_profiles) TO '{target}' (HEADER)")
        with pytest.raises(duckdb.PermissionException):
            connection.execute(f"COPY (SELECT 1 AS x) TO '{tmp_path / 'x.parquet'}' (FORMAT parquet)")
        with pytest.raises(duckdb.PermissionException):
            connection.execute(f"EXPORT DATABASE '{tmp_path / 'export'}'")
        with pytest.raises(duckdb.PermissionException):
            connection.execute(f"ATTACH '{tmp_path / 'other.db'}' AS other")
        with pytest.raises(duckdb.PermissionException):
            connection.execute("SELECT * FROM read_csv('/etc/hostname')")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            connection.execute("SET enable_external_access = true")
        rows = connection.execute("SELECT COUNT(*) FROM user_tag_profiles").fetchall()
    finally:
        connection.close()
    assert rows == [(len(data.rows),)]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unlocked_notebook_connection_can_read_other_files(warehouse, tmp_path, data):
    (tmp_path / "mine.csv").write_text("tag_id\nt1\n")
    connection = catalog.duckdb_connection(warehouse, lock=False)
    try:
        rows = connection.execute(
            f"SELECT COUNT(*) FROM user_tag_profiles JOIN read_csv('{tmp_path / 'mine.csv'}') USING (tag_id)"
        ).fetchall()
    finally:
        connection.close()
    assert rows == [(sum(1 for row in data.rows if row[4] == "t1"),)]
