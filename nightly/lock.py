"""One nightly run per date at a time: an exclusive lock on a file under `paths.locks_root`.

Two schedulers starting the same night, or a `rollback --date` during that night's run: the
second fails at once with a message naming the holder. The lock is the kernel's (`flock`) on
a file that is never deleted, so it dies with its process: a crashed run leaves no lock
behind, and there is no stale-lock takeover that two late starters could both win. Nights of
different dates run side by side: the tables they share are read-modify-writes that commit
only on top of the version they read (`core.delta.commit(based_on=...)`).

The lock folder must be a filesystem that every host which may run the night sees (a shared
mount such as NFS; a local folder only when one host runs every night); with the warehouse
on an object store, set `paths.locks`.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from typing import Iterator

from core.config import ConfigError, Paths


class RunInProgressError(RuntimeError):
    """Another run holds the lock for this date."""


TRAIN_LOCK_PREFIX = "train-"


def train_lock(model_version: str) -> str:
    """The lock name of one model version: a training run holds it from its check for a finished
    run of that version to its registration (a nightly and a hand-started run of one date compute
    the same version, and would share its staging, checkpoints and folder)."""
    return f"{TRAIN_LOCK_PREFIX}{model_version}"


def date_lock(date: dt.date) -> str:
    """The lock name of one date: the nightly run and `rollback --date` of that date both take it."""
    return f"nightly-{date.isoformat()}"


def lock_path(paths: Paths, name: str) -> str:
    return f"{check_lock_folder(paths).rstrip('/')}/{name}.lock"


def check_lock_folder(paths: Paths) -> str:
    """The lock folder; a ConfigError when `paths.locks_root` is a store URI (no flock there)."""
    folder = _lock_folder(paths)
    if folder is None:
        raise ConfigError(f"the run lock needs a filesystem path, not {paths.locks_root!r}: set paths.locks to a "
                          f"local or mounted folder that every driver of this pipeline sees")
    return folder


def _lock_folder(paths: Paths) -> str | None:
    """`paths.locks_root` as a filesystem path, or None when it is a store URI (no flock there)."""
    root = paths.locks_root
    if "://" in root and not root.startswith("file://"):
        return None
    return root.removeprefix("file://")


VACUUM_LOCK = "vacuum"
"""Vacuum holds it exclusively, every rollback shares it: a vacuum works from the table versions it
read when it started, so a RESTORE committed meanwhile (which makes files of an old version live
again) would have them deleted under it."""


@contextmanager
def exclusive(paths: Paths, name: str, run_id: str) -> Iterator[None]:
    with _flock(paths, name, fcntl.LOCK_EX) as fd:
        holder = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                  "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: no holder to name


@contextmanager
def shared(paths: Paths, name: str) -> Iterator[None]:
    """Hold `name` shared with other sharers, against an exclusive holder (no holder record is written)."""
    with _flock(paths, name, fcntl.LOCK_SH) as fd:
        os.ftruncate(fd, 0)  # no exclusive holder now: a record left is a killed one's
        yield


@contextmanager
def _flock(paths: Paths, name: str, mode: int) -> Iterator[int]:
    """The lock file's descriptor, holding `mode` (LOCK_EX, LOCK_SH) at once or RunInProgressError."""
    path = lock_path(paths, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            current = _holder_record(path)
            shared_by_rollbacks = mode == fcntl.LOCK_EX and name == VACUUM_LOCK and not current
            who = "a rollback (it shares this lock)" if shared_by_rollbacks else _describe(current)
            raise RunInProgressError(f"another run holds {path}: {who}; wait for it (the lock goes with its "
                                     f"process)") from None
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def holder(paths: Paths, name: str) -> dict | None:
    """Who holds the lock now, as written by the holder (None when free)."""
    return _read(lock_path(paths, name))


def held_locks(paths: Paths, prefix: str = "nightly-") -> dict[str, str]:
    """{lock file: its holder in words} for the locks under `paths.locks_root` whose names start
    with `prefix` and that a live process holds now.

    Changes nothing on disk: each lock file is probed with a shared, non-blocking flock that is
    released at once (a run starting in that instant would fail as if a run held it). A
    ConfigError when `paths.locks_root` is a store URI: no run could hold a lock there, so
    nothing would tell a caller (vacuum, a rollback of the whole table) that one is running.
    """
    folder = check_lock_folder(paths).rstrip("/") or "/"
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".lock"))
    except FileNotFoundError:
        return {}
    held = {}
    for file_name in names:
        path = os.path.join(folder, file_name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held[path] = _describe(_read(path))
        finally:
            os.close(fd)  # releases the probe's lock, if it got one
    return held


def _holder_record(path: str, wait_s: float = 2.0) -> dict | None:
    """The holder's record; a holder that has just taken the lock writes it a moment later, so wait briefly."""
    deadline = time.monotonic() + wait_s
    while True:
        current = _read(path)
        if current or time.monotonic() >= deadline:
            return current
        time.sleep(0.05)


def _read(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _describe(current: dict | None) -> str:
    if not current:
        return "a run that is starting"
    return (f"run {current.get('run_id')} (pid {current.get('pid')} on {current.get('host')} "
            f"since {current.get('since')})")
