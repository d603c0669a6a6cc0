"""The ground truth: ctr and cvr affinity of every (user, tag) pair, one user block at a time."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from synthetic.affinity import affinity_matrices
from synthetic.users import draw_user_block
from synthetic.world import World, user_ids

ROWS_PER_BATCH = 262_144

GROUND_TRUTH_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType()),
    T.StructField("tag_id", T.StringType()),
    T.StructField("ctr_affinity", T.DoubleType()),
    T.StructField("cvr_affinity", T.DoubleType()),
])


def ground_truth_batches(world: World, block: int) -> Iterator[pa.RecordBatch]:
    users = draw_user_block(world, block)
    num_tags = world.conf.tags
    tag_ids = pa.array(world.tag_ids, pa.string())
    step = max(1, ROWS_PER_BATCH // num_tags)
    for start in range(0, len(users.index), step):
        ctr, cvr = affinity_matrices(world, users.interests[start:start + step])  # [n, T] each
        n = len(ctr)
        ids = pa.array(user_ids(users.index[start:start + step], world.conf.users), pa.string())
        yield pa.RecordBatch.from_arrays(
            [
                ids.take(pa.array(np.repeat(np.arange(n), num_tags))),  # [n * T], user-major
                tag_ids.take(pa.array(np.tile(np.arange(num_tags), n))),
                pa.array(ctr.ravel(), pa.float64()),  # [n, T] -> [n * T]
                pa.array(cvr.ravel(), pa.float64()),
            ],
            names=GROUND_TRUTH_SCHEMA.fieldNames(),
        )
