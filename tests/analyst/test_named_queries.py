"""Each named query, on DuckDB and on Spark, against a hand computation over the inline rows."""
from __future__ import annotations

import itertools

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analyst.catalog import UnknownTagError, UnscoredObjectiveError
from analyst.queries import list_queries, load_query
from analyst.query import prepare

NAMES = ["profile_changes", "tag_audience", "tag_audience_change", "tag_cooccurrence", "user_top_tags"]


# ---- hand computations, in plain Python, over the rows of conftest.py -------------------------

def _profile(data, day, objective):
    """{(user, tag): (rank, score)} of one date and objective."""
    return {(u, t): (r, s) for d, u, o, r, t, s, _ in data.rows if d == day and o == objective}


def _top(data, day, objective, max_rank):
    return {(u, t) for (u, t), (r, _) in _profile(data, day, objective).items() if r <= max_rank}


def expect_user_top_tags(data, user, day, objective):
    rows = [row for row in data.rows if row[0] == day and row[1] == user and objective in ("all", row[2])]
    rows.sort(key=lambda row: (row[2], row[3], row[4]))
    return [{"dt": d, "user_id": u, "objective": o, "rank": r, "tag_id": t, "tag_name": data.tags[t][0],
             "category": data.tags[t][1], "score": s, "model_version": v} for d, u, o, r, t, s, v in rows]


def expect_tag_audience(data, day, objective, tag=None, max_rank=None, min_score=None):
    tags = {row[4] for row in data.rows if row[0] == day} if tag is None else {tag}
    users = {t: set() for t in tags}
    for (u, t), (r, s) in _profile(data, day, objective).items():
        if t in users and (max_rank is None or r <= max_rank) and (min_score is None or s >= min_score):
            users[t].add(u)
    rows = [{"dt": day, "objective": objective, "tag_id": t, "users": len(us)} for t, us in users.items()]
    return sorted(rows, key=lambda row: (-row["users"], row["tag_id"]))


def expect_tag_audience_change(data, tag, day, previous, max_rank, objective):
    def count(d):
        return len({u for u, t in _top(data, d, objective, max_rank) if t == tag})

    users = count(day)
    before = None if previous is None else count(previous)
    return [{"tag_id": tag, "objective": objective, "max_rank": max_rank, "dt": day, "users": users,
             "previous_dt": previous, "previous_users": before,
             "difference": None if before is None else users - before}]


def expect_tag_cooccurrence(data, day, objective, max_rank, tag=None, min_users=1, limit=100):
    held: dict[str, set[str]] = {}
    for u, t in _top(data, day, objective, max_rank):
        held.setdefault(u, set()).add(t)
    per_tag: dict[str, int] = {}
    pairs: dict[tuple[str, str], int] = {}
    for tags in held.values():
        for t in tags:
            per_tag[t] = per_tag.get(t, 0) + 1
        for a, b in itertools.combinations(sorted(tags), 2):
            if tag is None or tag in (a, b):
                pairs[a, b] = pairs.get((a, b), 0) + 1
    rows = [{"tag_a": a, "tag_b": b, "users_both": n, "users_a": per_tag[a], "users_b": per_tag[b],
             "jaccard": n / (per_tag[a] + per_tag[b] - n)}
            for (a, b), n in pairs.items() if n >= min_users]
    return sorted(rows, key=lambda row: (-row["users_both"], row["tag_a"], row["tag_b"]))[:limit]


def expect_profile_changes(data, day, previous, objective, max_rank):
    now = _top(data, day, objective, max_rank)
    before = set() if previous is None else _top(data, previous, objective, max_rank)
    rows = []
    for t in sorted({t for _, t in now | before}):
        n = {u for u, x in now if x == t}
        b = {u for u, x in before if x == t}
        rows.append({"dt": day, "previous_dt": previous, "tag_id": t, "users_previous": len(b), "users": len(n),
                     "gained": len(n - b), "lost": len(b - n), "difference": len(n) - len(b)})
    return sorted(rows, key=lambda row: (-(row["gained"] + row["lost"]), row["tag_id"]))


# ---- cases: (query, --param values, expectation); the first case of each query also runs on Spark --

