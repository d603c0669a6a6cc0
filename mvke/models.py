"""Model families built on field embeddings: MVKE and the baselines it is compared with.

Shape legend: B batch, F fields, K user vectors (experts), S experts of one objective,
H hidden size, E embedding, T tags. MIND lives in `mvke.mind`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mvke.experts import VirtualKernelExperts
from mvke.fields import FieldSpec
from mvke.gate import VirtualKernelGate
from mvke.layers import FieldEmbedding, ParallelMLP, mlp
from mvke.base import ProfileModel
from mvke.serving import Output, TagSide
from mvke.tag_tower import TagTower


def _single_vector_sides(embs: dict[str, Tensor], index: dict[str, int]) -> dict[str, TagSide]:
    """Each objective uses its own user vector `index[objective]` with gate 1."""
    sides = {}
    for objective, emb in embs.items():
        experts = torch.tensor([index[objective]], dtype=torch.long, device=emb.device)  # [1]
        gate = torch.ones(emb.shape[0], 1, dtype=emb.dtype, device=emb.device)  # [T, 1]
        sides[objective] = TagSide(experts=experts, gate=gate, emb=emb)
    return sides


class MVKEModel(ProfileModel):
    """Mixture of Virtual-Kernel Experts: VKE on the user side, one VKG per objective on the tag side."""

    def __init__(self, fields: Sequence[FieldSpec], num_tags: int, num_categories: int, *,
                 objectives: Sequence[str], expert_sets: Mapping[str, Sequence[int]], num_experts: int,
                 embedding_dim: int, hidden_dim: int, output: Output, temperature: float,
                 tag_fields: Sequence[str], projected_gate: bool, hard_gate: bool,
                 history_field: str | None = None) -> None:
        super().__init__(objectives, output=output, temperature=temperature)
        self.field_embedding = FieldEmbedding(fields, embedding_dim, tag_fields)
        self.history_field = history_field
        names = [f.name for f in fields]
        history_index = None if history_field is None else names.index(history_field)
        self.experts = VirtualKernelExperts(len(fields), num_experts, embedding_dim, hidden_dim, history_index)
        self.gates = nn.ModuleDict({
            o: VirtualKernelGate(expert_sets[o], embedding_dim, projected=projected_gate, hard=hard_gate)
            for o in self.objectives
        })
        self.tag_tower = TagTower(num_tags, num_categories, self.objectives, embedding_dim, hidden_dim)

    def kernels(self) -> Tensor:
        return self.experts.kernels  # [K, E]

    def user_vectors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """batch -> x(u) [B, K, E] (B batch, K kernels, E embedding)."""
        tag_ids = self.tag_tower.id_embedding
        fields = self.field_embedding(batch, tag_ids)  # [B, F, E]
        if self.history_field is None:
            return self.experts(fields)  # [B, K, E]
        history = self.field_embedding.values(self.history_field, batch, tag_ids)  # [B, L, E], [B, L]
        return self.experts(fields, history)  # [B, K, E]

    def tag_vectors(self, tag: Tensor, tag_category: Tensor) -> dict[str, TagSide]:
        """tag, tag_category [T] -> {objective: TagSide(experts [S], gate [T, S], emb [T, E])}."""
        embs = self.tag_tower(tag, tag_category)  # each [T, E]
        return {
            o: TagSide(experts=gate.experts, gate=gate(embs[o], self.experts.kernels), emb=embs[o])
            for o, gate in self.gates.items()
        }


class TwoTowerModel(ProfileModel):
    """Single-objective two-tower: one user vector per user."""

    def __init__(self, fields: Sequence[FieldSpec], num_tags: int, num_categories: int, *, objective: str,
                 embedding_dim: int, hidden_dim: int, output: Output, temperature: float,
                 tag_fields: Sequence[str]) -> None:
        super().__init__((objective,), output=output, temperature=temperature)
        self.field_embedding = FieldEmbedding(fields, embedding_dim, tag_fields)
        self.user_tower = mlp(len(fields) * embedding_dim, hidden_dim, embedding_dim)
        self.tag_tower = TagTower(num_tags, num_categories, self.objectives, embedding_dim, hidden_dim)

    def user_vectors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """batch -> [B, 1, E]."""
        flat = self.field_embedding(batch, self.tag_tower.id_embedding).flatten(1)  # [B, F*E]
        return self.user_tower(flat).unsqueeze(1)  # [B, 1, E]

    def tag_vectors(self, tag: Tensor, tag_category: Tensor) -> dict[str, TagSide]:
        return _single_vector_sides(self.tag_tower(tag, tag_category), {self.objectives[0]: 0})


class HardSharingModel(ProfileModel):
    """Multi-objective two-tower: a shared user bottom and one user head per objective."""

    def __init__(self, fields: Sequence[FieldSpec], num_tags: int, num_categories: int, *,
                 objectives: Sequence[str], embedding_dim: int, hidden_dim: int, output: Output,
                 temperature: float, tag_fields: Sequence[str]) -> None:
        super().__init__(objectives, output=output, temperature=temperature)
        self.field_embedding = FieldEmbedding(fields, embedding_dim, tag_fields)
        self.bottom = nn.Sequential(nn.Linear(len(fields) * embedding_dim, hidden_dim), nn.ReLU())
        self.heads = nn.ModuleDict({o: mlp(hidden_dim, hidden_dim, embedding_dim) for o in self.objectives})
        self.tag_tower = TagTower(num_tags, num_categories, self.objectives, embedding_dim, hidden_dim)

    def user_vectors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """batch -> [B, n_objectives, E], one vector per objective in `objectives` order."""
        shared = self.bottom(self.field_embedding(batch, self.tag_tower.id_embedding).flatten(1))  # [B, H]
        return torch.stack([self.heads[o](shared) for o in self.objectives], dim=1)  # [B, n_obj, E]

    def tag_vectors(self, tag: Tensor, tag_category: Tensor) -> dict[str, TagSide]:
        index = {o: i for i, o in enumerate(self.objectives)}
        return _single_vector_sides(self.tag_tower(tag, tag_category), index)


class MMoEModel(ProfileModel):
    """MMoE user tower: K experts over the fields, one input-dependent gate per objective over its
    expert subset. The gate depends on the user only, so the mixture is done on the user side."""

    def __init__(self, fields: Sequence[FieldSpec], num_tags: int, num_categories: int, *,
                 objectives: Sequence[str], expert_sets: Mapping[str, Sequence[int]], num_experts: int,
                 embedding_dim: int, hidden_dim: int, output: Output, temperature: float,
                 tag_fields: Sequence[str]) -> None:
        super().__init__(objectives, output=output, temperature=temperature)
        in_dim = len(fields) * embedding_dim
        self.num_experts = num_experts
        self.field_embedding = FieldEmbedding(fields, embedding_dim, tag_fields)
        self.experts = ParallelMLP(num_experts, in_dim, hidden_dim, embedding_dim)
        self.expert_sets = {o: tuple(expert_sets[o]) for o in self.objectives}
        self.gates = nn.ModuleDict({o: nn.Linear(in_dim, len(self.expert_sets[o])) for o in self.objectives})
        self.tag_tower = TagTower(num_tags, num_categories, self.objectives, embedding_dim, hidden_dim)

    def expert_outputs(self, flat: Tensor) -> Tensor:
        """flat F_u [B, F*E] -> every expert's output [B, K, E]."""
        shared_input = flat.unsqueeze(0).expand(self.num_experts, -1, -1)  # [K, B, F*E]
        return self.experts(shared_input).transpose(0, 1)  # [B, K, E]

    def user_vectors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """batch -> gated mixture per objective [B, n_objectives, E]."""
        flat = self.field_embedding(batch, self.tag_tower.id_embedding).flatten(1)  # [B, F*E]
        outputs = self.expert_outputs(flat)  # [B, K, E]
        mixed = []
        for objective in self.objectives:
            gate = torch.softmax(self.gates[objective](flat), dim=-1)  # [B, S]
            subset = outputs[:, list(self.expert_sets[objective])]  # [B, S, E]
            mixed.append(torch.einsum("bk,bke->be", gate, subset))  # [B, E]
        return torch.stack(mixed, dim=1)  # [B, n_obj, E]

    def tag_vectors(self, tag: Tensor, tag_category: Tensor) -> dict[str, TagSide]:
        index = {o: i for i, o in enumerate(self.objectives)}
        return _single_vector_sides(self.tag_tower(tag, tag_category), index)
