"""The exact blocked scan: one block of users against every tag, then a top-N per objective.

Shape legend: B users in a block, T tags (ordered by tag_index), K user vectors,
S = |S_tau| the vectors an objective uses, E embedding, N tags kept per user.

Exactness (docs/scoring.md): with a tag-only gate and the dot output,
<u^tau(t), e_t> = <concat_k x_k(u), concat_k g_k(t) e_t>, so the logits of a block are one
product [B, S*E] @ [S*E, T] (`serving_user_matrix` / `serving_tag_matrix`). Every other case
(cosine output, MIND's label-aware attention) goes through `mvke.serving.score_block`, exact by
construction, over slices of the tags so that its [B, T, S] intermediates stay small.
Users are scanned in slices of about CACHE_ELEMENTS / T rows (cache-sized score matrices).
Nothing here touches Spark: the executors, the tests and the benchmark all call it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mvke.serving import Combine, Output, TagSide, score_block, serving_user_matrix
from scoring.topn import top_n

COMBINED_OBJECTIVE = "ctr_x_cvr"
COMBINED_PARTS = ("ctr", "cvr")
# score_block materialises a few [B, T_slice, S] tensors: keep B * S * T_slice near 8M floats.
SLICE_ELEMENTS = 1 << 23
# Users per scan slice: about CACHE_ELEMENTS / T, so a slice's [rows, T] matrices stay in cache.
CACHE_ELEMENTS = 1 << 21
MIN_SLICE_ROWS = 32


@dataclass(frozen=True, eq=False)
class ObjectiveTags:
    """One objective's tag side as numpy arrays, rows in tag_index order (what is broadcast).

    experts [S] int64; gate [T, S] float32 or None (label-aware, MIND); emb e_t [T, E] float32;
    serving concat_k g[t, k] e_t [T, S*E] float32 or None (MIND has no tag-only vector).
    """

    experts: np.ndarray
    gate: np.ndarray | None
    emb: np.ndarray
    serving: np.ndarray | None
    combine: Combine = "gate"
    power: float = 1.0

    def side(self) -> TagSide:
        gate = None if self.gate is None else torch.from_numpy(self.gate)
        return TagSide(experts=torch.from_numpy(self.experts), gate=gate, emb=torch.from_numpy(self.emb),
                       combine=self.combine, power=self.power)


@dataclass(frozen=True, eq=False)
class ScanTags:
    """Every tag of the scan: ids [T] (str, tag_index order) and each objective's tag side."""

    tag_ids: np.ndarray
    objectives: Mapping[str, ObjectiveTags]

    @property
    def num_tags(self) -> int:
        return len(self.tag_ids)


@dataclass(frozen=True)
class ScanPlan:
    """What to keep: N per objective (the combined one included when on) and a score floor."""

    top_n: Mapping[str, int]
    min_score: float
    output: Output
    temperature: float


@dataclass(frozen=True, eq=False)
class Selection:
    """Kept (user, tag) pairs of one objective in a block, flat: R rows."""

    rows: np.ndarray  # [R] user position in the block
    rank: np.ndarray  # [R] int32, 1..N per user
    cols: np.ndarray  # [R] tag position (tag_index order)
    score: np.ndarray  # [R] float64 probability


