"""Tag tower with hard sharing: shared tag-id and tag-category embeddings, one small head per objective."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mvke.fields import PAD_ID
from mvke.layers import mlp


class TagTower(nn.Module):
    """(tag [T], tag_category [T]) -> {objective: e_t^tau [T, E]}.

    `id_embedding` is also the behaviour-sequence embedding of MIND (same tag id space).
    """

    def __init__(self, num_tags: int, num_categories: int, objectives: Sequence[str], embedding_dim: int,
                 hidden_dim: int) -> None:
        super().__init__()
        self.id_embedding = nn.Embedding(num_tags, embedding_dim, padding_idx=PAD_ID)
        self.category_embedding = nn.Embedding(num_categories, embedding_dim, padding_idx=PAD_ID)
        for table in (self.id_embedding, self.category_embedding):
            nn.init.normal_(table.weight, std=0.1)
            with torch.no_grad():
                table.weight[PAD_ID].zero_()
        self.heads = nn.ModuleDict({o: mlp(2 * embedding_dim, hidden_dim, embedding_dim) for o in objectives})

    def forward(self, tag: Tensor, tag_category: Tensor) -> dict[str, Tensor]:
        """Shapes: T tags, E embedding. tag, tag_category [T] -> {objective: [T, E]}."""
        shared = torch.cat([self.id_embedding(tag), self.category_embedding(tag_category)], dim=-1)  # [T, 2E]
        return {objective: head(shared) for objective, head in self.heads.items()}  # each [T, E]
