"""Test-only fault injection, switched on by environment variables and off by default.

Each hook names the failure it simulates; docs/operations.md lists them. They exist so
the tests can kill real processes at the moments that matter, not mock them.
"""
from __future__ import annotations

import os
import signal

KILL_EXECUTOR_ONCE = "MVKE_FAULT_KILL_EXECUTOR_ONCE"  # a marker path: the first task to see it kills its executor


def maybe_kill_executor() -> None:
    """Kill this task's executor JVM (SIGKILL), once per marker file, as a lost executor would die."""
    marker = os.environ.get(KILL_EXECUTOR_ONCE)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    jvm = _executor_jvm_pid()
    if jvm is not None:
        os.kill(jvm, signal.SIGKILL)
        os._exit(1)


def _executor_jvm_pid() -> int | None:
    """The nearest ancestor process that is a Spark executor JVM (not a driver)."""
    pid = os.getppid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None
        if b"CoarseGrainedExecutorBackend" in cmdline:
            return pid
        pid = parent
    return None
