"""Behaviour events of one user block: impressions, then clicks, then conversions.

For user u on day d (active with probability active_share) the number of impressions
is Poisson(lambda_u), lambda_u ~ Gamma(2, impressions_per_user_day / 2). Each impression
picks a primary tag: with probability targeting_share a facet f ~ theta_u and then a tag of
f by popularity (targeting), otherwise a tag by global Zipf popularity; then an item of
that tag (Zipf within the tag). It is clicked with ctr(u, t) and a click converts with
cvr(u, t) (synthetic.affinity). A click comes 1 s + Exp(2 min) (at most 1 h) after its
impression and a conversion 1 s + Exp(15 min) (at most 1 h) after its click; impressions
fall before 22:00, so every follow-up stays on the impression's day.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from core.contract import EVENT_TYPES
from synthetic.affinity import ctr_affinity, cvr_affinity
from synthetic.sampling import items_of_tags, popular_tags, tags_in_facets
from synthetic.users import UserBlock, draw_user_block, sample_rows
from synthetic.world import Stream, World, item_ids, rng_for, user_ids

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
LAST_IMPRESSION_US = 22 * 3_600 * SECOND_US
MAX_DELAY_US = 3_600 * SECOND_US
CLICK_DELAY_MEAN_US = 120 * SECOND_US
CONVERSION_DELAY_MEAN_US = 900 * SECOND_US
UNKNOWN_EVENT_TYPE = "view"

EVENTS_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType()),
    T.StructField("item_id", T.StringType()),
    T.StructField("event_type", T.StringType()),
    T.StructField("event_time", T.TimestampType()),
])


class BadRow(IntEnum):
    """Contract-valid rows a feature job must quarantine; injected in this order, cyclically."""

    UNKNOWN_EVENT_TYPE = 0  # event_type = "view"
    NULL_USER = 1  # user_id null
    UNKNOWN_ITEM = 2  # item_id not in items ("i_unknown_<block>_<k>")
    DUPLICATE = 3  # an exact copy of a good event
    AFTER_LAST_DAY = 4  # a copy moved FUTURE_OFFSET past start_date + days (a future timestamp)


@dataclass(frozen=True)
class Events:
    """Event columns as numbers; -1 marks a null user and -(k + 1) an unknown item k."""

    user: np.ndarray  # [N] global user index
    item: np.ndarray  # [N] item index
    kind: np.ndarray  # [N] index into EVENT_TYPES, len(EVENT_TYPES) = unknown
    time_us: np.ndarray  # [N] microseconds since the epoch, UTC


def events_batch(world: World, block: int) -> pa.RecordBatch:
    users = draw_user_block(world, block)
    good = draw_events(world, users, rng_for(world.conf.seed, Stream.EVENTS, block))
    if world.conf.bad_row_share > 0:
        good = _concat(good, draw_bad_rows(world, good, rng_for(world.conf.seed, Stream.BAD_ROWS, block), block))
    return _to_arrow(world, good, block)


def draw_events(world: World, users: UserBlock, rng: np.random.Generator) -> Events:
    conf = world.conf
    n, days = len(users.index), conf.days
    rate = rng.gamma(2.0, conf.impressions_per_user_day / 2.0, n)  # [n]
    active = rng.random((n, days)) < conf.active_share  # [n, D]
    counts = rng.poisson(rate[:, None] * active).ravel()  # [n * D]
    local_user = np.repeat(np.repeat(np.arange(n), days), counts)  # [N]
    day = np.repeat(np.tile(np.arange(days), n), counts)  # [N]
    theta = users.interests[local_user]  # [N, F]
    tags = _exposed_tags(world, rng, theta)
    items = items_of_tags(world, rng, tags)
    clicked = rng.random(len(tags)) < ctr_affinity(world, theta, tags)
    converted = clicked & (rng.random(len(tags)) < cvr_affinity(world, theta, tags))
    day_start = (conf.start_date - dt.date(1970, 1, 1)).days * DAY_US + day * DAY_US
    shown = day_start + rng.integers(0, LAST_IMPRESSION_US, len(tags))
    click_time = shown + _delays(rng, len(tags), CLICK_DELAY_MEAN_US)
    conversion_time = click_time + _delays(rng, len(tags), CONVERSION_DELAY_MEAN_US)
    user = users.index[local_user]
    return Events(
        user=np.concatenate([user, user[clicked], user[converted]]),
        item=np.concatenate([items, items[clicked], items[converted]]),
        kind=np.repeat(np.arange(3), [len(tags), clicked.sum(), converted.sum()]),
        time_us=np.concatenate([shown, click_time[clicked], conversion_time[converted]]),
    )


# Far enough ahead to be in the future for any run date of the world: a clock-skewed or corrupted timestamp.
FUTURE_OFFSET = dt.timedelta(days=3650)


def draw_bad_rows(world: World, good: Events, rng: np.random.Generator, block: int) -> Events:
    """round(bad_row_share * good events) bad copies of random good events, kinds in turn."""
    count = int(round(world.conf.bad_row_share * len(good.kind)))
    source = rng.integers(0, len(good.kind), count)
    kind = np.arange(count) % len(BadRow)
    user, item, event_type, time_us = good.user[source], good.item[source], good.kind[source], good.time_us[source]
    event_type = np.where(kind == BadRow.UNKNOWN_EVENT_TYPE, len(EVENT_TYPES), event_type)
    user = np.where(kind == BadRow.NULL_USER, -1, user)
    item = np.where(kind == BadRow.UNKNOWN_ITEM, -1 - np.arange(count), item)
    future_us = (world.conf.end_date + FUTURE_OFFSET - dt.date(1970, 1, 1)).days * DAY_US
    time_us = np.where(kind == BadRow.AFTER_LAST_DAY, future_us + time_us % DAY_US, time_us)
    return Events(user=user, item=item, kind=event_type, time_us=time_us)


def _exposed_tags(world: World, rng: np.random.Generator, theta: np.ndarray) -> np.ndarray:
    targeted = rng.random(len(theta)) < world.conf.targeting_share
    facets = sample_rows(rng, theta)
    return np.where(targeted, tags_in_facets(world, rng, facets), popular_tags(world, rng, len(theta)))


def _delays(rng: np.random.Generator, n: int, mean_us: int) -> np.ndarray:
    return np.minimum(SECOND_US + rng.exponential(mean_us, n).astype(np.int64), MAX_DELAY_US)


def _concat(a: Events, b: Events) -> Events:
    return Events(*(np.concatenate([x, y]) for x, y in zip(
        (a.user, a.item, a.kind, a.time_us), (b.user, b.item, b.kind, b.time_us))))


def _to_arrow(world: World, events: Events, block: int) -> pa.RecordBatch:
    users = user_ids(np.maximum(events.user, 0), world.conf.users)
    users[events.user < 0] = None
    items = item_ids(world, np.maximum(events.item, 0))
    unknown = events.item < 0
    items[unknown] = [f"i_unknown_{block}_{-k - 1}" for k in events.item[unknown]]
    types = np.array([*EVENT_TYPES, UNKNOWN_EVENT_TYPE], dtype=object)[events.kind]
    return pa.RecordBatch.from_arrays(
        [pa.array(users, pa.string()), pa.array(items, pa.string()), pa.array(types, pa.string()),
         pa.array(events.time_us, pa.timestamp("us", tz="UTC"))],
        names=EVENTS_SCHEMA.fieldNames(),
    )
