"""Items: each has a primary tag (first in tag_ids) and up to two related tags.

Item indices are laid out by primary tag (`World.item_offsets`); the published ids are
scrambled. Drawn in blocks of ITEM_BLOCK_SIZE indices from the stream (seed, ITEMS, b).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from synthetic.sampling import popular_tags, primary_tags, tags_in_facets
from synthetic.world import Stream, World, item_ids, rng_for

ITEM_BLOCK_SIZE = 10_000
TAGS_PER_ITEM_PROBS = (0.4, 0.4, 0.2)  # P(1 tag), P(2 tags), P(3 tags)
RELATED_SAME_FACET = 0.7

ITEMS_SCHEMA = T.StructType([
    T.StructField("item_id", T.StringType()),
    T.StructField("tag_ids", T.ArrayType(T.StringType())),
])


def num_item_blocks(world: World) -> int:
    return -(-world.conf.items // ITEM_BLOCK_SIZE)


def items_batch(world: World, block: int) -> pa.RecordBatch:
    start, end = block * ITEM_BLOCK_SIZE, min((block + 1) * ITEM_BLOCK_SIZE, world.conf.items)
    rng = rng_for(world.conf.seed, Stream.ITEMS, block)
    index = np.arange(start, end)
    primary = primary_tags(world, index)
    count = rng.choice(len(TAGS_PER_ITEM_PROBS), size=len(index), p=TAGS_PER_ITEM_PROBS) + 1
    tags = np.stack([primary, _related_tags(world, rng, primary), _related_tags(world, rng, primary)], axis=1)
    keep = np.arange(3)[None, :] < count[:, None]  # [n, 3]
    keep[:, 1] &= tags[:, 1] != tags[:, 0]
    keep[:, 2] &= (tags[:, 2] != tags[:, 0]) & (tags[:, 2] != tags[:, 1])
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    tag_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(world.tag_ids[tags[keep]], pa.string()))
    return pa.RecordBatch.from_arrays([pa.array(item_ids(world, index), pa.string()), tag_ids],
                                      names=["item_id", "tag_ids"])


def _related_tags(world: World, rng: np.random.Generator, primary: np.ndarray) -> np.ndarray:
    same_facet = tags_in_facets(world, rng, world.tag_facet[primary])
    anywhere = popular_tags(world, rng, len(primary))
    return np.where(rng.random(len(primary)) < RELATED_SAME_FACET, same_facet, anywhere)
