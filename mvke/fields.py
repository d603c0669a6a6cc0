"""The input contract between the feature job and the model: field specs and id conventions.

A batch is a `dict[str, torch.Tensor]`:
- single field `f`: `batch[f]` LongTensor [B];
- multi field `f`: `batch[f]` LongTensor [B, L] (0-padded) and `batch[f + "_weights"]`
  FloatTensor [B, L] (0 at padding; an all-zero row means "no values");
- tag side: `batch["tag"]`, `batch["tag_category"]` LongTensor [B];
- labels: `batch["click"]`, `batch["conversion"]` FloatTensor [B] in {0, 1}.
Unknown keys are ignored. In every vocabulary id 0 is missing/padding and id 1 unknown;
real values start at 2. Numeric attributes arrive bucketized, as "single" fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldKind = Literal["single", "multi"]
FIELD_KINDS: tuple[FieldKind, ...] = ("single", "multi")

PAD_ID = 0
UNKNOWN_ID = 1
FIRST_REAL_ID = 2

TAG_KEY = "tag"
TAG_CATEGORY_KEY = "tag_category"
LABEL_KEYS = ("click", "conversion")
WEIGHTS_SUFFIX = "_weights"
RESERVED_KEYS = (TAG_KEY, TAG_CATEGORY_KEY, *LABEL_KEYS)


@dataclass(frozen=True)
class FieldSpec:
    """One user feature field: its batch key, single- or multi-valued, and vocabulary size."""

    name: str
    kind: FieldKind
    vocab_size: int


def weights_key(name: str) -> str:
    """The batch key holding the weights of multi-valued field `name`."""
    return name + WEIGHTS_SUFFIX
