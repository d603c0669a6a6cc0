"""The `models` Delta table: which model versions exist and which are published.

A model version is a folder `paths.models/<model_version>/` (written by the training
job) plus one row here. Scoring uses the latest *published* version unless told
otherwise; an unknown version is an error that lists the available ones.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import pyarrow as pa

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri


class ModelStatus(str, Enum):
    CANDIDATE = "candidate"
    PUBLISHED = "published"
    REJECTED = "rejected"  # failed the training job's publish rules
    GATE_FAILED = "gate_failed"  # published by training, then failed the quality gates of its own night
    ROLLED_BACK = "rolled_back"  # published, then the profiles of its own night were rolled back


SCHEMA = pa.schema([
    pa.field("model_version", pa.string()),
    pa.field("trained_for", pa.date32()),
    pa.field("status", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("metrics", pa.string()),
    pa.field("path", pa.string()),
])


@dataclass(frozen=True)
class ModelRecord:
    model_version: str
    trained_for: dt.date
    status: ModelStatus
    created_at: dt.datetime
    metrics: dict
    path: str


class UnknownModelError(ValueError):
    """A model version that the registry does not list."""


def models_uri(paths: Paths) -> str:
    return warehouse_uri(paths, Warehouse.MODELS)


def model_dir(paths: Paths, model_version: str) -> str:
    return f"{paths.models.rstrip('/')}/{model_version}"


def list_models(paths: Paths) -> list[ModelRecord]:
    """Every registered version, oldest first: by the day it was trained for, then by registration.

    A rerun of training for an earlier day registers last but stays behind the models of later
    days, so it never becomes the latest published model that scoring and the nightly use."""
    uri = models_uri(paths)
    return _records(uri, delta.table_version(uri))


def _records(uri: str, version: int | None) -> list[ModelRecord]:
    if version is None:
        return []
    records = [
        ModelRecord(
            model_version=r["model_version"], trained_for=r["trained_for"], status=ModelStatus(r["status"]),
            created_at=r["created_at"], metrics=json.loads(r["metrics"] or "{}"), path=r["path"],
        )
        for r in delta.read_arrow(uri, version=version).to_pylist()
    ]
    return sorted(records, key=lambda r: (r.trained_for, r.created_at, r.model_version))


def register(paths: Paths, record: ModelRecord) -> None:
    """Add a version, or replace the row of an existing one (one atomic commit)."""
    _update(paths, record.model_version, lambda *_: record)


def set_status(paths: Paths, model_version: str, status: ModelStatus) -> None:
    def with_status(current: ModelRecord | None, rows: list[ModelRecord]) -> ModelRecord:
        if current is None:
            raise _unknown(model_version, rows)
        return dataclasses.replace(current, status=status)

    _update(paths, model_version, with_status)


def change_status(paths: Paths, model_version: str, night: dt.date, old: ModelStatus, new: ModelStatus) -> bool:
    """Model `model_version`, trained for `night`, goes from `old` to `new` in one registry commit:
    a published model withdrawn after its night failed (its gates, a rollback), or put back. A model
    of another night, one not registered or not in status `old` stays as it is. True if changed.
    The status is checked on the registry version the commit lands on."""
    def changed(current: ModelRecord | None, _: list[ModelRecord]) -> ModelRecord | None:
        if current is None or current.status is not old or current.trained_for != night:
            return None
        return dataclasses.replace(current, status=new)

    return _update(paths, model_version, changed)


def _update(paths: Paths, model_version: str,
            change: Callable[[ModelRecord | None, list[ModelRecord]], ModelRecord | None]) -> bool:
    """Replace the row of `model_version` by `change(the row read, all rows read)` (None: leave the
    registry as it is).

    The registry is small: it is rewritten whole from the version read, and that commit lands
    only on top of that version, so two jobs changing it at once cannot undo each other's rows
    or act on a row another just changed: the one that loses the race reads again and decides
    again. True if a commit was made."""
    uri = models_uri(paths)

    def once() -> bool:
        read = delta.snapshot(uri)
        rows = _records(uri, read.version)
        record = change(next((r for r in rows if r.model_version == model_version), None), rows)
        if record is None:
            return False
        rows = [r for r in rows if r.model_version != model_version] + [record]
        table = pa.Table.from_pylist([{
            "model_version": r.model_version, "trained_for": r.trained_for, "status": r.status.value,
            "created_at": r.created_at, "metrics": json.dumps(r.metrics, sort_keys=True), "path": r.path,
        } for r in rows], schema=SCHEMA)
        delta.write_arrow(table, uri, mode="overwrite", based_on=read,
                          commit_info={"job": "register", "model_version": model_version})
        return True

    return delta.retry_on_conflict(once)


def current_for(paths: Paths, night: dt.date) -> str:
    """What a run of `night` scores with now, said after a status change.

    With none left, a rerun of `night` trains one, unless a model trained for `night` was withdrawn:
    the same inputs and settings give that version back, and it stays withdrawn (training.publish)."""
    current = latest_published(paths, as_of=night)
    if current is not None:
        return f"the latest published model for {night} is {current.model_version}"
    withdrawn = _newest_withdrawn(list_models(paths), night)
    if withdrawn is None:
        return f"no published model for {night} is left: its next run trains one"
    return (f"no published model for {night} is left, and a rerun of {night} with the same inputs and settings "
            f"gets {withdrawn} back, which stays withdrawn: change a model or train setting to train a new "
            f"version, or pin score.model_version={withdrawn} to score with it anyway")


def withdrawn_for(paths: Paths, night: dt.date) -> str | None:
    """The version a rerun of `night` would train again and keep withdrawn: the newest model trained
    for `night` that failed its gates or was rolled back, when no model for `night` or earlier is
    published (None otherwise)."""
    if latest_published(paths, as_of=night) is not None:
        return None
    return _newest_withdrawn(list_models(paths), night)


def _newest_withdrawn(records: list[ModelRecord], night: dt.date) -> str | None:
    withdrawn = [r.model_version for r in records if r.trained_for == night
                 and r.status in (ModelStatus.GATE_FAILED, ModelStatus.ROLLED_BACK)]
    return withdrawn[-1] if withdrawn else None


def get_model(paths: Paths, model_version: str) -> ModelRecord:
    records = list_models(paths)
    for record in records:
        if record.model_version == model_version:
            return record
    raise _unknown(model_version, records)


def _unknown(model_version: str, records: list[ModelRecord]) -> UnknownModelError:
    available = ", ".join(f"{r.model_version} ({r.status.value})" for r in records) or "none"
    return UnknownModelError(f"unknown model version {model_version!r}; available: {available}")


def latest_published(paths: Paths, as_of: dt.date | None = None) -> ModelRecord | None:
    """The latest published version; with `as_of`, the latest of those trained for that day or earlier."""
    published = [r for r in list_models(paths) if r.status is ModelStatus.PUBLISHED
                 and (as_of is None or r.trained_for <= as_of)]
    return published[-1] if published else None


def resolve(paths: Paths, model_version: str = "latest", as_of: dt.date | None = None) -> ModelRecord:
    """`latest` means the latest published version (trained for `as_of` or earlier, when given: a
    rerun of an old date scores with the model of its time, not one trained later); anything else
    must be registered."""
    if model_version != "latest":
        return get_model(paths, model_version)
    record = latest_published(paths, as_of)
    if record is None:
        available = ", ".join(f"{r.model_version} ({r.status.value}, trained for {r.trained_for})"
                              for r in list_models(paths)) or "none"
        when = f" trained for {as_of} or earlier" if as_of is not None else ""
        raise UnknownModelError(f"no published model{when} to score with; available: {available}")
    return record
