"""Typed parameters: clear errors for unknown, missing and ill-typed values; strings cannot inject SQL."""
from __future__ import annotations

import datetime as dt

import pytest

from analyst.catalog import UnknownTagError, UnpublishedDateError
from analyst.engine import DuckDBEngine, SparkEngine
from analyst.params import ParamError, ParamSpec, parse_value, render_literal
from analyst.queries import parse_query
from analyst.query import prepare

NASTY = ["t1' OR '1'='1", "t1\\' OR 1=1 --", "\\", "''", "a\\\\'b", "$$ DROP $$", "é ✓ \"q\" `b`",
         "x'; DROP TABLE tags; --"]


@pytest.mark.parametrize("params,message", [
    (["tag=t1", "colour=red"],
     r"unknown parameter\(s\) colour for tag_audience_change; its parameters: tag \(tag\)"),
    ([], r"missing parameter\(s\) tag for tag_audience_change"),
    (["tag=t1", "max_rank=five"], r"max_rank='five' must be an integer"),
    (["tag=t1", "max_rank=2.5"], r"max_rank='2.5' must be an integer"),
    (["tag=t1", "max_rank=0"], r"max_rank='0' must be an integer from 1 to 2147483647"),  # it would count nobody
    # Spark's LIMIT takes an INT: a larger count would run on DuckDB and fail on Spark.
    (["tag=t1", "max_rank=2147483648"], r"max_rank='2147483648' must be an integer from 1 to 2147483647"),
    (["tag=t1", "date=yesterday"], r"date='yesterday' must be a date YYYY-MM-DD"),
    (["tag=t1", "tag=t2"], r"parameter tag is given twice"),
    (["tag"], r"--param needs NAME=VALUE, got 'tag'"),
    (["tag=a\nb"], r"tag contains control characters \(U\+000A\)"),
    # `previous` is the date before :date, which :date cannot be: a KeyError traceback (exit 1) before
    (["tag=t1", "date=previous"], r"^date=previous means the date before the date parameter, which date cannot be; "
                                  r"give a published date or latest$"),
])
def test_parameter_errors_name_the_parameter(warehouse, params, message):
    with pytest.raises(ParamError, match=message):
        prepare(warehouse, "duckdb", name="tag_audience_change", params=params)


@pytest.mark.parametrize("params,date", [(["tag=t1", "date=2026-10-31"], "2026-10-31"),
                                         (["tag=t1", "previous_date=2026-11-05"], "2026-11-05")])
def test_a_date_without_published_profiles_lists_the_published_ones(warehouse, params, date):
    with pytest.raises(UnpublishedDateError,
                       match=f"no published profiles for {date}; published dates: 2026-11-01, 2026-11-02"):
        prepare(warehouse, "duckdb", name="tag_audience_change", params=params)


def test_float_and_date_values_are_parsed_not_pasted(warehouse):
    with pytest.raises(ParamError, match="must be a finite number"):
        prepare(warehouse, "duckdb", name="tag_audience", params=["min_score=nan"])
    with pytest.raises(ParamError, match="must be a finite number"):
        prepare(warehouse, "duckdb", name="tag_audience", params=["min_score=0.1 OR 1=1"])
    prepared = prepare(warehouse, "spark", name="tag_audience", params=["min_score=1e-3", "date=2026-11-01"])
    assert "CAST(0.001 AS DOUBLE)" in prepared.sql and "DATE '2026-11-01'" in prepared.sql
    assert prepared.values["min_score"] == 0.001 and prepared.values["max_rank"] is None
    assert "CAST(NULL AS BIGINT)" in prepared.sql


def test_ad_hoc_queries_take_only_the_date(warehouse):
    with pytest.raises(ParamError, match="--param goes with --name"):
        prepare(warehouse, "duckdb", query="SELECT 1", params=["tag=t1"])
    with pytest.raises(ParamError, match="--date needs a :date placeholder"):
        prepare(warehouse, "duckdb", query="SELECT 1", date="2026-11-01")
    with pytest.raises(ParamError, match=r"uses :tag, which is not a parameter; valid: date \(a colon right before "
                                         r"a name is a parameter: write a slice or a struct with a space after the "
                                         r"colon, x\[1: n\], \{'k': n\}\)$"):
        prepare(warehouse, "duckdb", query="SELECT * FROM tags WHERE dt = :date AND tag_id = :tag")
    latest = prepare(warehouse, "duckdb", query="SELECT * FROM user_tag_profiles WHERE dt = :date")
    assert latest.values == {"date": dt.date(2026, 11, 2)}
    assert latest.sql == "SELECT * FROM user_tag_profiles WHERE dt = DATE '2026-11-02'"


def test_date_given_twice_or_to_a_query_without_date(warehouse):
    with pytest.raises(ParamError, match="give the date once"):
        prepare(warehouse, "duckdb", name="tag_audience", params=["date=2026-11-01"], date="2026-11-02")
    with pytest.raises(ParamError, match="no named query 'nope'; available: profile_changes, tag_audience"):
        prepare(warehouse, "duckdb", name="nope")


def test_query_headers_are_checked_against_their_placeholders():
    with pytest.raises(ParamError, match=r"placeholders \['tag'\] do not match the declared parameters \[\]"):
        parse_query("q", "-- no params\nSELECT :tag")
    with pytest.raises(ParamError, match="has type 'text'"):
        parse_query("q", "-- :tag text\nSELECT :tag")
    with pytest.raises(ParamError, match=r"max_rank='x' must be an integer"):
        parse_query("q", "-- :max_rank int = x\nSELECT :max_rank")
    query = parse_query("q", "-- Something.\n-- :n int = 3  how many\nSELECT :n, ':n', x::INT")
    assert query.params == (ParamSpec("n", "int", "3", "how many"),) and query.description == "Something."