CASES = {
    "user_top_tags/latest_all_objectives": (
        "user_top_tags", ["user=u2"], lambda d: expect_user_top_tags(d, "u2", d.D2, "all")),
    "user_top_tags/d1_ctr": (
        "user_top_tags", ["user=u1", "date=2026-11-01", "objective=ctr"],
        lambda d: expect_user_top_tags(d, "u1", d.D1, "ctr")),
    "user_top_tags/quoted_user": (
        "user_top_tags", ["user=o'b\\r"], lambda d: expect_user_top_tags(d, d.odd_user, d.D2, "all")),
    "tag_audience/every_tag_top2": (
        "tag_audience", ["max_rank=2"], lambda d: expect_tag_audience(d, d.D2, "ctr", max_rank=2)),
    "tag_audience/one_tag_min_score": (
        "tag_audience", ["tag=t1", "min_score=0.5"], lambda d: expect_tag_audience(d, d.D2, "ctr", "t1", None, 0.5)),
    "tag_audience/rank_and_score_cvr_d1": (
        "tag_audience", ["date=2026-11-01", "objective=cvr", "max_rank=2", "min_score=0.45"],
        lambda d: expect_tag_audience(d, d.D1, "cvr", None, 2, 0.45)),
    "tag_audience/tag_nobody_holds": (
        "tag_audience", ["tag=t6"], lambda d: expect_tag_audience(d, d.D2, "ctr", "t6")),
    "tag_audience_change/t1_top2": (
        "tag_audience_change", ["tag=t1", "max_rank=2"],
        lambda d: expect_tag_audience_change(d, "t1", d.D2, d.D1, 2, "ctr")),
    "tag_audience_change/first_date": (
        "tag_audience_change", ["tag=t3", "date=2026-11-01"],
        lambda d: expect_tag_audience_change(d, "t3", d.D1, None, 5, "ctr")),
    "tag_audience_change/cvr": (
        "tag_audience_change", ["tag=t1", "objective=cvr", "max_rank=1"],
        lambda d: expect_tag_audience_change(d, "t1", d.D2, d.D1, 1, "cvr")),
    "tag_cooccurrence/top3": (
        "tag_cooccurrence", ["max_rank=3"], lambda d: expect_tag_cooccurrence(d, d.D2, "ctr", 3)),
    "tag_cooccurrence/with_t1_min2_limit2": (
        "tag_cooccurrence", ["tag=t1", "min_users=2", "limit=2", "max_rank=5"],
        lambda d: expect_tag_cooccurrence(d, d.D2, "ctr", 5, "t1", 2, 2)),
    "profile_changes/top2": (
        "profile_changes", ["max_rank=2"], lambda d: expect_profile_changes(d, d.D2, d.D1, "ctr", 2)),
    "profile_changes/cvr_top3": (
        "profile_changes", ["objective=cvr", "max_rank=3"], lambda d: expect_profile_changes(d, d.D2, d.D1, "cvr", 3)),
    "profile_changes/first_date": (
        "profile_changes", ["date=2026-11-01"], lambda d: expect_profile_changes(d, d.D1, None, "ctr", 5)),
}
SPARK_CASES = [next(case for case, (name, _, _) in CASES.items() if name == query) for query in NAMES]


def test_every_query_file_parses_and_is_covered():
    assert list_queries() == NAMES
    for name in NAMES:
        query = load_query(name)
        assert query.description and query.params
    assert {name for name, _, _ in CASES.values()} == set(NAMES)


def test_the_expectations_are_not_trivial(data):
    # Guards against cases that would pass with any query returning nothing or zeros.
    for case, (_, _, expect) in CASES.items():
        rows = expect(data)
        assert rows, case
    assert expect_tag_audience_change(data, "t1", data.D2, data.D1, 2, "ctr")[0]["difference"] != 0
    assert any(r["gained"] and r["lost"] for r in expect_profile_changes(data, data.D2, data.D1, "ctr", 2))


@pytest.mark.parametrize("case", list(CASES))
def test_named_query_on_duckdb(case, duck, warehouse, data):
    name, params, expect = CASES[case]
    prepared = prepare(warehouse, "duckdb", name=name, params=params)
    assert duck.run(prepared.sql).to_pylist() == expect(data)


