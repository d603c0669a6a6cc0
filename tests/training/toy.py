"""A small learnable set as a plain list of dict batches (what the loop takes from Petastorm too)."""
from __future__ import annotations

import dataclasses

import torch

from core.config import ModelConf
from mvke.fields import FieldSpec

FIELDS = (FieldSpec("history", "multi", 8), FieldSpec("interest", "single", 6))
NUM_TAGS = 6
NUM_CATEGORIES = 3
MULTI_LEN = 3


def small_conf(**overrides) -> ModelConf:
    values = {"embedding_dim": 8, "hidden_dim": 16, "num_experts": 3,
              "expert_sets": {"ctr": (0, 1), "cvr": (1, 2)}, "seed": 5, **overrides}
    return dataclasses.replace(ModelConf(), **values)


def learnable_batches(rows: int, batch_size: int, seed: int = 0) -> list[dict]:
    """Users click tags equal to their `interest` (ids 2..5); a click converts when the tag is even."""
    g = torch.Generator().manual_seed(seed)
    interest = torch.randint(2, 6, (rows,), generator=g)
    tag = torch.where(torch.rand(rows, generator=g) < 0.5, interest, torch.randint(2, 6, (rows,), generator=g))
    history = torch.randint(2, 8, (rows, MULTI_LEN), generator=g)
    click = (tag == interest).float()
    batch = {
        "interest": interest, "history": history, "history_weights": torch.ones(rows, MULTI_LEN),
        "tag": tag, "tag_category": tag % 2 + 1, "click": click,
        "conversion": click * (tag % 2 == 0).float(), "user_key": interest * 100 + torch.arange(rows) % 7,
    }
    return [{k: v[i:i + batch_size] for k, v in batch.items()} for i in range(0, rows, batch_size)]
