"""The feature job end to end on the inline world of `scenario.py`: every table it publishes,
compared whole with what plain Python computes from the raw rows."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import Config, FeaturesConf, replace
from core.contract import ContractError
from core.tables import Warehouse, warehouse_uri
from features.examples import model_inputs
from features.samples import sampled_negatives
from features.schema import read_fields
from jobs.features import TooManyBadRows, run
from tests.features import scenario
from tests.features.scenario import AS_OF, D1, D2, D3, MAX_LEN, T, World

pytestmark = pytest.mark.integration

TABLES = (Warehouse.VOCABULARY, Warehouse.FIELDS, Warehouse.USER_FEATURES, Warehouse.TAGS, Warehouse.SAMPLES,
          Warehouse.QUARANTINE)


@dataclasses.dataclass
class Night:
    """A warehouse after some runs: the config, the last summary, and its tables pinned to their versions."""

    config: Config
    summary: dict
    tables: dict[str, DataFrame]
    versions: dict[str, int | None]


def snapshot(spark: SparkSession, config: Config, summary: dict) -> Night:
    uris = {t.value: warehouse_uri(config.paths, t) for t in TABLES}
    versions = {name: delta.table_version(uri) for name, uri in uris.items()}
    tables = {name: delta.read_table(spark, uri, versions[name]) for name, uri in uris.items()
              if versions[name] is not None}
    return Night(config, summary, tables, versions)


def raw_world(tmp_path_factory, name: str, world: World) -> tuple[str, str]:
    root = str(tmp_path_factory.mktemp(name))
    world.write(f"{root}/raw")
    return root, f"{root}/raw"


@pytest.fixture(scope="module")
def backfill(spark, tmp_path_factory) -> Night:
    """D1 and D2 in one job."""
    root, raw = raw_world(tmp_path_factory, "backfill", World())
    config = scenario.config(root, raw)
    summary = run(spark, config, [D2, D1], run_id="backfill", as_of=AS_OF)
    return snapshot(spark, config, summary)


LATER = [  # events from D2 00:00 on, which no table up to D2 may see
    ("u1", "i3", "click", T(6)),  # exactly D2 00:00
    ("u1", "i2", "conversion", T(6, 0, 0, 1)),
    ("u8", "i1", "impression", T(6, 12)),  # a new user
    ("u2", "i2", "conversion", T(7, 8)),
]


def later_world() -> World:
    """The raw world after more events arrived: new ones from D2 on, and one of D2's own changed."""
    changed = [("u4", "i3", "click", e[3]) if e[3] == T(6, 10) else e for e in World().good]
    return World().replace(good=changed + LATER)


@pytest.fixture(scope="module")
def nights(spark, tmp_path_factory) -> dict[str, Night]:
    """D1, then D2, as separate jobs on one warehouse; then D2 again after later events arrived."""
    root, raw = raw_world(tmp_path_factory, "nights", World())
    config = scenario.config(root, raw)
    run(spark, config, [D1], run_id="night-1", as_of=AS_OF)
    first = snapshot(spark, config, run(spark, config, [D2], run_id="night-2", as_of=AS_OF))
    _, later_raw = raw_world(tmp_path_factory, "later", later_world())
    config = dataclasses.replace(config, paths=dataclasses.replace(config.paths, raw=later_raw))
    again = snapshot(spark, config, run(spark, config, [D2], run_id="night-2-again", as_of=AS_OF))
    return {"first": first, "again": again}


def vocabulary_rows(night: Night) -> list[tuple]:
    return [tuple(r) for r in night.tables["vocabulary"].collect()]


def without_run_id(df: DataFrame) -> DataFrame:
    return df.drop("run_id")


# ---- what one job publishes ------------------------------------------------------------------

def test_user_features_equal_the_snapshots_computed_from_the_raw_rows(spark, backfill):
    world = World()
    expected = world.user_features([D1, D2], world.first_vocabulary(D1))
    assertDataFrameEqual(backfill.tables["user_features"],
                         spark.createDataFrame(expected, scenario.user_features_schema()))