# (value, Spark literal: backslash escapes; DuckDB literal: a doubled quote), written out by hand
LITERALS = [
    ("t1' OR '1'='1", r"'t1\' OR \'1\'=\'1'", "'t1'' OR ''1''=''1'"),
    ("\\", r"'\\'", "'\\'"),
    ("''", r"'\'\''", "''''''"),
    ("a\\\\'b", r"'a\\\\\'b'", "'a\\\\''b'"),
    ("$$ DROP $$", "'$$ DROP $$'", "'$$ DROP $$'"),
    ("é ✓ \"q\" `b`", "'é ✓ \"q\" `b`'", "'é ✓ \"q\" `b`'"),
]


@pytest.mark.parametrize("value,spark_literal,duckdb_literal", LITERALS)
def test_string_literals_are_quoted_as_each_engine_reads_them(value, spark_literal, duckdb_literal):
    assert parse_value(ParamSpec("s", "string"), value) == value
    assert (render_literal(value, "string", "spark"), render_literal(value, "string", "duckdb")) == (
        spark_literal, duckdb_literal)


def test_quoted_strings_round_trip_on_both_engines(duck, spark_engine):
    for engine in (duck, spark_engine):
        columns = ", ".join(f"{render_literal(v, 'string', engine.dialect)} AS s{i}" for i, v in enumerate(NASTY))
        assert engine.run(f"SELECT {columns}").to_pylist() == [{f"s{i}": v for i, v in enumerate(NASTY)}]


@pytest.mark.parametrize("tag", NASTY[:2])
def test_a_quoted_tag_cannot_widen_the_query(tag, spark, warehouse_with_tags):
    # Were the quote to escape, "OR 1=1" would count every user who holds any tag. The tag must
    # be known to reach the SQL: the tags table holds it, nobody's profile does.
    nasty_tags_warehouse = warehouse_with_tags([tag])
    for engine in (DuckDBEngine(nasty_tags_warehouse), SparkEngine(spark, nasty_tags_warehouse)):
        try:
            prepared = prepare(nasty_tags_warehouse, engine.dialect, name="tag_audience_change",
                               params=[f"tag={tag}"], tables=engine.tables)
            assert engine.run(prepared.sql).to_pylist() == [{
                "tag_id": tag, "objective": "ctr", "max_rank": 5, "dt": dt.date(2026, 11, 2), "users": 0,
                "previous_dt": dt.date(2026, 11, 1), "previous_users": 0, "difference": 0}]
        finally:
            engine.close()


def test_a_quoted_unknown_tag_is_named_as_given(warehouse):
    for tag in NASTY:
        with pytest.raises(UnknownTagError) as refused:
            prepare(warehouse, "duckdb", name="tag_audience", params=[f"tag={tag}"])
        assert str(refused.value).startswith(f"unknown tag(s) on 2026-11-02: {tag}")


@pytest.mark.parametrize("name,params,valid", [
    ("tag_audience", ["objective=CTR"], "ctr, cvr, ctr_x_cvr"),
    ("tag_audience_change", ["tag=t1", "objective=Cvr"], "ctr, cvr, ctr_x_cvr"),
    ("tag_cooccurrence", ["objective=click"], "ctr, cvr, ctr_x_cvr"),
    ("profile_changes", ["objective=ctr "], "ctr, cvr, ctr_x_cvr"),
    ("user_top_tags", ["user=u1", "objective=ALL"], "ctr, cvr, ctr_x_cvr, all"),
])
def test_an_objective_that_is_not_one_is_refused(warehouse, name, params, valid):
    # The profiles hold lower-case objectives: objective=CTR matched no row and counted 0 users.
    objective = params[-1].split("=", 1)[1]
    with pytest.raises(ParamError, match=f"^parameter objective={objective!r} must be one of {valid}$"):
        prepare(warehouse, "duckdb", name=name, params=params)


def test_the_objectives_and_all_are_accepted(warehouse):
    for objective in ("ctr", "cvr"):  # ctr_x_cvr: tests/analyst/test_named_queries.py, the dates hold none
        assert prepare(warehouse, "duckdb", name="tag_audience", params=[f"objective={objective}"]).values[
            "objective"] == objective
    assert prepare(warehouse, "duckdb", name="user_top_tags", params=["user=u1", "objective=all"]).values[
        "objective"] == "all"
    with pytest.raises(ParamError, match="must be one of ctr, cvr, ctr_x_cvr$"):
        prepare(warehouse, "duckdb", name="tag_audience", params=["objective=all"])


@pytest.mark.parametrize("name,params,previous,date", [
    ("tag_audience_change", ["tag=t1", "previous_date=2026-11-02"], "2026-11-02", "2026-11-02"),
    ("tag_audience_change", ["tag=t1", "date=2026-11-01", "previous_date=2026-11-02"], "2026-11-02", "2026-11-01"),
    ("profile_changes", ["previous_date=2026-11-02"], "2026-11-02", "2026-11-02"),
    ("profile_changes", ["date=2026-11-01", "previous_date=2026-11-02"], "2026-11-02", "2026-11-01"),
])
def test_a_previous_date_on_or_after_the_date_is_refused(warehouse, name, params, previous, date):
    # Accepted, it compared a day with itself (difference 0) or ran the change backwards.
    with pytest.raises(ParamError, match=f"^parameter previous_date={previous} must be before date={date}$"):
        prepare(warehouse, "duckdb", name=name, params=params)


def test_an_earlier_previous_date_is_accepted(warehouse):
    prepared = prepare(warehouse, "duckdb", name="profile_changes", params=["previous_date=2026-11-01"])
    assert prepared.values["date"] == dt.date(2026, 11, 2) and prepared.values["previous_date"] == dt.date(2026, 11, 1)
