"""train_metrics: each training replaces its own version's rows, and concurrent trainings keep each other's."""
from __future__ import annotations

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri
from tests.racing import at_once
from training import report


def _history(loss: float) -> dict:
    return {"steps": [{"step": 1, "epoch": 0, "loss": loss, "samples_per_s": 100.0}],
            "epochs": [{"epoch": 0, "step": 1, "train_loss": loss, "samples_per_s": 90.0, "seconds": 1.0,
                        "validation": {"ctr": {"auc": 0.7, "gauc": 0.6, "log_loss": 0.3, "calibration": 1.0}}}]}


def _paths(root) -> Paths:
    return Paths(raw=f"{root}/r", warehouse=f"{root}/w", models=f"{root}/m")


def _stored(paths: Paths) -> list[tuple]:
    table = delta.read_arrow(warehouse_uri(paths, Warehouse.TRAIN_METRICS))
    return sorted(tuple(row.values()) for row in table.to_pylist())


def _expected(versions_and_losses) -> list[tuple]:
    out = []
    for version, loss in versions_and_losses:
        out += [(version, 1, 0, "train", "loss", "all", loss), (version, 1, 0, "train", "samples_per_s", "all", 100.0),
                (version, 1, 0, "train", "epoch_loss", "all", loss),
                (version, 1, 0, "train", "epoch_samples_per_s", "all", 90.0),
                (version, 1, 0, "validation", "auc", "ctr", 0.7), (version, 1, 0, "validation", "gauc", "ctr", 0.6),
                (version, 1, 0, "validation", "log_loss", "ctr", 0.3),
                (version, 1, 0, "validation", "calibration", "ctr", 1.0)]
    return sorted(out)


def test_a_rerun_replaces_its_own_rows_only(tmp_path):
    paths = _paths(tmp_path)
    report.write_train_metrics(paths, "v1", report.metric_rows("v1", _history(0.5)))
    report.write_train_metrics(paths, "v2", report.metric_rows("v2", _history(0.4)))
    report.write_train_metrics(paths, "v1", report.metric_rows("v1", _history(0.3)))
    assert _stored(paths) == _expected([("v1", 0.3), ("v2", 0.4)])
    empty = report.metric_rows("v0", report.empty_history())
    assert (empty.num_rows, empty.schema) == (0, report.SCHEMA)


def _write_many(root: str, writer: str, count: int, start) -> None:
    from training import report as r

    start.wait()
    for i in range(count):
        version = f"{writer}{i}"
        r.write_train_metrics(_paths(root), version, r.metric_rows(version, _history(0.1 * (i + 1))))


def test_two_trainings_writing_at_once_keep_every_version(tmp_path):
    """The table is rewritten whole: without committing on top of the version read, one writer's
    rewrite would drop the rows the other added in between."""
    at_once(_write_many, [(str(tmp_path), w, 12) for w in ("a", "b")])
    assert _stored(_paths(tmp_path)) == _expected([(f"{w}{i}", 0.1 * (i + 1)) for w in ("a", "b") for i in range(12)])
