"""The scoring job end to end on local Spark, against the model's own forward pass."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.tables import Warehouse
from jobs.score import run
from scoring.executor import PROFILE_SCHEMA
from scoring.tag_index import read_tag_index
from training.artifact import TRAINING_FILE
from tests.scoring.warehouse import (D1, D2, MODEL_FIELDS, NUM_TAGS, World, expected_profiles, has_unknown,
                                     is_missing, make_tags, make_users, reference_probabilities)

pytestmark = pytest.mark.integration
ALL_TAGS = NUM_TAGS - 2


def _assert_profiles(spark, world, date, rows):
    assertDataFrameEqual(world.profiles(spark, date), spark.createDataFrame(rows, PROFILE_SCHEMA),
                         rtol=0.0, atol=1e-5)


@pytest.mark.parametrize("case", ["mvke", "mvke_cosine", "mind"])
def test_every_written_score_is_sigmoid_of_the_models_forward(spark, world, case):
    model = world.publish("v1", case)
    users, tags = make_users(24, seed=1), make_tags()
    world.day(D1, users, tags)

    summary = run(spark, world.config(top_n=ALL_TAGS), D1)

    probs = reference_probabilities(model, users, tags)
    objectives = {o: ALL_TAGS for o in probs}
    _assert_profiles(spark, world, D1, expected_profiles(probs, users, tags, date=D1, version="v1", top_n=objectives))
    assert summary["objectives"] == ["ctr", "cvr", "ctr_x_cvr"]
    assert summary["rows_written"] == len(users) * ALL_TAGS * 3
    assert (summary["tags_scored"], summary["tags_unseen_by_model"]) == (ALL_TAGS, 1)


def test_multi_fields_are_cut_to_the_length_the_model_was_trained_with(spark, world):
    """features.max_multi_len set to 16 now, the model trained with 2 (its training.json): each
    user's 2 heaviest values reach it, as in training, not up to 16. The user counts and the
    invalid-row check judge those 2 values too: what lies past them is never scored."""
    model = world.publish("v1")
    (Path(world.paths.models) / "v1" / TRAINING_FILE).write_text(json.dumps({"config": {"max_multi_len": 2}}))
    users, tags = make_users(24, seed=4), make_tags()
    assert max(len(u["interests"]) for u in users) == 3
    users[3].update(interests=[3, 4, -5], interests_weights=[1.0, 1.0, 1.0])  # negative, but past the cut
    users[4].update(interests=[2, 5, 7], interests_weights=[0.0, 0.0, 1.0])  # only an unknown id weighs, past the cut
    users[5].update(age=1, city=2, clicked_tags=[2, 3, NUM_TAGS + 1], clicked_tags_weights=[2.0, 1.0, 0.5])
    world.day(D1, users, tags)
    summary = run(spark, world.config(top_n=ALL_TAGS), D1)
    multi = [f.name for f in MODEL_FIELDS if f.kind == "multi"]
    cut = [{**u, **{k: (u[k] or [])[:2] for name in multi for k in (name, name + "_weights")}} for u in users]
    probs = reference_probabilities(model, cut, tags)
    _assert_profiles(spark, world, D1, expected_profiles(probs, cut, tags, date=D1, version="v1",
                                                         top_n={o: ALL_TAGS for o in probs}))
    assert is_missing(cut[4]) and not is_missing(users[4])
    assert has_unknown(users[4]) and not has_unknown(cut[4]) and not has_unknown(cut[5])
    assert (summary["users_with_missing_fields"], summary["users_with_unknown_ids"]) == \
        (sum(map(is_missing, cut)), sum(map(has_unknown, cut)))


def test_latest_is_the_latest_model_trained_for_the_scored_date_or_earlier(spark, world):
    """A rerun of D1 after the model of D2 was published scores with the model D1 had, so it
    rewrites D1's profiles as they were; D2 gets its own model."""
    first = world.publish("v1")  # trained for D1
    second = world.publish("v2", minute=1, trained_for=D2)
    users, tags = make_users(12, seed=3), make_tags()
    world.day(D1, users, tags)
    world.day(D2, users, tags)
    config = world.config(top_n=3)
    assert (run(spark, config, D1)["model_version"], run(spark, config, D2)["model_version"]) == ("v1", "v2")
    for date, model, version in ((D1, first, "v1"), (D2, second, "v2")):
        probs = reference_probabilities(model, users, tags)
        _assert_profiles(spark, world, date, expected_profiles(probs, users, tags, date=date, version=version,
                                                              top_n={o: 3 for o in probs}))


