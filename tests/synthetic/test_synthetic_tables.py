"""The generated Delta tables: contract, determinism, event rules, ground truth, planted structure."""
import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import GenerateConf, Paths
from core.contract import SCHEMAS, ContractError, check_schema, read_raw
from core.tables import Raw, raw_uri
from synthetic import build_world, generate, raw_frames, user_interests

CONF = GenerateConf(seed=3, users=400, items=120, tags=30, facets=5, categories=6, days=5,
                    start_date=dt.date(2026, 3, 1), block_users=100, partitions=2)
START = pd.Timestamp("2026-03-01")
END = pd.Timestamp("2026-03-06")
BAD_SHARE = 0.1


def _paths(root) -> Paths:
    return Paths(raw=str(root / "raw"), warehouse=str(root / "warehouse"), models=str(root / "models"))


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory):
    """One generate() run of CONF: (paths, summary)."""
    paths = _paths(tmp_path_factory.mktemp("clean"))
    return paths, generate(spark, CONF, paths)


@pytest.fixture(scope="module")
def frames(spark, clean):
    """The clean run's tables as pandas, plus the hidden interests of every user."""
    paths, _ = clean
    world = build_world(CONF)
    events = read_raw(spark, paths, Raw.EVENTS).toPandas()
    items = read_raw(spark, paths, Raw.ITEMS).toPandas()
    users = read_raw(spark, paths, Raw.USERS).toPandas()
    truth = delta.read_table(spark, raw_uri(paths, Raw.GROUND_TRUTH)).toPandas()
    interests = user_interests(world, np.arange(CONF.users))
    primary = dict(zip(items.item_id, items.tag_ids.str[0]))
    facet_of_tag = dict(zip(world.tag_ids, world.tag_facet))
    events["user_index"] = events.user_id.str[1:].astype(int)
    events["facet"] = events.item_id.map(primary).map(facet_of_tag)
    events["top_facet"] = events.facet == interests.argmax(axis=1)[events.user_index]
    return world, events, items, users, truth, interests


def test_every_table_meets_the_contract_and_ground_truth_covers_every_pair(spark, clean):
    paths, summary = clean
    for table in SCHEMAS:
        df = read_raw(spark, paths, table)  # raises ContractError on any violation
        assert [f.name for f in df.schema.fields][:len(SCHEMAS[table].fields)] == SCHEMAS[table].fieldNames()
    users = read_raw(spark, paths, Raw.USERS)
    assert dict(users.dtypes) == {"user_id": "string", "age_band": "string", "gender": "string", "city": "string",
                                  "device": "string", "income": "double", "tenure_days": "int"}
    truth = delta.read_table(spark, raw_uri(paths, Raw.GROUND_TRUTH))
    assert truth.schema == T.StructType([
        T.StructField("user_id", T.StringType()), T.StructField("tag_id", T.StringType()),
        T.StructField("ctr_affinity", T.DoubleType()), T.StructField("cvr_affinity", T.DoubleType()),
    ])
    assert truth.select("user_id", "tag_id").distinct().count() == CONF.users * CONF.tags
    assert summary.rows == {"events": read_raw(spark, paths, Raw.EVENTS).count(), "items": CONF.items,
                            "tags": CONF.tags, "users": CONF.users, "ground_truth": CONF.users * CONF.tags}


def test_same_seed_gives_identical_tables_whatever_the_partitioning(spark, clean):
    paths, _ = clean
    again = raw_frames(spark, build_world(dataclasses.replace(CONF, partitions=3)))
    for table in Raw:
        assertDataFrameEqual(again[table], delta.read_table(spark, raw_uri(paths, table)))


def test_another_seed_gives_other_events_and_users(spark, clean):
    paths, _ = clean
    other = raw_frames(spark, build_world(dataclasses.replace(CONF, seed=4)))
    for table in (Raw.EVENTS, Raw.USERS):
        mine = delta.read_table(spark, raw_uri(paths, table))
        assert mine.exceptAll(other[table]).count() > 0.9 * mine.count()


