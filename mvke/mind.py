"""MIND: multi-interest user vectors by dynamic routing, scored with label-aware attention.

User side (Li et al., CIKM 2019; seed 004):
- behaviours: the tags of `sequence_field`, embedded with the tag tower's id embedding
  (same tag id space), with the field's weights; a behaviour is present iff its weight > 0;
- B2I dynamic routing with one shared bilinear map S: u_i = S e_i,
  w_ij = softmax_j(b_ij), z_j = sum_i weight_i w_ij u_i, c_j = squash(z_j), b_ij += <c_j, u_i>;
  the routing logits start from b_ij = <u_i, r_j> with r a fixed random buffer (seeded by the
  builder, saved with the weights) so that interests differ but runs are reproducible;
- interest count K_u = max(1, min(K, floor(log2 |I_u|))); interests j >= K_u are masked:
  they are zero vectors in `user_vectors` and False in `user_mask`;
- each interest is concatenated with the other user fields and passed through a shared MLP
  (other fields named in `tag_fields` are embedded with the tag tower's id embedding too).

Tag side: label-aware attention w_k = softmax_k(p * <c_k, e_t>) over the used interests,
u = sum_k w_k c_k, logit = <u, e_t>. The paper writes softmax(pow(<c_k, e_t>, p)), which is
undefined for negative dot products with a non-integer p; `p * s` keeps its limits
(p = 0: mean of interests; p -> inf: the best-matching interest) and is smooth and exact to serve.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mvke.base import ProfileModel
from mvke.fields import FieldSpec
from mvke.layers import FieldEmbedding, mlp, present_weights
from mvke.serving import Output, TagSide
from mvke.tag_tower import TagTower

SQUASH_EPS = 1e-9


def interest_count_mask(weights: Tensor, num_interests: int) -> Tensor:
    """Used interests [B, K] bool from behaviour weights [B, L]: the first max(1, min(K, floor(log2 n)))."""
    count = (weights > 0).sum(dim=1)  # [B]
    used = torch.ones_like(count)
    for j in range(2, num_interests + 1):
        used = used + (count >= 2**j).long()  # floor(log2 n) >= j
    return torch.arange(num_interests, device=weights.device).unsqueeze(0) < used.unsqueeze(1)  # [B, K]


def squash(z: Tensor) -> Tensor:
    """Capsule squash over the last dim: z |z| / (1 + |z|^2), zero at zero without NaN."""
    norm = (z * z).sum(dim=-1, keepdim=True).add(SQUASH_EPS).sqrt()
    return z * norm / (1 + norm * norm)


class InterestExtractor(nn.Module):
    """B2I dynamic routing: behaviours [B, L, E] -> interest capsules [B, K, E]."""

    def __init__(self, num_interests: int, embedding_dim: int, routing_iters: int) -> None:
        super().__init__()
        self.routing_iters = routing_iters
        self.bilinear = nn.Linear(embedding_dim, embedding_dim, bias=False)
        self.register_buffer("routing_seed", torch.randn(num_interests, embedding_dim))

    def forward(self, behaviours: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
        """Shapes: B users, L behaviours, K interests, E embedding.

        behaviours [B, L, E], weights [B, L] (0 = absent), mask [B, K] used interests -> [B, K, E].
        """
        mapped = self.bilinear(behaviours)  # [B, L, E]
        logits = torch.einsum("ble,ke->blk", mapped, self.routing_seed)  # [B, L, K]
        unused = ~mask.unsqueeze(1)  # [B, 1, K]
        weights = weights.to(mapped.dtype)
        capsules = mapped.new_zeros(mapped.shape[0], mask.shape[1], mapped.shape[2])
        for step in range(self.routing_iters):
            coupling = torch.softmax(logits.masked_fill(unused, float("-inf")), dim=-1)  # [B, L, K]
            z = torch.einsum("blk,bl,ble->bke", coupling, weights, mapped)  # [B, K, E]
            capsules = squash(z)  # [B, K, E]
            if step + 1 < self.routing_iters:
                logits = logits + torch.einsum("bke,ble->blk", capsules, mapped)  # [B, L, K]
        return capsules


class MINDModel(ProfileModel):
    """Multi-interest user vectors from the behaviour sequence plus the other fields."""

    def __init__(self, fields: Sequence[FieldSpec], num_tags: int, num_categories: int, *,
                 objectives: Sequence[str], sequence_field: str, num_interests: int, routing_iters: int,
                 power: float, embedding_dim: int, hidden_dim: int, output: Output, temperature: float,
                 tag_fields: Sequence[str]) -> None:
        super().__init__(objectives, output=output, temperature=temperature)
        self.sequence_field = sequence_field
        self.num_interests = num_interests
        self.power = float(power)
        others = [f for f in fields if f.name != sequence_field]
        other_tag_fields = [name for name in tag_fields if name != sequence_field]
        self.field_embedding = FieldEmbedding(others, embedding_dim, other_tag_fields) if others else None
        self.tag_tower = TagTower(num_tags, num_categories, self.objectives, embedding_dim, hidden_dim)
        self.extractor = InterestExtractor(num_interests, embedding_dim, routing_iters)
        self.interest_mlp = mlp((1 + len(others)) * embedding_dim, hidden_dim, embedding_dim)

    def user_mask(self, batch: Mapping[str, Tensor]) -> Tensor:
        """[B, K] bool: True for the first K_u interests of each user."""
        return interest_count_mask(present_weights(batch, self.sequence_field), self.num_interests)

    def user_vectors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """batch -> interests [B, K, E] (B users, K interests, E embedding); unused interests are 0."""
        weights = present_weights(batch, self.sequence_field)  # [B, L]
        mask = interest_count_mask(weights, self.num_interests)  # [B, K]
        behaviours = self.tag_tower.id_embedding(batch[self.sequence_field])  # [B, L, E]
        capsules = self.extractor(behaviours, weights, mask)  # [B, K, E]
        parts = [capsules]
        if self.field_embedding is not None:
            others = self.field_embedding(batch, self.tag_tower.id_embedding).flatten(1)  # [B, F*E]
            parts.append(others.unsqueeze(1).expand(-1, self.num_interests, -1))  # [B, K, F*E]
        interests = self.interest_mlp(torch.cat(parts, dim=-1))  # [B, K, E]
        return interests * mask.unsqueeze(-1).to(interests.dtype)  # [B, K, E]

    def tag_vectors(self, tag: Tensor, tag_category: Tensor) -> dict[str, TagSide]:
        """tag, tag_category [T] -> {objective: TagSide(experts = all K interests, label-aware)}."""
        embs = self.tag_tower(tag, tag_category)  # each [T, E]
        experts = torch.arange(self.num_interests, device=tag.device)  # [K]
        return {
            o: TagSide(experts=experts, gate=None, emb=emb, combine="label_aware", power=self.power)
            for o, emb in embs.items()
        }
