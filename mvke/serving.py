"""Serving: the exact logit of every (user, tag) pair from per-user and per-tag vectors.

Shape legend: B users, T tags, K user vectors (experts / interests), S = |S_tau| the ones an
objective uses, E embedding.

Every model family reduces to the same two sides:
- user side: `user_vecs` [B, K, E] (and, for MIND, a `user_mask` [B, K] of used interests);
- tag side, per objective: a `TagSide` with the expert subset, the tag embeddings and
  how the S user vectors are combined for a tag.

The combined user vector for a pair is u(b, t) = sum_k w[b, t, k] x_k(u_b) with
- combine="gate": w[b, t, k] = gate[t, k], a function of the tag only (MVKE's VKG; the
  baselines with gate 1 on their one vector);
- combine="label_aware": w[b, t, :] = softmax_k(power * <x_k(u_b), e_t>) over the used
  interests (MIND).
Either way every weight and the dot product are functions of S[b, t, k] = <x_k(u_b), e_t>,
one [B*S, E] @ [E, T] product, and, for the cosine output, of the K x K Gram matrix
G_b = X_b X_b^T, because |u(b, t)|^2 = w^T G_b w. So `score_block` is exact, not an approximation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Combine = Literal["gate", "label_aware"]
Output = Literal["dot", "cosine"]

NORM_EPS = 1e-8


@dataclass(frozen=True, eq=False)
class TagSide:
    """One objective's tag side.

    experts: LongTensor [S], which of the K user vectors this objective uses.
    gate: [T, S] weights on those vectors (combine="gate"); None for "label_aware", whose
        weights depend on the user.
    emb: e_t^tau [T, E].
    combine: "gate" (weights = gate) or "label_aware" (weights = softmax_k(power * S[b, t, k])).
    power: MIND's label-aware attention power p (only used by "label_aware").
    """

    experts: Tensor
    gate: Tensor | None
    emb: Tensor
    combine: Combine = "gate"
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.combine == "gate" and self.gate is None:
            raise ValueError("TagSide(combine='gate') needs a gate [T, S]")
        if self.combine not in ("gate", "label_aware"):
            raise ValueError(f"TagSide.combine={self.combine!r}; valid: 'gate', 'label_aware'")


def cosine_logit(dot: Tensor, user_sq_norm: Tensor, tag_sq_norm: Tensor, temperature: float) -> Tensor:
    """cos(u, e) / temperature from <u, e>, |u|^2 and |e|^2 (norms floored at NORM_EPS)."""
    user_norm = user_sq_norm.clamp_min(NORM_EPS**2).sqrt()
    tag_norm = tag_sq_norm.clamp_min(NORM_EPS**2).sqrt()
    return dot / (user_norm * tag_norm) / temperature


def _used(user_vecs: Tensor, side: TagSide, user_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The objective's user vectors [B, S, E] and, for label-aware attention, their mask [B, S].

    Without an explicit `user_mask`, label-aware attention treats all-zero user vectors as
    masked (MIND writes its unused interests as zeros), so stored user vectors suffice.
    """
    experts = side.experts.to(user_vecs.device)
    vecs = user_vecs.index_select(1, experts)  # [B, S, E]
    if user_mask is not None:
        return vecs, user_mask.index_select(1, experts)  # [B, S]
    if side.combine == "label_aware":
        return vecs, (vecs != 0).any(dim=-1)  # [B, S]
    return vecs, None


def _label_aware_weights(scores: Tensor, mask: Tensor | None, power: float) -> Tensor:
    """softmax over the last dim (interests) of power * scores, masked interests excluded."""
    logits = power * scores
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=-1)


def score_block(user_vecs: Tensor, side: TagSide, *, output: Output = "dot", temperature: float = 1.0,
                user_mask: Tensor | None = None) -> Tensor:
    """Logits of every (user, tag) pair of a block.

    Shapes: B users, T tags, K user vectors, S used by the objective, E embedding.
    user_vecs [B, K, E], side (gate [T, S], emb [T, E]), user_mask [B, K] bool or None
    -> logits [B, T]. `temperature` only applies to output="cosine". For label-aware sides
    (MIND) a missing `user_mask` means "all-zero user vectors are unused".
    """
    vecs, mask = _used(user_vecs, side, user_mask)  # [B, S, E], [B, S]
    batch, num_used, dim = vecs.shape
    num_tags = side.emb.shape[0]
    scores = (vecs.reshape(batch * num_used, dim) @ side.emb.T)  # [B*S, T]
    scores = scores.reshape(batch, num_used, num_tags).transpose(1, 2)  # [B, T, S]
    if side.combine == "gate":
        weights = side.gate.unsqueeze(0).expand(batch, -1, -1)  # [B, T, S]
    else:
        weights = _label_aware_weights(scores, None if mask is None else mask.unsqueeze(1), side.power)  # [B, T, S]
    dot = (weights * scores).sum(dim=-1)  # [B, T]
    if output == "dot":
        return dot
    gram = vecs @ vecs.transpose(1, 2)  # [B, S, S]
    if side.combine == "gate":
        user_sq = torch.einsum("tk,bkl,tl->bt", side.gate, gram, side.gate)  # [B, T]
    else:
        user_sq = torch.einsum("btk,bkl,btl->bt", weights, gram, weights)  # [B, T]
    tag_sq = (side.emb * side.emb).sum(dim=-1).unsqueeze(0)  # [1, T]
    return cosine_logit(dot, user_sq, tag_sq, temperature)  # [B, T]


def pair_logits(user_vecs: Tensor, side: TagSide, *, output: Output = "dot", temperature: float = 1.0,
                user_mask: Tensor | None = None) -> Tensor:
    """Logits of the diagonal pairs (user b, tag b), computed directly from u(b, t) (the training path).

    Shapes: B pairs, K user vectors, S used, E embedding.
    user_vecs [B, K, E], side with gate [B, S] and emb [B, E] -> logits [B].
    """
    vecs, mask = _used(user_vecs, side, user_mask)  # [B, S, E], [B, S]
    if side.combine == "gate":
        weights = side.gate  # [B, S]
    else:
        scores = torch.einsum("bke,be->bk", vecs, side.emb)  # [B, S]
        weights = _label_aware_weights(scores, mask, side.power)  # [B, S]
    user = torch.einsum("bk,bke->be", weights, vecs)  # [B, E]
    dot = (user * side.emb).sum(dim=-1)  # [B]
    if output == "dot":
        return dot
    return cosine_logit(dot, (user * user).sum(dim=-1), (side.emb * side.emb).sum(dim=-1), temperature)


def serving_user_matrix(user_vecs: Tensor, side: TagSide) -> Tensor:
    """concat_{k in S} x_k(u): user_vecs [B, K, E] -> [B, S*E]; logits = user @ tag.T (dot output)."""
    vecs, _ = _used(user_vecs, side, None)  # [B, S, E]
    return vecs.reshape(vecs.shape[0], -1)  # [B, S*E]


def serving_tag_matrix(side: TagSide) -> Tensor:
    """concat_{k in S} g_k(t) e_t (seed 001): [T, S*E]; only for combine="gate" (MIND's weights
    depend on the user, so MIND has no fixed tag vector: use `score_block`)."""
    if side.combine != "gate":
        raise ValueError("serving_tag_matrix needs a tag-only gate (combine='gate'); "
                         "label-aware attention (MIND) must be scored with score_block")
    weighted = side.gate.unsqueeze(-1) * side.emb.unsqueeze(1)  # [T, S, E]
    return weighted.reshape(weighted.shape[0], -1)  # [T, S*E]