@pytest.mark.parametrize("case", SPARK_CASES)
def test_named_query_on_spark(case, spark_engine, warehouse, data):
    name, params, expect = CASES[case]
    prepared = prepare(warehouse, "spark", name=name, params=params)
    assert spark_engine.run(prepared.sql).to_pylist() == expect(data)


def test_sums_of_integers_come_back_as_int64_from_both_engines(duck, spark_engine, data):
    # DuckDB sums integers into a HUGEINT (decimal128(38, 0) in Arrow); Spark into a bigint. An
    # analyst's parquet file must not change type with the engine.
    sql = ("SELECT objective, COUNT(*) AS n, SUM(rank) AS rank_sum, SUM(score) AS score_sum "
           "FROM user_tag_profiles GROUP BY objective ORDER BY objective")
    expected = []
    for objective in sorted({row[2] for row in data.rows}):
        rows = [row for row in data.rows if row[2] == objective]
        expected.append({"objective": objective, "n": len(rows), "rank_sum": sum(r[3] for r in rows),
                         "score_sum": pytest.approx(sum(r[5] for r in rows))})
    for engine in (duck, spark_engine):
        result = engine.run(sql)
        assert [(f.name, f.type) for f in result.schema] == [
            ("objective", pa.string()), ("n", pa.int64()), ("rank_sum", pa.int64()), ("score_sum", pa.float64())]
        assert result.to_pylist() == expected


# ---- tags: an unknown tag is an error naming it; a known tag nobody holds counts 0 ---------------

@pytest.mark.parametrize("name,params,message", [
    ("tag_audience", ["tag=t11"], "unknown tag(s) on 2026-11-02: t11 (close: t1)"),
    ("tag_audience", ["tag=T1", "date=2026-11-01"], "unknown tag(s) on 2026-11-01: T1"),
    ("tag_audience_change", ["tag=zz"], "unknown tag(s) on 2026-11-02 or 2026-11-01: zz"),
    ("tag_audience_change", ["tag=tt3", "date=2026-11-01"], "unknown tag(s) on 2026-11-01: tt3 (close: t3)"),
    ("tag_cooccurrence", ["tag=t99"], "unknown tag(s) on 2026-11-02: t99"),
])
def test_an_unknown_tag_is_an_error_naming_it(warehouse, name, params, message):
    # It counted 0 users, like a real tag that nobody holds.
    with pytest.raises(UnknownTagError) as refused:
        prepare(warehouse, "duckdb", name=name, params=params)
    assert str(refused.value) == message


@pytest.mark.parametrize("name,params,dates", [
    ("tag_audience", ["objective=ctr_x_cvr"], "2026-11-02"),
    ("tag_audience_change", ["tag=t1", "objective=ctr_x_cvr"], "2026-11-02"),
    ("tag_cooccurrence", ["objective=ctr_x_cvr", "date=2026-11-01"], "2026-11-01"),
    ("profile_changes", ["objective=ctr_x_cvr"], "2026-11-02"),
    ("user_top_tags", ["user=u1", "objective=ctr_x_cvr"], "2026-11-02"),
])
def test_an_objective_the_dates_were_not_scored_for_is_an_error(warehouse, name, params, dates):
    # ctr_x_cvr is written only with score.combined; on dates scored without it every count was 0.
    with pytest.raises(UnscoredObjectiveError) as refused:
        prepare(warehouse, "duckdb", name=name, params=params)
    assert str(refused.value) == f"objective 'ctr_x_cvr' has no profiles on {dates}; objectives: ctr, cvr"


