"""The same code on a real standalone cluster: shipped code, Horovod across two executors,
lost executors, and results that match a local run."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import yaml

from core import delta
from core.config import load_config
from core.tables import Warehouse, warehouse_uri
from nightly import night, publish

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 1)
NIGHT = START + dt.timedelta(days=4)


def _conf_file(root, name) -> str:
    conf = {
        "paths": {"raw": f"{root}/raw", "warehouse": f"{root}/{name}/wh", "models": f"{root}/{name}/models"},
        "spark": {"shuffle_partitions": 2},
        "generate": {"users": 200, "items": 50, "tags": 16, "categories": 4, "facets": 4, "days": 5,
                     "start_date": START.isoformat(), "partitions": 2},
        "model": {"embedding_dim": 8, "hidden_dim": 16},
        "train": {"num_proc": 2, "window_days": 3, "epochs": 2, "batch_size": 128, "learning_rate": 0.02,
                  "publish_if": {"min_auc": 0.0, "max_auc_drop": 1.0}},
        "score": {"top_n": 5},
        "nightly": {"gates": {"min_auc": 0.0, "min_tag_coverage": 0.1}},
    }
    path = f"{root}/{name}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(conf, f)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from synthetic.dataset import generate

    root = tmp_path_factory.mktemp("cluster_world")
    local = load_config(_conf_file(root, "local"))
    generate(spark, local.generate, local.paths)
    return root


def _ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nSTDOUT\n{result.stdout[-4000:]}\nSTDERR\n{result.stderr[-6000:]}"
    return result


def _table(spark, config, table) -> pd.DataFrame:
    """The whole table in a canonical row order (array cells as tuples, so rows can be sorted)."""
    frame = delta.read_table(spark, warehouse_uri(config.paths, table)).toPandas()
    for column in frame.columns:
        if frame[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
            frame[column] = frame[column].map(lambda v: None if v is None else tuple(v))
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_doctor_sees_two_executors_running_the_shipped_code(cluster, world, spark_submit):
    result = _ok(spark_submit("doctor", "--conf", _conf_file(world, "cluster"), master=cluster.url))
    executors = [line for line in result.stdout.splitlines() if line.startswith("[doctor] executor ")]
    assert len(executors) == 2, result.stdout
    assert all("mvke_code.zip" in line for line in executors), executors


def test_nightly_on_the_cluster_matches_a_local_run(cluster, world, spark, spark_submit):
    _ok(spark_submit("nightly", "--conf", _conf_file(world, "cluster"), "--date", NIGHT.isoformat(), master=cluster.url))
    on_cluster = load_config(_conf_file(world, "cluster"))
    local = load_config(_conf_file(world, "local"))
    night.run_night(spark, local, NIGHT, run_id="local")
    # features are deterministic: identical tables
    for table in (Warehouse.USER_FEATURES, Warehouse.SAMPLES, Warehouse.TAGS, Warehouse.VOCABULARY):
        pd.testing.assert_frame_equal(_table(spark, on_cluster, table), _table(spark, local, table))
    # training is reproducible across layouts: each rank reads the same shard in the same order
    # (training.data.petastorm_converters), one torch thread per rank on both, and gloo's
    # two-operand allreduce sums in either order exactly; so the profiles match to float noise
    a = publish.read_profiles(spark, publish.profiles_uri(on_cluster.paths), NIGHT).toPandas()
    b = publish.read_profiles(spark, publish.profiles_uri(local.paths), NIGHT).toPandas()
    joined = a.merge(b, on=["user_id", "objective", "rank"], suffixes=("_cluster", "_local"), how="outer")
    assert len(joined) == len(a) == len(b)
    assert (joined["tag_id_cluster"] == joined["tag_id_local"]).all()
    assert (joined["score_cluster"] - joined["score_local"]).abs().max() < 1e-6


def test_an_executor_killed_during_scoring_and_features_changes_nothing(cluster, world, spark, tmp_path, spark_submit):
    config = load_config(_conf_file(world, "cluster"))
    before = {t: _table(spark, config, t) for t in (Warehouse.USER_TAG_PROFILES, Warehouse.USER_FEATURES)}
    for job, table in (("score", Warehouse.USER_TAG_PROFILES), ("features", Warehouse.USER_FEATURES)):
        marker = tmp_path / f"killed-{job}"
        _ok(spark_submit(job, "--conf", _conf_file(world, "cluster"), "--date", NIGHT.isoformat(), master=cluster.url,
                   spark_options=("--conf", f"spark.executorEnv.MVKE_FAULT_KILL_EXECUTOR_ONCE={marker}")))
        assert marker.exists(), f"the {job} run never reached the fault hook"
        pd.testing.assert_frame_equal(_table(spark, config, table), before[table])
