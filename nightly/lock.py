"""One nightly run per date at a time: an exclusive lock file beside the warehouse.

Two schedulers starting the same night: the second fails at once with a message naming
the holder. A lock left by a dead process on this host is taken over. Delta's optimistic
concurrency stays the safety net underneath: even without the lock, two commits that
race on the same partition cannot both land silently.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
from contextlib import contextmanager
from typing import Iterator

from core.config import Paths


class RunInProgressError(RuntimeError):
    """Another run holds the lock for this date."""


def lock_path(paths: Paths, name: str) -> str:
    return f"{paths.warehouse.rstrip('/')}/_locks/{name}.lock"


@contextmanager
def exclusive(paths: Paths, name: str, run_id: str) -> Iterator[None]:
    path = lock_path(paths, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _acquire(path, run_id)
    try:
        yield
    finally:
        os.unlink(path)


def _acquire(path: str, run_id: str) -> None:
    holder = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
              "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = _read(path)
            if current and _alive(current):
                raise RunInProgressError(
                    f"another run holds {path}: run {current.get('run_id')} (pid {current.get('pid')} on "
                    f"{current.get('host')} since {current.get('since')}); wait for it or, if it is dead on "
                    f"another host, remove the lock file") from None
            os.unlink(path)  # left by a dead process on this host
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        return
    raise RunInProgressError(f"could not take {path}: another run keeps taking it")


def _read(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell for another host: assume it is alive
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True