def test_window_boundaries_and_known_users(backfill):
    """u6's only event is at D1 - window (in D1 only), u7's at D1 00:00 (in D2 only), u5's a second
    before D1's window (never); u4 has no event but is in the users table."""
    users = backfill.tables["user_features"].groupBy("dt").agg(F.sort_array(F.collect_list("user_id")).alias("u"))
    assert {r["dt"]: r["u"] for r in users.collect()} == {
        D1: ["u1", "u2", "u3", "u4", "u6"],
        D2: ["u1", "u2", "u3", "u4", "u7"],
    }


def test_fields_list_declared_and_discovered_attributes_with_their_id_spaces(spark, backfill):
    expected = [
        ("active_days", "single", "bucket", "events.active_days", 6),
        ("age", "single", "bucket", "users.age", 6),  # discovered: a number
        ("click_rate", "single", "bucket", "events.click_rate", 5),
        ("clicked_categories", "multi", "vocab", "events.click.category", 4),
        ("clicked_tags", "multi", "vocab", "events.click.tag", 6),
        ("clicks", "single", "bucket", "events.click.count", 6),
        ("conversions", "single", "bucket", "events.conversion.count", 6),
        ("converted_tags", "multi", "vocab", "events.conversion.tag", 6),
        ("gender", "single", "vocab", "users.gender", 4),  # declared in the conf
        ("impressions", "single", "bucket", "events.impression.count", 6),
        ("score", "single", "bucket", "users.score", 4),  # discovered, with its own edges
        ("vip", "single", "vocab", "users.vip", 4),  # discovered: a boolean
    ]
    conf = scenario.CONF
    edges = {"active_days": conf.activity_buckets, "age": conf.numeric_buckets, "click_rate": conf.rate_buckets,
             "clicks": conf.activity_buckets, "conversions": conf.activity_buckets,
             "impressions": conf.activity_buckets, "score": conf.attribute_buckets["score"]}
    vocabularies = {"clicked_categories": "category", "clicked_tags": "tag", "converted_tags": "tag"}
    definitions = {name: f"bucket edges [{', '.join(f'{float(e)}' for e in edges[name])}]" if name in edges
                   else f"vocabulary {vocabularies.get(name, name)}" for name, *_ in expected}
    assert definitions["score"] == "bucket edges [0.5]" and definitions["vip"] == "vocabulary vip"
    assertDataFrameEqual(backfill.tables["fields"], spark.createDataFrame(
        [(*row, definitions[row[0]]) for row in expected], scenario.FIELDS_SCHEMA))
    specs = read_fields(warehouse_uri(backfill.config.paths, Warehouse.FIELDS))
    assert [(f.name, f.kind, f.vocab_size) for f in specs] == [(n, k, s) for n, k, _, _, s in expected]


def test_tags_hold_every_catalogue_tag_with_its_window_popularity(spark, backfill):
    world = World()
    expected = world.tags_table([D1, D2], world.first_vocabulary(D1))
    assertDataFrameEqual(backfill.tables["tags"], spark.createDataFrame(expected, scenario.TAGS_SCHEMA))


def test_sample_labels_equal_those_computed_from_the_raw_events(spark, backfill):
    world = World()
    expected = world.samples([D1 - scenario.DAY, D2 - scenario.DAY], world.first_vocabulary(D1))
    assertDataFrameEqual(backfill.tables["samples"], spark.createDataFrame(expected, scenario.SAMPLES_SCHEMA))


def test_a_run_that_fails_part_way_has_published_the_quarantine_of_its_features(spark, tmp_path_factory,
                                                                                  monkeypatch):
    """The quarantine was written last: a run that died after the user features (here: the samples
    write fails) left features of the date with no record of the rows it set aside."""
    root, raw = raw_world(tmp_path_factory, "fails-part-way", World())
    config = scenario.config(root, raw)
    samples_uri, write_table = warehouse_uri(config.paths, Warehouse.SAMPLES), delta.write_table

    def failing(df, uri, **options):
        if uri == samples_uri:
            raise RuntimeError("executor lost")
        return write_table(df, uri, **options)

    monkeypatch.setattr(delta, "write_table", failing)
    with pytest.raises(RuntimeError, match="executor lost"):
        run(spark, config, [D1], run_id="fails", as_of=AS_OF)
    assert delta.table_exists(warehouse_uri(config.paths, Warehouse.USER_FEATURES))
    assertDataFrameEqual(delta.read_table(spark, warehouse_uri(config.paths, Warehouse.QUARANTINE)),
                         spark.createDataFrame(World().quarantine([D1], "fails"), scenario.QUARANTINE_SCHEMA))


