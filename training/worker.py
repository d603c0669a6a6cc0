"""The Horovod boundary: `train_worker` runs in every rank; `launch` starts it from the driver.

`train_worker(spec, train_data, validation_data)` is a module-level function with explicit
inputs (a `WorkerSpec` of plain values and two Petastorm converters); torch and horovod are
imported inside it and every distributed-only line carries a `# Horovod:` comment. Only rank 0
writes (checkpoints, the model weights). Failures the loop detects (a non-finite loss, a
checkpoint for another model) are seen by every rank at the same point and come back as an
error entry, which `launch` raises on the driver with its own message.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from core.config import ModelConf
from training import errors
from training.checkpoint import CheckpointDamagedError, CheckpointMismatchError

if TYPE_CHECKING:
    from mvke.fields import FieldSpec

FAULT_ENV = "MVKE_FAULT_KILL_RANK"


@dataclass(frozen=True)
class FaultInjection:
    """TEST ONLY: rank `rank` SIGKILLs itself right after the checkpoint of epoch `epoch` (0-based)."""

    rank: int
    epoch: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FaultInjection | None:
        """Parse `MVKE_FAULT_KILL_RANK=<rank>:<epoch>`; None when unset."""
        value = environ.get(FAULT_ENV, "").strip()
        if not value:
            return None
        rank, sep, epoch = value.partition(":")
        if not sep or not rank.isdigit() or not epoch.isdigit():
            raise ValueError(f"{FAULT_ENV}={value!r}: expected <rank>:<epoch>, e.g. 1:0")
        return cls(int(rank), int(epoch))


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a rank needs, as plain values."""

    model_conf: ModelConf
    fields: tuple[FieldSpec, ...]
    num_tags: int
    num_categories: int
    multi_len: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    learning_rate: float
    checkpoint_dir: str
    output_dir: str
    num_proc: int  # the ranks this spec is launched on
    resume: bool = True
    shuffle_buffer: int = 0
    reader_workers: int = 1
    seed: int = 0
    log_every: int = 20
    gauc_weighting: str = "impressions"
    torch_threads: int = 0
    fault: FaultInjection | None = None
    probe_rows: int = 32

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must have been trained for to be resumed (JSON-able).

        The rank count and the steps per epoch are in it: they set the global batch and which
        rows each step sees, so a checkpoint written under others continues another training.
        """
        return {"model_conf": _json_conf(self.model_conf), "fields": [list(asdict(f).values()) for f in self.fields],
                "num_tags": self.num_tags, "num_categories": self.num_categories, "num_proc": self.num_proc,
                "steps_per_epoch": self.steps_per_epoch}


def train_worker(spec: WorkerSpec, train_data: Any, validation_data: Any) -> dict[str, Any]:
    """One rank: build, restore or broadcast the initial state, train `spec.epochs`, rank 0 saves."""
    import horovod.torch as hvd
    import torch

    hvd.init()  # Horovod: join the job
    torch.set_num_threads(spec.torch_threads or max(1, (os.cpu_count() or 1) // hvd.local_size()))  # Horovod:
    model, loss_fn, optimizer = _build(spec)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())  # Horovod:
    start = _restore(spec, model, optimizer) if hvd.rank() == 0 else None
    start = hvd.broadcast_object(start, root_rank=0, name="resume_point")  # Horovod: rank 0's for all
    if start["error"]:
        return {"rank": hvd.rank(), "error": start["error"]}
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)  # Horovod: same initial weights
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)  # Horovod: same optimizer state
    try:
        history = _train_epochs(spec, model, loss_fn, optimizer, train_data, validation_data, start, hvd)
    except errors.TrainingError as exc:
        return {"rank": hvd.rank(), "error": _error(exc)}
    result = {"rank": hvd.rank(), "error": None, "start_epoch": start["epoch"]}
    if hvd.rank() == 0:
        result.update(history=history, probe=_finish(spec, model, validation_data, hvd))
    return result


def _build(spec: WorkerSpec):
    import torch

    from mvke import ProfileLoss, build_model

    model = build_model(spec.model_conf, spec.fields, spec.num_tags, spec.num_categories)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    return model, ProfileLoss.from_conf(spec.model_conf), optimizer


def _restore(spec: WorkerSpec, model, optimizer) -> dict[str, Any]:
    """Rank 0: the epoch to start at and the history so far, from the last checkpoint if resuming."""
    from training.checkpoint import latest_epoch, load_checkpoint
    from training.report import empty_history

    last = latest_epoch(spec.checkpoint_dir) if spec.resume else None
    if last is None:
        return {"epoch": 0, "history": empty_history(), "error": None}
    try:
        checkpoint = load_checkpoint(spec.checkpoint_dir, last, spec.fingerprint())
    except (CheckpointMismatchError, CheckpointDamagedError) as exc:  # changed since the driver's check
        return {"epoch": 0, "history": empty_history(), "error": _error(exc)}
    model.load_state_dict(checkpoint.model_state)
    optimizer.load_state_dict(checkpoint.optimizer_state)
    print(f"[train] resumed from checkpoint-{last}: starting at epoch {last + 1}", flush=True)
    return {"epoch": last + 1, "history": checkpoint.history, "error": None}


def _train_epochs(spec: WorkerSpec, model, loss_fn, optimizer, train_data, validation_data,
                  start: dict, hvd) -> dict:
    from training.checkpoint import save_checkpoint
    from training.data import epoch_batches
    from training.loop import train_epoch

    history = start["history"]
    for epoch in range(start["epoch"], spec.epochs):
        opened = time.perf_counter()
        with epoch_batches(train_data, spec.fields, multi_len=spec.multi_len, batch_size=spec.batch_size,
                           cur_shard=hvd.rank(), shard_count=hvd.size(),  # Horovod: this rank's shard
                           steps=spec.steps_per_epoch, seed=spec.seed, epoch=epoch,
                           shuffle_buffer=spec.shuffle_buffer, workers=spec.reader_workers) as batches:
            result = train_epoch(model, loss_fn, optimizer, batches, epoch=epoch,
                                 first_step=epoch * spec.steps_per_epoch,
                                 reduce=average_over_ranks(hvd),  # Horovod: mean over ranks
                                 workers=hvd.size(), log_every=spec.log_every,  # Horovod: global samples/s
                                 on_log=_progress(spec, hvd.rank()))
        result = result.over(time.perf_counter() - opened)  # the reader's open and close are data path too
        validation = _validate(spec, model, validation_data, hvd)
        _record(history, result, validation, hvd.rank())
        if hvd.rank() == 0:
            save_checkpoint(spec.checkpoint_dir, epoch, model.state_dict(), optimizer.state_dict(),
                            spec.fingerprint(), history)
        hvd.barrier()  # Horovod: the checkpoint is on disk before any rank goes on
        _inject_fault(spec.fault, hvd.rank(), epoch)
    return history


def average_over_ranks(hvd):
    """`train_epoch`'s reduce for Horovod: start averaging a scalar over ranks; a function waits for it.

    Started before backward, the loss's allreduce goes out with the gradients' instead of
    costing a round trip of its own every step.
    """
    def start(value):
        handle = hvd.allreduce_async(value, op=hvd.Average, name="train_loss")  # Horovod:
        return lambda: hvd.synchronize(handle)  # Horovod:
    return start


def _validate(spec: WorkerSpec, model, validation_data, hvd) -> dict:
    from training.data import converter_batches
    from training.loop import concat_predictions, logits_of, predict
    from training.metrics import objective_metrics

    with converter_batches(validation_data, spec.fields, multi_len=spec.multi_len, batch_size=spec.batch_size,
                           cur_shard=hvd.rank(), shard_count=hvd.size(),  # Horovod: this rank's shard
                           num_epochs=1, workers=spec.reader_workers) as batches:
        local = predict(model, batches)
    rows = concat_predictions(hvd.allgather_object(local, name="validation_rows"))  # Horovod: all ranks' rows
    return objective_metrics(logits_of(rows), rows["click"], rows["conversion"], rows["user_key"],
                             cvr_mode=spec.model_conf.cvr_mode, weighting=spec.gauc_weighting)


def _record(history: dict, result, validation: dict, rank: int) -> None:
    history["steps"] += [{"step": s.step, "epoch": s.epoch, "loss": s.loss, "samples_per_s": s.samples_per_s}
                         for s in result.logs]
    history["epochs"].append({"epoch": result.epoch, "step": result.last_step,
                              "train_loss": result.loss, "samples_per_s": result.samples_per_s,
                              "seconds": result.seconds, "validation": validation})
    if rank == 0:
        summary = ", ".join(f"{o} auc {m['auc']:.4f} gauc {m['gauc']:.4f}" for o, m in validation.items())
        print(f"[train] epoch {result.epoch + 1} done: loss {result.loss:.4f}, "
              f"{result.samples_per_s:,.0f} samples/s, validation {summary}", flush=True)


def _progress(spec: WorkerSpec, rank: int):
    def show(log) -> None:
        if rank == 0:
            print(f"[train] epoch {log.epoch + 1}/{spec.epochs} step {log.step} loss {log.loss:.4f} "
                  f"{log.samples_per_s:,.0f} samples/s", flush=True)
    return show


def _inject_fault(fault: FaultInjection | None, rank: int, epoch: int) -> None:
    if fault is not None and fault.rank == rank and fault.epoch == epoch:
        print(f"[train] {FAULT_ENV}: rank {rank} kills itself after epoch {epoch}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def _finish(spec: WorkerSpec, model, validation_data, hvd) -> dict[str, Any]:
    """Rank 0: save the weights and the logits of one batch of its validation shard (the probe)."""
    import torch

    from mvke import save_model
    from training.data import converter_batches

    save_model(model, spec.model_conf, spec.fields, spec.num_tags, spec.num_categories, spec.output_dir)
    with converter_batches(validation_data, spec.fields, multi_len=spec.multi_len, batch_size=spec.probe_rows,
                           cur_shard=hvd.rank(), shard_count=hvd.size(),  # Horovod: this rank's shard
                           num_epochs=1) as batches:
        batch = next(iter(batches))
    with torch.no_grad():
        logits = model.eval()(batch)
    return {"batch": {k: v.numpy() for k, v in batch.items()}, "logits": {o: v.numpy() for o, v in logits.items()}}


def _error(exc: Exception) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def _json_conf(conf: ModelConf) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(asdict(conf)))


ERROR_TYPES = {cls.__name__: cls for cls in (errors.NonFiniteLossError, CheckpointMismatchError,
                                             CheckpointDamagedError, errors.VocabularyMismatchError,
                                             errors.TrainingError)}


def rerun_advice(checkpoint_dir: str, resume: bool) -> str:
    """What a rerun of the failed command does with the checkpoints a failed run left."""
    from training.checkpoint import latest_epoch

    last = latest_epoch(checkpoint_dir)
    if last is None:
        return f"no epoch was checkpointed under {checkpoint_dir}: a rerun starts from the first epoch"
    if resume:
        return f"checkpoints under {checkpoint_dir} are kept (up to epoch {last + 1}): rerun the same command to resume"
    return (f"checkpoints under {checkpoint_dir} are kept (up to epoch {last + 1}), but train.resume=false starts "
            f"the same command from scratch: rerun with --set train.resume=true to resume")


def launch(spec: WorkerSpec, train_data: Any, validation_data: Any, num_proc: int,
           nics: tuple[str, ...]) -> dict[str, Any]:
    """Run `train_worker` on `num_proc` Spark tasks; rank 0's result, or the workers' failure raised.

    `nics` pins the interfaces gloo uses (Horovod otherwise takes an arbitrary one of the common
    interfaces, which can be one the ranks cannot reach each other on).
    """
    import horovod.spark

    env = {**os.environ, "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::FutureWarning")}
    try:
        results = horovod.spark.run(train_worker, args=(spec, train_data, validation_data), num_proc=num_proc,
                                    env=env, nics=set(nics) or None, verbose=0)
    except Exception as exc:  # horovod raises RuntimeError, Spark its own errors
        raise errors.WorkerFailedError(
            f"a training worker failed or was killed ({type(exc).__name__}: {' '.join(str(exc).split())[:500]}); "
            + rerun_advice(spec.checkpoint_dir, spec.resume)) from exc
    failed = [r["error"] for r in results if r["error"]]
    if failed:
        raise ERROR_TYPES.get(failed[0]["type"], errors.TrainingError)(failed[0]["message"])
    return next(r for r in results if r["rank"] == 0)
