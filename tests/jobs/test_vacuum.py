import dataclasses
import datetime as dt
import json
import contextlib
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake.transaction import AddAction

from core import delta, registry
from core.config import config_from_dict
from core.tables import Warehouse, warehouse_uri
from jobs import vacuum
from nightly.lock import VACUUM_LOCK, RunInProgressError, date_lock, exclusive, held_locks, shared, train_lock
from training import artifact, leftovers

NIGHT = dt.date(2026, 11, 5)
SCHEMA = pa.schema([("dt", pa.date32()), ("user_id", pa.string()), ("score", pa.float64())])


@pytest.fixture
def world(tmp_path):
    """A published profiles table, and a scoring write in flight: its file written 2 hours ago, not committed."""
    config = config_from_dict({"paths": {"raw": f"{tmp_path}/raw", "warehouse": f"{tmp_path}/wh",
                                         "models": f"{tmp_path}/models"}})
    uri = warehouse_uri(config.paths, Warehouse.USER_TAG_PROFILES)
    delta.write_arrow(pa.table({"dt": [dt.date(2026, 11, 4)], "user_id": ["u0"], "score": [0.1]}, schema=SCHEMA),
                      uri, mode="overwrite", partition_by=["dt"])
    in_flight = f"dt={NIGHT.isoformat()}/part-in-flight.parquet"
    os.makedirs(f"{uri}/dt={NIGHT.isoformat()}")
    pq.write_table(pa.table({"user_id": ["u1"], "score": [0.5]}), f"{uri}/{in_flight}")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(f"{uri}/{in_flight}", (two_hours_ago, two_hours_ago))
    conf = tmp_path / "conf.yaml"
    conf.write_text(json.dumps({"paths": dataclasses.asdict(config.paths)}))  # JSON is YAML
    return config, str(conf), uri, in_flight


def _commit(uri, path):
    add = AddAction(path=path, size=os.path.getsize(f"{uri}/{path}"), partition_values={"dt": NIGHT.isoformat()},
                    modification_time=int(time.time() * 1000), data_change=True,
                    stats=json.dumps({"numRecords": 1}))
    delta.commit(uri, [add], SCHEMA, mode="overwrite", partition_by=["dt"], replace_partitions=[NIGHT.isoformat()])


def test_the_default_vacuum_keeps_a_write_in_flight_which_then_commits_and_reads(world):
    config, conf, uri, in_flight = world
    vacuum.run(config)
    assert os.path.exists(f"{uri}/{in_flight}")
    _commit(uri, in_flight)
    assert sorted(delta.read_arrow(uri).column("user_id").to_pylist()) == ["u0", "u1"]


@pytest.mark.parametrize("hours", [0, 1, 23])
def test_a_window_below_the_floor_is_refused_without_the_override(world, hours, capsys):
    config, conf, uri, in_flight = world
    with pytest.raises(ValueError, match=rf"retention of {hours} h is below the 24 h floor.*--force-retention"):
        vacuum.run(config, retention_hours=hours)
    with pytest.raises(SystemExit) as exit_info:
        vacuum.main(["--conf", conf, "--retention-hours", str(hours)])
    assert exit_info.value.code == 2 and "below the 24 h floor" in capsys.readouterr().err
    assert os.path.exists(f"{uri}/{in_flight}")


