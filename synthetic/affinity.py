"""The true click and conversion probabilities: the ground truth a model should recover.

    ctr(u, t) = (1 - noise) * sigmoid(logit(base_ctr) + ctr_bias[t] + sharpness * theta_u . ctr_loading[t])
                + noise * base_ctr
and the same for cvr with cvr_bias, cvr_loading and base_cvr. theta_u is the user's
interest mix over the F facets (a point of the simplex).
"""
from __future__ import annotations

import numpy as np

from synthetic.world import World


def ctr_affinity(world: World, interests: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """P(click | impression of an item whose primary tag is t); shapes broadcast.

    interests [..., F], tags [...] -> [...].
    """
    conf = world.conf
    score = np.sum(interests * world.ctr_loading[tags], axis=-1)  # [...]
    return _probability(score, world.ctr_bias[tags], conf.base_ctr, conf.interest_sharpness, conf.noise)


def cvr_affinity(world: World, interests: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """P(conversion | click on an item whose primary tag is t); shapes broadcast."""
    conf = world.conf
    score = np.sum(interests * world.cvr_loading[tags], axis=-1)  # [...]
    return _probability(score, world.cvr_bias[tags], conf.base_cvr, conf.interest_sharpness, conf.noise)


def affinity_matrices(world: World, interests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ctr and cvr of n users against every tag: interests [n, F] -> ([n, T], [n, T])."""
    conf = world.conf
    ctr = _probability(interests @ world.ctr_loading.T, world.ctr_bias, conf.base_ctr,  # [n, T]
                       conf.interest_sharpness, conf.noise)
    cvr = _probability(interests @ world.cvr_loading.T, world.cvr_bias, conf.base_cvr,  # [n, T]
                       conf.interest_sharpness, conf.noise)
    return ctr, cvr


def _probability(score: np.ndarray, bias: np.ndarray, base: float, sharpness: float, noise: float) -> np.ndarray:
    logit = np.log(base / (1.0 - base)) + bias + sharpness * score
    return (1.0 - noise) / (1.0 + np.exp(-logit)) + noise * base
