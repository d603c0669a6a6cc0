"""Kernel diagnostics: do different kernels learn different facets? Plain numpy / pandas out.

- `gate_entropy(gate)`: entropy (nats) of each tag's gate row; `mean_gate_entropy` averages it.
- `dominant_kernel(gate, experts)`: the expert id with the largest gate weight per tag.
- `dominant_kernel_share(gate, categories, experts)`: per tag category, the share of its tags
  that each kernel dominates (rows sum to 1): the kernel-by-category heatmap of the nightly report.
- `kernel_cosine_similarity(kernels)`: pairwise cosine similarity of the kernel rows.
- `gate_table(model, tags, categories)`: per objective, one row per tag with all of the above.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mvke.base import ProfileModel

ArrayLike = np.ndarray | Tensor | Sequence


def _numpy(values: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def gate_entropy(gate: ArrayLike) -> np.ndarray:
    """Entropy in nats of each row of a gate [T, S] (0 log 0 = 0) -> [T]."""
    g = _numpy(gate)
    logs = np.log(np.where(g > 0, g, 1.0))
    return -(g * logs).sum(axis=1)


def mean_gate_entropy(gate: ArrayLike) -> float:
    """Mean over tags of `gate_entropy`; log(S) is the uniform gate, 0 a one-hot gate."""
    return float(gate_entropy(gate).mean())


def dominant_kernel(gate: ArrayLike, experts: ArrayLike | None = None) -> np.ndarray:
    """Expert id of the largest gate weight per tag [T] (first one on ties); `experts` maps gate
    columns to expert ids (default 0..S-1)."""
    g = _numpy(gate)
    ids = np.arange(g.shape[1]) if experts is None else _numpy(experts, np.int64)
    return ids[g.argmax(axis=1)]


def dominant_kernel_share(gate: ArrayLike, categories: ArrayLike, experts: ArrayLike | None = None) -> pd.DataFrame:
    """Share of each category's tags dominated by each kernel: index category, columns expert ids,
    rows sum to 1 (a kernel that dominates no tag still has its column)."""
    g = _numpy(gate)
    ids = np.arange(g.shape[1]) if experts is None else _numpy(experts, np.int64)
    frame = pd.DataFrame({"category": _numpy(categories, np.int64), "kernel": dominant_kernel(g, ids)})
    counts = pd.crosstab(frame["category"], frame["kernel"]).reindex(columns=ids, fill_value=0)
    share = counts.div(counts.sum(axis=1), axis=0).astype(float)
    share.columns.name = "kernel"
    return share


def kernel_cosine_similarity(kernels: ArrayLike) -> np.ndarray:
    """Pairwise cosine similarity of kernel rows: VK [K, E] -> [K, K] (a zero row gives 0)."""
    k = _numpy(kernels)
    norms = np.linalg.norm(k, axis=1, keepdims=True)
    unit = k / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def gate_table(model: ProfileModel, tags: ArrayLike, categories: ArrayLike) -> dict[str, pd.DataFrame]:
    """Per gated objective: one row per tag with tag, category, entropy, dominant kernel and the gate
    weight of every expert (columns `gate_<k>`). Objectives without a tag-only gate (MIND) are skipped."""
    tag = torch.as_tensor(_numpy(tags, np.int64))
    category = torch.as_tensor(_numpy(categories, np.int64))
    with torch.no_grad():
        sides = model.tag_vectors(tag, category)
    tables = {}
    for objective, side in sides.items():
        if side.gate is None:
            continue
        gate = _numpy(side.gate)
        experts = _numpy(side.experts, np.int64)
        table = pd.DataFrame({
            "tag": tag.numpy(),
            "category": category.numpy(),
            "entropy": gate_entropy(gate),
            "dominant_kernel": dominant_kernel(gate, experts),
        })
        for column, expert in enumerate(experts):
            table[f"gate_{expert}"] = gate[:, column]
        tables[objective] = table
    return tables