def test_locks_on_a_store_are_a_usage_error_before_anything_is_deleted(world, capsys):
    """vacuum must see the runs in progress; with no lock possible there it used to see none."""
    config, conf, uri, in_flight = world
    with pytest.raises(SystemExit) as exit_info:
        vacuum.main(["--conf", conf, "--set", "paths.locks=s3://bucket/locks"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: the run lock needs a filesystem path, not 's3://bucket/locks': set paths.locks to a local or "
        "mounted folder that every driver of this pipeline sees")
    assert os.path.exists(f"{uri}/{in_flight}")


def test_the_override_goes_below_the_floor(world):
    config, conf, uri, in_flight = world
    assert vacuum.run(config, retention_hours=1, dry_run=True).tables == {uri: 1}  # a dry run deletes nothing
    assert os.path.exists(f"{uri}/{in_flight}")
    assert vacuum.run(config, retention_hours=1, force_retention=True).tables == {uri: 1}
    assert not os.path.exists(f"{uri}/{in_flight}")


def test_vacuum_refuses_while_a_nightly_lock_is_held(world, capsys):
    config, conf, uri, in_flight = world
    with exclusive(config.paths, date_lock(NIGHT), "run-scoring"):
        lock_file = f"{config.paths.locks_root}/nightly-{NIGHT.isoformat()}.lock"
        assert list(held_locks(config.paths)) == [lock_file]
        with pytest.raises(RunInProgressError, match=rf"nothing vacuumed: .*{lock_file} is held by run run-scoring"):
            vacuum.run(config, retention_hours=1, force_retention=True)
        assert vacuum.main(["--conf", conf, "--retention-hours", "1", "--force-retention"]) == 3
        assert "[vacuum] nothing vacuumed" in capsys.readouterr().err
        assert os.path.exists(f"{uri}/{in_flight}")
    assert held_locks(config.paths) == {}  # released; the lock file itself stays
    assert os.path.exists(lock_file)
    assert vacuum.run(config).tables == {uri: 0}



def test_vacuum_refuses_while_a_rollback_runs_and_a_dry_run_still_lists(world, capsys):
    """A vacuum works from the versions it read at its start: a rollback's RESTORE committed meanwhile
    makes old files live again, which it would then delete. Every rollback shares the vacuum lock."""
    config, conf, uri, in_flight = world
    lock_file = Path(config.paths.locks_root) / "vacuum.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock_file.write_text(json.dumps({"run_id": "vacuum-killed", "pid": 1, "host": "h", "since": "then"}))  # SIGKILL
    with shared(config.paths, VACUUM_LOCK):
        with pytest.raises(RunInProgressError, match=rf"^nothing vacuumed: another run holds "
                                                     rf"{config.paths.locks_root}/vacuum.lock: a rollback \(it shares "
                                                     rf"this lock\); wait for it"):
            vacuum.run(config, retention_hours=1, force_retention=True)
        assert vacuum.main(["--conf", conf, "--retention-hours", "1", "--force-retention"]) == 3
        assert capsys.readouterr().err.startswith("[vacuum] nothing vacuumed: another run holds ")
        assert os.path.exists(f"{uri}/{in_flight}")
        assert vacuum.run(config, retention_hours=1, dry_run=True).tables == {uri: 1}  # deletes nothing
    assert vacuum.run(config, retention_hours=1, force_retention=True).tables == {uri: 1}
    assert not os.path.exists(f"{uri}/{in_flight}")


def _folder(path, *, hours_old, files=("part",), fresh_file=None):
    """A folder whose files (and itself) were last changed `hours_old` hours ago; `fresh_file` is new."""
    path.mkdir(parents=True)
    then = time.time() - hours_old * 3600
    for name in files:
        (path / name).write_text(name)
        os.utime(path / name, (then, then))
    if fresh_file:
        (path / fresh_file).parent.mkdir(parents=True, exist_ok=True)
        (path / fresh_file).write_text("new")
    os.utime(path, (then, then))
    return path


@pytest.fixture
def training_scratch(world):
    """What dead training runs left under the models root, next to a live run and two model folders."""
    config, conf, uri, in_flight = world
    paths, models = config.paths, Path(config.paths.models)
    old = {  # older than the default 168 h window: deleted
        "staging": _folder(artifact.staging_dir(paths, "mvke-2026-11-01-dead0001"), hours_old=200,
                           files=("model.safetensors",)),
        "checkpoints": _folder(artifact.checkpoint_dir(paths, "mvke-2026-11-01-dead0001") / "checkpoint-0",
                               hours_old=210, files=("state.pt", "meta.json")).parent,
        "petastorm": _folder(Path(paths.petastorm_root) / "20261101000000-appid-local-1764547200000-"
                                                                "0b6f2c1e-6a7d-4c8e-9f10-2a3b4c5d6e7f", hours_old=300,
                             files=("part-0.parquet",)),
        "replaced": _folder(models / ".replaced-mvke-2026-10-30-aaaa0001-0f0f", hours_old=400,
                            files=("model.safetensors", artifact.DONE_FILE)),
    }
    for folder in (*old.values(), Path(paths.petastorm_root), models / "_checkpoints", models / "_staging"):
        then = time.time() - 500 * 3600
        os.utime(folder, (then, then))
    kept = [
        # a run at work: its checkpoint folder is old, the epoch it just wrote is not
        _folder(artifact.checkpoint_dir(paths, "mvke-2026-11-20-live0001"), hours_old=300,
                fresh_file="checkpoint-3/state.pt"),
        _folder(artifact.staging_dir(paths, "mvke-2026-11-20-live0001"), hours_old=2),
        # model folders: one registered, one complete with no row (reported), one incomplete (not a model)
        _folder(models / "mvke-2026-10-01-reg00001", hours_old=900, files=("model.safetensors", artifact.DONE_FILE)),
        _folder(models / "mvke-2026-10-02-norow001", hours_old=600, files=("model.safetensors", artifact.DONE_FILE)),
        _folder(models / "notes", hours_old=900),
        # not named as Petastorm names its copies: not the cache's to delete
        _folder(Path(paths.petastorm_root) / "someone-elses-folder", hours_old=900),
    ]
    registry.register(paths, registry.ModelRecord(
        "mvke-2026-10-01-reg00001", dt.date(2026, 10, 1), registry.ModelStatus.PUBLISHED,
        dt.datetime(2026, 10, 2, tzinfo=dt.timezone.utc), {}, str(models / "mvke-2026-10-01-reg00001")))
    return config, conf, old, kept


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def test_vacuum_deletes_the_scratch_of_dead_training_runs_and_reports_unregistered_models(training_scratch, capsys):
    config, conf, old, kept = training_scratch
    models = Path(config.paths.models)
    before = _tree(models)
    expected_scratch = [(str(old[kind]), kind) for kind in ("replaced", "petastorm", "checkpoints", "staging")]

    dry = vacuum.run(config, dry_run=True)
    assert [(f.path, f.kind) for f in dry.scratch] == expected_scratch  # oldest first
    assert [round(f.age_hours) for f in dry.scratch] == [400, 300, 210, 200]
    assert [(f.path, f.kind) for f in dry.unregistered] == [(str(models / "mvke-2026-10-02-norow001"), "unregistered")]
    assert _tree(models) == before

    done = vacuum.run(config)
    assert [(f.path, f.kind) for f in done.scratch] == expected_scratch
    removed = {str(p.relative_to(models)) for p in old.values()}
    assert _tree(models) == [p for p in before if not any(p == r or p.startswith(r + "/") for r in removed)]
    assert all(folder.exists() for folder in kept)

    assert vacuum.main(["--conf", conf]) == 0
    out = capsys.readouterr().out
    assert "[vacuum] removed:" not in out  # nothing old is left
    assert (f"[vacuum] not removed: {models}/mvke-2026-10-02-norow001 (complete model folder with no registry row "
            f"(kept), 600 h old); rerun the training of its date to register it, or delete it by hand") in out


def test_a_shorter_window_reaches_younger_scratch_and_main_names_each_folder(training_scratch, capsys):
    config, conf, old, kept = training_scratch
    live_staging = kept[1]
    assert vacuum.main(["--conf", conf, "--retention-hours", "1", "--force-retention", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"[vacuum] would be removed: {live_staging} (staging folder of a run that never finished, 2 h old)" in out
    assert live_staging.exists()
    assert f"[vacuum] would be removed: {kept[0]}" not in out  # its newest file is seconds old
    assert vacuum.main(["--conf", conf, "--retention-hours", "1", "--force-retention"]) == 0
    assert not live_staging.exists() and kept[0].exists()


def test_scratch_is_kept_when_a_training_run_starts_while_the_tables_are_vacuumed(training_scratch, monkeypatch,
                                                                                 capsys):
    """A rerun of a night killed long ago takes its version's lock after the vacuum's first check and
    resumes from that version's old checkpoint: the scratch step looks at the locks again."""
    config, conf, old, kept = training_scratch
    models = config.paths.models
    before = _tree(models)
    lock_file = f"{config.paths.locks_root}/train-mvke-2026-11-01-dead0001.lock"
    real_vacuum = delta.vacuum
    with contextlib.ExitStack() as rerun:
        def a_run_starts_meanwhile(uri, **kwargs):
            if not held_locks(config.paths, prefix="train-"):
                rerun.enter_context(exclusive(config.paths, train_lock("mvke-2026-11-01-dead0001"), "rerun-n1"))
            return real_vacuum(uri, **kwargs)

        monkeypatch.setattr(delta, "vacuum", a_run_starts_meanwhile)
        done = vacuum.run(config)
        assert done.scratch == [] and _tree(models) == before
        assert re.fullmatch(rf"a run started while the tables were vacuumed: {re.escape(lock_file)} is held by run "
                            rf"rerun-n1 \(pid {os.getpid()} .*\)", done.scratch_kept), done.scratch_kept
    monkeypatch.undo()
    done = vacuum.run(config)  # the run is over: the next vacuum removes the scratch
    assert [(f.path, f.kind) for f in done.scratch] == [(str(old[kind]), kind)
                                                      for kind in ("replaced", "petastorm", "checkpoints", "staging")]


def test_scratch_that_cannot_be_deleted_is_named_and_the_vacuum_fails(training_scratch, monkeypatch, capsys):
    """rmtree ignored its errors: a folder on a read-only mount was printed as removed, with exit 0."""
    import shutil

    config, conf, old, kept = training_scratch
    stuck, real_rmtree = old["checkpoints"], shutil.rmtree

    def read_only_there(path, *args, **kwargs):
        if str(path) == str(stuck):
            raise PermissionError(13, "Read-only file system", str(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", read_only_there)
    assert vacuum.main(["--conf", conf]) == 1
    captured = capsys.readouterr()
    assert [line for line in captured.out.splitlines() if line.startswith("[vacuum] removed:")] == [
        f"[vacuum] removed: {old[kind]} ({leftovers.KINDS[kind]}, {age} h old)"
        for kind, age in (("replaced", 400), ("petastorm", 300), ("staging", 200))]
    assert captured.err == (f"[vacuum] could not remove {stuck} ({leftovers.KINDS['checkpoints']}, 210 h old): "
                            f"PermissionError: [Errno 13] Read-only file system: '{stuck}'; it may be partly "
                            f"deleted: delete it by hand\n")
    assert stuck.exists() and not any(old[kind].exists() for kind in ("replaced", "petastorm", "staging"))