def test_quarantine_holds_every_bad_row_read_reason_by_reason(spark, backfill):
    world = World()
    assertDataFrameEqual(backfill.tables["quarantine"],
                         spark.createDataFrame(world.quarantine([D1, D2], "backfill"), scenario.QUARANTINE_SCHEMA))
    for date in (D1, D2):
        quality = backfill.summary["quality"][date.isoformat()]
        assert quality["bad"] == world.bad_counts(date)
        assert quality["events_read"] == world.events_read(date)
        assert quality["bad_events"] == sum(n for k, n in quality["bad"].items() if k.startswith("events/"))


def test_vocabulary_gives_sorted_ids_from_2_on_the_first_night(spark, backfill):
    assertDataFrameEqual(backfill.tables["vocabulary"],
                         spark.createDataFrame(World().first_vocabulary(D1), scenario.VOCABULARY_SCHEMA))


# ---- failures change nothing ------------------------------------------------------------------

def test_too_many_bad_rows_fail_before_anything_is_published(spark, backfill, tmp_path):
    # A new date too: a partial publish would add its partitions and vocabulary rows.
    config = replace(backfill.config, features__max_bad_fraction=0.1)
    with pytest.raises(TooManyBadRows, match=r"max_bad_fraction=0.1 .*no table was changed") as error:
        run(spark, config, [D3], run_id="gated", as_of=AS_OF)
    for key, n in World().bad_counts(D3).items():
        assert f"  {key}: {n}\n" in f"{error.value}\n"
    after = snapshot(spark, config, {})
    assert after.versions == backfill.versions
    for name, table in backfill.tables.items():
        assertDataFrameEqual(after.tables[name], table)


def test_a_contract_violation_stops_the_job_before_any_write(spark, tmp_path):
    World().write(str(tmp_path / "raw"))
    shutil.rmtree(tmp_path / "raw" / "events")
    spark.createDataFrame([("u1", "i1", T(4))], "user_id string, item_id string, event_time timestamp") \
        .write.parquet(str(tmp_path / "raw" / "events"))
    config = scenario.config(str(tmp_path), str(tmp_path / "raw"))
    with pytest.raises(ContractError, match="raw table events: column event_type is missing"):
        run(spark, config, [D1])
    assert not (tmp_path / "warehouse").exists()


# ---- sampled negatives -------------------------------------------------------------------------

def test_sampled_negatives_draw_from_the_published_tags_of_their_label_day(spark, tmp_path):
    """The run of D writes samples dt=D-1, whose negatives take the popularity ranks of the
    window before D-1, [D-1 - window, D-1): exactly the tags table dt=D-1, one day more than
    D's own window. Nights D1 then D2, so the ranks of D1 are read back as published; the
    day before D2's window must still not reach D2's counts or quarantine."""
    world = World()
    world.write(str(tmp_path / "raw"))
    features = dataclasses.replace(scenario.CONF, negatives="uniform", negatives_per_user_day=4, seed=23)
    assert features.seed != FeaturesConf.seed  # a job that ignored the setting would draw other negatives
    config = scenario.config(str(tmp_path), str(tmp_path / "raw"), features=features)
    run(spark, config, [D1], run_id="negatives-1", as_of=AS_OF)
    night = snapshot(spark, config, run(spark, config, [D2], run_id="negatives-2", as_of=AS_OF))

    vocabulary = world.first_vocabulary(D1)
    label_days = [D1 - scenario.DAY, D1]
    ranks = spark.createDataFrame(world.tags_table(label_days, vocabulary), scenario.TAGS_SCHEMA)
    assertDataFrameEqual(night.tables["tags"].where(F.col("dt") == D1), ranks.where(F.col("dt") == D1))
    labelled = spark.createDataFrame(world.samples(label_days, vocabulary), scenario.SAMPLES_SCHEMA)
    negatives = sampled_negatives(labelled, tag_ranks=ranks, method="uniform", per_user_day=4, seed=features.seed)
    assertDataFrameEqual(night.tables["samples"], labelled.unionByName(negatives))
    assert negatives.where(F.col("dt") == D1).count() > 0

    quality = night.summary["quality"][D2.isoformat()]
    assert (quality["events_read"], quality["bad"]) == (world.events_read(D2), world.bad_counts(D2))
    assertDataFrameEqual(without_run_id(night.tables["quarantine"].where(F.col("dt") == D2)),
                         without_run_id(spark.createDataFrame(world.quarantine([D2], "negatives-2"),
                                                              scenario.QUARANTINE_SCHEMA)))


