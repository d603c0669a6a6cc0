"""Throughput of the nightly scan: MVKE on Spark vs Spark ML ALS vs torch alone, as markdown tables.

    .venv/bin/python bench/score_throughput.py [--sizes 250000x1000,...] [--torch-sizes ...]
        [--als-sizes 1000000x1000,100000x10000] [--repeats 3] [--big-repeats 1] [--torch-repeats N]
        [--als-repeats N] [--mind-sizes 100000x1000] [--torch-procs N] [--torch-threads N] [--block-size 4096]
        [--job] [--json FILE]

The defaults run the whole grid (users 250k/500k/1M x tags 1k/10k) and take well over half an
hour on a 2-core machine; docs/performance.md lists the commands actually used.

Not a test. Workload: an MVKE model with K=5 experts of E=64 (ctr uses experts 0-2, cvr 1-4, plus
the combined ctr_x_cvr), random weights (the speed does not depend on them), 4 single fields and
one multi field of 8 tags per user; top 10 per user and objective.

- mvke_spark: the job's executor path over Parquet user features, tag matrices broadcast:
  `core.delta.write_files` through `scoring.executor.score_users`, so the profile rows go from
  the scan into Parquet files (deleted after each run) without becoming Spark rows. Everything
  the job does per user but the Delta commit; the files are more than ALS's `noop` sink gets.
  With --job, also the whole `jobs.score.run` (checks, counts, tag_index, Delta commit of every
  profile row) once per tag count at the largest user count.
- torch_alone: the same per-block work (user tower + `scoring.scan.scan_block`, --block-size
  users per block) over in-memory tensors, with the executors' parallelism: --torch-procs worker
  processes (default: as many as Spark's cores), each with --torch-threads torch threads (default
  1, as each scoring worker) and `scoring.memory.keep_freed_memory()`, each over its own share of
  the users. The workers are started ("spawn"), load the model and are warmed up before anything
  is timed; per measurement each builds its users' tensors, then all wait on a barrier, and the
  time runs from its release to the last worker's end. The limit Spark's overhead is measured
  against. --torch-procs 1 runs it in this process instead, as before 2026-11-25 (with
  --torch-threads 0: torch's default threads, one per core).
- als_spark: `ALSModel.recommendForAllUsers(10)` into the `noop` sink, rank 320 (= K*E). The model
  is not trained: random factor matrices are written in ALSModel's on-disk layout and loaded with
  `ALSModel.load` (docs/stack.md). Only at --als-sizes (ALS's cost per user grows with the tags:
  it runs one matrix-vector product per user and block of items); MVKE and torch alone are timed
  there too. Sizes are USERSxTAGS lists; torch alone runs at --torch-sizes.
- mind_torch: torch alone for a MIND model of the same size (E=64, 4 interests from the 8 clicked
  tags, 3 of them used; label-aware attention per user and tag, `mvke.serving.score_block`)
  beside MVKE's torch alone, at --mind-sizes, run the same way (same processes and threads): what
  MVKE's tag-only gate saves in the scan.
Timings are medians over --repeats runs (--big-repeats for users*tags > 2.5e9); the first Spark
scan (Python workers starting, model loading) is a warm-up and is not timed, and so are the
torch workers' start, model loading and a first block of torch_alone (and of mind_torch) in
each of them, and a first ALS recommendation (for up to 20,000 users) when ALS is timed.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from core import delta, registry
from core.config import Config, ModelConf, Paths, ScoreConf, SparkConf
from core.spark import spark_session
from core.tables import Warehouse, warehouse_uri
from features.examples import model_inputs
from mvke.artifact import save_model
from mvke.builder import build_model
from mvke.fields import FieldSpec
from scoring.executor import PROFILE_SCHEMA, ScanTask, block_user_vectors, score_users
from scoring.memory import keep_freed_memory
from scoring.scan import ScanTags, scan_block, scan_plan
from scoring.tag_index import compute_tag_index, probe_sides, scan_tags

EXPERTS, DIM, TOP_N, MULTI_LEN, RANK = 5, 64, 10, 8, 320
MAX_TAGS = 10_000
NUM_TAGS = MAX_TAGS + 2
NUM_CATEGORIES = 32
DATE = dt.date(2026, 11, 12)
FIELDS = (
    FieldSpec("age", "single", 20),
    FieldSpec("city", "single", 1000),
    FieldSpec("clicked_tags", "multi", NUM_TAGS),
    FieldSpec("device", "single", 50),
    FieldSpec("segment", "single", 200),
)
SINGLE_PRIMES = {"age": 7919, "city": 104729, "device": 1299709, "segment": 15485863}


def main() -> None:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="score_bench_"))
    try:
        results = run_bench(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report(results))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250000x1000,500000x1000,1000000x1000,250000x10000,500000x10000,"
                                           "1000000x10000", help="USERSxTAGS,... for mvke_spark")
    parser.add_argument("--torch-sizes", default="250000x1000,1000000x1000,250000x10000,1000000x10000")
    parser.add_argument("--als-sizes", default="1000000x1000,100000x10000")
    parser.add_argument("--mind-sizes", default="", help="USERSxTAGS,... for mind_torch (and torch_alone)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-repeats", type=int, default=1, help="repeats for users*tags > 2.5e9")
    parser.add_argument("--torch-repeats", type=int, help="torch_alone repeats (default: as mvke_spark)")
    parser.add_argument("--als-repeats", type=int, help="als_spark repeats (default: as mvke_spark)")
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--torch-procs", type=int, default=0,
                        help="torch_alone (and mind_torch) processes (0: as many as Spark's cores; 1: in this process)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch threads per torch_alone process (0: 1, or torch's default with --torch-procs 1)")
    parser.add_argument("--job", action="store_true", help="also time jobs.score.run end to end (Delta write)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    for name in ("sizes", "torch_sizes", "als_sizes", "mind_sizes"):
        setattr(args, name, [tuple(int(v) for v in size.split("x")) for size in getattr(args, name).split(",") if size])
    return args


def run_bench(args: argparse.Namespace, root: Path) -> dict:
    spark = spark_session(SparkConf(master="local[*]", app_name="score-bench", driver_memory="8g",
                                    shuffle_partitions=8))
    cores = spark.sparkContext.defaultParallelism
    procs = args.torch_procs or cores
    threads = args.torch_threads or (1 if procs > 1 else torch.get_num_threads())
    if procs == 1:
        torch.set_num_threads(threads)
        keep_freed_memory()  # what the executors' scoring workers do, for torch_alone in this process
    conf = dataclasses.replace(ModelConf(), embedding_dim=DIM, hidden_dim=DIM, num_experts=EXPERTS, seed=1)
    model = build_model(conf, FIELDS, NUM_TAGS, NUM_CATEGORIES).eval()
    model_path = str(root / "models" / "bench")
    save_model(model, conf, FIELDS, NUM_TAGS, NUM_CATEGORIES, model_path)
    plan = scan_plan(model.objectives, output=model.output, temperature=model.temperature, top_n=TOP_N,
                     top_n_per_objective={}, min_score=0.0, combined=True)
    task = ScanTask(model_path=model_path, model_version="bench", date=DATE, plan=plan,
                    block_size=args.block_size, threads=1)
    everything = sorted({*args.sizes, *args.torch_sizes, *args.als_sizes, *args.mind_sizes},
                        key=lambda size: (size[1], size[0]))
    mind = build_model(dataclasses.replace(conf, name="mind"), FIELDS, NUM_TAGS, NUM_CATEGORIES).eval() \
        if args.mind_sizes else None
    model_paths = {"mvke": model_path}
    if mind is not None:
        model_paths["mind"] = str(root / "models" / "mind")
        save_model(mind, dataclasses.replace(conf, name="mind"), FIELDS, NUM_TAGS, NUM_CATEGORIES, model_paths["mind"])
    torch_scans = TorchScans(procs, threads, model_paths, {"mvke": model, "mind": mind}, args.block_size)
    try:
        return _run_bench(args, root, spark, cores, model, conf, mind, plan, task, everything, torch_scans)
    finally:
        torch_scans.close()


def _run_bench(args, root, spark, cores, model, conf, mind, plan, task, everything, torch_scans) -> dict:
    users_paths = write_user_sets(spark, root, [u for u, _ in everything], cores)
    results: dict = {"meta": {"cores": cores, "torch_procs": torch_scans.procs, "torch_threads": torch_scans.threads,
                              "cpu": platform.processor(), "block_size": args.block_size,
                              "load_before": os.getloadavg()},
                     "rows": []}
    smallest = everything[0]
    time_spark_scan(spark, users_paths[smallest[0]], tag_side(model, smallest[1]), task)  # warm-up
    for name, warm in (("mvke", model), ("mind", mind)):  # warm-up: numba's top-N, first torch calls
        if warm is not None:
            torch_scans.time(name, min(smallest[0], args.block_size * torch_scans.procs), tag_side(warm, smallest[1]),
                             plan)
    if args.als_sizes:  # warm-up of ALS in the JVM (100k x 1k in a new session: 8.2 s cold, then 5.5 and 4.6 s)
        als_users, als_tags = min(args.als_sizes, key=lambda size: size[0] * size[1])
        als_path = write_als_model(root / "als_warm_up", min(als_users, 20_000), als_tags, cores)
        time_als(spark, als_path)
        shutil.rmtree(als_path, ignore_errors=True)
    scans, mind_scans = {}, {}
    for num_users, num_tags in everything:
        size = (num_users, num_tags)
        if num_tags not in scans:
            scans[num_tags] = tag_side(model, num_tags)
        scan = scans[num_tags]
        if size in args.mind_sizes and num_tags not in mind_scans:
            mind_scans[num_tags] = tag_side(mind, num_tags)
        reps = args.big_repeats if num_users * num_tags > 2.5e9 else args.repeats
        torch_reps, als_reps = min(reps, args.torch_repeats or reps), min(reps, args.als_repeats or reps)
        row = {"users": num_users, "tags": num_tags, "load": os.getloadavg()[0],
               "repeats": f"{reps}/{torch_reps}/{als_reps}"}
        if size in args.sizes or size in args.als_sizes:
            row["mvke_spark"] = _median(reps, lambda: time_spark_scan(spark, users_paths[num_users], scan, task))
        if size in args.torch_sizes or size in args.als_sizes or size in args.mind_sizes:
            row["torch_alone"] = _median(torch_reps, lambda: torch_scans.time("mvke", num_users, scan, plan))
        if size in args.mind_sizes:
            row["mind_torch"] = _median(torch_reps, lambda: torch_scans.time("mind", num_users, mind_scans[num_tags],
                                                                             plan))
        if size in args.als_sizes:
            als_path = write_als_model(root / f"als_{num_users}_{num_tags}", num_users, num_tags, cores)
            row["als_spark"] = _median(als_reps, lambda: time_als(spark, als_path))
            shutil.rmtree(als_path, ignore_errors=True)
        row["load"] = (row["load"], os.getloadavg()[0])  # 1-minute load average when the size started, ended
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    if args.job:
        largest = max(u for u, _ in everything)
        results["job"] = [time_job(spark, root, model, conf, users_paths[largest], largest, t, args.block_size)
                          for t in sorted({t for _, t in everything})]
    results["meta"]["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    spark.stop()
    return results


def write_user_sets(spark: SparkSession, root: Path, counts: list[int], cores: int) -> dict[int, str]:
    """{user count: path}: one `write_users` set per count, so that every size is spread over all files.

    (Prefixes `n < count` of one set written at the largest count would lie in its first files
    only: at an eighth of the largest count or less, Spark scanned them in one task, on one core.)
    """
    paths = {}
    for count in sorted(set(counts)):
        paths[count] = str(root / f"user_features_{count}")
        write_users(spark, paths[count], count, cores)
    return paths


def write_users(spark: SparkSession, path: str, count: int, cores: int) -> None:
    """user_features-shaped Parquet (dt, user_id, fields) of `count` users."""
    n = F.col("id")
    singles = [((n * p + 3) % (f.vocab_size - 2) + 2).cast("int").alias(f.name)
               for f in FIELDS if f.kind == "single" for p in [SINGLE_PRIMES[f.name]]]
    clicked = F.transform(F.sequence(F.lit(0), F.lit(MULTI_LEN - 1)),
                          lambda i: ((n * 31 + i * 1009) % MAX_TAGS + 2).cast("int"))
    weights = F.transform(F.sequence(F.lit(0), F.lit(MULTI_LEN - 1)), lambda i: F.lit(1.0).cast("float"))
    (spark.range(count, numPartitions=4 * cores)
     .select(F.lit(DATE).alias("dt"), F.format_string("u%08d", n).alias("user_id"), *singles,
             clicked.alias("clicked_tags"), weights.alias("clicked_tags_weights"))
     .write.mode("overwrite").parquet(path))


def tag_side(model, num_tags: int) -> ScanTags:
    ids = np.arange(2, num_tags + 2)
    tags = pa.table({"tag_id": pa.array([f"t{i:05d}" for i in ids]), "tag_index": pa.array(ids, pa.int32()),
                     "category_id": pa.array(2 + ids % (NUM_CATEGORIES - 2), pa.int32())})
    return scan_tags(compute_tag_index(model, "bench", tags), tags, probe_sides(model))


def time_spark_scan(spark: SparkSession, users_path: str, scan: ScanTags, task: ScanTask) -> float:
    users = model_inputs(spark.read.parquet(users_path), FIELDS, MULTI_LEN)
    broadcast = spark.sparkContext.broadcast(scan)
    profiles = delta.ArrowMap(functools.partial(score_users, task=task, tags=broadcast), PROFILE_SCHEMA)
    out = Path(users_path).parent / "profiles"
    start = time.perf_counter()
    delta.write_files(users, str(out), partition_by=["dt"], through=profiles)
    elapsed = time.perf_counter() - start
    broadcast.destroy()
    shutil.rmtree(out)
    return elapsed


def user_tensors(num_users: int, first: int = 0) -> dict[str, torch.Tensor]:
    """The same feature values as `write_users` (users first .. first + num_users - 1), as in-memory tensors."""
    n = torch.arange(first, first + num_users, dtype=torch.int64)
    batch = {f.name: (n * SINGLE_PRIMES[f.name] + 3) % (f.vocab_size - 2) + 2 for f in FIELDS if f.kind == "single"}
    batch["clicked_tags"] = (n[:, None] * 31 + torch.arange(MULTI_LEN)[None, :] * 1009) % MAX_TAGS + 2  # [U, L]
    batch["clicked_tags_weights"] = torch.ones(num_users, MULTI_LEN)
    return batch


def time_torch_scan(model, num_users: int, scan: ScanTags, plan, block_size: int) -> float:
    """Seconds for the per-block work over `num_users` users in this process (--torch-procs 1)."""
    batch = user_tensors(num_users)
    start = time.perf_counter()
    torch_scan(model, batch, scan, plan, block_size)
    return time.perf_counter() - start


def torch_scan(model, batch: dict[str, torch.Tensor], scan: ScanTags, plan, block_size: int) -> None:
    """What a scoring worker computes per block: user tower + `scan_block`, `block_size` users at a time."""
    rows = len(next(iter(batch.values())))
    with torch.inference_mode():
        for first in range(0, rows, block_size):
            block = {k: v[first:first + block_size] for k, v in batch.items()}
            scan_block(block_user_vectors(model, block), model.user_mask(block), scan, plan)


def user_share(num_users: int, rank: int, procs: int) -> tuple[int, int]:
    """(first user, count) of worker `rank` of `procs`: contiguous shares differing by at most one user."""
    first, end = num_users * rank // procs, num_users * (rank + 1) // procs
    return first, end - first


class TorchScans:
    """torch_alone and mind_torch: in this process (procs == 1) or in `procs` worker processes.

    The workers are started once ("spawn": the parent has torch threads and the Spark JVM's
    gateway running, which fork would copy half-way) and load the models before anything is
    timed. `time` sends each worker its share of the users; each builds its tensors, then all
    of them and this process wait on one barrier, and the time runs from its release to the
    last worker's answer: process start, model loading and tensor building are not in it.
    """

    def __init__(self, procs: int, threads: int, model_paths: dict[str, str], models: dict, block_size: int):
        self.procs, self.threads, self.models, self.block_size = procs, threads, models, block_size
        self.workers: list = []
        if procs == 1:
            return
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(procs + 1)
        self.done = context.Queue()
        self.commands = [context.Queue() for _ in range(procs)]
        for rank in range(procs):
            worker = context.Process(target=_torch_worker, daemon=True,
                                     args=(rank, procs, threads, model_paths, block_size, self.commands[rank],
                                           self.barrier, self.done))
            worker.start()
            self.workers.append(worker)
        for _ in range(procs):  # every worker has loaded its models
            self._answer()

    def time(self, name: str, num_users: int, scan: ScanTags, plan) -> float:
        if self.procs == 1:
            return time_torch_scan(self.models[name], num_users, scan, plan, self.block_size)
        for commands in self.commands:
            commands.put((name, num_users, scan, plan))
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:  # a worker failed before its scan
            self._answer()
            raise
        start = time.perf_counter()
        for _ in range(self.procs):
            self._answer()
        return time.perf_counter() - start

    def _answer(self) -> None:
        answer = self.done.get()
        if answer is not None:  # a worker's traceback
            self.close()
            raise RuntimeError(f"torch_alone worker failed:\n{answer}")

    def close(self) -> None:
        for commands, worker in zip(self.commands if self.workers else [], self.workers):
            if worker.is_alive():
                commands.put(None)
        for worker in self.workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
        self.workers = []


def _torch_worker(rank: int, procs: int, threads: int, model_paths: dict[str, str], block_size: int,
                  commands, barrier, done) -> None:
    """One torch_alone process: as a scoring worker (`prepare_worker`), over users `user_share(...)`."""
    import traceback

    from scoring.executor import cached_model, prepare_worker

    try:
        prepare_worker(threads)
        models = {name: cached_model(path) for name, path in model_paths.items()}
    except BaseException:
        done.put(traceback.format_exc())
        return
    done.put(None)
    while (command := commands.get()) is not None:
        name, num_users, scan, plan = command
        try:
            first, count = user_share(num_users, rank, procs)
            batch = user_tensors(count, first)
        except BaseException:
            barrier.abort()
            done.put(traceback.format_exc())
            return
        barrier.wait()
        try:
            torch_scan(models[name], batch, scan, plan, block_size)
        except BaseException:
            done.put(traceback.format_exc())
            return
        done.put(None)


def write_als_model(path: Path, num_users: int, num_tags: int, cores: int) -> str:
    """Random factors of rank RANK in ALSModel's on-disk layout (metadata + userFactors + itemFactors).

    The user factors go to 4 x cores files, as `write_users`: recommendForAllUsers runs one task
    per user-factor partition, and a single file (up to 125,000 users each, as before) left all
    but one core idle at 100k users while mvke_spark used them all.
    """
    (path / "metadata").mkdir(parents=True)
    metadata = {"class": "org.apache.spark.ml.recommendation.ALSModel", "timestamp": int(time.time() * 1000),
                "sparkVersion": "4.0.5", "uid": "ALS_bench", "paramMap": {"blockSize": 4096},
                "defaultParamMap": {"userCol": "user", "itemCol": "item", "coldStartStrategy": "nan",
                                    "predictionCol": "prediction", "blockSize": 4096}, "rank": RANK}
    (path / "metadata" / "part-00000").write_text(json.dumps(metadata) + "\n")
    rng = np.random.default_rng(0)
    for name, count, per_file in (("userFactors", num_users, -(-num_users // (4 * cores))),
                                  ("itemFactors", num_tags, 125_000)):
        (path / name).mkdir()
        for part, first in enumerate(range(0, count, per_file)):
            rows = min(per_file, count - first)
            values = rng.standard_normal((rows, RANK), dtype=np.float32).reshape(-1)
            features = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * RANK), values)
            pq.write_table(pa.table({"id": pa.array(np.arange(first, first + rows, dtype=np.int32)),
                                     "features": features}), path / name / f"part-{part:05d}.parquet")
    return str(path)


def time_als(spark: SparkSession, path: str) -> float:
    from pyspark.ml.recommendation import ALSModel

    recommendations = ALSModel.load(path).recommendForAllUsers(TOP_N)
    start = time.perf_counter()
    recommendations.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def time_job(spark: SparkSession, root: Path, model, conf: ModelConf, users_path: str, num_users: int,
             num_tags: int, block_size: int) -> dict:
    """jobs.score.run end to end on a warehouse holding the bench's users and tags."""
    from jobs.score import run

    home = root / f"job_{num_tags}"
    paths = Paths(raw=str(home / "raw"), warehouse=str(home / "warehouse"), models=str(home / "models"))
    version = "bench"
    save_model(model, conf, FIELDS, NUM_TAGS, NUM_CATEGORIES, registry.model_dir(paths, version))
    registry.register(paths, registry.ModelRecord(version, DATE, registry.ModelStatus.PUBLISHED,
                                                  dt.datetime.now(dt.timezone.utc), {},
                                                  registry.model_dir(paths, version)))
    fields = pa.table({"name": [f.name for f in FIELDS], "kind": [f.kind for f in FIELDS],
                       "encoding": ["vocab"] * len(FIELDS), "source": ["bench"] * len(FIELDS),
                       "vocab_size": pa.array([f.vocab_size for f in FIELDS], pa.int32())})
    delta.write_arrow(fields, warehouse_uri(paths, Warehouse.FIELDS), mode="overwrite")
    ids = np.arange(2, num_tags + 2)
    tags = pa.table({"dt": pa.array([DATE] * num_tags, pa.date32()), "tag_id": [f"t{i:05d}" for i in ids],
                     "tag_index": pa.array(ids, pa.int32()), "tag_name": [f"tag {i}" for i in ids],
                     "category": [f"c{i % 30}" for i in ids],
                     "category_id": pa.array(2 + ids % (NUM_CATEGORIES - 2), pa.int32()),
                     "impressions": pa.array(np.zeros(num_tags, np.int64)),
                     "clicks": pa.array(np.zeros(num_tags, np.int64)),
                     "conversions": pa.array(np.zeros(num_tags, np.int64)),
                     "popularity_rank": pa.array(np.arange(1, num_tags + 1, dtype=np.int32))})
    delta.write_arrow(tags, warehouse_uri(paths, Warehouse.TAGS), mode="overwrite", partition_by=["dt"])
    users = spark.read.parquet(users_path)
    delta.write_table(users, warehouse_uri(paths, Warehouse.USER_FEATURES), mode="overwrite", partition_by=["dt"])
    config = Config(paths=paths, score=ScoreConf(top_n=TOP_N, block_size=block_size))
    start = time.perf_counter()
    summary = run(spark, config, DATE)
    elapsed = time.perf_counter() - start
    print(json.dumps({"job_tags": num_tags, "seconds": elapsed, "rows": summary["rows_written"]}), flush=True)
    return {"users": num_users, "tags": num_tags, "seconds": elapsed, "rows_written": summary["rows_written"]}


