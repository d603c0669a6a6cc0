"""Small pieces: batch dtypes, fault-injection parsing, model versions, curves rows, the window."""
import dataclasses
import datetime as dt
import math

import numpy as np
import pytest
import torch

from core.config import ModelConf, TrainConf
from training import artifact, report
from mvke.fields import FieldSpec
from pyspark.sql import functions as F
from training.data import (batch_columns, check_every_shard_has_rows, converter_batches, epoch_batches, epoch_seed,
                           model_columns, petastorm_converters, row_groups, to_model_batch)
from training.errors import EmptyWindowError
from jobs.train import content_digest, inputs_key_of, version_fingerprint
from training.inputs import TrainingInputs, backfill_dates, window_days
from training.worker import FaultInjection, WorkerSpec

from tests.training.toy import FIELDS
from tests.training.warehouse import RUN_DATE, training_config


def test_to_model_batch_stacks_stored_array_parts_with_the_model_dtypes():
    raw = {"history__0": np.array([2, 5], dtype=np.int32), "history__1": np.array([3, 0], dtype=np.int32),
           "history_weights__0": np.array([0.5, 1.0], dtype=np.float32),
           "history_weights__1": np.array([0.25, 0.0], dtype=np.float32),
           "interest": np.array([4, 2], dtype=np.int32), "tag": np.array([2, 3], dtype=np.int32),
           "tag_category": np.array([1, 2], dtype=np.int32), "user_key": np.array([-7, 8], dtype=np.int64),
           "click": np.array([1.0, 0.0], dtype=np.float32), "conversion": np.array([0.0, 0.0], dtype=np.float32)}
    batch = to_model_batch(raw, batch_columns(FIELDS), multi_len=2)
    assert {k: v.dtype for k, v in batch.items()} == {
        "history": torch.int64, "history_weights": torch.float32, "interest": torch.int64, "tag": torch.int64,
        "tag_category": torch.int64, "user_key": torch.int64, "click": torch.float32, "conversion": torch.float32}
    assert batch["history"].tolist() == [[2, 3], [5, 0]]
    assert batch["history_weights"].tolist() == [[0.5, 0.25], [1.0, 0.0]]
    assert batch["user_key"].tolist() == [-7, 8] and batch["tag"].tolist() == [2, 3]


def test_model_columns_store_arrays_as_scalar_columns(spark):
    rows = [("u1", 2, 1, 1, 0, [3, 4], [0.5, 1.0], 5)]
    frame = spark.createDataFrame(rows, "user_id string, tag_index int, category_id int, click int, conversion int, "
                                        "history array<int>, history_weights array<float>, interest int")
    stored = model_columns(frame, FIELDS, multi_len=2)
    assert stored.columns == ["user_key", "history__0", "history__1", "history_weights__0", "history_weights__1",
                              "interest", "tag", "tag_category", "click", "conversion"]
    row = stored.first().asDict()
    expected_key = spark.createDataFrame([("u1",)], "user_id string").select(F.xxhash64("user_id")).first()[0]
    assert row == {"user_key": expected_key, "history__0": 3, "history__1": 4, "history_weights__0": 0.5,
                   "history_weights__1": 1.0, "interest": 5, "tag": 2, "tag_category": 1, "click": 1.0,
                   "conversion": 0.0}
    clash = (FieldSpec("history", "multi", 8), FieldSpec("history__1", "single", 3))
    with pytest.raises(ValueError, match=r"stored column names clash: \['history__1'\]"):
        model_columns(frame.withColumn("history__1", F.lit(1)), clash, multi_len=2)


def _shard_batches(spark, frame, cache, fields) -> list[list[dict]]:
    """Every batch each of 2 ranks reads in two passes, as lists."""
    with petastorm_converters(spark, {"train": frame}, str(cache), partitions=4, seed=3) as converters:
        shards = []
        for rank in (0, 1):
            with converter_batches(converters["train"], fields, multi_len=2, cur_shard=rank, shard_count=2,
                                   batch_size=16, num_epochs=2, shuffle=True, seed=3) as batches:
                shards.append([{k: v.tolist() for k, v in b.items()} for b in batches])
        return shards


