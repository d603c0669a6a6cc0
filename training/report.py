"""Training curves: rows of the `train_metrics` table and a PNG plot.

The history a run records (and carries through checkpoints) is plain JSON:
  {"steps":  [{"step", "epoch", "loss", "samples_per_s"}, ...],
   "epochs": [{"epoch", "step", "train_loss", "samples_per_s", "seconds",
               "validation": {objective: {metric: value}}}, ...]}
`step` is the global step (1-based, counted over the whole run); `epoch` is 0-based.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri

ALL_OBJECTIVES = "all"
SCHEMA = pa.schema([
    pa.field("model_version", pa.string()),
    pa.field("step", pa.int64()),
    pa.field("epoch", pa.int32()),
    pa.field("split", pa.string()),
    pa.field("metric", pa.string()),
    pa.field("objective", pa.string()),
    pa.field("value", pa.float64()),
])
VALIDATION_METRICS = ("auc", "gauc", "log_loss", "calibration")


def empty_history() -> dict:
    return {"steps": [], "epochs": []}


def metric_rows(model_version: str, history: dict) -> pa.Table:
    """One row per (step or epoch, split, metric, objective) of the history."""
    rows = []
    for s in history["steps"]:
        for metric in ("loss", "samples_per_s"):
            rows.append((s["step"], s["epoch"], "train", metric, ALL_OBJECTIVES, s[metric]))
    for e in history["epochs"]:
        rows.append((e["step"], e["epoch"], "train", "epoch_loss", ALL_OBJECTIVES, e["train_loss"]))
        rows.append((e["step"], e["epoch"], "train", "epoch_samples_per_s", ALL_OBJECTIVES, e["samples_per_s"]))
        for objective, values in e["validation"].items():
            rows += [(e["step"], e["epoch"], "validation", m, objective, values[m]) for m in VALIDATION_METRICS]
    columns = list(zip(*rows)) if rows else [()] * 6
    return pa.Table.from_pydict({"model_version": [model_version] * len(rows),
                                 **{name: list(col) for name, col in zip(SCHEMA.names[1:], columns)}},
                                schema=SCHEMA)


def write_train_metrics(paths: Paths, model_version: str, rows: pa.Table) -> int:
    """Replace this version's rows of `train_metrics` (one commit; other versions kept).

    The table is rewritten from the version read, and the commit lands only on top of that
    version: two trainings finishing at once cannot drop each other's rows (the loser reads again).
    """
    uri = warehouse_uri(paths, Warehouse.TRAIN_METRICS)

    def once() -> int:
        read = delta.snapshot(uri)
        table = rows
        if read.version is not None:
            existing = delta.read_arrow(uri, version=read.version).cast(SCHEMA)
            keep = existing.filter(pc.not_equal(existing["model_version"], model_version))
            table = pa.concat_tables([keep, rows])
        return delta.write_arrow(table, uri, mode="overwrite", based_on=read,
                                 commit_info={"job": "train", "model_version": model_version})

    return delta.retry_on_conflict(once)


def plot_curves(history: dict, path: Path, title: str) -> Path:
    """Training loss per step (left) and validation AUC / GAUC per epoch and objective (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([s["step"] for s in history["steps"]], [s["loss"] for s in history["steps"]], marker=".")
    left.set(xlabel="step", ylabel="training loss (mean over workers)", title="training loss")
    epochs = [e["epoch"] for e in history["epochs"]]
    objectives = sorted({o for e in history["epochs"] for o in e["validation"]})
    for objective in objectives:
        for metric, style in (("auc", "-o"), ("gauc", "--s")):
            values = [e["validation"].get(objective, {}).get(metric) for e in history["epochs"]]
            right.plot(epochs, [float("nan") if v is None else v for v in values], style,
                       label=f"{objective} {metric}")
    right.set(xlabel="epoch", ylabel="validation", title="validation AUC / GAUC")
    if objectives:
        right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
