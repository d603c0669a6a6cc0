"""The MVKE profile model package: field embeddings, virtual-kernel experts and gates, tag tower,
baselines (two_tower, hard_sharing, mmoe, mind), loss, serving decomposition, diagnostics, artifacts.

Entry points: `build_model`, `ProfileLoss`, `score_block`, `save_model` / `load_model`.
"""
from mvke.artifact import load_model, save_model
from mvke.base import ModelSpec, ProfileModel
from mvke.builder import build_model
from mvke.fields import FieldSpec
from mvke.loss import ProfileLoss
from mvke.serving import TagSide, score_block, serving_tag_matrix, serving_user_matrix

__all__ = [
    "FieldSpec",
    "ModelSpec",
    "ProfileLoss",
    "ProfileModel",
    "TagSide",
    "build_model",
    "load_model",
    "save_model",
    "score_block",
    "serving_tag_matrix",
    "serving_user_matrix",
]
