"""The interface every model family implements, and what a built model was built from.

Serving API (separate methods, no mode flag):
- `forward(batch) -> {objective: logits [B]}`: the logit of each sample's own (user, tag) pair;
- `user_vectors(batch) -> [B, K, E]` and `user_mask(batch) -> [B, K] bool | None`;
- `tag_vectors(tag, tag_category) -> {objective: TagSide}`;
- `mvke.serving.score_block(user_vecs, side, output=model.output, temperature=model.temperature,
  user_mask=...)` -> logits [B, T], equal to `forward` for every pair.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from core.config import ModelConf
from mvke.fields import TAG_CATEGORY_KEY, TAG_KEY, FieldSpec
from mvke.serving import Output, TagSide, pair_logits


@dataclass(frozen=True)
class ModelSpec:
    """Everything `build_model` was called with; enough to rebuild the model."""

    conf: ModelConf
    fields: tuple[FieldSpec, ...]
    num_tags: int
    num_categories: int


class ProfileModel(nn.Module, ABC):
    """A two-tower profile model: K user vectors per user, one TagSide per objective and tag."""

    spec: ModelSpec | None = None

    def __init__(self, objectives: Sequence[str], *, output: Output, temperature: float) -> None:
        super().__init__()
        self.objectives = tuple(objectives)
        self.output: Output = output
        self.temperature = float(temperature)

    @abstractmethod
    def user_vectors(self, batch: Mapping[str, Tensor]) -> Tensor:
        """User side: [B, K, E] (B users, K user vectors, E embedding)."""

    @abstractmethod
    def tag_vectors(self, tag: Tensor, tag_category: Tensor) -> dict[str, TagSide]:
        """Tag side per objective, for tags [T] with their categories [T]."""

    def user_mask(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """[B, K] bool, False for user vectors to ignore (MIND's unused interests); None: all used."""
        return None

    def kernels(self) -> Tensor | None:
        """The virtual kernels VK [K, E] of models that have them (for the diversity term)."""
        return None

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Logits of each sample's own pair.

        Shapes: B batch, K user vectors, E embedding.
        batch (user fields, tag [B], tag_category [B]) -> {objective: logits [B]}.
        """
        users = self.user_vectors(batch)  # [B, K, E]
        mask = self.user_mask(batch)  # [B, K] or None
        sides = self.tag_vectors(batch[TAG_KEY], batch[TAG_CATEGORY_KEY])  # gate [B, S], emb [B, E]
        return {
            objective: pair_logits(users, side, output=self.output, temperature=self.temperature, user_mask=mask)
            for objective, side in sides.items()
        }
