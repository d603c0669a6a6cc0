"""The driver-side parameters and the numpy draws, without Spark."""
import dataclasses
import datetime as dt

import numpy as np
import pytest

from core.config import ConfigError, GenerateConf, load_config
from core.cli import DEFAULT_CONF
from synthetic import build_world, ctr_affinity, cvr_affinity, user_interests
from synthetic.items import items_batch
from synthetic.sampling import items_of_tags, primary_tags
from synthetic.world import item_ids

CONF = GenerateConf(seed=5, users=250, items=90, tags=24, facets=4, categories=5, days=3, block_users=100)


def _same_world(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif field.name != "attributes" and x != y:
            return False
    return all(np.array_equal(p.loading, q.loading) and np.array_equal(p.base, q.base)
               for p, q in zip(a.attributes.categorical, b.attributes.categorical))


def test_the_world_is_a_function_of_the_seed():
    assert _same_world(build_world(CONF), build_world(CONF))
    assert not _same_world(build_world(CONF), build_world(dataclasses.replace(CONF, seed=6)))


def test_tags_cover_every_facet_and_every_tag_is_the_primary_tag_of_some_items():
    world = build_world(CONF)
    assert sorted(np.bincount(world.tag_facet, minlength=CONF.facets)) == [6, 6, 6, 6]
    assert (world.tag_conversion_facet != world.tag_facet).all()
    counts = np.diff(world.item_offsets)
    assert world.item_offsets[0] == 0 and world.item_offsets[-1] == CONF.items and (counts >= 1).all()
    most_popular = np.argsort(-world.tag_popularity)
    assert counts[most_popular[:3]].sum() > counts[most_popular[-3:]].sum()
    np.testing.assert_allclose(world.ctr_loading.sum(axis=1), 1.0)
    np.testing.assert_allclose(world.cvr_loading.sum(axis=1), 1.0)


def test_items_drawn_for_a_tag_have_it_as_primary_tag_and_lead_their_tag_list():
    world = build_world(CONF)
    tags = np.repeat(np.arange(CONF.tags), 50)
    drawn = items_of_tags(world, np.random.default_rng(0), tags)
    np.testing.assert_array_equal(primary_tags(world, drawn), tags)
    items = items_batch(world, 0).to_pydict()
    assert len(items["item_id"]) == CONF.items == len(set(items["item_id"]))
    first = [world.tag_ids[primary_tags(world, np.array([j]))[0]] for j in range(CONF.items)]
    by_index = dict(zip(items["item_id"], items["tag_ids"]))
    published = item_ids(world, np.arange(CONF.items))
    assert [by_index[i][0] for i in published] == first
    assert all(1 <= len(t) <= 3 and len(set(t)) == len(t) for t in items["tag_ids"])


def test_affinities_follow_the_documented_formula():
    world = build_world(CONF)
    theta = np.array([0.7, 0.1, 0.2, 0.0])
    for tag in (0, 5, 23):
        for affinity, loading, bias, base in (
            (ctr_affinity, world.ctr_loading, world.ctr_bias, CONF.base_ctr),
            (cvr_affinity, world.cvr_loading, world.cvr_bias, CONF.base_cvr),
        ):
            z = np.log(base) - np.log(1 - base) + bias[tag] + CONF.interest_sharpness * float(theta @ loading[tag])
            expected = (1 - CONF.noise) / (1 + np.exp(-z)) + CONF.noise * base
            assert affinity(world, theta, np.array(tag)) == pytest.approx(expected, rel=1e-12)


def test_user_interests_do_not_depend_on_which_users_are_asked_for():
    world = build_world(CONF)
    everyone = user_interests(world, np.arange(CONF.users))
    np.testing.assert_allclose(everyone.sum(axis=1), 1.0)
    np.testing.assert_array_equal(user_interests(world, np.array([249, 3, 120])), everyone[[249, 3, 120]])
    for wrong in ([CONF.users], [-1, 3]):
        with pytest.raises(ValueError, match=rf"user indices \[{wrong[0]}\] are outside 0..{CONF.users - 1}"):
            user_interests(world, np.array(wrong))
    sparse_share = (everyone.max(axis=1) > 0.5).mean()
    assert sparse_share > 0.5  # a sparse Dirichlet: most users have one dominant facet


@pytest.mark.parametrize("override, message", [
    ("generate.items=10", r"generate.items \(10\) must be >= generate.tags"),
    ("generate.bad_row_share=1.0", r"generate.bad_row_share must be in \[0, 1\)"),
    ("generate.base_ctr=0", r"generate.base_ctr must be in \(0, 1\)"),
    ("generate.block_users=0", r"generate.block_users must be >= 1"),
    ("generate.targeting_share=1.5", r"generate.targeting_share must be in \[0, 1\]"),
    ("generate.interest_concentration=0", r"generate.interest_concentration must be > 0"),
    ("generate.seed=-1", r"generate.seed must be >= 0, got -1"),
])
def test_bad_generate_settings_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DEFAULT_CONF, [override])


def test_the_local_conf_loads_with_the_new_fields_defaulted():
    conf = load_config(DEFAULT_CONF).generate
    assert conf.bad_row_share == 0.0 and conf.block_users == 1000 and conf.end_date > conf.start_date


def test_settings_built_in_python_are_checked_before_drawing():
    """The loader checks generate.*; a GenerateConf built in Python meets the same checks."""
    with pytest.raises(ConfigError, match=r"generate.seed must be >= 0, got -1"):
        build_world(dataclasses.replace(CONF, seed=-1))
    with pytest.raises(ConfigError, match=r"generate.items \(10\) must be >= generate.tags"):
        build_world(dataclasses.replace(CONF, items=10))
    with pytest.raises(ConfigError, match=r"generate.start_date must be a date, got datetime.datetime\(2026, 11, 1, 5"):
        build_world(dataclasses.replace(CONF, start_date=dt.datetime(2026, 11, 1, 5)))


def test_the_last_day_that_can_be_generated_is_accepted():
    dataclasses.replace(CONF, start_date=dt.date(9989, 12, 31), days=1).validate()
    dataclasses.replace(CONF, start_date=dt.date(9989, 12, 30), days=2).validate()
    with pytest.raises(ConfigError, match="must end by 9989-12-31"):
        dataclasses.replace(CONF, start_date=dt.date(9989, 12, 30), days=3).validate()
