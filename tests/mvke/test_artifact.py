"""save_model / load_model: safetensors + JSON round trip, and clear errors on bad artifacts."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mvke.artifact import META_FILE, WEIGHTS_FILE, load_model, save_model, saved_num_tags
from mvke.builder import build_model
from mvke.serving import score_block


def _trained(conf, toy):
    """A model whose weights differ from a fresh build with the same seed."""
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


@pytest.mark.parametrize("case", ["mvke_projected_hard_cosine", "mvke_tag_fields", "mvke_kernel_history", "two_tower_cvr_cosine",
                                  "hard_sharing", "mmoe", "mind_power", "mind_tag_fields"])
def test_round_trip_gives_identical_outputs(case, toy, conf_for, tmp_path):
    conf = conf_for(case)
    model = _trained(conf, toy)
    save_model(model, conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert not loaded.training
    assert loaded.spec.conf == conf and loaded.spec.fields == toy.fields
    assert (loaded.spec.num_tags, loaded.spec.num_categories) == (toy.num_tags, toy.num_categories)
    batch = toy.batch(8, seed=1)
    with torch.no_grad():
        before, after = model(batch), loaded(batch)
        assert before.keys() == after.keys()
        for objective in before:
            assert torch.equal(before[objective], after[objective])
        tag, category = toy.tags(5, seed=2)
        for (o, side_a), side_b in zip(model.tag_vectors(tag, category).items(),
                                       loaded.tag_vectors(tag, category).values()):
            a = score_block(model.user_vectors(batch), side_a, output=model.output,
                            temperature=model.temperature, user_mask=model.user_mask(batch))
            b = score_block(loaded.user_vectors(batch), side_b, output=loaded.output,
                            temperature=loaded.temperature, user_mask=loaded.user_mask(batch))
            assert torch.equal(a, b), o


def test_files_are_json_and_safetensors(toy, conf_for, tmp_path):
    conf = conf_for("mind")
    save_model(_trained(conf, toy), conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["model_conf"]["name"] == "mind" and meta["num_tags"] == toy.num_tags
    assert meta["fields"][0] == {"name": "age_bucket", "kind": "single", "vocab_size": 7}
    assert "extractor.routing_seed" in load_file(str(tmp_path / WEIGHTS_FILE))
    assert saved_num_tags(tmp_path) == toy.num_tags  # the nightly's coverage gate reads it without the weights


def test_missing_files_raise(toy, conf_for, tmp_path):
    with pytest.raises(ValueError, match="missing"):
        load_model(tmp_path / "nothing")
    conf = conf_for("mvke")
    save_model(_trained(conf, toy), conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        load_model(tmp_path)


def test_mismatched_weights_raise(toy, conf_for, tmp_path):
    conf = conf_for("mvke")
    save_model(_trained(conf, toy), conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path / "a")
    other = conf_for("mmoe")
    save_model(_trained(other, toy), other, toy.fields, toy.num_tags, toy.num_categories, tmp_path / "b")
    (tmp_path / "a" / WEIGHTS_FILE).write_bytes((tmp_path / "b" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        load_model(tmp_path / "a")


def test_wrong_shapes_raise(toy, conf_for, tmp_path):
    conf = conf_for("two_tower")
    save_model(_trained(conf, toy), conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path)
    state = load_file(str(tmp_path / WEIGHTS_FILE))
    state["tag_tower.id_embedding.weight"] = torch.zeros(3, 8)
    save_file(state, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(ValueError, match="has shape"):
        load_model(tmp_path)


def test_bad_json_and_unknown_keys_raise(toy, conf_for, tmp_path):
    conf = conf_for("two_tower")
    save_model(_trained(conf, toy), conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["model_conf"]["dropout"] = 0.1
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown model_conf keys"):
        load_model(tmp_path)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"\x80\x04 pickled")
    meta["model_conf"].pop("dropout")
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path)


def test_missing_conf_keys_raise_naming_them_instead_of_taking_defaults(toy, conf_for, tmp_path):
    conf = conf_for("mvke_kernel_history")
    assert conf.kernel_history  # the default is False: a silent default would build another model
    save_model(_trained(conf, toy), conf, toy.fields, toy.num_tags, toy.num_categories, tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["model_conf"]["kernel_history"], meta["model_conf"]["seed"]
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model_conf lacks keys \['kernel_history', 'seed'\]"):
        load_model(tmp_path)


def test_save_refuses_a_conf_the_model_was_not_built_with(toy, conf_for, tmp_path):
    model = _trained(conf_for("mvke"), toy)
    with pytest.raises(ValueError, match="differ"):
        save_model(model, conf_for("mvke", seed=9), toy.fields, toy.num_tags, toy.num_categories, tmp_path)
