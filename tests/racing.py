"""Races between real processes: each runs `worker(*args, start)` and waits on `start` so that all begin together."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def at_once(worker: Callable[..., Any], args_of_each: Sequence[tuple], timeout: float = 300) -> list:
    """One spawned process per entry of `args_of_each`, released by one barrier; their return values in order.

    `worker` must be a module-level function (spawn imports it) whose last argument is the barrier.
    """
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(len(args_of_each))
        with context.Pool(len(args_of_each)) as pool:
            results = [pool.apply_async(worker, (*args, start)) for args in args_of_each]
            return [result.get(timeout=timeout) for result in results]
