"""Building blocks shared by every model family: field embeddings and MLPs.

Shape legend: B batch, F fields, L multi-field length, K experts, D input size,
H hidden size, E embedding size.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mvke.fields import PAD_ID, FieldSpec, weights_key


class FieldEmbedding(nn.Module):
    """Embeds every user field to size E: one lookup (single) or a weighted mean of lookups (multi).

    Id 0 (missing/padding) maps to the zero vector. A multi-valued row whose weights are all
    zero ("no values") gives the zero vector, without NaN.

    `tag_fields` hold tag ids and have no table of their own: they are looked up in the tag
    tower's id embedding, passed to `forward`, so a tag clicked by the user and the same tag
    as a candidate share one vector (the parameters are owned, and saved, by the tag tower).
    """

    def __init__(self, fields: Sequence[FieldSpec], embedding_dim: int, tag_fields: Sequence[str] = ()) -> None:
        super().__init__()
        self.fields = tuple(fields)
        self.embedding_dim = embedding_dim
        self.tag_fields = frozenset(tag_fields)
        unknown = sorted(self.tag_fields - {f.name for f in self.fields})
        if unknown:
            raise ValueError(f"tag_fields {unknown} are not among the fields {[f.name for f in self.fields]}")
        self.tables = nn.ModuleDict({
            f.name: nn.Embedding(f.vocab_size, embedding_dim, padding_idx=PAD_ID)
            for f in self.fields if f.name not in self.tag_fields
        })
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=0.1)
            with torch.no_grad():
                table.weight[PAD_ID].zero_()

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def forward(self, batch: Mapping[str, Tensor], tag_embedding: nn.Embedding | None = None) -> Tensor:
        """batch -> F_u.

        Shapes: B batch, F fields, L multi-field length, E embedding.
        Returns F_u [B, F, E] in the order of `fields`. `tag_embedding` (the tag tower's id
        table) is required when there are `tag_fields`.
        """
        if self.tag_fields and tag_embedding is None:
            raise ValueError(f"tag_fields {sorted(self.tag_fields)} need the tag tower's id embedding")
        columns = [self.embed_field(f, batch, tag_embedding) for f in self.fields]  # F x [B, E]
        return torch.stack(columns, dim=1)  # [B, F, E]

    def embed_field(self, spec: FieldSpec, batch: Mapping[str, Tensor],
                    tag_embedding: nn.Embedding | None = None) -> Tensor:
        if spec.kind == "single":
            return self.table(spec.name, tag_embedding)(batch[spec.name])  # [B, E]
        return weighted_mean(*self.values(spec.name, batch, tag_embedding))  # [B, E]

    def values(self, name: str, batch: Mapping[str, Tensor],
               tag_embedding: nn.Embedding | None = None) -> tuple[Tensor, Tensor]:
        """Multi field `name` before pooling: its embedded values [B, L, E] and weights [B, L] (padding: 0)."""
        return self.table(name, tag_embedding)(batch[name]), present_weights(batch, name)

    def table(self, name: str, tag_embedding: nn.Embedding | None) -> nn.Embedding:
        return tag_embedding if name in self.tag_fields else self.tables[name]


def present_weights(batch: Mapping[str, Tensor], name: str) -> Tensor:
    """The weights [B, L] of multi field `name`, 0 wherever the id is the padding id 0: a value is
    present when its id is real and its weight positive, as the scoring job reads it."""
    weights = batch[weights_key(name)]
    return weights * (batch[name] != PAD_ID).to(weights.dtype)


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean over dim 1: values [B, L, E], weights [B, L] -> [B, E]; all-zero rows give 0."""
    weights = weights.to(values.dtype)
    total = weights.sum(dim=1, keepdim=True)  # [B, 1]
    safe_total = torch.where(total > 0, total, torch.ones_like(total))  # [B, 1]
    summed = torch.einsum("bl,ble->be", weights, values)  # [B, E]
    return summed / safe_total  # [B, E]


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class ParallelMLP(nn.Module):
    """K independent two-layer MLPs (Linear -> ReLU -> Linear) evaluated in one batched einsum.

    Expert k maps its own input x[k] of size D to an output of size E with its own weights.
    """

    def __init__(self, num: int, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num, in_dim, hidden_dim))
        self.b1 = nn.Parameter(torch.zeros(num, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(num, hidden_dim, out_dim))
        self.b2 = nn.Parameter(torch.zeros(num, out_dim))
        for weight, fan_in in ((self.w1, in_dim), (self.w2, hidden_dim)):
            nn.init.uniform_(weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, x: Tensor) -> Tensor:
        """Expert-major input, so each layer is one batched matmul without copies.

        Shapes: K experts, B batch, D input size, H hidden, E output size.
        x [K, B, D] -> [K, B, E].
        """
        hidden = torch.relu(torch.baddbmm(self.b1.unsqueeze(1), x, self.w1))  # [K, B, H]
        return torch.baddbmm(self.b2.unsqueeze(1), hidden, self.w2)  # [K, B, E]