def test_clean_events_are_in_range_and_reference_known_users_and_items(frames):
    _, events, items, users, _, _ = frames
    assert set(events.event_type) == {"impression", "click", "conversion"}
    assert events.event_time.min() >= START and events.event_time.max() < END
    assert set(events.user_id) <= set(users.user_id) and set(events.item_id) <= set(items.item_id)
    assert not events.duplicated(["user_id", "item_id", "event_type", "event_time"]).any()


@pytest.mark.parametrize("later, earlier", [("click", "impression"), ("conversion", "click")])
def test_every_follow_up_has_its_own_earlier_event_of_the_same_user_item_and_day(frames, later, earlier):
    _, events, _, _, _, _ = frames
    keyed = events.assign(day=events.event_time.dt.floor("D"))
    keyed["k"] = keyed.sort_values("event_time").groupby(["user_id", "item_id", "day", "event_type"]).cumcount()
    follow = keyed[keyed.event_type == later]
    first = keyed[keyed.event_type == earlier]
    # The k-th follow-up of a (user, item, day) needs a k-th earlier event before it: a one-to-one matching.
    matched = follow.merge(first, on=["user_id", "item_id", "day", "k"], how="left", suffixes=("", "_first"))
    assert len(follow) > 20
    assert matched.event_time_first.notna().all()
    assert (matched.event_time_first < matched.event_time).all()


def test_ground_truth_equals_the_affinities_recomputed_from_the_published_parameters(frames):
    world, _, _, _, truth, interests = frames
    for user in (0, 150, 399):
        rows = truth[truth.user_id == f"u{user:08d}"].set_index("tag_id").loc[world.tag_ids]
        theta = interests[user]
        for column, loading, bias, base in (
            ("ctr_affinity", world.ctr_loading, world.ctr_bias, CONF.base_ctr),
            ("cvr_affinity", world.cvr_loading, world.cvr_bias, CONF.base_cvr),
        ):
            logit = np.log(base / (1 - base)) + bias + CONF.interest_sharpness * (loading @ theta)
            expected = (1 - CONF.noise) / (1 + np.exp(-logit)) + CONF.noise * base
            np.testing.assert_allclose(rows[column].to_numpy(), expected, rtol=1e-12)


def test_click_and_conversion_rates_are_realistic(frames):
    _, events, _, _, _, _ = frames
    counts = events.event_type.value_counts()
    assert 0.04 < counts["click"] / counts["impression"] < 0.18
    assert 0.08 < counts["conversion"] / counts["click"] < 0.4


def test_clicks_concentrate_on_the_users_true_top_facet_far_beyond_exposure(frames):
    _, events, _, _, _, _ = frames
    shown = events[events.event_type == "impression"]
    clicked = events[events.event_type == "click"]
    assert clicked.top_facet.mean() / shown.top_facet.mean() > 1.4
    ctr_top = clicked.top_facet.sum() / shown.top_facet.sum()
    ctr_rest = (~clicked.top_facet).sum() / (~shown.top_facet).sum()
    assert ctr_top / ctr_rest > 2.5


def test_ctr_and_cvr_rank_a_users_tags_differently_but_alike(frames):
    _, _, _, _, truth, _ = frames
    ranked = truth.assign(ctr_rank=truth.groupby("user_id").ctr_affinity.rank(),
                          cvr_rank=truth.groupby("user_id").cvr_affinity.rank())
    spearman = ranked.groupby("user_id")[["ctr_rank", "cvr_rank"]].apply(lambda g: g.ctr_rank.corr(g.cvr_rank))
    assert 0.1 < spearman.mean() < 0.8
    best_ctr = truth.loc[truth.groupby("user_id").ctr_affinity.idxmax()].set_index("user_id").tag_id
    best_cvr = truth.loc[truth.groupby("user_id").cvr_affinity.idxmax()].set_index("user_id").tag_id
    assert (best_ctr == best_cvr.loc[best_ctr.index]).mean() < 0.5


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = pd.crosstab(a, b).to_numpy() / len(a)
    independent = joint.sum(axis=1, keepdims=True) @ joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / independent[nonzero])).sum())


