"""Users, drawn block by block: interests first, then attributes that depend on them.

Block b holds user indices [b * block_users, min((b + 1) * block_users, users)) and
draws from the stream (seed, USERS, b) only, so any process can regenerate any block.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from synthetic.world import CategoricalAttribute, Stream, World, rng_for, user_ids

INCOME_LOG_MEAN = 10.3
TENURE_MEAN_DAYS = 365.0
TENURE_MAX_DAYS = 5000

USERS_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType()),
    T.StructField("age_band", T.StringType()),
    T.StructField("gender", T.StringType()),
    T.StructField("city", T.StringType()),
    T.StructField("device", T.StringType()),
    T.StructField("income", T.DoubleType()),
    T.StructField("tenure_days", T.IntegerType()),
])


@dataclass(frozen=True)
class UserBlock:
    index: np.ndarray  # [n] global user indices
    interests: np.ndarray  # [n, F] sparse Dirichlet
    rng: np.random.Generator  # the block's USERS stream, positioned after the interests


def block_bounds(world: World, block: int) -> tuple[int, int]:
    size = world.conf.block_users
    return block * size, min((block + 1) * size, world.conf.users)


def draw_user_block(world: World, block: int) -> UserBlock:
    start, end = block_bounds(world, block)
    rng = rng_for(world.conf.seed, Stream.USERS, block)
    alpha = np.full(world.conf.facets, world.conf.interest_concentration)
    return UserBlock(index=np.arange(start, end), interests=rng.dirichlet(alpha, end - start), rng=rng)


def user_interests(world: World, index: np.ndarray) -> np.ndarray:
    """The hidden interests of the given users, [len(index), F]: for tests and evaluation.

    Regenerates the blocks that hold them on the caller's process, so keep `index` small.
    """
    index = np.asarray(index, dtype=np.int64)
    outside = index[(index < 0) | (index >= world.conf.users)]
    if outside.size:
        raise ValueError(f"user indices {sorted(set(outside.tolist()))[:5]} are outside 0..{world.conf.users - 1}")
    out = np.empty((len(index), world.conf.facets))
    blocks = index // world.conf.block_users
    for block in np.unique(blocks):
        users = draw_user_block(world, int(block))
        mask = blocks == block
        out[mask] = users.interests[index[mask] - users.index[0]]
    return out


def users_batch(world: World, block: int) -> pa.RecordBatch:
    users = draw_user_block(world, block)
    rng, theta, model = users.rng, users.interests, world.attributes
    columns = {"user_id": pa.array(user_ids(users.index, world.conf.users), pa.string())}
    for attribute in model.categorical:
        columns[attribute.name] = pa.array(_draw_categorical(rng, attribute, theta), pa.string())
    n = len(users.index)
    income = np.exp(INCOME_LOG_MEAN + 0.6 * theta @ model.income_loading + 0.5 * rng.standard_normal(n))
    income_missing = rng.random(n) < model.income_null_share
    columns["income"] = pa.array(np.round(income, 2), pa.float64(), mask=income_missing)
    tenure = rng.exponential(TENURE_MEAN_DAYS * np.exp(0.5 * theta @ model.tenure_loading))
    columns["tenure_days"] = pa.array(np.minimum(tenure, TENURE_MAX_DAYS).astype(np.int32), pa.int32())
    return pa.RecordBatch.from_pydict(columns)


def _draw_categorical(rng: np.random.Generator, attribute: CategoricalAttribute, theta: np.ndarray) -> np.ndarray:
    logits = attribute.base + attribute.strength * theta @ attribute.loading.T  # [n, V]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    chosen = sample_rows(rng, probs)
    values = np.array(attribute.values, dtype=object)[chosen]
    values[rng.random(len(theta)) < attribute.null_share] = None
    return values


def sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a [n, K] probability matrix."""
    cumulative = np.cumsum(probs, axis=1)  # [n, K]
    u = rng.random(len(probs)) * cumulative[:, -1]
    return np.minimum((cumulative < u[:, None]).sum(axis=1), probs.shape[1] - 1)
