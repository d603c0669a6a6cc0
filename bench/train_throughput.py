"""Training samples/s through Spark + Petastorm + Horovod against a plain in-memory loop (the limit).

    .venv/bin/python bench/train_throughput.py [--rows 20480] [--batch-size 512] [--epochs 4] [--repeats 5]
                                               [--procs 1,2] [--threads 1] [--shuffle-buffer 0]
                                               [--reader-workers 1]

One synthetic example set (the field set of bench/model_throughput.py: 8 single fields, 3 multi
fields of length 16; MVKE with the default ModelConf) is trained with the same model, batch size
per process and torch threads per process, three ways:
- limit: `training.loop.train_epoch` over a list of in-memory dict batches, one plain process
  (started in its own session, like every Horovod rank: see `limit_run`);
- pipeline, num_proc N: the job's own path: the examples as a Spark DataFrame ->
  `training.data.model_columns` -> Petastorm converter -> `training.worker.train_worker` under
  `horovod.spark.run` on a local[2] session, each rank reading its shard;
- horovod in-memory, num_proc N: the same Horovod set-up (DistributedOptimizer, the loss averaged
  over ranks every step) on in-memory batches of the rank's share: what N ranks cost without
  the data path, so that pipeline / horovod-in-memory isolates Spark + Petastorm.
Samples/s is each run's own per-epoch figure (all ranks' samples over the epoch's wall time,
data loading included, for the job's path from the opening of the epoch's Petastorm reader to
its closing; validation and checkpoints excluded). The first
epoch of every run is warm-up and skipped; each figure is the median over repetitions of the
median steady epoch; the paths take turns within each repetition.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.config import ModelConf, SparkConf
from mvke import ProfileLoss, build_model
from mvke.fields import FieldSpec
from training.data import model_columns, petastorm_converters
from training.loop import train_epoch
from training.worker import WorkerSpec, average_over_ranks, launch

NUM_TAGS, NUM_CATEGORIES, MULTI_LEN = 1000, 30, 16
FIELDS = (
    FieldSpec("activity_bucket", "single", 30), FieldSpec("age_bucket", "single", 20),
    FieldSpec("city", "single", 1000), FieldSpec("clicked_categories", "multi", NUM_CATEGORIES),
    FieldSpec("clicked_tags", "multi", NUM_TAGS), FieldSpec("converted_tags", "multi", NUM_TAGS),
    FieldSpec("ctr_bucket", "single", 30), FieldSpec("device", "single", 50), FieldSpec("gender", "single", 20),
    FieldSpec("os", "single", 20), FieldSpec("segment", "single", 200),
)


def examples(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Columns of `rows` random examples following the input contract (numpy, model dtypes)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for f in FIELDS:
        if f.kind == "single":
            columns[f.name] = rng.integers(0, f.vocab_size, rows, dtype=np.int64)
            continue
        present = np.arange(MULTI_LEN)[None, :] < rng.integers(0, MULTI_LEN + 1, rows)[:, None]
        columns[f.name] = np.where(present, rng.integers(2, f.vocab_size, (rows, MULTI_LEN)), 0).astype(np.int64)
        columns[f.name + "_weights"] = present.astype(np.float32)
    columns["tag"] = rng.integers(2, NUM_TAGS, rows, dtype=np.int64)
    columns["tag_category"] = rng.integers(2, NUM_CATEGORIES, rows, dtype=np.int64)
    columns["user_key"] = rng.integers(0, rows // 4, rows, dtype=np.int64)
    columns["click"] = (rng.random(rows) < 0.3).astype(np.float32)
    columns["conversion"] = columns["click"] * (rng.random(rows) < 0.3).astype(np.float32)
    return columns


def in_memory_batches(columns: dict[str, np.ndarray], batch_size: int, rank: int = 0, size: int = 1) -> list[dict]:
    """Rank `rank`'s share (every size-th batch) as a list of dict batches of tensors."""
    tensors = {k: torch.from_numpy(v) for k, v in columns.items()}
    rows = len(columns["click"])
    starts = range(rank * batch_size, rows, batch_size * size)
    return [{k: v[i:i + batch_size] for k, v in tensors.items()} for i in starts]


def examples_frame(spark, columns: dict[str, np.ndarray]):
    """The examples as the job has them (training_examples' columns), then the job's model_columns."""
    from pyspark.sql import functions as F

    renamed = {"tag": "tag_index", "tag_category": "category_id"}
    data = {renamed.get(k, k): (v.astype(np.int32) if v.dtype == np.int64 and k != "user_key" else v)
            for k, v in columns.items()}
    data = {k: (list(v) if v.ndim == 2 else v) for k, v in data.items()}
    data["user_id"] = data.pop("user_key").astype(str)
    frame = spark.createDataFrame(pd.DataFrame(data))
    for name in ("click", "conversion"):
        frame = frame.withColumn(name, F.col(name).cast("int"))
    return model_columns(frame, FIELDS, MULTI_LEN)


def _model():
    conf = ModelConf()
    model = build_model(conf, FIELDS, NUM_TAGS, NUM_CATEGORIES)
    return model, ProfileLoss.from_conf(conf), torch.optim.Adam(model.parameters(), lr=0.01)


def limit_rate(rows: int, batch_size: int, epochs: int) -> float:
    """Median steady-epoch samples/s of the plain loop over in-memory batches."""
    batches = in_memory_batches(examples(rows, seed=1), batch_size)
    model, loss_fn, optimizer = _model()
    rates = [train_epoch(model, loss_fn, optimizer, batches, epoch=e).samples_per_s for e in range(epochs)]
    return statistics.median(rates[1:])


