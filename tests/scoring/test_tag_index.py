"""tag_index: written once per model version, rewritten only when it no longer matches."""
from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

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
    rows = read_tag_index(uri, "v1")
    assert rows.num_rows == 2 * (NUM_TAGS - 2)
    assert set(rows["model_version"].to_pylist()) == {"v1"}
    assert read_tag_index(uri, "v0").num_rows == 2 * (NUM_TAGS - 2)
    assert read_tag_index(uri, "v9") is None


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