@pytest.mark.parametrize("attribute", ["city", "age_band"])
def test_user_attributes_carry_information_about_the_top_facet(frames, attribute):
    _, _, _, users, _, interests = frames
    users = users[users[attribute].notna()]
    values = users[attribute].to_numpy()
    top = interests.argmax(axis=1)[users.user_id.str[1:].astype(int)]
    rng = np.random.default_rng(0)
    shuffled = np.mean([_mutual_information(rng.permutation(values), top) for _ in range(20)])
    assert _mutual_information(values, top) > 2 * shuffled


def test_some_attributes_are_missing_as_in_real_logs(frames):
    _, _, _, users, _, _ = frames
    assert users.income.isna().any() and users.city.isna().any()
    assert users.user_id.notna().all() and users.tenure_days.notna().all()


def test_tag_impressions_are_zipf_skewed(frames):
    _, events, items, _, _, _ = frames
    shown = events[events.event_type == "impression"].merge(items, on="item_id", how="inner")
    per_tag = shown.explode("tag_ids").tag_ids.value_counts()
    top_tenth = per_tag.iloc[:max(1, CONF.tags // 10)].sum() / per_tag.sum()
    assert top_tenth > 0.25  # 0.10 if exposure were uniform


def test_some_tags_have_no_category(spark, clean):
    paths, _ = clean
    tags = read_raw(spark, paths, Raw.TAGS).toPandas()
    assert tags.category.isna().sum() >= 1 and tags.category.notna().mean() > 0.8
    assert tags.tag_id.is_unique and tags.tag_name.notna().all()


def test_bad_rows_are_added_on_top_of_the_same_good_rows_in_the_documented_numbers(spark, frames):
    _, events, items, _, _, _ = frames
    dirty = raw_frames(spark, build_world(dataclasses.replace(CONF, bad_row_share=BAD_SHARE)))[Raw.EVENTS]
    check_schema(dirty.schema, Raw.EVENTS)
    dirty = dirty.toPandas()
    columns = ["user_id", "item_id", "event_type", "event_time"]
    good = events[columns].fillna("<null>").value_counts()
    seen = dirty[columns].fillna("<null>").value_counts()
    assert (seen.reindex(good.index, fill_value=0) >= good).all()  # every good row is still there
    extra = (seen - good.reindex(seen.index, fill_value=0))
    extra = extra[extra > 0].reset_index().loc[lambda d: d.index.repeat(d["count"])]
    kind = np.select(
        [extra.event_type == "view", extra.user_id == "<null>", ~extra.item_id.isin(items.item_id),
         extra.event_time >= END],
        ["unknown_event_type", "null_user", "unknown_item", "after_last_day"], "duplicate")
    # Expected: block b adds round(share * good rows of b) copies, kinds in turn.
    per_block = events.user_index // CONF.block_users
    expected = {k: 0 for k in ("unknown_event_type", "null_user", "unknown_item", "duplicate", "after_last_day")}
    for count in per_block.value_counts().sort_index():
        for i in range(int(round(BAD_SHARE * count))):
            expected[list(expected)[i % 5]] += 1
    assert pd.Series(kind).value_counts().to_dict() == {k: v for k, v in expected.items() if v}
    after = extra[kind == "after_last_day"]
    # each is a good event moved to its time of day, 3650 days after start_date + days (= END)
    future_day = END + pd.Timedelta(days=3650)
    assert ((after.event_time >= future_day) & (after.event_time < future_day + pd.Timedelta(days=1))).all()


def test_a_failed_run_publishes_no_table(spark, tmp_path):
    """The ground truth (U x T rows, by far the largest table) fails to write: no table takes the new seed."""
    paths = _paths(tmp_path)
    generate(spark, CONF, paths)
    blocked = raw_uri(paths, Raw.GROUND_TRUTH)
    shutil.rmtree(blocked)
    Path(blocked).symlink_to(tmp_path / "unmounted" / "ground_truth")  # a volume that is gone: no file can be written
    with pytest.raises(FileExistsError):
        generate(spark, dataclasses.replace(CONF, seed=4), paths)
    before = raw_frames(spark, build_world(CONF))
    for table in (Raw.TAGS, Raw.ITEMS, Raw.USERS, Raw.EVENTS):
        assertDataFrameEqual(delta.read_table(spark, raw_uri(paths, table)), before[table])


def test_a_table_it_cannot_replace_is_refused_before_any_table_changes(spark, tmp_path):
    """A raw events table partitioned by day meets the contract, but generate only writes unpartitioned tables."""
    paths = _paths(tmp_path)
    generate(spark, CONF, paths)
    events = raw_uri(paths, Raw.EVENTS)
    shutil.rmtree(events)
    day = dt.date(2026, 3, 1)
    delta.write_arrow(pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["click"],
                                "event_time": pa.array([dt.datetime(2026, 3, 1)], pa.timestamp("us", tz="UTC")),
                                "dt": [day]}), events, mode="overwrite", partition_by=["dt"])
    with pytest.raises(ValueError, match=r"events is partitioned by \['dt'\]"):
        generate(spark, dataclasses.replace(CONF, seed=4), paths)
    before = raw_frames(spark, build_world(CONF))
    for table in (Raw.TAGS, Raw.ITEMS, Raw.USERS, Raw.GROUND_TRUTH):
        assertDataFrameEqual(delta.read_table(spark, raw_uri(paths, table)), before[table])
    assert delta.partition_values(events) == [day.isoformat()]