def limit_run(args) -> float:
    """`limit_rate` in a child process in its own session, as Horovod starts its ranks (os.setsid).

    With the kernel's autogroup scheduling (on here) CPU is shared per session: a loop in this
    process would compete inside this session while every rank gets a session of its own.
    """
    command = [sys.executable, __file__, "--limit-only", "--rows", str(args.rows), "--batch-size",
               str(args.batch_size), "--epochs", str(args.epochs), "--threads", str(args.threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, start_new_session=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    return float(done.stdout.strip().splitlines()[-1])


def horovod_in_memory_worker(rows: int, batch_size: int, epochs: int, threads: int) -> float:
    """One rank of the Horovod reference: the job's Horovod set-up on in-memory batches."""
    import horovod.torch as hvd

    hvd.init()  # Horovod:
    torch.set_num_threads(threads)
    batches = in_memory_batches(examples(rows, seed=1), batch_size, hvd.rank(), hvd.size())  # Horovod: my share
    model, loss_fn, optimizer = _model()
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())  # Horovod:
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)  # Horovod:
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)  # Horovod:
    steps = min(hvd.allgather_object(len(batches), name="steps"))  # Horovod: equal steps on every rank
    rates = [train_epoch(model, loss_fn, optimizer, batches[:steps], epoch=e, workers=hvd.size(),
                         reduce=average_over_ranks(hvd)).samples_per_s  # Horovod:
             for e in range(epochs)]
    return statistics.median(rates[1:])


def horovod_in_memory_run(num_proc: int, args) -> float:
    import horovod.spark

    results = horovod.spark.run(horovod_in_memory_worker, args=(args.rows, args.batch_size, args.epochs, args.threads),
                                num_proc=num_proc, nics={"lo"}, verbose=0)
    return results[0]


def pipeline_run(converters: dict, num_proc: int, args, work: Path, rep: int) -> float:
    """Median steady-epoch samples/s of the job's Horovod workers reading Petastorm shards."""
    spec = WorkerSpec(
        model_conf=ModelConf(), fields=FIELDS, num_tags=NUM_TAGS, num_categories=NUM_CATEGORIES,
        multi_len=MULTI_LEN, epochs=args.epochs, steps_per_epoch=-(-args.rows // (args.batch_size * num_proc)),
        num_proc=num_proc,
        batch_size=args.batch_size, learning_rate=0.01, checkpoint_dir=str(work / f"ckpt-{num_proc}-{rep}"),
        output_dir=str(work / f"out-{num_proc}-{rep}"), resume=False, shuffle_buffer=args.shuffle_buffer,
        reader_workers=args.reader_workers, log_every=10_000, torch_threads=args.threads,
    )
    result = launch(spec, converters["train"], converters["validation"], num_proc, ("lo",))
    rates = [e["samples_per_s"] for e in result["history"]["epochs"]]
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20480)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process, every path")
    parser.add_argument("--shuffle-buffer", type=int, default=0)
    parser.add_argument("--reader-workers", type=int, default=1,
                        help="Petastorm reader threads per rank (default: the job's train.reader_workers)")
    parser.add_argument("--limit-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    torch.set_num_threads(args.threads)
    if args.limit_only:
        print(limit_rate(args.rows, args.batch_size, args.epochs))
        return
    from core.spark import spark_session

    spark = spark_session(SparkConf(master="local[2]", shuffle_partitions=2, app_name="bench-train"))
    columns = examples(args.rows, seed=1)
    figures: dict[tuple[str, int], list[float]] = {("limit", 1): []}
    for n in procs:
        figures.update({("horovod", n): [], ("pipeline", n): []})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = {"train": examples_frame(spark, columns), "validation": examples_frame(spark, examples(2048, seed=2))}
        with petastorm_converters(spark, frames, str(work / "petastorm"), max(procs) * 2) as converters:
            for rep in range(args.repeats):
                figures[("limit", 1)].append(limit_run(args))
                for n in procs:
                    figures[("horovod", n)].append(horovod_in_memory_run(n, args))
                    figures[("pipeline", n)].append(pipeline_run(converters, n, args, work, rep))
                print(f"repetition {rep + 1}: " + ", ".join(f"{k[0]}-{k[1]} {v[-1]:,.0f}" for k, v in figures.items()),
                      flush=True)
    spark.stop()
    report(figures, args)


LABELS = {"limit": "plain loop, in-memory batches (the limit)", "horovod": "Horovod, in-memory batches",
          "pipeline": "Spark + Petastorm + Horovod (the job's path)"}


def report(figures: dict[tuple[str, int], list[float]], args) -> None:
    limit = statistics.median(figures[("limit", 1)])
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}; rows {args.rows}, batch {args.batch_size} per process, epochs {args.epochs} "
          f"(first skipped), {args.repeats} repetitions, {args.threads} torch thread(s) per process, "
          f"shuffle buffer {args.shuffle_buffer}, reader workers {args.reader_workers}\n")
    print("| path | processes | samples/s (median) | repetitions | vs limit | vs Horovod in-memory |")
    print("|---|---:|---:|---|---:|---:|")
    for (path, n), values in figures.items():
        median = statistics.median(values)
        reference = statistics.median(figures[("horovod", n)]) if path == "pipeline" else None
        versus = f"{median / reference:.2f}x" if reference else ""
        print(f"| {LABELS[path]} | {n} | {median:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} | "
              f"{median / limit:.2f}x | {versus} |")


if __name__ == "__main__":
    main()
