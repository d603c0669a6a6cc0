"""Forward + backward throughput of every model family on this CPU, as a markdown table.

    .venv/bin/python bench/model_throughput.py [--batch-size 1024] [--reps 7] [--iters 3] [--threads N]

A realistic field set (8 single-valued fields with vocabularies of 20-1000, 3 multi-valued
fields of length 16), E=16, K=5, random ids following the input contract. Each repetition
times `iters` steps of forward + loss + backward per model, the models taking turns; the table
reports the median over repetitions, the parameter count, and throughput relative to two_tower.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import torch

from core.config import ModelConf
from mvke.builder import build_model
from mvke.fields import FieldSpec
from mvke.loss import ProfileLoss

MODELS = ("two_tower", "hard_sharing", "mmoe", "mvke", "mind")
NUM_TAGS = 1000
NUM_CATEGORIES = 30
MULTI_LEN = 16
FIELDS = (
    FieldSpec("age_bucket", "single", 20),
    FieldSpec("gender", "single", 20),
    FieldSpec("city", "single", 1000),
    FieldSpec("device", "single", 50),
    FieldSpec("os", "single", 20),
    FieldSpec("activity_bucket", "single", 30),
    FieldSpec("ctr_bucket", "single", 30),
    FieldSpec("segment", "single", 200),
    FieldSpec("clicked_tags", "multi", NUM_TAGS),
    FieldSpec("clicked_categories", "multi", NUM_CATEGORIES),
    FieldSpec("converted_tags", "multi", NUM_TAGS),
)


def random_batch(size: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for f in FIELDS:
        if f.kind == "single":
            batch[f.name] = torch.randint(0, f.vocab_size, (size,), generator=g)
            continue
        counts = torch.randint(0, MULTI_LEN + 1, (size,), generator=g)
        present = torch.arange(MULTI_LEN).unsqueeze(0) < counts.unsqueeze(1)  # [B, L]
        ids = torch.randint(2, f.vocab_size, (size, MULTI_LEN), generator=g)
        batch[f.name] = torch.where(present, ids, torch.zeros_like(ids))
        batch[f.name + "_weights"] = present.float()
    batch["tag"] = torch.randint(2, NUM_TAGS, (size,), generator=g)
    batch["tag_category"] = torch.randint(2, NUM_CATEGORIES, (size,), generator=g)
    batch["click"] = (torch.rand(size, generator=g) < 0.3).float()
    batch["conversion"] = batch["click"] * (torch.rand(size, generator=g) < 0.3).float()
    return batch


class Workload:
    """One model, its loss and a batch: `step()` is one forward + loss + backward."""

    def __init__(self, name: str, batch: dict[str, torch.Tensor]) -> None:
        conf = dataclasses.replace(ModelConf(), name=name, embedding_dim=16, hidden_dim=32, num_experts=5)
        self.model = build_model(conf, FIELDS, NUM_TAGS, NUM_CATEGORIES)
        self.loss_fn = ProfileLoss.from_conf(conf)
        self.batch = batch
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def step(self) -> None:
        self.model.zero_grad(set_to_none=True)
        self.loss_fn(self.model(self.batch), self.batch, self.model.kernels()).backward()

    def rate(self, iters: int) -> float:
        """Samples per second over `iters` steps."""
        start = time.perf_counter()
        for _ in range(iters):
            self.step()
        return self.batch["tag"].shape[0] * iters / (time.perf_counter() - start)


def measure(names: list[str], batch: dict[str, torch.Tensor], reps: int, iters: int) -> dict[str, tuple[int, float]]:
    """{model: (parameter count, median samples/s)}. Models take turns within each repetition, so
    a burst of load from other processes hits all of them alike."""
    workloads = {name: Workload(name, batch) for name in names}
    for workload in workloads.values():
        workload.rate(2)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(reps):
        for name, workload in workloads.items():
            rates[name].append(workload.rate(iters))
    return {name: (workloads[name].parameters, statistics.median(rates[name])) for name in names}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    batch = random_batch(args.batch_size, seed=0)
    results = measure(list(args.models), batch, args.reps, args.iters)
    base = results.get("two_tower", (0, float("nan")))[1]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"batch {args.batch_size}, median of {args.reps} x {args.iters} steps\n")
    print("| model | parameters | samples/s (fwd+bwd) | vs two_tower |")
    print("|---|---:|---:|---:|")
    for name, (params, rate) in results.items():
        print(f"| {name} | {params:,} | {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