def test_shards_and_their_batch_order_do_not_depend_on_the_input_layout(spark, tmp_path):
    """Local and cluster runs partition the examples differently; each rank must still read the same rows
    in the same order, or training is not reproducible across layouts."""
    rng = np.random.default_rng(5)
    rows = [(f"u{i}", int(rng.integers(0, 4)), int(rng.integers(0, 3)), int(rng.integers(0, 2)), 0,
             [int(x) for x in rng.integers(0, 8, 2)], [float(x) for x in rng.random(2)], int(rng.integers(0, 6)))
            for i in range(300)]
    frame = model_columns(spark.createDataFrame(rows, "user_id string, tag_index int, category_id int, click int, "
                                                      "conversion int, history array<int>, "
                                                      "history_weights array<float>, interest int"),
                          FIELDS, multi_len=2)
    one = _shard_batches(spark, frame.coalesce(1), tmp_path / "one", FIELDS)
    seven = _shard_batches(spark, frame.repartition(7), tmp_path / "seven", FIELDS)
    assert one == seven
    # and the shards are a split of the rows: each row once per pass, over both ranks
    keys = sorted(k for shard in one for b in shard for k in b["user_key"])
    expected = sorted(r["user_key"] for r in frame.select("user_key").collect())
    assert keys == sorted(expected * 2)


def test_fault_injection_env_parsing():
    assert FaultInjection.from_env({}) is None
    assert FaultInjection.from_env({"MVKE_FAULT_KILL_RANK": "1:0"}) == FaultInjection(rank=1, epoch=0)
    with pytest.raises(ValueError, match="expected <rank>:<epoch>"):
        FaultInjection.from_env({"MVKE_FAULT_KILL_RANK": "rank1"})


def test_model_version_is_readable_and_deterministic():
    fingerprint = {"tables": {"samples": 3}, "model": {"name": "mvke"}}
    version = artifact.model_version("mvke", dt.date(2026, 11, 12), fingerprint)
    assert version.startswith("mvke-2026-11-12-") and len(version) == len("mvke-2026-11-12-") + 8
    assert version == artifact.model_version("mvke", dt.date(2026, 11, 12), dict(reversed(fingerprint.items())))
    assert version != artifact.model_version("mvke", dt.date(2026, 11, 12), {**fingerprint, "tables": {"samples": 4}})


def test_worker_fingerprint_names_everything_that_shapes_the_training():
    spec = WorkerSpec(model_conf=ModelConf(), fields=FIELDS, num_tags=6, num_categories=3, multi_len=2, epochs=1,
                      steps_per_epoch=4, num_proc=2, batch_size=2, learning_rate=0.1, checkpoint_dir="c",
                      output_dir="o")
    fingerprint = spec.fingerprint()
    assert fingerprint.keys() == {"model_conf", "fields", "num_tags", "num_categories", "num_proc", "steps_per_epoch"}
    assert fingerprint["fields"] == [["history", "multi", 8], ["interest", "single", 6]]
    assert (fingerprint["num_tags"], fingerprint["num_categories"]) == (6, 3)
    assert (fingerprint["num_proc"], fingerprint["steps_per_epoch"]) == (2, 4)
    assert fingerprint["model_conf"]["expert_sets"] == {"ctr": [0, 1, 2], "cvr": [1, 2, 3, 4]}


def test_model_version_changes_with_the_number_of_ranks(tmp_path):
    """num_proc sets the global batch, the steps per epoch and the file split: another model, another name."""
    inputs = TrainingInputs(window=(), versions={"samples": 3, "fields": 1}, fields=FIELDS, num_tags=6,
                            num_categories=3, examples=None)
    names = {num_proc: artifact.model_version("mvke", RUN_DATE,
                                              version_fingerprint(training_config(tmp_path, num_proc=num_proc),
                                                                  RUN_DATE, inputs, "576:12345"))
             for num_proc in (2, 4)}
    assert names[2] != names[4]
    assert names[2] == artifact.model_version("mvke", RUN_DATE, version_fingerprint(training_config(tmp_path),
                                                                                      RUN_DATE, inputs, "576:12345"))
    # other examples, another name; other table versions of the same examples, the same name
    assert names[2] != artifact.model_version("mvke", RUN_DATE, version_fingerprint(training_config(tmp_path),
                                                                                      RUN_DATE, inputs, "576:12346"))
    rewritten = dataclasses.replace(inputs, versions={"samples": 4, "fields": 2})
    assert names[2] == artifact.model_version("mvke", RUN_DATE, version_fingerprint(training_config(tmp_path),
                                                                                      RUN_DATE, rewritten, "576:12345"))


