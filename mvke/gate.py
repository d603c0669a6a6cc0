"""Virtual-Kernel Gate (VKG): the tag chooses among one objective's experts through the kernels.

    g_k(t) = softmax_{k in S}(e_t . VK_k)                         (default: raw kernels, no scaling)
    g_k(t) = softmax_{k in S}(P_q(e_t) . P_k(VK_k) / sqrt(E))     (projected_gate=True)

With `hard=True` the gate is the one-hot of the argmax. An argmax has no gradient, so training
uses a straight-through estimator: the forward value is exactly one-hot, the backward pass
uses the gradient of the soft gate, so the kernels and the tag tower keep learning.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class VirtualKernelGate(nn.Module):
    """One objective's gate over its expert subset S: (e_t [T, E], VK [K, E]) -> g [T, |S|]."""

    def __init__(self, experts: Sequence[int], embedding_dim: int, *, projected: bool = False,
                 hard: bool = False) -> None:
        super().__init__()
        self.register_buffer("experts", torch.tensor(list(experts), dtype=torch.long), persistent=False)
        self.embedding_dim = embedding_dim
        self.projected = projected
        self.hard = hard
        if projected:
            self.query = nn.Linear(embedding_dim, embedding_dim)
            self.key = nn.Linear(embedding_dim, embedding_dim)

    def logits(self, tag_emb: Tensor, kernels: Tensor) -> Tensor:
        """Gate logits [T, |S|] from e_t [T, E] and all kernels VK [K, E]."""
        subset = kernels[self.experts]  # [S, E]
        if not self.projected:
            return tag_emb @ subset.T  # [T, S]
        scale = 1.0 / math.sqrt(self.embedding_dim)
        return (self.query(tag_emb) @ self.key(subset).T) * scale  # [T, S]

    def forward(self, tag_emb: Tensor, kernels: Tensor) -> Tensor:
        """Shapes: T tags, K kernels, S = |S_tau| experts of this objective, E embedding.

        tag_emb e_t [T, E], kernels VK [K, E] -> gate g [T, S] (rows sum to 1).
        """
        soft = torch.softmax(self.logits(tag_emb, kernels), dim=-1)  # [T, S]
        if not self.hard:
            return soft
        one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)  # [T, S]
        return one_hot + (soft - soft.detach())  # [T, S], straight-through
