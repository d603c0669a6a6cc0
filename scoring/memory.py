"""Keep the scan's freed memory in the process, so that every block does not page-fault it back in.

A scan block allocates and frees the same large buffers over and over: the user tower's
intermediates, then per slice of users a few [rows, T] float32 score matrices of about 8 MB.
glibc's malloc serves blocks over its mmap threshold (128 KiB at start, moved up to at most 32 MiB
by what was freed before) with fresh `mmap`s and gives the top of its heap back to the system
past a trim threshold (twice the mmap threshold). Either way the next block touches new pages,
one minor page fault per 4 KiB. Measured 2026-11-24 on one thread (bench/score_throughput.py's
model, 4,096-user blocks, 1k tags): the scan took 13.3-14.1 us per user and the tower 6.7-6.9 us,
against 11.8-12.3 and 5.6-5.9 us with the thresholds below; the sigmoids of ctr_x_cvr alone went
from 3.7 to 0.5 us. The cost: a scoring worker keeps up to TRIM_THRESHOLD of freed memory for
reuse instead of returning it to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Allocations up to 32 MiB (the most any 64-bit glibc accepts) come from the heap: a score slice
# is about 8 MB, a block's user vectors 5 MB. Up to 256 MiB of free heap top stays with the process.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Set this process's malloc thresholds (once); False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    applied = [libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD), libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    return all(applied)