def test_top_n_options_match_a_brute_force_ranking(spark, world):
    model = world.publish("v1")
    users, tags = make_users(30, seed=2), make_tags()
    world.day(D1, users, tags)
    probs = reference_probabilities(model, users, tags)
    top_n = {"ctr": 3, "cvr": 5, "ctr_x_cvr": 2}
    excluded = ("t03", "t08", "not_a_tag")
    unfiltered = expected_profiles(probs, users, tags, date=D1, version="v1", top_n=top_n, excluded=excluded)
    min_score = float(np.median([r[5] for r in unfiltered if r[2] == "ctr_x_cvr"]))
    expected = expected_profiles(probs, users, tags, date=D1, version="v1", top_n=top_n, excluded=excluded,
                                 min_score=min_score)
    assert 0 < len(expected) < len(unfiltered)  # the floor bites, and leaves rows

    summary = run(spark, world.config(top_n=3, top_n_per_objective={"cvr": 5, "ctr_x_cvr": 2},
                                      exclude_tags=excluded, min_score=min_score, block_size=7), D1)

    _assert_profiles(spark, world, D1, expected)
    assert summary["rows_written"] == len(expected)
    assert summary["tags_excluded"] == 2


@pytest.fixture(scope="module")
def three_runs(spark, tmp_path_factory):
    """D1, then D2, then D1 again (same model): the tables after each run."""
    world = World(tmp_path_factory.mktemp("three_runs"))
    world.write_fields()
    model = world.publish("v1")
    users = {D1: make_users(20, seed=3), D2: make_users(15, seed=4)}
    world.day(D1, users[D1], make_tags())
    world.day(D2, users[D2], make_tags())
    config = world.config(top_n=4, write_user_vectors=True, block_size=3)
    first = run(spark, config, D1, run_id="first")
    d1_before = world.profiles(spark, D1).collect()
    second = run(spark, config, D2)
    d2_before = world.profiles(spark, D2).collect()
    third = run(spark, config, D1)
    return world, model, users, (first, second, third), d1_before, d2_before


def test_a_rerun_replaces_its_partition_with_identical_rows_and_leaves_the_others(spark, three_runs):
    world, _, _, summaries, d1_before, d2_before = three_runs
    assertDataFrameEqual(world.profiles(spark, D1), d1_before, rtol=0.0, atol=0.0)  # bit for bit
    assertDataFrameEqual(world.profiles(spark, D2), d2_before, rtol=0.0, atol=0.0)
    assert [s["table_versions"]["user_tag_profiles"] for s in summaries] == [0, 1, 2]
    assert delta.partition_values(world.uri(Warehouse.USER_TAG_PROFILES)) == [D1.isoformat(), D2.isoformat()]


def test_profiles_latest_holds_the_newest_date_after_each_standalone_score(spark, three_runs):
    world, _, _, _, _, d2_before = three_runs
    latest = delta.read_table(spark, world.uri(Warehouse.PROFILES_LATEST))
    assertDataFrameEqual(latest, d2_before, rtol=0.0, atol=0.0)  # D1 scored last, D2 is the newest date
    copies = [e for e in delta.history(world.uri(Warehouse.PROFILES_LATEST)) if e.get("job") == "refresh_latest"]
    assert sorted((e["dt"], e["source"]) for e in copies) == [(D1.isoformat(), "0"), (D2.isoformat(), "1"),
                                                              (D2.isoformat(), "2")]


def test_the_summary_counts_users_and_rows(spark, three_runs):
    world, _, users, (first, second, _), _, _ = three_runs
    for summary, date in ((first, D1), (second, D2)):
        assert summary["dt"] == date.isoformat() and summary["model_version"] == "v1"
        assert summary["users_scored"] == len(users[date])
        assert summary["users_with_missing_fields"] == sum(map(is_missing, users[date])) > 0
        assert summary["users_with_unknown_ids"] == sum(map(has_unknown, users[date])) > 0
        assert summary["rows_written"] == world.profiles(spark, date).count() == len(users[date]) * 4 * 3
    assert first["run_id"] == "first"