# every train setting: a new value either trains other weights (a new version) or does not
SHAPES_WEIGHTS = {"num_proc": 4, "window_days": 5, "epochs": 4, "batch_size": 64, "learning_rate": 0.02,
                  "validation": "user_split", "validation_user_share": 0.2, "shuffle_buffer": 100, "seed": 3,
                  "reader_workers": 2, "gauc_weighting": "uniform"}  # the last two: batch order, recorded metrics
SAME_WEIGHTS = {"build_missing": True, "publish_if": {"min_auc": 0.9}, "log_every": 7, "resume": False,
                "nics": ["eth1"], "torch_threads": 2}


def test_every_train_setting_is_named_by_the_version_or_cannot_change_the_weights(tmp_path):
    """A setting left out of the fingerprint makes a rerun with a new value (another learning rate)
    'the same version', judged again instead of trained: the old weights would keep serving."""
    assert set(SHAPES_WEIGHTS) | set(SAME_WEIGHTS) == {f.name for f in dataclasses.fields(TrainConf)}
    inputs = TrainingInputs(window=(), versions={"samples": 3}, fields=FIELDS, num_tags=6, num_categories=3,
                            examples=None)

    def version(**train):
        return artifact.model_version("mvke", RUN_DATE, version_fingerprint(training_config(tmp_path, **train),
                                                                             RUN_DATE, inputs, "576:12345"))
    base = version()
    assert {k: version(**{k: v}) != base for k, v in SHAPES_WEIGHTS.items()} == dict.fromkeys(SHAPES_WEIGHTS, True)
    assert {k: version(**{k: v}) == base for k, v in SAME_WEIGHTS.items()} == dict.fromkeys(SAME_WEIGHTS, True)
    config = training_config(tmp_path)
    assert version_fingerprint(config, RUN_DATE, inputs, "576:12345") == {
        "date": "2026-11-05", "model": dataclasses.asdict(config.model),
        "train": {k: getattr(config.train, k) for k in SHAPES_WEIGHTS}, "max_multi_len": 2,
        "fields": [dataclasses.asdict(f) for f in FIELDS], "field_definitions": {}, "num_tags": 6,
        "num_categories": 3, "examples": "576:12345", "code": artifact.code_version()["source_sha256"]}
    other_model = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_dim=32))
    assert artifact.model_version("mvke", RUN_DATE, version_fingerprint(other_model, RUN_DATE, inputs,
                                                                         "576:12345")) != base
    longer = dataclasses.replace(config, features=dataclasses.replace(config.features, max_multi_len=3))
    assert artifact.model_version("mvke", RUN_DATE, version_fingerprint(longer, RUN_DATE, inputs,
                                                                         "576:12345")) != base


def test_the_inputs_key_outlives_a_deploy_that_adds_field_definitions(tmp_path):
    """Keys recorded before the fingerprint had field_definitions must match those computed after it,
    or a night withdrawn before the deploy is published again by its rerun."""
    inputs = TrainingInputs(window=(), versions={"samples": 3, "fields": 1}, fields=FIELDS, num_tags=6,
                            num_categories=3, examples=None, definitions={"interest": "vocabulary interest"})
    now = version_fingerprint(training_config(tmp_path), RUN_DATE, inputs, "576:12345")
    before = {k: v for k, v in now.items() if k != "field_definitions"} | {"code": "an older deploy"}
    assert now["field_definitions"] == {"interest": "vocabulary interest"}
    assert inputs_key_of("mvke", RUN_DATE, now) == inputs_key_of("mvke", RUN_DATE, before)
    assert inputs_key_of("mvke", RUN_DATE, now) != inputs_key_of("mvke", RUN_DATE, {**now, "examples": "576:1"})


