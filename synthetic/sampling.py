"""Vectorised draws shared by items and events: tags by popularity, items within a tag."""
from __future__ import annotations

import numpy as np

from synthetic.world import World


def popular_tags(world: World, rng: np.random.Generator, n: int) -> np.ndarray:
    """n tags drawn from the global Zipf popularity."""
    cumulative = np.cumsum(world.tag_popularity)
    return np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right"),
                      len(cumulative) - 1)


def tags_in_facets(world: World, rng: np.random.Generator, facets: np.ndarray) -> np.ndarray:
    """One tag per entry of `facets`, drawn from that facet's tags by popularity."""
    u = rng.random(len(facets))
    tags = np.empty(len(facets), dtype=np.int64)
    for facet in range(world.conf.facets):
        rows = facets == facet
        members = world.facet_tags(facet)
        cumulative = np.cumsum(world.tag_popularity[members])
        pick = np.searchsorted(cumulative, u[rows] * cumulative[-1], side="right")
        tags[rows] = members[np.minimum(pick, len(members) - 1)]
    return tags


def items_of_tags(world: World, rng: np.random.Generator, tags: np.ndarray) -> np.ndarray:
    """One item index per tag among the items whose primary tag it is, by rank: the continuous density
    x^-zipf on [1, count + 1) inverted and floored, so rank k gets the mass of [k + 1, k + 2) (close to
    Zipf's (k + 1)^-zipf)."""
    start = world.item_offsets[tags]
    count = world.item_offsets[tags + 1] - start
    u = rng.random(len(tags))
    a = world.conf.zipf_exponent
    if abs(a - 1.0) < 1e-9:
        x = (count + 1.0) ** u
    else:
        x = (1.0 - u + u * (count + 1.0) ** (1.0 - a)) ** (1.0 / (1.0 - a))
    rank = np.clip(np.floor(x).astype(np.int64) - 1, 0, count - 1)
    return start + rank


def primary_tags(world: World, item_index: np.ndarray) -> np.ndarray:
    return np.searchsorted(world.item_offsets, item_index, side="right") - 1