def test_tag_index_is_written_once_per_model_version_with_the_models_tag_vectors(three_runs):
    world, model, _, summaries, _, _ = three_runs
    assert [s["tag_index_written"] for s in summaries] == [True, False, False]
    assert {s["table_versions"]["tag_index"] for s in summaries} == {0}
    rows = read_tag_index(world.uri(Warehouse.TAG_INDEX), "v1")
    seen = [t for t in make_tags() if t["tag_index"] < NUM_TAGS]
    assert rows.num_rows == 2 * len(seen)
    tag = torch.tensor([t["tag_index"] for t in seen])
    category = torch.tensor([1 if t["category_id"] >= 5 else t["category_id"] for t in seen])
    with torch.no_grad():
        sides = model.tag_vectors(tag, category)
    for objective, side in sides.items():
        part = rows.filter(rows["objective"].to_numpy(zero_copy_only=False) == objective).to_pylist()
        assert [r["tag_id"] for r in part] == [t["tag_id"] for t in seen]
        serving = (side.gate.unsqueeze(-1) * side.emb.unsqueeze(1)).reshape(len(seen), -1)  # [T, S*E]
        np.testing.assert_allclose([r["serving_vector"] for r in part], serving.numpy(), atol=1e-6)
        np.testing.assert_allclose([r["gate"] for r in part], side.gate.numpy(), atol=1e-6)
        np.testing.assert_allclose([r["tag_vector"] for r in part], side.emb.numpy(), atol=1e-6)


def test_user_vectors_are_the_models_user_vectors(spark, three_runs):
    world, model, users, _, _, _ = three_runs
    written = {r.user_id: r for r in delta.read_table(spark, world.uri(Warehouse.USER_VECTORS))
               .where(f"dt = '{D1.isoformat()}'").collect()}
    batch = _user_batch(users[D1])
    with torch.no_grad():
        expected = model.user_vectors(batch)  # [U, K, E]
    assert sorted(written) == sorted(u["user_id"] for u in users[D1])
    for i, user in enumerate(users[D1]):
        np.testing.assert_allclose(written[user["user_id"]].user_vector, expected[i].reshape(-1).numpy(), atol=1e-5)
        assert all(written[user["user_id"]].vector_mask)


def _user_batch(users: list[dict]) -> dict:
    batch = {}
    for f in MODEL_FIELDS:
        if f.kind == "single":
            batch[f.name] = torch.tensor([min(u[f.name] or 0, f.vocab_size) if (u[f.name] or 0) < f.vocab_size
                                          else 1 for u in users])
            continue
        width = max(1, max(len(u[f.name] or []) for u in users))
        ids = [[i if i < f.vocab_size else 1 for i in u[f.name] or []] for u in users]
        weights = [list(u[f.name + "_weights"] or []) for u in users]
        batch[f.name] = torch.tensor([v + [0] * (width - len(v)) for v in ids])
        batch[f.name + "_weights"] = torch.tensor([v + [0.0] * (width - len(v)) for v in weights])
    return batch


def test_a_warehouse_in_a_folder_with_a_space_scores_every_night(spark, tmp_path):
    # The second night reads the tag_index the first one wrote: its files must be found by their real path.
    world = World(tmp_path / "ware house")
    world.write_fields()
    model = world.publish("v1")
    users, tags = make_users(8, seed=6), make_tags()
    world.day(D1, users, tags)
    world.day(D2, users, tags)
    config = world.config(top_n=3)
    first, second = run(spark, config, D1), run(spark, config, D2)

    assert (first["tag_index_written"], second["tag_index_written"]) == (True, False)
    probs = reference_probabilities(model, users, tags)
    for date in (D1, D2):
        _assert_profiles(spark, world, date, expected_profiles(probs, users, tags, date=date, version="v1",
                                                               top_n={o: 3 for o in probs}))