def objective_logits(user_vecs: Tensor, user_mask: Tensor | None, tags: ObjectiveTags, *, output: Output,
                     temperature: float) -> Tensor:
    """Logits of every (user, tag) pair: user_vecs [B, K, E] -> [B, T], equal to the model's forward."""
    side = tags.side()
    if tags.serving is not None and output == "dot":
        users = serving_user_matrix(user_vecs, side)  # [B, S*E]
        return users @ torch.from_numpy(tags.serving).T  # [B, S*E] @ [S*E, T] -> [B, T]
    num_tags = side.emb.shape[0]
    step = max(1, SLICE_ELEMENTS // max(1, user_vecs.shape[0] * len(tags.experts)))
    parts = [
        score_block(user_vecs, _tag_slice(side, start, start + step), output=output, temperature=temperature,
                    user_mask=user_mask)  # [B, T_slice]
        for start in range(0, num_tags, step)
    ]
    return torch.cat(parts, dim=1)  # [B, T]


def scan_block(user_vecs: Tensor, user_mask: Tensor | None, tags: ScanTags, plan: ScanPlan) -> dict[str, Selection]:
    """Top-N tags of every user of a block for every objective of `plan.top_n`.

    Single objectives rank by logit (the same order as the probability); the combined objective
    by p_ctr * p_cvr. Written scores are recomputed in float64 from the kept logits. The users
    are scanned in slices of about CACHE_ELEMENTS / T rows, so that the [rows, T] score matrices
    stay in the CPU cache between the product, the sigmoid and the top-N.
    """
    step = max(MIN_SLICE_ROWS, CACHE_ELEMENTS // max(1, tags.num_tags))
    parts = [_scan_rows(user_vecs[start:start + step], None if user_mask is None else user_mask[start:start + step],
                        tags, plan) for start in range(0, user_vecs.shape[0], step)]
    return {objective: _select(torch.cat([p[objective][0] for p in parts]),
                               torch.cat([p[objective][1] for p in parts]), plan.min_score)
            for objective in plan.top_n}


def _scan_rows(user_vecs: Tensor, user_mask: Tensor | None, tags: ScanTags,
               plan: ScanPlan) -> dict[str, tuple[Tensor, Tensor]]:
    """{objective: (score float64 [B, N], tag positions [B, N])} for a slice of users."""
    needed = {o for o in plan.top_n if o != COMBINED_OBJECTIVE}
    if COMBINED_OBJECTIVE in plan.top_n:
        needed |= set(COMBINED_PARTS)
    logits = {o: objective_logits(user_vecs, user_mask, tags.objectives[o], output=plan.output,
                                  temperature=plan.temperature) for o in sorted(needed)}  # each [B, T]
    picked = {}
    for objective, n in plan.top_n.items():
        if objective == COMBINED_OBJECTIVE:
            ctr, cvr = (logits[o] for o in COMBINED_PARTS)
            product = torch.sigmoid(ctr).mul_(torch.sigmoid(cvr))  # [B, T]
            _, cols = top_n(product, n)  # [B, N]
            score = torch.sigmoid(ctr.gather(1, cols).double()) * torch.sigmoid(cvr.gather(1, cols).double())
        else:
            values, cols = top_n(logits[objective], n)  # [B, N]
            score = torch.sigmoid(values.double())  # [B, N]
        picked[objective] = (score, cols)
    return picked


def _select(score: Tensor, cols: Tensor, min_score: float) -> Selection:
    """Flatten [B, N] picks, dropping scores under the floor; the kept ones of a row are ranked 1..n.

    For ctr_x_cvr the floor applies to the float64 score while the order is the float32 product's,
    so a dropped pick can come before a kept one: ranks count the kept picks, not the positions.
    """
    kept = (score >= min_score).numpy()  # [B, N]
    batch, width = score.shape
    rows = np.broadcast_to(np.arange(batch)[:, None], (batch, width))
    rank = np.cumsum(kept, axis=1, dtype=np.int32)  # [B, N], 1..n over the kept picks
    return Selection(rows=rows[kept], rank=rank[kept], cols=cols.numpy()[kept], score=score.numpy()[kept])


def _tag_slice(side: TagSide, start: int, stop: int) -> TagSide:
    gate = None if side.gate is None else side.gate[start:stop]
    return TagSide(experts=side.experts, gate=gate, emb=side.emb[start:stop], combine=side.combine,
                   power=side.power)


def scan_plan(objectives: tuple[str, ...], *, output: Output, temperature: float, top_n: int,
              top_n_per_objective: Mapping[str, int], min_score: float, combined: bool) -> ScanPlan:
    """N per objective for a model with `objectives` (+ `ctr_x_cvr` when `combined` and it has both parts).

    A top_n_per_objective key other than the model's objectives and `ctr_x_cvr` is a ValueError
    listing the valid ones; a `ctr_x_cvr` key is unused where that objective is not ranked
    (`combined` off, or a single-objective model), so one config serves every model.
    """
    scored = list(objectives)
    if combined and set(COMBINED_PARTS) <= set(objectives):
        scored.append(COMBINED_OBJECTIVE)
    unknown = sorted(set(top_n_per_objective) - set(objectives) - {COMBINED_OBJECTIVE})
    if unknown:
        raise ValueError(f"score.top_n_per_objective names {unknown}, which this model does not score; "
                         f"valid: {', '.join([*objectives, COMBINED_OBJECTIVE])}")
    return ScanPlan(top_n={o: top_n_per_objective.get(o, top_n) for o in scored}, min_score=min_score,
                    output=output, temperature=temperature)
