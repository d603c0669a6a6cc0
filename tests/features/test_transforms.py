"""The pure transforms of `features/` on small inline DataFrames (no Delta, no job)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from core.config import FeaturesConf
from core.contract import ContractError, UserAttributes
from features import quality, schema, vocabulary as vocab
from features.behaviour import bucket_id, window_activity, window_entries
from features.examples import model_inputs, training_examples
from features.samples import sampled_negatives
from features.users import user_snapshots
from features.windows import explode_to_dates
from jobs.features import parse_dates

UTC = dt.timezone.utc
D = dt.date(2026, 11, 10)
EVENTS = "user_id string, item_id string, event_type string, event_time timestamp, day date"
MICRO = dt.timedelta(microseconds=1)


def test_bucket_ids_count_the_edges_at_or_below_and_keep_0_for_missing(spark):
    df = spark.createDataFrame([(v,) for v in (None, float("nan"), -1.0, 0.0, 0.5, 1.0, 2.0, 99.0)], "x double")
    assert [r[0] for r in df.select(bucket_id(F.col("x"), (0, 1, 2))).collect()] == [0, 0, 2, 3, 3, 4, 5, 5]


def test_encode_gives_vocabulary_ids_0_for_blank_and_1_for_unseen(spark):
    vocabulary = spark.createDataFrame([("gender", "F", 2, D), ("gender", "M", 3, D), ("city", "F", 9, D)],
                                       vocab.VOCABULARY_SCHEMA)
    users = spark.createDataFrame([("a", "F"), ("b", "M"), ("c", None), ("d", " "), ("e", "X")],
                                  "user_id string, gender string")
    encoded = vocab.encode(users, vocabulary=vocabulary, field="gender", column="gender", output="gender")
    assertDataFrameEqual(encoded, spark.createDataFrame([("a", 2), ("b", 3), ("c", 0), ("d", 0), ("e", 1)],
                                                        "user_id string, gender int"))


def test_new_values_get_the_ids_after_the_field_maximum_in_value_order(spark):
    existing = spark.createDataFrame([("tag", "t5", 2, D), ("tag", "t7", 3, D)], vocab.VOCABULARY_SCHEMA)
    values = spark.createDataFrame([("tag", "t9"), ("tag", "t5"), ("tag", "t1"), ("category", "c")],
                                   vocab.VALUES_SCHEMA)
    new = vocab.new_vocabulary_entries(values, vocabulary=existing, first_dt=D + dt.timedelta(days=1))
    later = D + dt.timedelta(days=1)
    assertDataFrameEqual(new, spark.createDataFrame(
        [("tag", "t1", 4, later), ("tag", "t9", 5, later), ("category", "c", 2, later)], vocab.VOCABULARY_SCHEMA))


@pytest.mark.parametrize("dates", [[D], [D, D + dt.timedelta(days=1)]], ids=["one date", "backfill"])
def test_the_window_holds_d_minus_window_and_stops_just_before_d(spark, dates):
    """window_days=2: of clicks at D-2 minus 1 us, D-2, D minus 1 us and D, only the middle two count,
    whether D is computed alone (per-user plan) or in a backfill (daily rows)."""
    start = dt.datetime(2026, 11, 8, tzinfo=UTC)
    end = dt.datetime(2026, 11, 10, tzinfo=UTC)
    times = {"i_before": start - MICRO, "i_first": start, "i_last": end - MICRO, "i_at_d": end}
    rows = [("u", item, "click", t, t.date()) for item, t in times.items()]
    events = spark.createDataFrame(rows, EVENTS)
    item_values = spark.createDataFrame(
        [(item, "click", "clicked_tags", value) for value, item in enumerate(times, start=2)],
        "item_id string, event_type string, field string, value int")
    conf = FeaturesConf(window_days=2, decay_half_life_days=1.0, max_multi_len=4, activity_buckets=(1, 2, 3))
    fields = [schema.behaviour_field(name, conf) for name in ("clicked_tags", "clicks", "active_days")]
    window = {"dates": dates, "window_days": 2}
    entries = window_entries(events, item_values=item_values, half_life_days=1.0, **window)
    users = spark.createDataFrame([], "user_id string")
    snapshots = user_snapshots(users, activity=window_activity(events, **window), entries=entries, fields=fields,
                               max_len=4, dates=dates)
    # newest first; 2 clicks -> bucket 4; 2 active days -> bucket 4
    expected = [(D, "u", [4, 3], [0.5 ** (1e-6 / 86_400), 0.25], 4, 4)]
    assertDataFrameEqual(snapshots.where(F.col("dt") == D), spark.createDataFrame(
        expected, "dt date, user_id string, clicked_tags array<int>, clicked_tags_weights array<float>, clicks int, "
                  "active_days int"))


@pytest.mark.parametrize("dates", [[D], [D, D + dt.timedelta(days=1)]], ids=["one date", "backfill"])
def test_a_half_life_of_seconds_gives_the_same_weights_alone_and_in_a_backfill(spark, dates):
    # each day's partial sum used to hold 2 ** (frac / h), infinite for h < 1/1024 day: NaN weights
    half_life = 0.0005  # 43.2 s
    clicked = dt.datetime(2026, 11, 9, 23, 59, tzinfo=UTC)  # 60 s before D
    events = spark.createDataFrame([("u", "i", "click", clicked, clicked.date())], EVENTS)
    item_values = spark.createDataFrame([("i", "click", "clicked_tags", 2)],
                                        "item_id string, event_type string, field string, value int")
    entries = window_entries(events, item_values=item_values, half_life_days=half_life, dates=dates, window_days=2)
    [entry] = entries.where(F.col("dt") == D).collect()
    assert (entry["entry"]["id"], entry["entry"]["weight"]) == (2, pytest.approx(0.5 ** (60 / 86_400 / half_life),
                                                                                rel=1e-6))


FIELDS = [("gender", "single", 4), ("clicked_tags", "multi", 6)]
SNAPSHOTS = "dt date, user_id string, gender int, clicked_tags array<int>, clicked_tags_weights array<float>"
SAMPLES = ("dt date, user_id string, tag_id string, tag_index int, category_id int, click int, conversion int, "
           "source string")
X, Y = dt.date(2026, 11, 4), dt.date(2026, 11, 5)


def test_training_examples_join_each_sample_to_its_own_days_snapshot_padded(spark):
    snapshots = spark.createDataFrame([
        (X, "u1", 2, [3], [1.0]),
        (Y, "u1", 3, [5, 2, 4, 3], [4.0, 3.0, 2.0, 1.0]),  # cut to 3
        (Y, "u3", 9, [7, 2], [2.0, 1.0]),  # ids the model's vocabulary does not hold -> 1
    ], SNAPSHOTS)
    samples = spark.createDataFrame([
        (X, "u1", "t1", 2, 2, 1, 0, "impression"),
        (Y, "u1", "t1", 2, 2, 0, 0, "impression"),
        (X, "u2", "t2", 3, 0, 0, 0, "sampled"),  # no snapshot on X
        (Y, "u3", "t2", 3, 0, 1, 1, "impression"),
    ], SAMPLES)
    expected = spark.createDataFrame([
        (X, "u1", "t1", 2, 2, 1, 0, "impression", 2, [3, 0, 0], [1.0, 0.0, 0.0]),
        (Y, "u1", "t1", 2, 2, 0, 0, "impression", 3, [5, 2, 4], [4.0, 3.0, 2.0]),
        (X, "u2", "t2", 3, 0, 0, 0, "sampled", 0, [0, 0, 0], [0.0, 0.0, 0.0]),
        (Y, "u3", "t2", 3, 0, 1, 1, "impression", 1, [1, 2, 0], [2.0, 1.0, 0.0]),
    ], f"{SAMPLES}, gender int, clicked_tags array<int>, clicked_tags_weights array<float>")
    assertDataFrameEqual(training_examples(samples, snapshots, FIELDS, 3), expected)


def test_model_inputs_pad_to_max_len_and_map_unseen_ids_to_1(spark):
    snapshots = spark.createDataFrame([(Y, "u1", 3, [5, 2], [2.0, 1.0]), (Y, "u2", 0, [], []),
                                       (Y, "u3", 1, [4, 3, 2, 9], [1.0, 2.0, 3.0, 4.0]),  # known, then cut
                                       (Y, "u4", None, None, None), (Y, "u5", 2, [2, 7, 9], [1.0, 1.0, 1.0])],
                                      SNAPSHOTS)
    expected = spark.createDataFrame([(Y, "u1", 3, [1, 2, 0], [2.0, 1.0, 0.0]), (Y, "u2", 0, [0, 0, 0], [0.0] * 3),
                                      (Y, "u3", 1, [4, 3, 2], [1.0, 2.0, 3.0]), (Y, "u4", 0, [0, 0, 0], [0.0] * 3),
                                      (Y, "u5", 2, [2, 1, 1], [1.0, 1.0, 1.0])], SNAPSHOTS)
    assertDataFrameEqual(model_inputs(snapshots, [("gender", "single", 4), ("clicked_tags", "multi", 5)], 3),
                         expected)


def _negatives(spark, method, seed, users=3, per_user_day=3):
    ranks = spark.createDataFrame([(X, f"t{r}", r + 1, 2, r) for r in range(1, 6)],
                                  "dt date, tag_id string, tag_index int, category_id int, popularity_rank int")
    samples = spark.createDataFrame([(X, f"u{u}", "t1", 2, 2, 0, 0, "impression") for u in range(users)], SAMPLES)
    return samples, sampled_negatives(samples, tag_ranks=ranks, method=method, per_user_day=per_user_day,
                                       seed=seed)


@pytest.mark.parametrize("method", ["uniform", "log_uniform"])
def test_sampled_negatives_are_deterministic_new_tags_of_the_users_day(spark, method):
    samples, negatives = _negatives(spark, method, seed=11)
    rows = negatives.collect()
    assertDataFrameEqual(negatives, _negatives(spark, method, seed=11)[1])
    assert all((r.click, r.conversion, r.source, r.dt) == (0, 0, "sampled", X) for r in rows)
    assert all(r.tag_id != "t1" and r.tag_index == int(r.tag_id[1:]) + 1 for r in rows)  # not the impressed tag
    per_user = {u: [r.tag_id for r in rows if r.user_id == u] for u in ("u0", "u1", "u2")}
    assert all(len(tags) == len(set(tags)) <= 3 for tags in per_user.values())


@pytest.mark.parametrize("method", ["uniform", "log_uniform"])
def test_sampled_negatives_are_the_documented_draws(spark, method):
    """Draw d of user u on day D: v = xxhash64(seed, u, D, d) mod 2**53 / 2**53, then rank
    floor(v T) + 1 (uniform) or floor(exp(v log(T + 1))) (log-uniform), clamped to 1..T; the
    tag of that rank unless the user's day already has it, each tag once."""
    users, draws, tags = 40, 3, 5
    samples, negatives = _negatives(spark, method, seed=11, users=users, per_user_day=draws)
    keys = spark.createDataFrame([(f"u{u}", X, d) for u in range(users) for d in range(draws)],
                                 "user_id string, dt date, draw int")
    hashes = keys.select("user_id", "draw", F.xxhash64(F.lit(11), "user_id", "dt", "draw").alias("h")).collect()
    expected = set()
    for row in hashes:
        v = (row.h % 2**53) / float(2**53)
        rank = math.floor(v * tags) + 1 if method == "uniform" else math.floor(math.exp(v * math.log(tags + 1.0)))
        rank = min(max(rank, 1), tags)
        if rank != 1:  # rank 1 is t1, the tag every user's sample already has
            expected.add((X, row.user_id, f"t{rank}", rank + 1, 2, 0, 0, "sampled"))
    assert len({r[1] for r in expected}) > users // 2  # the draws reach most users, not a vacuous comparison
    assertDataFrameEqual(negatives, spark.createDataFrame(sorted(expected), SAMPLES))


