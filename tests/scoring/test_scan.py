"""The blocked scan without Spark: exact logits, deterministic top-N, Arrow <-> tensors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from core.config import ConfigError, config_from_dict
from mvke.builder import build_model
from mvke.serving import score_block
from scoring.executor import block_user_vectors, tensor_batch, user_blocks
from scoring.scan import COMBINED_OBJECTIVE, ObjectiveTags, ScanPlan, ScanTags, objective_logits, scan_block, scan_plan
from scoring.tag_index import compute_tag_index, probe_sides, scan_tags
from tests.scoring.warehouse import MODEL_FIELDS, NUM_CATEGORIES, NUM_TAGS, model_conf


def tiny_tags_table(category: str | None = "cycle") -> pa.Table:
    ids = list(range(2, NUM_TAGS))
    categories = [2 + i % 3 if category else None for i in ids]
    return pa.table({"tag_id": [f"t{i:02d}" for i in ids], "tag_index": pa.array(ids, pa.int32()),
                     "category_id": pa.array(categories, pa.int32())})


@pytest.fixture(scope="module")
def tiny_tags():
    return tiny_tags_table()


def _users(count: int) -> dict:
    g = torch.Generator().manual_seed(7)
    batch = {}
    for f in MODEL_FIELDS:
        if f.kind == "single":
            batch[f.name] = torch.randint(0, f.vocab_size, (count,), generator=g)
        else:
            batch[f.name] = torch.randint(0, f.vocab_size, (count, 5), generator=g)
            batch[f.name + "_weights"] = torch.rand(count, 5, generator=g) * (batch[f.name] > 0)
    return batch


@pytest.mark.parametrize("case", ["mvke", "mvke_cosine", "mind"])
def test_block_logits_equal_score_block_on_the_whole_tag_side(case, tiny_tags, monkeypatch):
    model = build_model(model_conf(case), MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES).eval()
    tags = scan_tags(compute_tag_index(model, "v", tiny_tags), tiny_tags, probe_sides(model))
    users = _users(9)
    monkeypatch.setattr("scoring.scan.SLICE_ELEMENTS", 40)  # several tag slices
    with torch.no_grad():
        vecs, mask = model.user_vectors(users), model.user_mask(users)
        tag = torch.tensor(tiny_tags["tag_index"].to_pylist())
        sides = model.tag_vectors(tag, torch.tensor(tiny_tags["category_id"].to_pylist()))
        for objective, side in sides.items():
            got = objective_logits(vecs, mask, tags.objectives[objective], output=model.output,
                                   temperature=model.temperature)
            want = score_block(vecs, side, output=model.output, temperature=model.temperature, user_mask=mask)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["mvke", "mmoe", "hard_sharing", "mind"])
def test_a_model_trained_without_tag_categories_scans_its_tags(family):
    # No tag had a category at training time: the category table holds only the two reserved rows.
    model = build_model(dataclasses.replace(model_conf("mvke"), name=family), MODEL_FIELDS, NUM_TAGS, 2).eval()
    no_category = tiny_tags_table(category=None)
    tags = scan_tags(compute_tag_index(model, "v", no_category), no_category, probe_sides(model))
    users = _users(4)
    with torch.no_grad():
        vecs, mask = model.user_vectors(users), model.user_mask(users)
        tag = torch.tensor(no_category["tag_index"].to_pylist())
        sides = model.tag_vectors(tag, torch.zeros_like(tag))  # a null category is id 0
        for objective, side in sides.items():
            got = objective_logits(vecs, mask, tags.objectives[objective], output=model.output,
                                   temperature=model.temperature)
            want = score_block(vecs, side, output=model.output, temperature=model.temperature, user_mask=mask)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_scan_block_applies_the_floor_and_the_combined_objective():
    emb = np.eye(3, dtype=np.float32)
    side = ObjectiveTags(experts=np.array([0]), gate=np.ones((3, 1), np.float32), emb=emb, serving=emb)
    tags = ScanTags(tag_ids=np.array(["a", "b", "c"], dtype=object), objectives={"ctr": side, "cvr": side})
    users = torch.tensor([[[2.0, 0.0, -1.0]], [[0.0, 0.0, 0.0]]])  # [B=2, K=1, E=3]
    plan = ScanPlan(top_n={"ctr": 2, COMBINED_OBJECTIVE: 3}, min_score=0.5, output="dot", temperature=1.0)
    picked = scan_block(users, None, tags, plan)
    sig = 1 / (1 + np.exp(-np.array([2.0, 0.0, -1.0])))
    assert picked["ctr"].rows.tolist() == [0, 0, 1, 1] and picked["ctr"].cols.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(picked["ctr"].score, [sig[0], 0.5, 0.5, 0.5])
    assert picked[COMBINED_OBJECTIVE].rows.tolist() == [0]  # 0.25 and below fall under the floor
    np.testing.assert_allclose(picked[COMBINED_OBJECTIVE].score, [sig[0] ** 2])
    assert picked[COMBINED_OBJECTIVE].rank.tolist() == [1]


def test_the_floor_leaves_ranks_1_to_n_when_the_combined_ranking_and_score_disagree():
    # Two tags whose float32 products p_ctr * p_cvr tie (ranked by lower tag_index) while the float64
    # scores differ: the floor drops the first and keeps the second, which must then be rank 1.
    cvr_low = np.float32(5.0)
    cvr_high = np.nextafter(cvr_low, np.float32(6.0))
    emb = np.eye(2, dtype=np.float32)
    ctr = ObjectiveTags(experts=np.array([0]), gate=np.ones((2, 1), np.float32), emb=emb, serving=emb)
    cvr = ObjectiveTags(experts=np.array([1]), gate=np.ones((2, 1), np.float32), emb=emb, serving=emb)
    tags = ScanTags(tag_ids=np.array(["a", "b"], dtype=object), objectives={"ctr": ctr, "cvr": cvr})
    users = torch.tensor([[[0.0, 0.0], [float(cvr_low), float(cvr_high)]]])  # [B=1, K=2, E=2]
    scores = 0.5 / (1 + np.exp(-np.array([cvr_low, cvr_high], dtype=np.float64)))  # p_ctr = 0.5
    assert scores[0] < scores[1]
    plan = ScanPlan(top_n={COMBINED_OBJECTIVE: 2}, min_score=float(scores[1]), output="dot", temperature=1.0)
    picked = scan_block(users, None, tags, plan)[COMBINED_OBJECTIVE]
    assert (picked.rows.tolist(), picked.rank.tolist(), picked.cols.tolist()) == ([0], [1], [1])
    np.testing.assert_allclose(picked.score, [scores[1]], rtol=1e-12)


def test_scan_plan_adds_the_combined_objective_only_when_the_model_has_both_parts():
    plan = scan_plan(("ctr", "cvr"), output="dot", temperature=1.0, top_n=5, top_n_per_objective={"cvr": 2},
                     min_score=0.0, combined=True)
    assert dict(plan.top_n) == {"ctr": 5, "cvr": 2, COMBINED_OBJECTIVE: 5}
    plan = scan_plan(("ctr",), output="dot", temperature=1.0, top_n=5, top_n_per_objective={}, min_score=0.0,
                     combined=True)
    assert dict(plan.top_n) == {"ctr": 5}


@pytest.mark.parametrize("objectives, combined", [(("ctr", "cvr"), False), (("cvr",), True)])
def test_a_combined_top_n_is_unused_where_the_combined_objective_is_not_ranked(objectives, combined):
    plan = scan_plan(objectives, output="dot", temperature=1.0, top_n=5,
                     top_n_per_objective={COMBINED_OBJECTIVE: 20, "cvr": 3}, min_score=0.0, combined=combined)
    assert dict(plan.top_n) == {**{o: 5 for o in objectives}, "cvr": 3}


def test_a_top_n_key_the_model_does_not_score_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"names \['cvr'\], which this model does not score; valid: ctr, ctr_x_cvr"):
        scan_plan(("ctr",), output="dot", temperature=1.0, top_n=5, top_n_per_objective={"cvr": 3},
                  min_score=0.0, combined=True)


def test_tensor_batch_pads_ragged_lists_and_reads_nulls_as_missing():
    block = pa.table({
        "user_id": ["a", "b", "c"],
        "age": pa.array([3, None, 5], pa.int32()),
        "tags": pa.array([[4, 5, 6], None, [7]], pa.list_(pa.int32())),
        "tags_weights": pa.array([[1.0, 0.5, 2.0], None, [1.5]], pa.list_(pa.float32())),
    })
    fields = [dataclasses.replace(MODEL_FIELDS[0], name="age"), dataclasses.replace(MODEL_FIELDS[2], name="tags")]
    batch = tensor_batch(block, fields)
    assert batch["age"].tolist() == [3, 0, 5]
    assert batch["tags"].tolist() == [[4, 5, 6], [0, 0, 0], [7, 0, 0]]
    assert batch["tags_weights"].tolist() == [[1.0, 0.5, 2.0], [0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]
    bad = block.set_column(3, "tags_weights", pa.array([[1.0], None, [1.5]], pa.list_(pa.float32())))
    with pytest.raises(ValueError, match="tags and tags_weights differ in length"):
        tensor_batch(bad, fields)


def test_user_blocks_recut_batches_to_the_block_size():
    batches = [pa.RecordBatch.from_pydict({"x": list(range(a, b))}) for a, b in ((0, 3), (3, 3), (3, 10), (10, 11))]
    blocks = list(user_blocks(iter(batches), 4))
    assert [b.num_rows for b in blocks] == [4, 4, 3]
    assert [v for b in blocks for v in b["x"].to_pylist()] == list(range(11))


@pytest.mark.parametrize("setting, match", [
    ("min_score=1.5", r"score.min_score is a probability and must be in \[0, 1\]"),
    ("block_size=0", r"score.block_size must be >= 1"),
    ("top_n_per_objective={'ctr': 0}", r"score.top_n and score.top_n_per_objective values must be >= 1"),
    ("exclude_tags=['']", r"score.exclude_tags must hold tag ids"),
])
def test_score_settings_are_validated(setting, match):
    key, _, value = setting.partition("=")
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"paths": {"raw": "r", "warehouse": "w", "models": "m"},
                          "score": {key: yaml.safe_load(value)}})


def test_scanning_users_in_slices_changes_nothing(tiny_tags, monkeypatch):
    model = build_model(model_conf("mind"), MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES).eval()
    tags = scan_tags(compute_tag_index(model, "v", tiny_tags), tiny_tags, probe_sides(model))
    users = _users(50)
    plan = scan_plan(model.objectives, output=model.output, temperature=model.temperature, top_n=4,
                     top_n_per_objective={"cvr": 2}, min_score=0.4, combined=True)
    with torch.no_grad():
        vecs, mask = model.user_vectors(users), model.user_mask(users)
        whole = scan_block(vecs, mask, tags, plan)
        monkeypatch.setattr("scoring.scan.CACHE_ELEMENTS", 1)
        monkeypatch.setattr("scoring.scan.MIN_SLICE_ROWS", 7)  # 8 slices, the last one short
        sliced = scan_block(vecs, mask, tags, plan)
    assert set(whole) == set(sliced) == {"ctr", "cvr", COMBINED_OBJECTIVE}
    for objective in whole:  # scores to a float32 rounding: BLAS may sum in another order for other shapes
        for field in ("rows", "rank", "cols"):
            np.testing.assert_array_equal(getattr(sliced[objective], field), getattr(whole[objective], field))
        np.testing.assert_allclose(sliced[objective].score, whole[objective].score, rtol=1e-6, atol=0)


@pytest.mark.parametrize("case", ["mvke", "mind"])
def test_the_user_tower_in_slices_gives_the_vectors_of_one_call(case, monkeypatch):
    model = build_model(model_conf(case), MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES).eval()
    users = _users(50)
    monkeypatch.setattr("scoring.executor.TOWER_ROWS", 7)  # 8 slices, the last one short
    with torch.no_grad():
        whole, sliced = model.user_vectors(users), block_user_vectors(model, users)
    assert sliced.shape == whole.shape
    np.testing.assert_allclose(sliced.numpy(), whole.numpy(), rtol=1e-5, atol=1e-6)


def test_a_replaced_model_folder_is_loaded_again_even_with_the_same_size_and_time(tmp_path):
    """Spark reuses Python workers across jobs: a version folder replaced whole (a retrain) must not
    be scored with the weights cached from the old one, whose file had the same size and, on a
    filesystem with coarse timestamps, the same time."""
    import os

    from mvke.artifact import WEIGHTS_FILE, save_model, weights_id
    from scoring.executor import ModelReplacedError, cached_model

    folder = tmp_path / "v1"
    old = build_model(model_conf("mvke"), MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES)
    save_model(old, old.spec.conf, MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES, folder)
    first = cached_model(str(folder))
    old_id = weights_id(folder)
    assert cached_model(str(folder)) is first and cached_model(str(folder), old_id) is first  # cached
    stat = os.stat(folder / WEIGHTS_FILE)
    new = build_model(dataclasses.replace(model_conf("mvke"), seed=99), MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES)
    save_model(new, new.spec.conf, MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES, tmp_path / "staging")
    os.replace(folder, tmp_path / "gone")
    os.replace(tmp_path / "staging", folder)
    os.utime(folder / WEIGHTS_FILE, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(folder / WEIGHTS_FILE).st_size == stat.st_size
    reloaded = cached_model(str(folder))
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), new.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), old.state_dict().values()))
    # a task made by a driver that loaded the old weights (and built the tag side from them) stops
    assert weights_id(folder) not in (None, old_id)
    with pytest.raises(ModelReplacedError, match=rf"^{folder} holds other weights than the driver loaded "
                                                 rf"\(weights_id {weights_id(folder)}, expected {old_id}\): the "
                                                 rf"model version was saved again while this job ran"):
        cached_model(str(folder), old_id)
    assert cached_model(str(folder), weights_id(folder)) is reloaded
