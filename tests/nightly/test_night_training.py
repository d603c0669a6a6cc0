"""A night whose training is due but whose trained model the training rules reject: real Spark,
Delta and Horovod on a small synthetic world."""
from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pytest

from core import delta, registry
from core.config import config_from_dict, replace
from core.tables import Warehouse, warehouse_uri
from nightly import night
from nightly.lock import exclusive, train_lock
from nightly.runlog import read_runs
from training.errors import TrainingInProgressError

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 1)
D1, D2 = START + dt.timedelta(days=3), START + dt.timedelta(days=4)
SORT = [("user_id", "ascending"), ("objective", "ascending"), ("rank", "ascending")]


def _config(root, min_auc=0.0):
    return config_from_dict({
        "paths": {"raw": f"{root}/raw", "warehouse": f"{root}/wh", "models": f"{root}/models"},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "generate": {"users": 120, "items": 40, "tags": 12, "categories": 3, "facets": 3, "days": 5,
                     "start_date": START.isoformat(), "partitions": 2},
        "model": {"embedding_dim": 4, "hidden_dim": 8},
        "train": {"num_proc": 2, "window_days": 2, "epochs": 1, "batch_size": 128,
                  "publish_if": {"min_auc": min_auc, "max_auc_drop": 1.0}},
        "score": {"top_n": 4},
        "nightly": {"train_every": 1, "gates": {"min_auc": 0.0, "min_stability": 0.0, "max_score_shift": 1.0,
                                                "min_tag_coverage": 0.0}},
    })


def test_a_rejected_model_is_reused_and_a_rerun_of_an_earlier_night_scores_with_that_nights_model(spark, tmp_path):
    from synthetic.dataset import generate

    config = _config(tmp_path)
    generate(spark, config.generate, config.paths)
    first = night.run_night(spark, config, D1, run_id="n1")
    assert first.trained and not first.judged_again
    with open(first.report_path) as f:
        assert f.read().split("\n\n")[1] == f"run `n1`, model `{first.model_version}` (trained tonight)"
    reused = registry.latest_published(config.paths)
    assert (reused.model_version, reused.trained_for) == (first.model_version, D1)

    second = night.run_night(spark, _config(tmp_path, min_auc=1.0), D2, run_id="n2")  # no AUC reaches 1.0
    rejected = [r for r in registry.list_models(config.paths) if r.trained_for == D2]
    assert [r.status for r in rejected] == [registry.ModelStatus.REJECTED]
    assert (second.model_version, second.trained) == (reused.model_version, False)
    train_row = next(r for r in read_runs(config.paths) if r["run_id"] == "n2" and r["stage"] == "train")
    assert train_row["message"] == (f"trained {rejected[0].model_version} (rejected); "
                                    f"scoring with {reused.model_version}")
    gate_row = next(r for r in read_runs(config.paths) if r["run_id"] == "n2" and r["stage"] == "gates")
    assert {k: v for k, v in gate_row["metrics"].items() if k.startswith("model_auc_")} == \
        {f"model_auc_{o}": m["auc"] for o, m in reused.metrics.items()}
    with open(second.report_path) as f:
        header = f.read().split("\n\n")[:2]
    assert header == [f"# Nightly profiles {D2}", f"run `n2`, model `{reused.model_version}` (reused)"]

    # D2 again with the rules met: it trains and publishes D2's model. A rerun of D1 after that
    # scores with the model D1 had (the latest trained for D1 or earlier), trains nothing, and
    # rewrites D1's profiles as they were.
    # The model is the one "n2" trained and rejected (the rules are not part of the version): it
    # is judged again, not trained again.
    third = night.run_night(spark, config, D2, run_id="n2-again")
    assert (third.model_version, third.trained, third.judged_again) == (rejected[0].model_version, True, True)
    assert registry.latest_published(config.paths).model_version == third.model_version
    train_row = next(r for r in read_runs(config.paths) if r["run_id"] == "n2-again" and r["stage"] == "train")
    assert train_row["message"] == (f"judged {third.model_version} again, trained before from the same inputs "
                                    f"(published); scoring with {third.model_version}")
    with open(third.report_path) as f:
        header = f.read().split("\n\n")[:2]
    assert header == [f"# Nightly profiles {D2}", f"run `n2-again`, model `{third.model_version}` (trained for this "
                                                  f"night by an earlier run, judged again tonight)"]
    profiles = warehouse_uri(config.paths, Warehouse.USER_TAG_PROFILES)
    before = delta.read_arrow(profiles).filter(pc.equal(delta.read_arrow(profiles)["dt"], D1))
    rerun = night.run_night(spark, config, D1, run_id="n1-rerun")
    assert (rerun.model_version, rerun.trained, rerun.by_earlier_run) == (first.model_version, True, True)
    with open(rerun.report_path) as f:
        header = f.read().split("\n\n")[:2]
    assert header == [f"# Nightly profiles {D1}", f"run `n1-rerun`, model `{first.model_version}` (trained for this "
                                                  f"night by an earlier run)"]
    after = delta.read_arrow(profiles)
    assert after.filter(pc.equal(after["dt"], D1)).sort_by(SORT).to_pylist() == before.sort_by(SORT).to_pylist()

    # a train of D2 started by hand holds the version's lock when the night of D2 reaches training:
    # the night stops at its train stage, naming the holder, and publishes nothing
    published = delta.table_version(profiles)
    with exclusive(config.paths, train_lock(third.model_version), "train-2026-11-05-byhand"):
        with pytest.raises(TrainingInProgressError, match=rf"^{third.model_version}: another run holds \S+/"
                                                          rf"train-{third.model_version}.lock: run "
                                                          rf"train-2026-11-05-byhand \(pid"):
            night.run_night(spark, replace(config, nightly__train_every=0), D2, run_id="n2-locked")  # trains again
    stages = [(r["stage"], r["status"]) for r in read_runs(config.paths) if r["run_id"] == "n2-locked"]
    assert stages == [("features", "succeeded"), ("train", "failed")]
    assert delta.table_version(profiles) == published