def test_log_uniform_negatives_favour_popular_tags(spark):
    """P(rank r) = log((r+1)/r) / log(T+1): with T = 5, rank 1 (t1) gets 39% of draws, uniform 20%."""
    def share_of_rank_1(method):
        _, negatives = _negatives(spark, method, seed=3, users=600, per_user_day=1)
        # every user's sample is on t1, so a draw of rank 1 is dropped: the users left without one drew it
        return 1 - negatives.count() / 600
    assert share_of_rank_1("uniform") < 0.3 < share_of_rank_1("log_uniform")


def test_attribute_names_must_not_clash_with_feature_or_batch_names():
    conf = FeaturesConf()
    with pytest.raises(ContractError, match=r"\['clicks', 'tag'\] clash"):
        schema.define_fields(UserAttributes(categorical=("tag", "city"), numeric=("clicks",)), conf)
    fields = schema.define_fields(UserAttributes(categorical=("city",), numeric=("age",)), conf)
    assert [f.name for f in fields] == sorted(["city", "age", *conf.behaviour_fields])



@pytest.mark.parametrize("name", ["source", "tag_id", "tag_index", "category_id"])
def test_attribute_names_must_not_clash_with_the_sample_columns_examples_carry(spark, name):
    """training_examples puts a snapshot's fields beside the samples' columns: an attribute named
    like one would make the examples' columns ambiguous, failing training after the job published."""
    snapshots = spark.createDataFrame([(X, "u1", 2)], f"dt date, user_id string, {name} int")
    samples = spark.createDataFrame([(X, "u1", "t1", 2, 2, 1, 0, "impression")], SAMPLES)
    with pytest.raises(AnalysisException, match="AMBIGUOUS_REFERENCE"):
        training_examples(samples, snapshots, [(name, "single", 3)], 3)
    with pytest.raises(ContractError, match=rf"\['{name}'\] clash"):
        schema.define_fields(UserAttributes(categorical=(name, "city"), numeric=()), FeaturesConf())