@pytest.mark.parametrize("configuration, named", [
    ({"delta.enableDeletionVectors": "true"}, r"deletion vectors \(rows they delete would be read back\)"),
    ({"delta.appendOnly": "true"}, r"delta.appendOnly \(no overwrite may remove its files\)"),
], ids=["deletion vectors", "append only"])
def test_a_table_it_cannot_overwrite_is_refused_before_any_table_changes(spark, tmp_path, configuration, named):
    """Its commit would fail after the tables committed before it had taken the new world."""
    from deltalake import write_deltalake

    paths = _paths(tmp_path)
    generate(spark, CONF, paths)
    truth = raw_uri(paths, Raw.GROUND_TRUTH)
    kept = delta.read_arrow(truth)
    shutil.rmtree(truth)
    write_deltalake(truth, kept, configuration=configuration)
    with pytest.raises(ValueError, match=rf"ground_truth uses {named}, which generate cannot replace"):
        generate(spark, dataclasses.replace(CONF, seed=4), paths)
    before = raw_frames(spark, build_world(CONF))
    for table in (Raw.TAGS, Raw.ITEMS, Raw.USERS, Raw.EVENTS):
        assertDataFrameEqual(delta.read_table(spark, raw_uri(paths, table)), before[table])


def test_a_failed_first_run_leaves_no_folder_a_job_would_read_as_raw_data(spark, tmp_path):
    """With no table there before, the files written ahead of the commits have no Delta log beside
    them: left in place they would be read as raw Parquet folders, rows of a run that failed."""
    paths = _paths(tmp_path)
    blocked = Path(raw_uri(paths, Raw.GROUND_TRUTH))
    blocked.parent.mkdir(parents=True)
    blocked.symlink_to(tmp_path / "unmounted" / "ground_truth")  # a volume that is gone: no file can be written
    # a folder that is there, with no Delta table: an earlier export, or a mount point
    users = Path(raw_uri(paths, Raw.USERS))
    users.mkdir()
    (users / "_SUCCESS").write_text("")
    with pytest.raises(FileExistsError):
        generate(spark, CONF, paths)
    assert sorted(p.name for p in blocked.parent.iterdir()) == ["ground_truth", "users"]  # as they were
    assert sorted(str(p.relative_to(users)) for p in users.rglob("*")) == ["_SUCCESS"]
    for table in (Raw.TAGS, Raw.ITEMS, Raw.EVENTS):
        with pytest.raises(ContractError, match=rf"raw table {table.value} not found at "):
            read_raw(spark, paths, table)
    with pytest.raises(ContractError, match=r"raw table users at .* holds no Parquet files"):
        read_raw(spark, paths, Raw.USERS)
