"""tag_index: written once per model version, rewritten only when it no longer matches."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest
import torch

from core import delta
from mvke.builder import build_model
from scoring.inputs import ScoringInputError
from scoring.tag_index import ensure_tag_index, read_tag_index
from tests.racing import commits_first
from tests.scoring.warehouse import MODEL_FIELDS, NUM_CATEGORIES, NUM_TAGS, model_conf


def _tags(categories: dict[str, int] | None = None) -> pa.Table:
    ids = list(range(2, NUM_TAGS))
    category = [(categories or {}).get(f"t{i:02d}", 2 + i % 3) for i in ids]
    return pa.table({"tag_id": [f"t{i:02d}" for i in ids], "tag_index": pa.array(ids, pa.int32()),
                     "category_id": pa.array(category, pa.int32())})


def _model(seed: int, case: str = "mvke"):
    conf = dataclasses.replace(model_conf(case), seed=seed)
    return build_model(conf, MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES).eval()


@pytest.mark.parametrize("case", ["mvke", "mind"])
def test_tag_index_is_rewritten_only_when_tags_or_weights_change(tmp_path, case):
    uri = str(tmp_path / "tag_index")
    model, retrained = _model(1, case), _model(2, case)
    steps = [
        (model, _tags(), True),  # first time
        (model, _tags(), False),  # same model, same tags
        (model, _tags().slice(0, 5), False),  # fewer tags tonight: the stored rows still hold them
        (model, _tags({"t05": 2}), True),  # a tag changed category
        (retrained, _tags({"t05": 2}), True),  # the version's folder was replaced by other weights
        (retrained, _tags({"t05": 2}), False),
    ]
    for step, (m, tags, written) in enumerate(steps):
        index = ensure_tag_index(uri, m, "v1", tags, {"step": str(step)})
        assert index.written is written, step
    ensure_tag_index(uri, model, "v0", _tags(), {})
    assert delta.table_version(uri) == 3
    _assert_rows_are_the_models(read_tag_index(uri, "v1"), retrained, "v1", _tags({"t05": 2}))
    _assert_rows_are_the_models(read_tag_index(uri, "v0"), model, "v0", _tags())
    assert read_tag_index(uri, "v9") is None


def _assert_rows_are_the_models(rows: pa.Table, model, version: str, tags: pa.Table) -> None:
    """Every (objective, tag) of `tags` once, with the model's own gate, tag vector and serving vector
    concat_k g[t, k] e_t (computed here from tag_vectors, not by the index's code)."""
    tag = torch.tensor(tags["tag_index"].to_pylist())
    category = torch.tensor(tags["category_id"].to_pylist())
    with torch.no_grad():
        sides = model.tag_vectors(tag, category)
    assert sorted(rows["objective"].unique().to_pylist()) == sorted(sides)
    for objective, side in sides.items():
        part = sorted((r for r in rows.to_pylist() if r["objective"] == objective), key=lambda r: r["tag_index"])
        assert [(r["model_version"], r["tag_id"], r["tag_index"], r["category_id"]) for r in part] == [
            (version, t, i, c) for t, i, c in zip(*(tags[k].to_pylist() for k in ("tag_id", "tag_index",
                                                                                  "category_id")))]
        np.testing.assert_allclose([r["tag_vector"] for r in part], side.emb.numpy(), atol=1e-6)
        if side.gate is None:  # MIND: the tag vector meets the user's interests, no serving vector
            assert {r["serving_vector"] is None and r["gate"] is None for r in part} == {True}
            continue
        np.testing.assert_allclose([r["gate"] for r in part], side.gate.numpy(), atol=1e-6)
        serving = (side.gate.unsqueeze(-1) * side.emb.unsqueeze(1)).reshape(len(part), -1)  # [T, S*E]
        np.testing.assert_allclose([r["serving_vector"] for r in part], serving.numpy(), atol=1e-6)


def test_a_rewrite_keeps_the_tags_no_longer_scored_so_their_index_stays_taken(tmp_path):
    """Night 2 has no t09 and a changed category for t05, so the version's rows are rewritten: t09
    keeps its row (its stored encoding, the model's vectors). Night 3 brings x09 on t09's index,
    which the model would score with t09's embedding: refused, as long as t09's row is there."""
    uri = str(tmp_path / "tag_index")
    model = _model(1)
    ensure_tag_index(uri, model, "v1", _tags(), {})
    night2 = _tags({"t05": 2})
    night2 = night2.filter(pa.compute.not_equal(night2["tag_id"], "t09"))
    assert ensure_tag_index(uri, model, "v1", night2, {}).written
    _assert_rows_are_the_models(read_tag_index(uri, "v1"), model, "v1", _tags({"t05": 2}))
    night3 = _tags({"t05": 2}).set_column(0, "tag_id", pa.array([f"t{i:02d}" if i != 9 else "x09"
                                                                    for i in range(2, NUM_TAGS)]))
    with pytest.raises(ScoringInputError, match=r"tag encoding changed.*\(1 tags, e\.g\. x09: 9, stored for t09\)"):
        ensure_tag_index(uri, model, "v1", night3, {})
    assert delta.table_version(uri) == 1


def test_a_tag_moved_to_another_index_is_refused(tmp_path):
    uri = str(tmp_path / "tag_index")
    ensure_tag_index(uri, _model(1), "v1", _tags(), {})
    moved = _tags().set_column(1, "tag_index", pa.array([13] + list(range(3, NUM_TAGS - 1)) + [2], pa.int32()))
    with pytest.raises(ScoringInputError, match=r"tag encoding changed.*\(2 tags, e.g. t02: 2 -> 13, t13: 13 -> 2\)"):
        ensure_tag_index(uri, _model(1), "v1", moved, {})
    assert delta.table_version(uri) == 0


def test_a_new_tag_on_the_index_of_a_stored_one_is_refused(tmp_path):
    # t02 is gone tonight and x02 has its tag_index: the model would score x02 with t02's embedding.
    uri = str(tmp_path / "tag_index")
    ensure_tag_index(uri, _model(1), "v1", _tags(), {})
    renamed = _tags().set_column(0, "tag_id", pa.array(["x02"] + [f"t{i:02d}" for i in range(3, NUM_TAGS)]))
    with pytest.raises(ScoringInputError, match=r"tag encoding changed.*\(1 tags, e.g. x02: 2, stored for t02\)"):
        ensure_tag_index(uri, _model(1), "v1", renamed, {})
    assert delta.table_version(uri) == 0
    assert read_tag_index(uri, "v1")["tag_id"].to_pylist()[0] == "t02"


def test_two_scoring_runs_of_one_model_writing_its_index_at_once_both_go_on(tmp_path, monkeypatch):
    """Another run of the same model writes the same rows first: this one's replace is refused, and
    it reads again and uses them instead of failing the job."""
    uri = str(tmp_path / "tag_index")
    ensure_tag_index(uri, _model(1), "v0", _tags(), {})  # the table exists; v1's rows do not yet
    other = []
    commits_first(monkeypatch, lambda: other.append(ensure_tag_index(uri, _model(1), "v1", _tags(), {"run": "a"})))
    index = ensure_tag_index(uri, _model(1), "v1", _tags(), {"run": "b"})
    assert other[0].written and not index.written
    assert index.rows.equals(read_tag_index(uri, "v1")) and index.table_version == delta.table_version(uri) == 1


def test_two_dates_adding_different_tags_to_one_models_index_at_once_keep_both(tmp_path, monkeypatch):
    """Night a adds t07 and night b adds t08 to v1's rows. b read the rows before a's commit: its
    replace, planned on the table after a's commit, used to drop t07 without a word."""
    from scoring import tag_index

    uri = str(tmp_path / "tag_index")
    first, with_t07 = _tags().slice(0, 5), _tags().slice(0, 6)
    with_t08 = pa.concat_tables([first, _tags().slice(6, 1)])
    ensure_tag_index(uri, _model(1), "v1", first, {})
    real, raced = tag_index.read_tag_index, {}

    def read_then_lose_the_race(*args, **kwargs):
        rows = real(*args, **kwargs)
        if not raced:
            raced["a"] = None  # a's own reads go straight through
            raced["a"] = ensure_tag_index(uri, _model(1), "v1", with_t07, {"run": "a"})
        return rows

    monkeypatch.setattr(tag_index, "read_tag_index", read_then_lose_the_race)
    index = ensure_tag_index(uri, _model(1), "v1", with_t08, {"run": "b"})
    assert raced["a"].written and index.written
    stored = read_tag_index(uri, "v1")
    assert sorted(set(stored["tag_id"].to_pylist())) == [f"t{i:02d}" for i in range(2, 9)]
    _assert_rows_are_the_models(stored.filter(pa.compute.field("tag_id") != "t07"), _model(1), "v1", with_t08)