@pytest.mark.parametrize("name", ["agee", "city"])
def test_attribute_buckets_must_name_a_numeric_attribute_of_the_users_table(name):
    """Edges for a misspelt or a non-numeric attribute would be ignored without a word, the
    attribute falling back to numeric_buckets (or not being bucketed at all)."""
    attributes = UserAttributes(categorical=("city",), numeric=("age",))
    fields = schema.define_fields(attributes, FeaturesConf(attribute_buckets={"age": (1.0, 5.0)}))
    assert [f for f in fields if f.source.startswith("users.")] == [
        schema.FieldDef("age", "single", "bucket", "users.age", edges=(1.0, 5.0)),
        schema.FieldDef("city", "single", "vocab", "users.city", vocabulary="city"),
    ]
    with pytest.raises(ContractError, match=rf"features.attribute_buckets names \['{name}'\]"):
        schema.define_fields(attributes, FeaturesConf(attribute_buckets={name: (1.0,)}))

def test_the_schema_module_mirrors_the_model_contract():
    from mvke import fields as model_fields

    assert schema.WEIGHTS_SUFFIX == model_fields.WEIGHTS_SUFFIX
    assert set(schema.MODEL_KEYS) == set(model_fields.RESERVED_KEYS)
    assert (vocab.PAD_ID, vocab.UNKNOWN_ID, vocab.FIRST_ID) == (
        model_fields.PAD_ID, model_fields.UNKNOWN_ID, model_fields.FIRST_REAL_ID)