def test_model_version_changes_with_the_source_code(tmp_path, monkeypatch):
    """A fix deployed between a killed run and its rerun must not resume the old code's checkpoints."""
    inputs = TrainingInputs(window=(), versions={}, fields=FIELDS, num_tags=6, num_categories=3, examples=None)

    def name():
        return artifact.model_version("mvke", RUN_DATE, version_fingerprint(training_config(tmp_path), RUN_DATE,
                                                                            inputs, "576:12345"))

    before = name()
    root = tmp_path / "checkout"
    for package in artifact.CODE_PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(artifact, "ROOT", root)
    elsewhere = name()
    (root / "mvke" / "m.py").write_text("x = 2\n")
    assert len({before, elsewhere, name()}) == 3


def test_content_digest_depends_on_the_rows_not_their_order_or_partitioning(spark):
    rows = [(i, float(i) / 4, i % 2 == 0) for i in range(40)]
    schema = "a int, b float, flag boolean"
    digest = content_digest(spark.createDataFrame(rows, schema))
    assert digest.startswith("40:")
    assert content_digest(spark.createDataFrame(rows[::-1], schema).repartition(3)) == digest
    changed = rows[:-1] + [(39, 9.75, True)]  # one value of one row
    assert content_digest(spark.createDataFrame(changed, schema)) != digest
    assert content_digest(spark.createDataFrame(rows[:-1], schema)) != digest
    # Spark's hash skips nulls: the same values in other columns (multi-field slots) must still differ
    slots = "a0 int, a1 int, b0 int"
    assert content_digest(spark.createDataFrame([(5, 7, None)], slots)) != \
        content_digest(spark.createDataFrame([(5, None, 7)], slots))


def test_metric_rows_cover_steps_and_epochs():
    history = {"steps": [{"step": 2, "epoch": 0, "loss": 0.7, "samples_per_s": 100.0}],
               "epochs": [{"epoch": 0, "step": 3, "train_loss": 0.69, "samples_per_s": 90.0, "seconds": 1.0,
                           "validation": {"ctr": {"auc": 0.6, "gauc": math.nan, "log_loss": 0.5,
                                                  "calibration": 1.1, "samples": 9.0}}}]}
    rows = report.metric_rows("v1", history).to_pylist()
    assert [(r["step"], r["epoch"], r["split"], r["metric"], r["objective"]) for r in rows] == [
        (2, 0, "train", "loss", "all"), (2, 0, "train", "samples_per_s", "all"),
        (3, 0, "train", "epoch_loss", "all"), (3, 0, "train", "epoch_samples_per_s", "all"),
        (3, 0, "validation", "auc", "ctr"), (3, 0, "validation", "gauc", "ctr"),
        (3, 0, "validation", "log_loss", "ctr"), (3, 0, "validation", "calibration", "ctr")]
    assert [r["value"] for r in rows][:5] == [0.7, 100.0, 0.69, 90.0, 0.6]
    assert all(r["model_version"] == "v1" for r in rows)
    assert report.metric_rows("v1", report.empty_history()).num_rows == 0


def test_window_and_backfill_run_dates():
    assert window_days(dt.date(2026, 11, 10), 3) == (dt.date(2026, 11, 7), dt.date(2026, 11, 8), dt.date(2026, 11, 9))
    # samples of day X come from the run for X + 1, the snapshot of day X from the run for X
    missing = {"samples": [dt.date(2026, 11, 7), dt.date(2026, 11, 8)], "user_features": [dt.date(2026, 11, 8)]}
    assert backfill_dates(missing) == [dt.date(2026, 11, 8), dt.date(2026, 11, 9)]


def test_json_safe_replaces_nan():
    assert artifact.json_safe({"a": [math.nan, 1.0, math.inf], "d": dt.date(2026, 1, 2)}) == {
        "a": [None, 1.0, None], "d": "2026-01-02"}


def _epoch_keys(converter, rank, *, epoch, steps, seed=0) -> list[int]:
    with epoch_batches(converter, FIELDS, multi_len=2, cur_shard=rank, shard_count=2, batch_size=4, steps=steps,
                       seed=seed, epoch=epoch) as batches:
        return [k for b in batches for k in b["user_key"].tolist()]


def _examples(spark, count: int):
    """`count` examples u0.. of FIELDS as batch columns, one user each."""
    rows = [(f"u{i}", 2, 1, i % 2, 0, [3, 4], [0.5, 1.0], 2) for i in range(count)]
    return model_columns(spark.createDataFrame(rows, "user_id string, tag_index int, category_id int, click int, "
                                                     "conversion int, history array<int>, "
                                                     "history_weights array<float>, interest int"),
                         FIELDS, multi_len=2)


