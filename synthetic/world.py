"""The generator's published parameters: everything small, drawn on the driver from the seed.

`build_world(conf)` is a pure function of the conf: the tags (facet, category, Zipf
popularity, CTR and CVR facet loadings, biases), how items are laid out per primary
tag, and the attribute model linking user attributes to interests. Its size is
O(tags x facets + attribute values x facets), never O(users) or O(items), so it is
shipped to the executors inside the task closures. Per-user and per-item randomness
is drawn on the executors, block by block (see `rng_for`).

Notation: F facets, T tags, C categories, V values of one attribute.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from core.config import GenerateConf

CTR_FACET_WEIGHT = 0.8
CVR_OWN_FACET_WEIGHT = 0.6
CVR_OTHER_FACET_WEIGHT = 0.3
TAG_BIAS_SD = 0.5
CATEGORY_FOLLOWS_FACET = 0.7
NULL_CATEGORY_SHARE = 0.05
CATEGORY_NAMES = ("apparel", "auto", "beauty", "electronics", "finance", "food", "games", "home",
                  "sports", "travel", "education", "health", "pets", "music", "books", "realestate")


class Stream(IntEnum):
    """Independent random streams; each is keyed by (seed, stream, block)."""

    WORLD = 0
    USERS = 1
    EVENTS = 2
    ITEMS = 3
    BAD_ROWS = 4


@dataclass(frozen=True)
class CategoricalAttribute:
    """P(value | interests) = softmax_v(base[v] + strength * (loading @ theta)[v])."""

    name: str
    values: tuple[str, ...]
    base: np.ndarray  # [V]
    loading: np.ndarray  # [V, F]
    strength: float
    null_share: float


@dataclass(frozen=True)
class AttributeModel:
    categorical: tuple[CategoricalAttribute, ...]
    income_loading: np.ndarray  # [F]: log income = 10.3 + 0.6 * income_loading @ theta + 0.5 * N(0, 1)
    tenure_loading: np.ndarray  # [F]: tenure_days ~ Exponential(365 * exp(0.5 * tenure_loading @ theta))
    income_null_share: float = 0.08


@dataclass(frozen=True)
class World:
    conf: GenerateConf
    tag_ids: np.ndarray  # [T] str
    tag_names: np.ndarray  # [T] str
    tag_categories: np.ndarray  # [T] object: str or None
    tag_facet: np.ndarray  # [T] int: the facet that drives clicks on the tag
    tag_conversion_facet: np.ndarray  # [T] int: the second facet that drives conversions
    tag_popularity: np.ndarray  # [T] Zipf probabilities, summing to 1
    ctr_loading: np.ndarray  # [T, F] rows sum to 1
    cvr_loading: np.ndarray  # [T, F] rows sum to 1
    ctr_bias: np.ndarray  # [T] logit offsets
    cvr_bias: np.ndarray  # [T]
    item_offsets: np.ndarray  # [T + 1]: items with primary tag t are indices offsets[t] .. offsets[t+1]-1
    item_id_multiplier: int  # item index j is published as id (a * j + c) mod items
    item_id_shift: int
    attributes: AttributeModel

    @property
    def num_user_blocks(self) -> int:
        return -(-self.conf.users // self.conf.block_users)

    def facet_tags(self, facet: int) -> np.ndarray:
        return np.flatnonzero(self.tag_facet == facet)


def rng_for(seed: int, stream: Stream, block: int = 0) -> np.random.Generator:
    """The generator of one (stream, block): independent of partitioning and scheduling."""
    return np.random.default_rng(np.random.SeedSequence([seed, int(stream), block]))


def build_world(conf: GenerateConf) -> World:
    conf.validate()  # a GenerateConf built in Python has not been through the config loader
    rng = rng_for(conf.seed, Stream.WORLD)
    num_tags, num_facets = conf.tags, conf.facets
    tag_facet = rng.permutation(np.arange(num_tags) % num_facets)
    other = rng.integers(1, num_facets, num_tags) if num_facets > 1 else np.zeros(num_tags, dtype=np.int64)
    tag_conversion_facet = (tag_facet + other) % num_facets
    eye = np.eye(num_facets)
    ctr_loading = CTR_FACET_WEIGHT * eye[tag_facet] \
        + (1 - CTR_FACET_WEIGHT) * rng.dirichlet(np.ones(num_facets), num_tags)  # [T, F]
    cvr_loading = CVR_OWN_FACET_WEIGHT * eye[tag_facet] + CVR_OTHER_FACET_WEIGHT * eye[tag_conversion_facet] \
        + (1 - CVR_OWN_FACET_WEIGHT - CVR_OTHER_FACET_WEIGHT) * rng.dirichlet(np.ones(num_facets), num_tags)
    ranks = rng.permutation(num_tags)
    popularity = (ranks + 1.0) ** -conf.zipf_exponent
    popularity /= popularity.sum()
    categories = _tag_categories(rng, tag_facet, conf.categories)
    ids = _ids("t", np.arange(num_tags), num_tags)
    names = np.array([f"{c or 'misc'}-{i}" for c, i in zip(categories, ids)], dtype=object)
    multiplier, shift = _item_id_permutation(rng, conf.items)
    return World(
        conf=conf,
        tag_ids=ids,
        tag_names=names,
        tag_categories=categories,
        tag_facet=tag_facet,
        tag_conversion_facet=tag_conversion_facet,
        tag_popularity=popularity,
        ctr_loading=ctr_loading,
        cvr_loading=cvr_loading,
        ctr_bias=rng.normal(0.0, TAG_BIAS_SD, num_tags),
        cvr_bias=rng.normal(0.0, TAG_BIAS_SD, num_tags),
        item_offsets=_item_offsets(popularity, conf.items),
        item_id_multiplier=multiplier,
        item_id_shift=shift,
        attributes=_attribute_model(rng, num_facets),
    )


def user_ids(index: np.ndarray, users: int) -> np.ndarray:
    return _ids("u", index, users, width=8)


def item_ids(world: World, index: np.ndarray) -> np.ndarray:
    """Published ids of item indices: a fixed permutation, so ids do not reveal the primary tag."""
    items = world.conf.items
    scrambled = (world.item_id_multiplier * index.astype(np.int64) + world.item_id_shift) % items
    return _ids("i", scrambled, items, width=6)


def _ids(prefix: str, index: np.ndarray, count: int, width: int = 4) -> np.ndarray:
    width = max(width, len(str(max(count - 1, 0))))
    return np.char.add(prefix, np.char.zfill(index.astype(np.int64).astype(str), width)).astype(object)


def _tag_categories(rng: np.random.Generator, tag_facet: np.ndarray, num_categories: int) -> np.ndarray:
    """Mostly the facet's home category, sometimes any category, a few missing."""
    names = [CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category{c}" for c in range(num_categories)]
    home = tag_facet % num_categories
    anywhere = rng.integers(0, num_categories, len(tag_facet))
    follows = rng.random(len(tag_facet)) < CATEGORY_FOLLOWS_FACET
    missing = rng.random(len(tag_facet)) < NULL_CATEGORY_SHARE
    chosen = np.where(follows, home, anywhere)
    return np.array([None if m else names[c] for c, m in zip(chosen, missing)], dtype=object)


def _item_offsets(popularity: np.ndarray, items: int) -> np.ndarray:
    """Every tag is the primary tag of >= 1 item; the rest are shared out by popularity."""
    spare = items - len(popularity)
    share = popularity * spare
    counts = np.floor(share).astype(np.int64)
    leftover = spare - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:leftover]] += 1
    return np.concatenate([[0], np.cumsum(counts + 1)])


def _item_id_permutation(rng: np.random.Generator, items: int) -> tuple[int, int]:
    multiplier = max(1, int(items * 0.6180339887)) | 1
    while np.gcd(multiplier, items) != 1:
        multiplier += 1
    return multiplier, int(rng.integers(0, items))


def _attribute_model(rng: np.random.Generator, num_facets: int) -> AttributeModel:
    specs = (
        ("age_band", ("18-24", "25-34", "35-44", "45-54", "55+"), 2.0, 0.02),
        ("gender", ("female", "male"), 1.5, 0.05),
        ("city", tuple(f"city_{k:02d}" for k in range(20)), 2.5, 0.03),
        ("device", ("android", "ios", "desktop"), 1.0, 0.0),
    )
    categorical = tuple(
        CategoricalAttribute(name=name, values=values, base=rng.normal(0.0, 0.5, len(values)),
                             loading=rng.normal(0.0, 1.0, (len(values), num_facets)),
                             strength=strength, null_share=null_share)
        for name, values, strength, null_share in specs
    )
    return AttributeModel(categorical=categorical, income_loading=rng.normal(0.0, 1.0, num_facets),
                          tenure_loading=rng.normal(0.0, 1.0, num_facets))
