import multiprocessing
import os
import signal

import pytest

from core.config import ConfigError, Paths
from nightly.lock import RunInProgressError, exclusive, holder, lock_path

NAME = "nightly-2026-11-10"


def _paths(tmp_path, **extra):
    return Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"), **extra)


def test_second_holder_fails_clearly_and_the_lock_is_released(tmp_path):
    paths = _paths(tmp_path)
    with exclusive(paths, NAME, "run-a"):
        assert holder(paths, NAME)["run_id"] == "run-a"
        with pytest.raises(RunInProgressError, match=r"holds .*nightly-2026-11-10.lock: run run-a \(pid \d+ on .* since"):
            with exclusive(paths, NAME, "run-b"):
                pass
        with exclusive(paths, "nightly-2026-11-11", "run-c"):  # another date is independent
            pass
    assert holder(paths, NAME) is None
    with exclusive(paths, NAME, "run-b"):
        assert holder(paths, NAME)["run_id"] == "run-b"


def _hold_and_die(paths: Paths, ready) -> None:
    with exclusive(paths, NAME, "crashed"):
        ready.set()
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs


def test_a_run_killed_while_holding_the_lock_leaves_no_lock(tmp_path):
    paths = _paths(tmp_path)
    ready = multiprocessing.get_context("fork").Event()
    dead = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(paths, ready))
    dead.start()
    dead.join(30)
    assert ready.is_set() and dead.exitcode == -signal.SIGKILL
    assert holder(paths, NAME)["run_id"] == "crashed"  # its note is left, its lock is not
    with exclusive(paths, NAME, "run-new"):
        assert holder(paths, NAME)["run_id"] == "run-new"


def test_the_lock_folder_can_be_set_and_must_be_a_filesystem(tmp_path):
    paths = _paths(tmp_path, locks=f"file://{tmp_path}/locks")
    with exclusive(paths, NAME, "run-a"):
        assert os.path.exists(tmp_path / "locks" / f"{NAME}.lock")
    remote = Paths(raw="s3://b/raw", warehouse="s3://b/wh", models="s3://b/models")
    with pytest.raises(ConfigError, match="set paths.locks"):
        lock_path(remote, NAME)


def test_a_run_that_just_took_the_lock_is_named_once_it_has_written_its_record(tmp_path):
    """Between its flock and writing its record, a new holder's file is empty: a second run
    arriving then waits a moment for the record instead of naming nobody."""
    import fcntl
    import json
    import threading

    paths = _paths(tmp_path)
    path = lock_path(paths, NAME)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, record not written yet
        record = {"run_id": "run-a", "pid": 1, "host": "h", "since": "2026-11-10T03:00:00+00:00"}
        late = threading.Timer(0.3, lambda: os.pwrite(fd, json.dumps(record).encode(), 0))
        late.start()
        with pytest.raises(RunInProgressError) as refused:
            with exclusive(paths, NAME, "run-b"):
                pass
        late.join()
        assert str(refused.value) == (f"another run holds {path}: run run-a (pid 1 on h since "
                                      f"2026-11-10T03:00:00+00:00); wait for it (the lock goes with its process)")
    finally:
        os.close(fd)
