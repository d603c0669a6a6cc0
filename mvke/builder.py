"""`build_model`: checks that a ModelConf fits the feature fields, then builds the chosen family."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from core.config import ModelConf
from mvke.base import ModelSpec, ProfileModel
from mvke.fields import FIELD_KINDS, FIRST_REAL_ID, RESERVED_KEYS, FieldSpec, weights_key
from mvke.loss import OBJECTIVE_LABELS
from mvke.mind import MINDModel
from mvke.models import HardSharingModel, MMoEModel, MVKEModel, TwoTowerModel


def build_model(conf: ModelConf, fields: Sequence[FieldSpec], num_tags: int, num_categories: int) -> ProfileModel:
    """The model named by `conf.name`, initialised from `conf.seed` (the global RNG is left untouched).

    Raises ValueError (ConfigError for the conf itself) when the conf does not fit the fields.
    """
    conf.validate()
    fields = tuple(fields)
    check_fields(fields)
    check_conf_fits(conf, fields, num_tags, num_categories)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(conf.seed)
        model = _construct(conf, fields, num_tags, num_categories)
    model.spec = ModelSpec(conf=conf, fields=fields, num_tags=num_tags, num_categories=num_categories)
    return model


def check_fields(fields: Sequence[FieldSpec]) -> None:
    """Field specs are usable: non-empty, unique names, known kinds, vocabularies with room for real ids."""
    if not fields:
        raise ValueError("at least one user feature field is required")
    for f in fields:
        if not isinstance(f, FieldSpec):
            raise ValueError(f"fields must be FieldSpec, got {f!r}")
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate field names: {duplicates}")
    weight_keys = {weights_key(f.name) for f in fields if f.kind == "multi"}
    for f in fields:
        if f.kind not in FIELD_KINDS:
            raise ValueError(f"field {f.name}: kind={f.kind!r}; valid: {list(FIELD_KINDS)}")
        if f.name in RESERVED_KEYS or f.name in weight_keys:
            raise ValueError(f"field {f.name}: the name collides with a reserved batch key")
        if f.vocab_size < FIRST_REAL_ID:
            raise ValueError(f"field {f.name}: vocab_size={f.vocab_size} must be >= {FIRST_REAL_ID} "
                             f"(id 0 is missing, id 1 unknown)")


def check_conf_fits(conf: ModelConf, fields: Sequence[FieldSpec], num_tags: int, num_categories: int) -> None:
    """The conf's objectives, model and sequence field fit these fields and vocabulary sizes."""
    for name, size in (("num_tags", num_tags), ("num_categories", num_categories)):
        if size < FIRST_REAL_ID:
            raise ValueError(f"{name}={size} must be >= {FIRST_REAL_ID} (id 0 is missing, id 1 unknown)")
    unknown = [o for o in conf.objectives if o not in OBJECTIVE_LABELS]
    if unknown:
        raise ValueError(f"model.objectives {unknown} have no label; valid objectives: {list(OBJECTIVE_LABELS)}")
    objectives = (conf.two_tower_objective,) if conf.name == "two_tower" else conf.objectives
    if conf.cvr_mode == "esmm" and "cvr" in objectives and "ctr" not in objectives:
        raise ValueError("model.cvr_mode=esmm trains pCTR * pCVR and needs the ctr objective next to cvr "
                         f"(model {conf.name} has objectives {list(objectives)})")
    by_name = {f.name: f for f in fields}
    tag_id_fields = {name: "model.tag_fields" for name in conf.tag_fields}
    if conf.name == "mind" or (conf.name == "mvke" and conf.kernel_history):  # they read sequence_field
        spec = by_name.get(conf.sequence_field)
        if spec is None:
            raise ValueError(f"model.sequence_field: {conf.sequence_field!r} is not a feature field; "
                             f"fields: {sorted(by_name)}")
        if spec.kind != "multi":
            raise ValueError(f"model.sequence_field={conf.sequence_field!r} must be a multi-valued field, "
                             f"got kind={spec.kind!r}")
    if conf.name == "mind":  # MIND embeds the sequence with the tag tower's id table
        tag_id_fields[conf.sequence_field] = "model.sequence_field"
    for name, key in tag_id_fields.items():
        spec = by_name.get(name)
        if spec is None:
            raise ValueError(f"{key}: {name!r} is not a feature field; fields: {sorted(by_name)}")
        if spec.vocab_size > num_tags:
            raise ValueError(f"{key}: {name!r} holds tag ids: its vocab_size {spec.vocab_size} exceeds "
                             f"num_tags={num_tags}")


def _construct(conf: ModelConf, fields: tuple[FieldSpec, ...], num_tags: int, num_categories: int) -> ProfileModel:
    common = dict(embedding_dim=conf.embedding_dim, hidden_dim=conf.hidden_dim, output=conf.output,
                  temperature=conf.temperature, tag_fields=conf.tag_fields)
    if conf.name == "mvke":
        return MVKEModel(fields, num_tags, num_categories, objectives=conf.objectives,
                         expert_sets=conf.expert_sets, num_experts=conf.num_experts,
                         projected_gate=conf.projected_gate, hard_gate=conf.hard_gate,
                         history_field=conf.sequence_field if conf.kernel_history else None, **common)
    if conf.name == "two_tower":
        return TwoTowerModel(fields, num_tags, num_categories, objective=conf.two_tower_objective, **common)
    if conf.name == "hard_sharing":
        return HardSharingModel(fields, num_tags, num_categories, objectives=conf.objectives, **common)
    if conf.name == "mmoe":
        return MMoEModel(fields, num_tags, num_categories, objectives=conf.objectives,
                         expert_sets=conf.expert_sets, num_experts=conf.num_experts, **common)
    if conf.name == "mind":
        return MINDModel(fields, num_tags, num_categories, objectives=conf.objectives,
                         sequence_field=conf.sequence_field, num_interests=conf.mind_interests,
                         routing_iters=conf.mind_routing_iters, power=conf.mind_power, **common)
    raise ValueError(f"model.name={conf.name!r}; valid: mvke, two_tower, hard_sharing, mmoe, mind")
