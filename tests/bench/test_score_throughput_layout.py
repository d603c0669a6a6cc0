"""bench/score_throughput.py's inputs reach Spark spread over every core, for every size of a run.

Both sides of the als / mvke ratio must scan their users in as many tasks as there are cores:
a size whose users all sit in one Parquet partition runs on one core while the other side uses all.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "score_throughput.py"
    spec = importlib.util.spec_from_file_location("bench_score_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def rows_per_partition(frame) -> list[int]:
    return frame.rdd.mapPartitions(lambda rows: [sum(1 for _ in rows)]).collect()


def test_every_user_count_is_scanned_on_every_core(spark, bench, tmp_path):
    cores = spark.sparkContext.defaultParallelism
    counts = [300, 8_000]  # the small one is under an eighth of the large one
    paths = bench.write_user_sets(spark, tmp_path, counts + [300], cores)
    assert sorted(paths) == counts
    for count in counts:
        users = spark.read.parquet(paths[count])
        assert sum(1 for rows in rows_per_partition(users) if rows) >= cores, count
        got = users.orderBy("user_id").toPandas()  # u%08d: in user number order
        expected = bench.user_tensors(count)  # written independently, as torch tensors
        assert got["user_id"].tolist() == [f"u{i:08d}" for i in range(count)]
        for name, values in expected.items():
            column = np.stack(got[name].to_numpy()) if values.dim() == 2 else got[name].to_numpy()
            assert torch.equal(torch.from_numpy(column.astype(values.numpy().dtype)), values), (count, name)


def test_als_user_factors_are_scanned_on_every_core(spark, bench, tmp_path):
    from pyspark.ml.recommendation import ALSModel

    cores = spark.sparkContext.defaultParallelism
    users, tags = 2_000, 50
    model = ALSModel.load(bench.write_als_model(tmp_path / "als", users, tags, cores))
    assert model.rank == bench.RANK
    assert sum(1 for rows in rows_per_partition(model.userFactors) if rows) >= cores
    assert sorted(r.id for r in model.userFactors.select("id").collect()) == list(range(users))
    assert sorted(r.id for r in model.itemFactors.select("id").collect()) == list(range(tags))
    recommendations = model.recommendForAllUsers(bench.TOP_N)
    assert recommendations.count() == users
