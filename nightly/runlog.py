"""The `runs` Delta table: one row per stage of every nightly run, success or failure."""
from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri

SCHEMA = pa.schema([
    pa.field("run_id", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("dt", pa.date32()),
    pa.field("status", pa.string()),
    pa.field("started_at", pa.timestamp("us", tz="UTC")),
    pa.field("ended_at", pa.timestamp("us", tz="UTC")),
    pa.field("rows_in", pa.int64()),
    pa.field("rows_out", pa.int64()),
    pa.field("metrics", pa.string()),
    pa.field("message", pa.string()),
])


@dataclass
class StageOutcome:
    """What a stage reports about itself; filled in by the stage's body."""

    rows_in: int | None = None
    rows_out: int | None = None
    metrics: dict = field(default_factory=dict)
    message: str = ""


def runs_uri(paths: Paths) -> str:
    return warehouse_uri(paths, Warehouse.RUNS)


@contextmanager
def stage(paths: Paths, run_id: str, name: str, date: dt.date) -> Iterator[StageOutcome]:
    """Time a stage and append its row to `runs`, whether it succeeds or raises."""
    outcome = StageOutcome()
    started = _now()
    clock = time.monotonic()
    status = "failed"
    try:
        yield outcome
        status = "succeeded"
    except BaseException as exc:
        outcome.message = outcome.message or f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        print(f"[nightly] {date} {name}: {status} in {time.monotonic() - clock:.1f}s"
              + (f" ({outcome.message.splitlines()[0]})" if outcome.message else ""), flush=True)
        _append(paths, {
            "run_id": run_id, "stage": name, "dt": date, "status": status, "started_at": started,
            "ended_at": _now(), "rows_in": outcome.rows_in, "rows_out": outcome.rows_out,
            "metrics": json.dumps(outcome.metrics, sort_keys=True, default=str), "message": outcome.message,
        })


def read_runs(paths: Paths) -> list[dict]:
    uri = runs_uri(paths)
    if not delta.table_exists(uri):
        return []
    rows = delta.read_arrow(uri).to_pylist()
    for row in rows:
        row["metrics"] = json.loads(row["metrics"] or "{}")
    return sorted(rows, key=lambda r: (r["started_at"], r["stage"]))


def finished_nights(paths: Paths, date: dt.date) -> tuple[set[str], dict[str, list[dt.datetime]]]:
    """The nightly runs of `date` (every run id with a row for it), and when each one's report stages
    that succeeded started: a publish of such a run was an attempt that finished its night if one of
    them started after it and before the next publish of the date."""
    rows = [r for r in read_runs(paths) if r["dt"] == date]
    reports: dict[str, list[dt.datetime]] = {}
    for r in rows:
        if r["stage"] == "report" and r["status"] == "succeeded":
            reports.setdefault(r["run_id"], []).append(r["started_at"])
    return {r["run_id"] for r in rows}, reports


def _append(paths: Paths, row: dict) -> None:
    delta.write_arrow(pa.Table.from_pylist([row], schema=SCHEMA), runs_uri(paths), mode="append",
                      commit_info={"job": "nightly", "run_id": row["run_id"], "stage": row["stage"]})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