@pytest.mark.parametrize("argv, dates", [
    (["--date", "2026-11-05"], [dt.date(2026, 11, 5)]),
    (["--from", "2026-11-05", "--to", "2026-11-07"], [dt.date(2026, 11, 5), dt.date(2026, 11, 6), dt.date(2026, 11, 7)]),
])
def test_dates_from_the_command_line(argv, dates):
    from core.cli import iso_date

    parser = argparse.ArgumentParser()
    for flag, dest in (("--date", "date"), ("--from", "date_from"), ("--to", "date_to")):
        parser.add_argument(flag, dest=dest, type=iso_date)
    assert parse_dates(parser.parse_args(argv), parser) == dates
    with pytest.raises(SystemExit):
        parse_dates(parser.parse_args(["--date", "2026-11-05", "--to", "2026-11-07"]), parser)



@pytest.mark.parametrize("argv", [["--date", "2026-11-12"], ["--from", "2026-11-08", "--to", "2026-11-12"]])
def test_a_run_date_whose_night_has_not_happened_is_a_usage_error(argv, tmp_path, capsys):
    """More than one day after --as-of: refused with one line, before Spark starts (no traceback)."""
    from jobs.features import main

    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--as-of", "2026-11-10", "--set", f"paths.warehouse={tmp_path}/wh"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: run date 2026-11-12 is more than one day after as_of 2026-11-10: that night has not happened yet")
    assert not (tmp_path / "wh").exists()

