"""keep_freed_memory: blocks of 16 MiB come from the heap and stay there once freed.

Each case runs in a fresh interpreter (malloc's settings are per process and cannot be undone),
reading glibc's own counters (mallinfo2) around ten malloc/free pairs of 16 MiB.
"""
from __future__ import annotations

import ctypes.util
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 16 << 20
CHUNKS = 10

PROBE = f"""
import ctypes, ctypes.util, json, sys
sys.path.insert(0, {str(ROOT)!r})
from scoring.memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
start = libc.mallinfo2()
pointers = [libc.malloc({CHUNK}) for _ in range({CHUNKS})]
held = libc.mallinfo2()
for pointer in pointers:
    libc.free(pointer)
freed = libc.mallinfo2()
print(json.dumps({{"applied": applied, "mmapped_while_held": held.hblkhd - start.hblkhd,
                   "heap_growth": freed.arena - start.arena, "free_in_heap": freed.fordblks - start.fordblks}}))
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or "libc.so.6" != ctypes.util.find_library("c"),
                                reason="mallopt and mallinfo2 are glibc's")


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@glibc_only
def test_freed_blocks_stay_in_the_heap():
    got = _probe("keep")
    assert got == {"applied": True, "mmapped_while_held": 0, "heap_growth": got["heap_growth"],
                   "free_in_heap": got["free_in_heap"]}
    # The heap grew by the ten blocks (plus malloc's headers and padding) and keeps all of it free.
    assert CHUNKS * CHUNK <= got["heap_growth"] <= CHUNKS * CHUNK + (1 << 20)
    assert CHUNKS * CHUNK <= got["free_in_heap"] <= got["heap_growth"]


@glibc_only
def test_without_it_such_blocks_are_mapped_and_returned():
    """The control: glibc's defaults mmap each 16 MiB block (one page of header) and unmap it on free."""
    got = _probe("default")
    assert got == {"applied": None, "mmapped_while_held": CHUNKS * (CHUNK + 4096), "heap_growth": 0,
                   "free_in_heap": got["free_in_heap"]}
    assert abs(got["free_in_heap"]) < 1 << 20
