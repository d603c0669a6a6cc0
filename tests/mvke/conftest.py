"""Toy inputs for the model tests: a small field set and random batches that follow the contract."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from core.config import ModelConf
from mvke.fields import FieldSpec

NUM_TAGS = 23
NUM_CATEGORIES = 5
SEQ_LEN = 17  # long enough for MIND to use up to 4 interests (log2 16 = 4)
MULTI_LEN = 4


@dataclass(frozen=True)
class Toy:
    fields: tuple[FieldSpec, ...]
    num_tags: int = NUM_TAGS
    num_categories: int = NUM_CATEGORIES

    def users(self, size: int, seed: int) -> dict:
        """User fields of `size` users; multi rows include all-zero rows, padding and unknown ids."""
        g = torch.Generator().manual_seed(seed)
        batch: dict = {"user_id": [f"u{i}" for i in range(size)]}
        for f in self.fields:
            if f.kind == "single":
                batch[f.name] = torch.randint(0, f.vocab_size, (size,), generator=g)
                continue
            length = SEQ_LEN if f.name == "clicked_tags" else MULTI_LEN
            ids = torch.randint(1, f.vocab_size, (size, length), generator=g)
            counts = torch.randint(0, length + 1, (size,), generator=g)
            counts[0] = 0  # one user with no values at all
            counts[-1] = length
            present = torch.arange(length).unsqueeze(0) < counts.unsqueeze(1)
            batch[f.name] = torch.where(present, ids, torch.zeros_like(ids))
            batch[f.name + "_weights"] = torch.where(present, torch.rand(size, length, generator=g) + 0.5,
                                                     torch.zeros(size, length))
        return batch

    def tags(self, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return (torch.randint(1, self.num_tags, (size,), generator=g),
                torch.randint(1, self.num_categories, (size,), generator=g))

    def batch(self, size: int, seed: int) -> dict:
        """A training batch: users, one tag each, labels (conversion only after a click)."""
        batch = self.users(size, seed)
        batch["tag"], batch["tag_category"] = self.tags(size, seed + 1)
        g = torch.Generator().manual_seed(seed + 2)
        batch["click"] = (torch.rand(size, generator=g) < 0.5).float()
        batch["conversion"] = batch["click"] * (torch.rand(size, generator=g) < 0.5).float()
        return batch


TOY_FIELDS = (
    FieldSpec("age_bucket", "single", 7),
    FieldSpec("city", "single", 12),
    FieldSpec("device", "single", 5),
    FieldSpec("clicked_tags", "multi", NUM_TAGS),
    FieldSpec("interests", "multi", 9),
)

# Every model and option that changes how a logit is computed.
MODEL_CASES: dict[str, dict] = {
    "mvke": {},
    "mvke_cosine": {"output": "cosine"},
    "mvke_projected": {"projected_gate": True},
    "mvke_hard": {"hard_gate": True},
    "mvke_projected_hard_cosine": {"projected_gate": True, "hard_gate": True, "output": "cosine",
                                   "temperature": 0.5},
    "mvke_esmm": {"cvr_mode": "esmm"},
    "mvke_sets": {"num_experts": 4, "expert_sets": {"ctr": (3,), "cvr": (0, 2, 3)}},
    "mvke_tag_fields": {"tag_fields": ("clicked_tags",)},
    "mvke_kernel_history": {"kernel_history": True},
    "mvke_kernel_history_tag_fields": {"kernel_history": True, "tag_fields": ("clicked_tags",)},
    "two_tower": {"name": "two_tower"},
    "two_tower_cvr_cosine": {"name": "two_tower", "two_tower_objective": "cvr", "output": "cosine"},
    "two_tower_tag_fields": {"name": "two_tower", "tag_fields": ("clicked_tags",)},
    "hard_sharing": {"name": "hard_sharing"},
    "hard_sharing_cosine": {"name": "hard_sharing", "output": "cosine"},
    "hard_sharing_tag_fields": {"name": "hard_sharing", "tag_fields": ("clicked_tags",)},
    "mmoe": {"name": "mmoe"},
    "mmoe_cosine": {"name": "mmoe", "output": "cosine"},
    "mmoe_tag_fields": {"name": "mmoe", "tag_fields": ("clicked_tags",)},
    "mind": {"name": "mind"},
    "mind_cosine": {"name": "mind", "output": "cosine", "temperature": 0.2},
    "mind_power": {"name": "mind", "mind_power": 2.5, "mind_routing_iters": 2},
    "mind_esmm": {"name": "mind", "cvr_mode": "esmm", "mind_interests": 3},
    "mind_tag_fields": {"name": "mind", "tag_fields": ("clicked_tags", "interests")},
}


def model_conf(case: str, **extra) -> ModelConf:
    values = {"embedding_dim": 8, "hidden_dim": 16, "seed": 3, **MODEL_CASES[case], **extra}
    return dataclasses.replace(ModelConf(), **values)


@pytest.fixture
def toy() -> Toy:
    return Toy(fields=TOY_FIELDS)


@pytest.fixture
def conf_for():
    """conf_for(case, **overrides) -> ModelConf of a MODEL_CASES entry (small sizes, fixed seed)."""
    return model_conf

FAMILIES = ("mvke", "two_tower", "hard_sharing", "mmoe", "mind")


def pytest_generate_tests(metafunc):
    """`case`: every entry of MODEL_CASES; `family`: one plain case per model family
    (unless the test parametrizes them itself)."""
    explicit = {name.strip() for mark in metafunc.definition.iter_markers("parametrize")
                for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])}
    if "case" in metafunc.fixturenames and "case" not in explicit:
        metafunc.parametrize("case", list(MODEL_CASES))
    if "family" in metafunc.fixturenames and "family" not in explicit:
        metafunc.parametrize("family", list(FAMILIES))


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs with one torch thread (`one_torch_thread` in tests/conftest.py)."""
