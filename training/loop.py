"""The training loop over any iterable of dict batches (a list in tests, Petastorm in the job).

Nothing here knows about Horovod: a distributed caller passes `reduce` (start averaging a
scalar over workers; returns a function that waits for the average) and `workers` (for global
samples/s), and wraps the optimizer itself.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from mvke.fields import LABEL_KEYS
from training.errors import NonFiniteLossError

Batch = Mapping[str, Tensor]
USER_KEY = "user_key"


def _at_once(value: Tensor) -> Callable[[], Tensor]:
    return lambda: value


@dataclass(frozen=True)
class StepLog:
    """One logged training step: global step, epoch, the loss averaged over workers, throughput."""

    step: int
    epoch: int
    loss: float
    samples_per_s: float


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    steps: int
    last_step: int
    samples: int
    loss: float
    seconds: float
    samples_per_s: float
    logs: tuple[StepLog, ...] = field(default=())

    def over(self, seconds: float) -> EpochResult:
        """The same epoch timed over `seconds` of wall time (e.g. with its reader's open and close)."""
        return replace(self, seconds=seconds, samples_per_s=self.samples / max(seconds, 1e-9))


def train_epoch(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
                *, epoch: int, first_step: int = 0, reduce: Callable[[Tensor], Callable[[], Tensor]] = _at_once,
                workers: int = 1, log_every: int = 20, on_log: Callable[[StepLog], None] | None = None) -> EpochResult:
    """One pass over `batches`; raises NonFiniteLossError (naming epoch and step) before a bad update.

    Step numbers are global (`first_step` + steps done). Samples count every worker's batches.
    The loss's reduction runs while the gradients are computed and is waited for before the
    update: a blocking reduction per step cost a quarter of two Horovod ranks' throughput
    (docs/performance.md).
    """
    model.train()
    start = time.perf_counter()
    losses, logs, samples, step = [], [], 0, first_step
    for step, batch in enumerate(batches, start=first_step + 1):
        optimizer.zero_grad()
        loss = loss_fn(model(batch), batch, model.kernels())
        averaged = reduce(loss.detach())
        loss.backward()
        value = float(averaged())
        check_finite(value, epoch=epoch, step=step)
        optimizer.step()
        losses.append(value)
        samples += len(batch[LABEL_KEYS[0]]) * workers
        if (step - first_step) % log_every == 0:
            logs.append(StepLog(step, epoch, float(np.mean(losses[-log_every:])), _rate(samples, start)))
            if on_log is not None:
                on_log(logs[-1])
    seconds = time.perf_counter() - start
    return EpochResult(epoch=epoch, steps=step - first_step, last_step=step, samples=samples,
                       loss=float(np.mean(losses)) if losses else math.nan, seconds=seconds,
                       samples_per_s=_rate(samples, start), logs=tuple(logs))


def check_finite(loss: float, *, epoch: int, step: int) -> None:
    """`epoch` counts from 0; the message counts from 1, as the progress lines do."""
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"training loss is {loss} at epoch {epoch + 1} step {step}; lower train.learning_rate or look for "
            f"extreme feature weights in the input (the model was not saved)"
        )


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[Batch]) -> dict[str, np.ndarray]:
    """Logits of every objective plus the labels and user keys of the same rows, as numpy arrays.

    Keys: `logit_<objective>`, `click`, `conversion`, and `user_key` when the batches carry it.
    """
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        logits = model(batch)
        columns = {f"logit_{o}": v for o, v in logits.items()}
        columns.update({k: batch[k] for k in (*LABEL_KEYS, USER_KEY) if k in batch})
        for key, value in columns.items():
            parts.setdefault(key, []).append(value.detach().cpu().numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


def concat_predictions(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows of several workers' `predict` outputs in one dict (workers with no rows are skipped)."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def logits_of(predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{objective: logits} from a `predict` output."""
    return {k.removeprefix("logit_"): v for k, v in predictions.items() if k.startswith("logit_")}


def _rate(samples: int, start: float) -> float:
    return samples / max(time.perf_counter() - start, 1e-9)