def test_an_objective_scored_on_the_date_is_accepted(tmp_path, duck, warehouse, data):
    from analyst.engine import DuckDBEngine
    from core import delta
    from core.config import Paths

    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    profiles = delta.read_arrow(f"{warehouse.warehouse}/user_tag_profiles")
    combined = profiles.filter(pc.and_(pc.equal(profiles["dt"], pa.scalar(data.D2, pa.date32())),
                                       pc.equal(profiles["objective"], "ctr")))  # D2's ctr rows, as ctr_x_cvr
    combined = combined.set_column(combined.schema.get_field_index("objective"), "objective",
                                   pa.array(["ctr_x_cvr"] * combined.num_rows))
    delta.write_arrow(pa.concat_tables([profiles, combined]), f"{paths.warehouse}/user_tag_profiles",
                      mode="overwrite", partition_by=["dt"])
    delta.write_arrow(delta.read_arrow(f"{warehouse.warehouse}/tags"), f"{paths.warehouse}/tags", mode="overwrite",
                      partition_by=["dt"])
    audience = prepare(paths, "duckdb", name="tag_audience", params=["objective=ctr_x_cvr"])
    expected = [{**row, "objective": "ctr_x_cvr"} for row in expect_tag_audience(data, data.D2, "ctr")]
    assert DuckDBEngine(paths).run(audience.sql).to_pylist() == expected
    with pytest.raises(UnscoredObjectiveError, match="no profiles on 2026-11-01; objectives: ctr, cvr$"):
        prepare(paths, "duckdb", name="tag_audience", params=["objective=ctr_x_cvr", "date=2026-11-01"])
    # compared with a date scored without it: previous_users 0 and a difference of +N for every tag
    for name in ("tag_audience_change", "profile_changes"):
        with pytest.raises(UnscoredObjectiveError, match="no profiles on 2026-11-01; objectives: ctr, cvr$"):
            prepare(paths, "duckdb", name=name, params=["objective=ctr_x_cvr", *(["tag=t1"] if "tag" in name else [])])


def test_a_known_tag_that_nobody_holds_counts_0(duck, warehouse, data):
    # t6 is only in the tags table; t5 is in D1's profiles, in nobody's on D2.
    assert not any(row[4] == "t6" for row in data.rows)
    assert not any(row[4] == "t5" and row[0] == data.D2 for row in data.rows)
    for tag in ("t5", "t6"):
        change = prepare(warehouse, "duckdb", name="tag_audience_change", params=[f"tag={tag}"])
        assert duck.run(change.sql).to_pylist() == expect_tag_audience_change(data, tag, data.D2, data.D1, 5, "ctr")
        audience = prepare(warehouse, "duckdb", name="tag_audience", params=[f"tag={tag}"])
        assert duck.run(audience.sql).to_pylist() == [
            {"dt": data.D2, "objective": "ctr", "tag_id": tag, "users": 0}]
    assert expect_tag_audience_change(data, "t5", data.D2, data.D1, 5, "ctr")[0]["previous_users"] == 2


def test_a_tag_is_known_on_the_dates_of_the_query(tmp_path, warehouse, data):
    from analyst.engine import DuckDBEngine
    from core import delta
    from core.config import Paths

    # D2's tags rows lack t3 and t4 (known there through the profiles); t7 is only in D1's tags rows.
    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "warehouse"), models=str(tmp_path / "models"))
    profiles = delta.read_arrow(f"{warehouse.warehouse}/user_tag_profiles")
    delta.write_arrow(profiles, f"{paths.warehouse}/user_tag_profiles", mode="overwrite", partition_by=["dt"])
    rows = [(data.D1, t) for t in ("t1", "t2", "t3", "t7")] + [(data.D2, t) for t in ("t1", "t2")]
    delta.write_arrow(pa.table({"dt": pa.array([d for d, _ in rows], pa.date32()),
                                "tag_id": pa.array([t for _, t in rows])}),
                      f"{paths.warehouse}/tags", mode="overwrite", partition_by=["dt"])
    engine = DuckDBEngine(paths)
    try:
        for tag in ("t3", "t4"):
            prepared = prepare(paths, "duckdb", name="tag_audience", params=[f"tag={tag}"], tables=engine.tables)
            assert engine.run(prepared.sql).to_pylist() == expect_tag_audience(data, data.D2, "ctr", tag)
        with pytest.raises(UnknownTagError, match=r"^unknown tag\(s\) on 2026-11-02: t7$"):
            prepare(paths, "duckdb", name="tag_audience", params=["tag=t7"], tables=engine.tables)
        change = prepare(paths, "duckdb", name="tag_audience_change", params=["tag=t7"], tables=engine.tables)
        assert engine.run(change.sql).to_pylist() == expect_tag_audience_change(data, "t7", data.D2, data.D1, 5, "ctr")
    finally:
        engine.close()