def test_epochs_read_a_seeded_new_row_group_order_and_exactly_their_steps(spark, tmp_path):
    """8 files (one row group each), 4 per rank. train.seed=0 used to leave Petastorm unseeded (a new order
    on every run), one long stream repeated the first pass's order every epoch, and a resumed run
    started its epoch at another place of the stream than an uninterrupted one."""
    frame = _examples(spark, 96)
    with petastorm_converters(spark, {"train": frame}, str(tmp_path), partitions=8, seed=3) as converters:
        converter = converters["train"]
        groups = []  # each rank's row groups in file order: its shard, read independently of the order
        for rank in (0, 1):
            with converter_batches(converter, FIELDS, multi_len=2, cur_shard=rank, shard_count=2, batch_size=1,
                                   num_epochs=1) as batches:
                groups.append([b["user_key"].item() for b in batches])
        steps = [-(-len(g) // 4) for g in groups]  # batches of 4 rows covering one pass of each shard
        one_pass = len(groups[0])
        first = _epoch_keys(converter, 0, epoch=0, steps=steps[0])
        assert first == _epoch_keys(converter, 0, epoch=0, steps=steps[0])  # a rerun or a resumed run
        assert sorted(first[:one_pass]) == sorted(groups[0])  # one pass: every row of the shard once
        second = _epoch_keys(converter, 0, epoch=1, steps=steps[0])
        assert sorted(second[:one_pass]) == sorted(groups[0]) and second != first  # the next epoch: another order
        assert _epoch_keys(converter, 0, epoch=0, steps=steps[0], seed=5) != first

        longer = max(steps) + 3  # more steps than the shorter shard holds: it is read again
        for rank in (0, 1):
            keys = _epoch_keys(converter, rank, epoch=0, steps=longer)
            assert len(keys) == longer * 4
            assert_passes_over(keys, groups[rank])


def assert_passes_over(keys: list[int], shard: list[int]) -> None:
    """`keys` is whole passes over `shard`, each every row once, then part of one more (no row twice)."""
    passes = [keys[i:i + len(shard)] for i in range(0, len(keys), len(shard))]
    assert all(sorted(p) == sorted(shard) for p in passes[:-1])
    assert len(set(passes[-1])) == len(passes[-1]) and set(passes[-1]) <= set(shard)


def test_a_shard_of_one_row_group_is_read_in_a_new_row_order_every_epoch(spark, tmp_path):
    """A rank's file under Petastorm's 32 MB row group is one row group: with only the row group
    order shuffled, every epoch (and every pass within one) read the same batches."""
    frame = _examples(spark, 64)
    with petastorm_converters(spark, {"train": frame}, str(tmp_path), partitions=2, seed=3) as converters:
        converter = converters["train"]
        assert row_groups(converter.file_urls) == [1, 1]
        with converter_batches(converter, FIELDS, multi_len=2, cur_shard=0, shard_count=2, batch_size=1,
                               num_epochs=1) as batches:
            shard = [b["user_key"].item() for b in batches]
        steps = 2 * -(-len(shard) // 4)  # two passes over the shard in an epoch
        epochs = [_epoch_keys(converter, 0, epoch=e, steps=steps) for e in (0, 1)]
        for keys in epochs:
            assert_passes_over(keys, shard)
            assert keys[:len(shard)] != keys[len(shard):2 * len(shard)]  # the second pass: another order
        assert epochs[0] != epochs[1]
        assert _epoch_keys(converter, 0, epoch=1, steps=steps) == epochs[1]  # a rerun or a resumed run


def test_epoch_seeds_are_never_zero_and_depend_on_every_part():
    seeds = {(s, e): epoch_seed(s, e) for s in range(3) for e in range(50)}
    assert all(1 <= v < 2**31 for v in seeds.values())
    assert len(set(seeds.values())) == len(seeds)
    assert epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(1, 0)


def test_a_split_whose_rows_miss_a_workers_file_fails_as_an_empty_window(spark, tmp_path):
    """3 rows for 2 workers: their hashes put all 3 into one file, and Petastorm then failed on every rank
    (reported as a worker failure to resume from) instead of the job naming the split."""
    rows = [(f"u{6 + i}", 2, 1, i % 2, 0, [3, 4], [0.5, 1.0], 2) for i in range(3)]
    frame = model_columns(spark.createDataFrame(rows, "user_id string, tag_index int, category_id int, click int, "
                                                      "conversion int, history array<int>, "
                                                      "history_weights array<float>, interest int"),
                          FIELDS, multi_len=2)
    sizes = frame.repartition(2, F.xxhash64(*[F.col(c) for c in frame.columns])).rdd.glom().map(len).collect()
    assert sorted(sizes) == [0, 3]  # the case: one partition holds every row
    cache = tmp_path / "cache"
    with pytest.raises(EmptyWindowError, match=r"the validation split's rows all fell into 1 of 2 files .* 1 of "
                                               r"train.num_proc=2 workers would have no rows"):
        with petastorm_converters(spark, {"validation": frame}, str(cache), partitions=2, seed=0):
            pass
    assert [p for p in cache.iterdir() if p.is_dir()] == []  # the written converter is deleted


def test_every_shard_check_passes_with_a_file_per_worker():
    check_every_shard_has_rows("train", row_groups=[1, 3], partitions=2)
    with pytest.raises(EmptyWindowError, match="rows all fell into 3 of 4 files"):
        check_every_shard_has_rows("train", row_groups=[1, 0, 2, 1], partitions=4)
    with pytest.raises(EmptyWindowError, match="rows all fell into 1 of 2 files"):  # 2 row groups, in one file
        check_every_shard_has_rows("train", row_groups=[2, 0], partitions=2)


def test_each_rank_reads_whole_files_whatever_their_row_groups(spark, tmp_path):
    """Two files of 1,100 rows, each a full row group of 1,000 and a remainder of 100: Petastorm's
    deal of row groups by index gave rank 0 both full groups (2,000 rows) and rank 1 both
    remainders (200), whatever the seed, and both ranks took the same number of steps."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from types import SimpleNamespace

    rows = [(f"u{i}", 2, 1, i % 2, 0, [3, 4], [0.5, 1.0], 2) for i in range(2200)]
    frame = model_columns(spark.createDataFrame(rows, "user_id string, tag_index int, category_id int, click int, "
                                                      "conversion int, history array<int>, "
                                                      "history_weights array<float>, interest int"),
                          FIELDS, multi_len=2)
    table = pa.Table.from_pandas(frame.toPandas(), preserve_index=False)
    urls = []
    for i in range(2):
        path = tmp_path / f"part-{i}.parquet"
        pq.write_table(table.slice(i * 1100, 1100), path, row_group_size=1000)
        assert [pq.ParquetFile(path).metadata.row_group(g).num_rows for g in range(2)] == [1000, 100]
        urls.append(path.as_uri())
    converter = SimpleNamespace(file_urls=urls)
    for rank in (0, 1):
        with converter_batches(converter, FIELDS, multi_len=2, cur_shard=rank, shard_count=2, batch_size=128,
                               num_epochs=1, shuffle=True, seed=11) as batches:
            keys = sorted(k for b in batches for k in b["user_key"].tolist())
        assert keys == sorted(table.column("user_key").to_pylist()[rank * 1100:(rank + 1) * 1100])


@pytest.mark.parametrize("validation, flags, message", [
    ("last_day", [False, False, True],
     r"^the validation split holds 1 samples, fewer than train.num_proc=2 workers; check the samples of the "
     r"window's last day \(its whole validation split\), or lower train.num_proc$"),
    ("user_split", [False, False, True],
     r"^the validation split holds 1 samples, .*; widen train.window_days or raise train.validation_user_share, or "
     r"lower train.num_proc$"),
    ("user_split", [False, True, True],
     r"^the train split holds 1 samples, .*; widen train.window_days or lower train.validation_user_share, or lower "
     r"train.num_proc$"),
])
def test_a_split_with_fewer_samples_than_workers_says_what_adds_to_it(spark, validation, flags, message):
    from jobs.train import split_counts
    from training.inputs import VALIDATION_FLAG

    examples = spark.createDataFrame([(f,) for f in flags], f"{VALIDATION_FLAG} boolean")
    with pytest.raises(EmptyWindowError, match=message):
        split_counts(examples, 2, validation)
    assert split_counts(examples, 1, validation) == {"train": flags.count(False), "validation": flags.count(True)}
