"""build_model checks that the conf fits the fields, with clear errors; ModelConf's own checks."""
from __future__ import annotations

import dataclasses

import pytest

from core.config import ConfigError, ModelConf
from mvke.builder import build_model
from mvke.fields import FieldSpec
from mvke.mind import MINDModel
from mvke.models import HardSharingModel, MMoEModel, MVKEModel, TwoTowerModel

FIELDS = (FieldSpec("age", "single", 10), FieldSpec("clicked_tags", "multi", 20), FieldSpec("city", "single", 30))


def _build(fields=FIELDS, num_tags=20, num_categories=4, **conf):
    return build_model(dataclasses.replace(ModelConf(), **conf), fields, num_tags, num_categories)


@pytest.mark.parametrize("name, cls", [("mvke", MVKEModel), ("two_tower", TwoTowerModel),
                                       ("hard_sharing", HardSharingModel), ("mmoe", MMoEModel),
                                       ("mind", MINDModel)])
def test_name_picks_the_family(name, cls):
    model = _build(name=name)
    assert type(model) is cls
    assert model.spec.conf.name == name and model.spec.fields == FIELDS


@pytest.mark.parametrize("conf, fields, message", [
    ({"name": "mind", "sequence_field": "viewed"}, FIELDS, "sequence_field: 'viewed' is not a feature field"),
    ({"name": "mind", "sequence_field": "age"}, FIELDS, "must be a multi-valued field"),
    ({"name": "mind"}, (FieldSpec("clicked_tags", "multi", 21),), "exceeds num_tags=20"),
    ({"tag_fields": ("viewed",)}, FIELDS, "tag_fields: 'viewed' is not a feature field"),
    ({"kernel_history": True, "sequence_field": "viewed"}, FIELDS, "sequence_field: 'viewed' is not a feature field"),
    ({"kernel_history": True, "sequence_field": "age"}, FIELDS, "must be a multi-valued field"),
    ({"name": "two_tower", "tag_fields": ("city",)}, FIELDS, "tag_fields: 'city' holds tag ids: its vocab_size 30 "
                                                             "exceeds num_tags=20"),
    ({"name": "two_tower", "two_tower_objective": "cvr", "cvr_mode": "esmm"}, FIELDS, "needs the ctr objective"),
    ({"objectives": ("ctr", "ltv"), "expert_sets": {"ctr": (0,), "ltv": (1,)}, "loss_weights": {}}, FIELDS,
     "have no label"),
    ({}, (), "at least one user feature field"),
    ({}, (FieldSpec("a", "single", 5), FieldSpec("a", "multi", 5)), "duplicate field names"),
    ({}, (FieldSpec("tag", "single", 5),), "reserved batch key"),
    ({}, (FieldSpec("m", "multi", 5), FieldSpec("m_weights", "single", 5)), "reserved batch key"),
    ({}, (FieldSpec("a", "dense", 5),), "kind='dense'"),
    ({}, (FieldSpec("a", "single", 1),), "vocab_size=1 must be >= 2"),
    ({}, ("age",), "fields must be FieldSpec"),
])
def test_conf_that_does_not_fit_the_fields_is_rejected(conf, fields, message):
    with pytest.raises(ValueError, match=message):
        _build(fields=fields, **conf)


def test_vocabulary_sizes_are_checked():
    with pytest.raises(ValueError, match="num_tags=1"):
        _build(num_tags=1)
    with pytest.raises(ValueError, match="num_categories=0"):
        _build(num_categories=0)


def test_mind_without_other_fields_builds():
    model = _build(name="mind", fields=(FieldSpec("clicked_tags", "multi", 20),))
    assert model.field_embedding is None


def test_invalid_conf_raises_config_error():
    with pytest.raises(ConfigError, match="expert_sets.cvr"):
        _build(expert_sets={"ctr": (0,), "cvr": (7,)})


@pytest.mark.parametrize("values, message", [
    ({"sequence_field": " "}, "sequence_field"),
    ({"mind_interests": 0}, "mind_interests"),
    ({"mind_routing_iters": 0}, "mind_routing_iters"),
    ({"mind_power": -1.0}, "mind_power"),
    ({"diversity_weight": -0.1}, "diversity_weight"),
    ({"loss_weights": {"ctr": -1.0}}, "loss_weights"),
    ({"tag_fields": ("clicked_tags", "clicked_tags")}, "tag_fields has duplicates"),
])
def test_model_conf_validates_the_new_settings(values, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(ModelConf(), **values).validate()


def test_model_conf_defaults_are_valid():
    conf = ModelConf()
    conf.validate()
    assert conf.sequence_field == "clicked_tags"
