"""Virtual-Kernel Experts (VKE): K learnable kernels query the user's field embeddings.

For every kernel k (MVKE.md):
    Q = VK W_Q,  Kf = F_u W_K,  Vf = F_u W_V
    a[i, k] = softmax_i(Kf_i . Q_k / sqrt(E))
    H[k, i] = LayerNorm(a[i, k] Vf_i + F_u[i])
    x_k(u) = f_k(concat_i H[k, i])            (expert k's own MLP, output size E)

Kernel history (optional, `history_index`): one multi-valued field, the behaviour history, is
not seen as the weighted mean of its values but pooled by each kernel with the same query and
key maps, weighted by the behaviour weights w_l:
    b[k, l] = softmax_l(log w_l + (e_l W_K) . Q_k / sqrt(E))   over behaviours with w_l > 0
    F_u^k[history] = sum_l b[k, l] e_l
so kernel k sees the behaviours that match it. With equal scores it is the weighted mean again;
a user without behaviours gets the zero vector, as the field does.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mvke.layers import ParallelMLP


class VirtualKernelExperts(nn.Module):
    """K virtual kernels `VK` [K, E] and K experts; F_u [B, F, E] -> x(u) [B, K, E]."""

    def __init__(self, num_fields: int, num_kernels: int, embedding_dim: int, hidden_dim: int,
                 history_index: int | None = None) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.history_index = history_index
        self.kernels = nn.Parameter(torch.randn(num_kernels, embedding_dim) / math.sqrt(embedding_dim))
        self.w_q = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.w_k = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.w_v = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.norm = nn.LayerNorm(embedding_dim)
        self.experts = ParallelMLP(num_kernels, num_fields * embedding_dim, hidden_dim, embedding_dim)

    def scores(self, items: Tensor) -> Tensor:
        """Kernel-over-item scores (W_K x) . Q_k / sqrt(E): items [B, N, E] or [B, K, N, E] -> [B, K, N]."""
        queries = self.w_q(self.kernels)  # [K, E]
        keys = self.w_k(items)  # [B, N, E] or [B, K, N, E]
        if keys.dim() == 3:
            keys = keys.unsqueeze(1)  # [B, 1, N, E], the same items for every kernel
        return (keys * queries[:, None, :]).sum(dim=-1) / math.sqrt(self.embedding_dim)  # [B, K, N]

    def attention(self, fields: Tensor) -> Tensor:
        """Kernel-over-field attention a [B, F, K] (softmax over fields F), from F_u [B, F, E]."""
        return torch.softmax(self.scores(fields), dim=-1).transpose(1, 2)  # [B, F, K]

    def pool_history(self, behaviours: Tensor, weights: Tensor) -> Tensor:
        """Each kernel's pooled history: behaviours [B, L, E], weights [B, L] (0 = absent) -> [B, K, E]."""
        present = weights > 0  # [B, L]
        log_weights = torch.where(present, weights.clamp_min(1e-30).log(), torch.full_like(weights, -math.inf))
        logits = self.scores(behaviours) + log_weights.unsqueeze(1)  # [B, K, L]
        any_present = present.any(dim=1)[:, None, None]  # [B, 1, 1]
        pooled = torch.softmax(torch.where(any_present, logits, torch.zeros_like(logits)), dim=-1)  # [B, K, L]
        pooled = torch.where(any_present, pooled, torch.zeros_like(pooled))  # no behaviours -> zero vector
        return torch.einsum("bkl,ble->bke", pooled, behaviours)  # [B, K, E]

    def forward(self, fields: Tensor, history: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """F_u -> expert outputs.

        Shapes: B batch, F fields, K kernels, L behaviours, E embedding.
        fields F_u [B, F, E] -> x(u) [B, K, E]. With `history_index`, `history` is the behaviour
        history field's (values [B, L, E], weights [B, L]), pooled per kernel into that field's slot.
        """
        if (history is None) != (self.history_index is None):
            raise ValueError("history must be given exactly when the experts have a history_index")
        batch, num_fields, dim = fields.shape
        per_kernel = fields.unsqueeze(1)  # [B, 1, F, E]: every kernel sees the same fields
        if history is not None:
            per_kernel = per_kernel.repeat(1, self.kernels.shape[0], 1, 1)  # [B, K, F, E]
            per_kernel[:, :, self.history_index] = self.pool_history(*history)
        attn = torch.softmax(self.scores(per_kernel), dim=-1)  # [B, K, F]
        values = self.w_v(per_kernel)  # [B, 1 or K, F, E]
        hidden = self.norm(attn.unsqueeze(-1) * values + per_kernel)  # [B, K, F, E]
        per_expert = hidden.transpose(0, 1).reshape(-1, batch, num_fields * dim)  # [K, B, F*E], concat over fields
        return self.experts(per_expert).transpose(0, 1).contiguous()  # [B, K, E]