def test_an_as_of_after_tomorrow_is_a_usage_error(tmp_path, capsys):
    """A mistyped --as-of in the future would let future-dated events pass as real: refused."""
    from jobs.features import main

    today = dt.datetime.now(dt.timezone.utc).date()
    as_of = today + dt.timedelta(days=30)
    with pytest.raises(SystemExit) as stopped:
        main(["--date", today.isoformat(), "--as-of", as_of.isoformat(),
              "--set", f"paths.warehouse={tmp_path}/wh"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: --as-of {as_of} is after {today + dt.timedelta(days=1)} (tomorrow, UTC): "
        f"events up to it would not be quarantined as future")
    assert not (tmp_path / "wh").exists()


@pytest.mark.parametrize(("as_of", "accepted"), [
    (None, True), (dt.date(2026, 11, 1), True), (dt.date(2026, 11, 12), True),
    (dt.date(2026, 11, 13), True), (dt.date(2026, 11, 14), False), (dt.date(2027, 11, 12), False),
])
def test_the_horizon_may_be_at_most_tomorrow(as_of, accepted):
    from jobs.features import checked_horizon

    today = dt.date(2026, 11, 12)
    if accepted:
        assert checked_horizon(as_of, today=today) == as_of
    else:
        with pytest.raises(ValueError, match=f"--as-of {as_of} is after 2026-11-13"):
            checked_horizon(as_of, today=today)


@pytest.mark.parametrize(("as_of", "run_date", "refused"), [
    (None, dt.date(2026, 11, 12), None),
    (dt.date(2026, 11, 11), dt.date(2026, 11, 12), None),
    (None, dt.date(2026, 11, 13), "run date 2026-11-13 is after today (2026-11-12, UTC)"),
    (dt.date(2026, 11, 13), dt.date(2026, 11, 13), "run date 2026-11-13 is after today (2026-11-12, UTC)"),
    (None, dt.date(2026, 11, 15), "run date 2026-11-15 is after today (2026-11-12, UTC)"),
])
def test_a_run_date_after_today_is_refused_on_the_command_line_whatever_the_horizon(as_of, run_date, refused):
    # a scheduler ahead of UTC ran tomorrow's night: its samples were of a day not yet over
    from jobs.features import checked_horizon

    today = dt.date(2026, 11, 12)
    if refused is None:
        assert checked_horizon(as_of, [run_date], today=today) == as_of
    else:
        with pytest.raises(ValueError, match=rf"^{re.escape(refused)}: that night has not happened yet, and day "
                                             rf"{run_date - dt.timedelta(days=1)} has not ended$"):
            checked_horizon(as_of, [dt.date(2026, 11, 1), run_date], today=today)


@pytest.mark.parametrize(("as_of", "run_date", "expected"), [
    (None, dt.date(2026, 11, 12), dt.date(2026, 11, 12)),  # the night of today: yesterday has ended
    (None, dt.date(2026, 11, 13), "run date 2026-11-13 is after today (2026-11-12, UTC): that night has not "
                                  "happened yet, and day 2026-11-12 has not ended"),
    (dt.date(2026, 11, 12), dt.date(2026, 11, 13), dt.date(2026, 11, 12)),  # a pinned horizon: its day is whole
    (dt.date(2026, 11, 12), dt.date(2026, 11, 14), "run date 2026-11-14 is more than one day after as_of "
                                                   "2026-11-12: that night has not happened yet"),
])
def test_the_default_horizon_accepts_the_nights_up_to_today(as_of, run_date, expected):
    """The default as_of is today, which has not ended: the night of tomorrow (one day after it, which a
    pinned as_of allows) used to pass, from the nightly and training backfills too, which call run()."""
    from jobs.features import checked_as_of

    today = dt.date(2026, 11, 12)
    if isinstance(expected, dt.date):
        assert checked_as_of([dt.date(2026, 11, 1), run_date], as_of, today=today) == expected
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            checked_as_of([dt.date(2026, 11, 1), run_date], as_of, today=today)


@pytest.mark.parametrize("dates", [
    [dt.date(2026, 11, 10)],
    [dt.date(2026, 11, 8) + dt.timedelta(days=i) for i in range(5)],
    [dt.date(2026, 11, 3), dt.date(2026, 11, 6), dt.date(2026, 11, 7), dt.date(2026, 11, 12)],
])
def test_each_day_is_exploded_to_exactly_the_dates_whose_window_holds_it(spark, dates):
    window_days = 3
    days = [dt.date(2026, 10, 30) + dt.timedelta(days=i) for i in range(16)]
    rows = spark.createDataFrame([(d,) for d in days], "day date")
    expected = [(d, day) for day in days for d in dates if d - dt.timedelta(days=window_days) <= day < d]
    assertDataFrameEqual(explode_to_dates(rows, dates=dates, window_days=window_days),
                         spark.createDataFrame(expected, "dt date, day date"))


@pytest.mark.parametrize("window_days", [3, 70])
def test_window_activity_is_the_same_alone_and_in_a_backfill_and_counts_each_day_once(spark, window_days):
    """70 days needs two bitmasks of active days in the per-user plan; both plans equal plain Python."""
    kinds = ["impression", "click", "conversion"]
    rows = []
    for u in range(3):
        for offset in range(0, 75, u + 1):  # days before D: every day, every 2nd, every 3rd
            day = D - dt.timedelta(days=offset)
            t = dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            rows += [(f"u{u}", "i", kinds[(offset + k) % 3], t + k * MICRO, day) for k in range(1 + offset % 2)]
    events = spark.createDataFrame(rows, EVENTS)
    expected = []
    for u in range(3):
        seen = [r for r in rows if r[0] == f"u{u}" and D - dt.timedelta(days=window_days) <= r[4] < D]
        expected.append((D, f"u{u}", *[sum(r[2] == k for r in seen) for k in kinds], len({r[4] for r in seen})))
    schema_ = "dt date, user_id string, impressions long, clicks long, conversions long, active_days long"
    for dates in ([D], [D, D + dt.timedelta(days=1)]):
        got = window_activity(events, dates=dates, window_days=window_days).where(F.col("dt") == D)
        assertDataFrameEqual(got, spark.createDataFrame(expected, schema_))


def test_quarantine_records_keep_event_times_to_the_microsecond(spark):
    """Two bad events a microsecond apart are two records, each with its exact time."""
    first = dt.datetime(2026, 11, 9, 12, 0, 0, 123, tzinfo=UTC)
    times = [first, first + 333 * MICRO, dt.datetime(2026, 11, 9, 23, 59, 59, 999_999, tzinfo=UTC)]
    events = spark.createDataFrame([("u1", "i9", "impression", t) for t in times],
                                   "user_id string, item_id string, event_type string, event_time timestamp")
    items = spark.createDataFrame([("i1",)], "item_id string")
    bad = quality.bad_events(quality.classify_events(events, items=items, horizon=D))
    expected = [("unknown_item", json.dumps({"user_id": "u1", "item_id": "i9", "event_type": "impression",
                                             "event_time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                                            separators=(",", ":")))
                for t in times]
    assertDataFrameEqual(bad.select("reason", "record"),
                         spark.createDataFrame(expected, "reason string, record string"))


ODD_IDS = ["u1", "  ", "\t", "\r\n", " \u00a0", "\u3000", "\u2028", "u\t1", " u1 ", "\u00e9", "\U0001f600"]


def test_ids_of_whitespace_alone_are_blank_whatever_the_whitespace(spark):
    """Tabs, line breaks and Unicode spaces are as blank as spaces: such an event, user or
    attribute value has no id (null_id, 0), while ids with other characters, odd or not, are kept."""
    items = spark.createDataFrame([("i1",)], "item_id string")
    events = spark.createDataFrame([(u, "i1", "click", dt.datetime(2026, 11, 9, tzinfo=UTC)) for u in ODD_IDS],
                                   "user_id string, item_id string, event_type string, event_time timestamp")
    classified = quality.classify_events(events, items=items, horizon=D)
    assertDataFrameEqual(classified.select("user_id", "reason"), spark.createDataFrame(
        [(u, None if u.strip() else "null_id") for u in ODD_IDS], "user_id string, reason string"))

    users = spark.createDataFrame([(u, u) for u in ODD_IDS], "user_id string, city string")
    flagged = quality.flag_dimension_rows(users, key="user_id").select("row.user_id", "reason")
    assertDataFrameEqual(flagged, classified.select("user_id", "reason"))

    values = vocab.vocabulary_values(users.limit(0).select(F.lit("t").alias("tag_id"), F.lit("c").alias("category")),
                                     users=users, categorical=["city"])
    assertDataFrameEqual(values.where(F.col("field") == "city").select("value"),
                         spark.createDataFrame([(u,) for u in ODD_IDS if u.strip()], "value string"))


def test_a_dimension_row_with_any_string_not_utf8_is_quarantined_and_a_valid_copy_kept(spark):
    """A bad tag name, category or item tag id would reach the published tags and vocabulary as
    a string no UTF-8 reader can decode; of two rows of one key, the valid one stays."""
    rows = [("t1", "74 61 67", "63 31"), ("t2", "FF", "63 31"), ("t3", "6E", "C3 28"), ("t3", "6F", "63 32"),
            ("t4", "6E", None)]
    tags = spark.createDataFrame(rows, "tag_id string, name_hex string, category_hex string").select(
        "tag_id", F.unhex(F.regexp_replace("name_hex", " ", "")).cast("string").alias("tag_name"),
        F.unhex(F.regexp_replace("category_hex", " ", "")).cast("string").alias("category"))
    flagged = quality.flag_dimension_rows(tags, key="tag_id").select("row.tag_id", "row.tag_name", "reason")
    assertDataFrameEqual(flagged.where(F.col("reason").isNull() | (F.col("tag_id") != "t2")), spark.createDataFrame(
        [("t1", "tag", None), ("t3", "n", "invalid_utf8"), ("t3", "o", None), ("t4", "n", None)],
        "tag_id string, tag_name string, reason string"))
    assert [r.reason for r in flagged.where(F.col("tag_id") == "t2").collect()] == ["invalid_utf8"]
    items = spark.createDataFrame([("i1", ["74 31", "74 32"]), ("i2", ["74 31", "FF FE"]), ("i3", None)],
                                  "item_id string, tag_hex array<string>").select(
        "item_id", F.transform("tag_hex", lambda h: F.unhex(F.regexp_replace(h, " ", "")).cast("string"))
        .alias("tag_ids"))
    assertDataFrameEqual(quality.flag_dimension_rows(items, key="item_id").select("row.item_id", "reason"),
                         spark.createDataFrame([("i1", None), ("i2", "invalid_utf8"), ("i3", None)],
                                               "item_id string, reason string"))


def test_dimension_keys_that_are_not_utf8_are_quarantined_like_event_ids(spark):
    """A tag, item or user key that is not valid UTF-8 is bad as it is in an event: kept, it
    would be published (vocabulary, tags, profiles) as a string no UTF-8 reader can decode."""
    keys = [("74 31", "t1, first record"), ("74 FF", "bad byte"), ("C3 28", "bad sequence"), ("", "blank"),
            ("74 31", "t1, second record"), ("C3 A9", "valid é")]
    tags = spark.createDataFrame(keys, "hex string, tag_name string").select(
        F.unhex(F.regexp_replace("hex", " ", "")).cast("string").alias("tag_id"), "tag_name")
    flagged = quality.flag_dimension_rows(tags, key="tag_id").select("row.tag_name", "reason")
    assertDataFrameEqual(flagged, spark.createDataFrame(
        [("t1, first record", None), ("bad byte", "invalid_utf8"), ("bad sequence", "invalid_utf8"),
         ("blank", "null_id"), ("t1, second record", "duplicate"), ("valid é", None)],
        "tag_name string, reason string"))
