"""Races: between real processes (`at_once`), and one exact interleaving of two Delta writers in
this process (`commits_first`)."""
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


def commits_first(monkeypatch: Any, other: Callable[[], Any], table: str = "") -> None:
    """The next Delta commit made through delta-rs's write transaction (to a table whose URI ends
    with `table`) lets `other` commit first, once: in the moment after the committing job planned
    its actions on the version it read. Both are real delta-rs commits; only their order is fixed."""
    from deltalake import DeltaTable

    original = DeltaTable.create_write_transaction

    def interleaved(self: DeltaTable, *args: Any, **kwargs: Any) -> Any:
        if self.table_uri.rstrip("/").endswith(table):
            monkeypatch.setattr(DeltaTable, "create_write_transaction", original)
            other()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", interleaved)