def _median(repeats: int, measure) -> float:
    return statistics.median(measure() for _ in range(repeats))


def _cell(value: float | None, fmt: str) -> str:
    return "-" if not value else fmt.format(value)


def report(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"cores: {meta['cores']}, torch_alone: {meta['torch_procs']} process(es) x {meta['torch_threads']} torch "
        f"thread(s), block_size: "
        f"{meta['block_size']}, load average before/after: {meta['load_before'][0]:.1f} / "
        f"{meta['load_after'][0]:.1f}",
        "",
        "| users | tags | runs (mvke/torch/als) | load start-end | mvke_spark s | torch_alone s | als_spark s | "
        "mvke users/s | mvke user-tag pairs/s | spark / torch | als / mvke | mind_torch s | mind / mvke (torch) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        mvke, torch_s, als, mind = r.get("mvke_spark"), r.get("torch_alone"), r.get("als_spark"), r.get("mind_torch")
        cells = [f"{r['users']:,}", f"{r['tags']:,}", str(r["repeats"]), "{:.0f}-{:.0f}".format(*r["load"]),
                 _cell(mvke, "{:.1f}"), _cell(torch_s, "{:.1f}"), _cell(als, "{:.1f}"),
                 _cell(mvke and r["users"] / mvke, "{:,.0f}"), _cell(mvke and r["users"] * r["tags"] / mvke, "{:.3g}"),
                 _cell(mvke and torch_s and mvke / torch_s, "{:.2f}"), _cell(mvke and als and als / mvke, "{:.2f}"),
                 _cell(mind, "{:.1f}"), _cell(mind and torch_s and mind / torch_s, "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    for job in results.get("job", []):
        lines.append(f"\nwhole job (jobs.score.run, Delta write of {job['rows_written']:,} rows), "
                     f"{job['users']:,} users x {job['tags']:,} tags: {job['seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