# ---- reruns and backfills ---------------------------------------------------------------------

def test_a_backfill_equals_the_same_dates_run_night_by_night(backfill, nights):
    night = nights["first"]
    for name, table in backfill.tables.items():
        if name == "quarantine":
            assertDataFrameEqual(without_run_id(night.tables[name]), without_run_id(table))
        else:
            assertDataFrameEqual(night.tables[name], table)


def test_rerunning_a_date_replaces_its_partitions_with_identical_content(nights):
    """The rerun of D2 happens after later events arrived (the usual case): they must not matter."""
    first, again = nights["first"], nights["again"]
    for name, table in first.tables.items():
        if name == "quarantine":
            assertDataFrameEqual(without_run_id(again.tables[name]), without_run_id(table))
            assert {r["run_id"] for r in again.tables[name].where(F.col("dt") == D2).collect()} == {"night-2-again"}
        else:
            assertDataFrameEqual(again.tables[name], table)
    assert again.summary["new_vocabulary"] == 0
    assert again.versions["vocabulary"] == first.versions["vocabulary"]  # nothing appended
    assert all(again.versions[t] == first.versions[t] + 1 for t in ("user_features", "tags", "samples", "quarantine"))


# ---- point in time ----------------------------------------------------------------------------

def test_events_on_or_after_a_day_change_nothing_before_it(nights):
    """Events changed or added from D2 00:00 on (LATER): the snapshots up to D2 and the samples of the
    days before D2 stay exactly the same (and so the examples that join them, each to its own day)."""
    before, after = World(), later_world()
    assert after.user_features([D3], after.first_vocabulary(D1)) != \
        before.user_features([D3], before.first_vocabulary(D1))  # the change shows from D3 on
    first, again = nights["first"], nights["again"]
    for name in ("user_features", "samples"):
        assertDataFrameEqual(again.tables[name], first.tables[name])


def test_days_and_windows_are_utc_whatever_the_session_time_zone(spark, tmp_path):
    """A session set to New York (spark.extra may do so): u7's event at D2 00:00 UTC is still
    outside D1's snapshot and u6's at D1 - window 00:00 UTC inside it, quarantine times end in Z,
    and the session keeps its own time zone."""
    world = World()
    world.write(str(tmp_path / "raw"))
    config = scenario.config(str(tmp_path), str(tmp_path / "raw"))
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        summary = run(spark, config, [D1, D2], run_id="new-york", as_of=AS_OF)
        assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
    night = snapshot(spark, config, summary)
    vocabulary = world.first_vocabulary(D1)
    expected = {
        "user_features": (world.user_features([D1, D2], vocabulary), scenario.user_features_schema()),
        "tags": (world.tags_table([D1, D2], vocabulary), scenario.TAGS_SCHEMA),
        "samples": (world.samples([D1 - scenario.DAY, D2 - scenario.DAY], vocabulary), scenario.SAMPLES_SCHEMA),
        "quarantine": (world.quarantine([D1, D2], "new-york"), scenario.QUARANTINE_SCHEMA),
    }
    for name, (rows, schema) in expected.items():
        assertDataFrameEqual(night.tables[name], spark.createDataFrame(rows, schema))
    for date in (D1, D2):
        assert summary["quality"][date.isoformat()]["events_read"] == world.events_read(date)


# ---- vocabulary across nights ----------------------------------------------------------------

