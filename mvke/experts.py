"""Virtual-Kernel Experts (VKE): K learnable kernels query the user's field embeddings.

For every kernel k (MVKE.md):
    Q = VK W_Q,  Kf = F_u W_K,  Vf = F_u W_V
    a[i, k] = softmax_i(Kf_i . Q_k / sqrt(E))
    H[k, i] = LayerNorm(a[i, k] Vf_i + F_u[i])
    x_k(u) = f_k(concat_i H[k, i])            (expert k's own MLP, output size E)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mvke.layers import ParallelMLP


class VirtualKernelExperts(nn.Module):
    """K virtual kernels `VK` [K, E] and K experts; F_u [B, F, E] -> x(u) [B, K, E]."""

    def __init__(self, num_fields: int, num_kernels: int, embedding_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kernels = nn.Parameter(torch.randn(num_kernels, embedding_dim) / math.sqrt(embedding_dim))
        self.w_q = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.w_k = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.w_v = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.norm = nn.LayerNorm(embedding_dim)
        self.experts = ParallelMLP(num_kernels, num_fields * embedding_dim, hidden_dim, embedding_dim)

    def attention(self, fields: Tensor) -> Tensor:
        """Kernel-over-field attention a [B, F, K] (softmax over fields F), from F_u [B, F, E]."""
        queries = self.w_q(self.kernels)  # [K, E]
        keys = self.w_k(fields)  # [B, F, E]
        scores = torch.einsum("bfe,ke->bfk", keys, queries) / math.sqrt(self.embedding_dim)  # [B, F, K]
        return torch.softmax(scores, dim=1)  # [B, F, K]

    def forward(self, fields: Tensor) -> Tensor:
        """F_u -> expert outputs.

        Shapes: B batch, F fields, K kernels, E embedding.
        fields F_u [B, F, E] -> x(u) [B, K, E].
        """
        batch, num_fields, dim = fields.shape
        attn = self.attention(fields).permute(2, 0, 1)  # [K, B, F]
        values = self.w_v(fields)  # [B, F, E]
        weighted = attn.unsqueeze(-1) * values.unsqueeze(0)  # [K, B, F, E]
        hidden = self.norm(weighted + fields.unsqueeze(0))  # [K, B, F, E]
        per_kernel = hidden.reshape(-1, batch, num_fields * dim)  # [K, B, F*E], concat over fields
        return self.experts(per_kernel).transpose(0, 1).contiguous()  # [B, K, E]