def test_vocabulary_keeps_every_id_and_appends_new_values_after_the_max(spark, nights, tmp_path_factory):
    night = nights["again"]
    old_fields = read_fields(warehouse_uri(night.config.paths, Warehouse.FIELDS))  # what a model trained on
    # A new user with a new gender value, a new tag in a new category, both sorting before the old values.
    world = World().replace(
        users=World().users + [("u9", "A", 22, True, 0.3)],
        tags=World().tags + [("t0", "Zero", "arts")],
        items=World().items + [("i6", ["t0"])],
        good=World().good + [("u9", "i6", "impression", T(6, 9)), ("u9", "i6", "click", T(6, 9, 1))],
    )
    raw = f"{tmp_path_factory.mktemp('next')}/raw"
    world.write(raw)
    config = dataclasses.replace(  # this night also samples 2 extra negatives per user and day
        night.config, paths=dataclasses.replace(night.config.paths, raw=raw),
        features=dataclasses.replace(night.config.features, negatives="uniform", negatives_per_user_day=2))
    summary = run(spark, config, [D3], run_id="night-3", as_of=AS_OF)
    after = snapshot(spark, config, summary)

    vocabulary = World().first_vocabulary(D1) + [("category", "arts", 4, D3), ("gender", "A", 4, D3),
                                                 ("tag", "t0", 6, D3)]
    assert summary["new_vocabulary"] == 3
    assertDataFrameEqual(after.tables["vocabulary"], spark.createDataFrame(vocabulary, scenario.VOCABULARY_SCHEMA))
    assert set(vocabulary_rows(night)) <= set(vocabulary_rows(after))

    # Serving with the older model's fields: values it never saw become 1, unknown.
    sizes = {f.name: f.vocab_size for f in old_fields}
    expected = []
    for row in world.user_features([D3], vocabulary):
        values = row.asDict()
        for f in old_fields:
            ids = values[f.name]
            if f.kind == "single":
                values[f.name] = 1 if ids >= sizes[f.name] else ids
            else:
                weights = values[f.name + "_weights"]
                values[f.name] = [1 if i >= sizes[f.name] else i for i in ids] + [0] * (MAX_LEN - len(ids))
                values[f.name + "_weights"] = weights + [0.0] * (MAX_LEN - len(weights))
        expected.append(values)
    u9 = next(v for v in expected if v["user_id"] == "u9")
    assert (u9["gender"], u9["clicked_tags"], u9["clicked_categories"]) == (1, [1, 0], [1, 0])
    served = model_inputs(after.tables["user_features"].where(F.col("dt") == D3), old_fields, MAX_LEN)
    assertDataFrameEqual(served, spark.createDataFrame(expected, served.schema))

    # The samples of D3 - 1 = D2: the labelled ones as computed from the raw events, plus
    # sampled negatives: catalogue tags the user had no sample for that day, with 0 labels.
    samples = after.tables["samples"].where(F.col("dt") == D2)
    assertDataFrameEqual(samples.where(F.col("source") == "impression"),
                         spark.createDataFrame(world.samples([D2], vocabulary), scenario.SAMPLES_SCHEMA))
    labelled = {(r.user_id, r.tag_id) for r in samples.where(F.col("source") == "impression").collect()}
    catalogue = {(r.tag_id, r.tag_index, r.category_id) for r in after.tables["tags"].where(F.col("dt") == D3).collect()}
    sampled = samples.where(F.col("source") == "sampled").collect()
    assert sampled and all((r.user_id, r.tag_id) not in labelled and (r.click, r.conversion) == (0, 0)
                           and (r.tag_id, r.tag_index, r.category_id) in catalogue for r in sampled)
    per_user = [r.user_id for r in sampled]
    assert set(per_user) <= {u for u, _ in labelled} and max(per_user.count(u) for u in per_user) <= 2


# ---- which fields exist ------------------------------------------------------------------------

def test_a_field_list_without_list_fields_publishes_the_single_fields(spark, tmp_path):
    """features.behaviour_fields may leave out every multi field (here: only the counts), or be
    empty: the snapshots then hold the attributes and the fields asked for, nothing else."""
    world = World()
    world.write(str(tmp_path / "raw"))
    for behaviour in (("impressions", "clicks"), ()):
        features = dataclasses.replace(scenario.CONF, behaviour_fields=behaviour)
        config = scenario.config(str(tmp_path / "-".join(behaviour)), str(tmp_path / "raw"), features=features)
        night = snapshot(spark, config, run(spark, config, [D1, D2], run_id="singles", as_of=AS_OF))
        columns = ["dt", "user_id", *sorted(("age", "gender", "score", "vip", *behaviour))]
        expected = spark.createDataFrame(world.user_features([D1, D2], world.first_vocabulary(D1)),
                                         scenario.user_features_schema()).select(*columns)
        assertDataFrameEqual(night.tables["user_features"], expected)
        assert [r["name"] for r in night.tables["fields"].orderBy("name").collect()] == columns[2:]
