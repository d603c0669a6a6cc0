"""The run report: Markdown with PNG plots, one folder per night under `paths.reports_root`.

Everything plotted is an aggregate computed by Spark or read from the small log tables
(`runs`, `models`, `train_metrics`); no table is collected whole.
"""
from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from core import delta, registry  # noqa: E402
from core.config import Config, ConfigError, Paths  # noqa: E402
from core.tables import Warehouse, warehouse_uri  # noqa: E402
from mvke.fields import PAD_ID, UNKNOWN_ID  # noqa: E402
from nightly import publish  # noqa: E402
from nightly.runlog import read_runs  # noqa: E402

if TYPE_CHECKING:
    from nightly.night import NightResult

SCORE_BINS = 20
AUDIENCE_RANK = 5
KERNEL_TITLE = "Which virtual kernel drives which tags"
SHOWN_IDS = 5


@dataclass(frozen=True)
class Report:
    path: str
    not_computed: tuple[str, ...]  # titles of the sections that could not be computed


def report_folder(paths: Paths, date: dt.date) -> str:
    """The folder of a night's report; a ConfigError when `paths.reports_root` is a store URI (the
    report and its charts are written as local files: the default under a warehouse on a store)."""
    root = paths.reports_root
    if "://" in root and not root.startswith("file://"):
        raise ConfigError(f"the night's report needs a filesystem path, not {root!r}: set paths.reports to a local "
                          f"or mounted folder")
    return f"{root.removeprefix('file://').rstrip('/')}/{date.isoformat()}"


def check_report_folder(paths: Paths, date: dt.date) -> str:
    """The report folder of `date`, made and written to once (a probe file, removed), so a report the
    night could not write fails it before any stage: a ConfigError naming the folder and the cause."""
    folder = report_folder(paths, date)
    probe = Path(folder) / f".probe-{uuid.uuid4().hex}"
    try:
        os.makedirs(folder, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"the night's report cannot be written to {folder}: {exc.strerror or exc}; set "
                          f"paths.reports to a folder this job can write") from None
    return folder


def write_report(spark: SparkSession, config: Config, date: dt.date, result: "NightResult") -> Report:
    """Write the report of a night. It runs after the publish, so a section that cannot be computed
    does not fail the night: it says why in the report, and its title is returned."""
    folder = report_folder(config.paths, date)
    os.makedirs(folder, exist_ok=True)
    profiles = publish.read_profiles(spark, publish.profiles_uri(config.paths), date)
    diagnostics = [
        ("Training curves", lambda: _training_curves(spark, config, result.model_version, folder)),
        ("Validation AUC across nights", lambda: _auc_across_nights(config, folder)),
        ("Tag coverage, profile share and day-over-day stability", lambda: _gate_history(config, folder)),
        ("Largest audiences", lambda: _largest_audiences(profiles)),
        ("Score distributions", lambda: _score_distributions(profiles, folder)),
        (KERNEL_TITLE, lambda: _kernel_heatmap(spark, config, date, result.model_version, folder)),
    ]
    sections = [
        f"# Nightly profiles {date}\n\nrun `{result.run_id}`, model `{result.model_version}` "
        f"({_provenance(result)})",
        _gates_section(result),
    ]
    not_computed = []
    for title, build in diagnostics:
        try:
            sections.append(build())
        except Exception as exc:  # noqa: BLE001 - a diagnostic must not fail a published night
            plt.close("all")
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            print(f"[nightly] {date} report: section {title!r} not computed: {reason}", flush=True)
            sections.append(f"## {title}\n\nNot computed: {reason}")
            not_computed.append(title)
    path = f"{folder}/report.md"
    with open(path + ".tmp", "w") as f:
        f.write("\n\n".join(s for s in sections if s) + "\n")
    os.replace(path + ".tmp", path)
    return Report(path=path, not_computed=tuple(not_computed))


def _provenance(result: "NightResult") -> str:
    if not result.trained:
        return "reused"
    if not result.by_earlier_run:
        return "trained tonight"
    earlier = "trained for this night by an earlier run"
    return f"{earlier}, judged again tonight" if result.judged_again else earlier


def _gates_section(result: "NightResult") -> str:
    rows = ["| gate | value | threshold | passed |", "|---|---|---|---|"]
    for r in result.gate_results:
        value = "n/a" if r.value is None else f"{r.value:.4f}"
        rows.append(f"| {r.name} | {value} | {'>=' if r.direction == 'min' else '<='} {r.threshold} | "
                    f"{'yes' if r.passed else 'NO'} |")
    return "## Quality gates\n\n" + "\n".join(rows)


def _training_curves(spark: SparkSession, config: Config, model_version: str, folder: str) -> str:
    uri = warehouse_uri(config.paths, Warehouse.TRAIN_METRICS)
    if not delta.table_exists(uri):
        return ""
    frame = delta.read_table(spark, uri).where(F.col("model_version") == model_version).toPandas()
    if frame.empty:
        return ""
    metrics = sorted(frame["metric"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = frame[frame["metric"] == metric]
        x = "step" if part["split"].eq("train").all() else "epoch"
        for (split, objective), curve in part.groupby(["split", "objective"]):
            curve = curve.sort_values(x)
            ax.plot(curve[x], curve["value"], marker="." if x == "epoch" else None, label=f"{split} {objective}")
        ax.set_title(metric)
        ax.set_xlabel(x)
        ax.legend(fontsize=7)
    return _figure(fig, folder, "training_curves.png", f"## Training curves ({model_version})")


def _auc_across_nights(config: Config, folder: str) -> str:
    from nightly.night import model_auc

    def measured(record: registry.ModelRecord) -> dict[str, float]:  # an undefined AUC is left out
        return {o: auc for o, auc in model_auc(record).items() if auc is not None}

    records = [r for r in registry.list_models(config.paths) if measured(r)]
    if not records:
        return ""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    objectives = sorted({o for r in records for o in measured(r)})
    for objective in objectives:
        points = sorted((r.trained_for, measured(r)[objective]) for r in records if objective in measured(r))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=objective)
    ax.set_ylabel("validation AUC")
    ax.legend()
    fig.autofmt_xdate()
    table = ["| model | trained for | status | " + " | ".join(f"AUC {o}" for o in objectives) + " |",
             "|---|---|---|" + "---|" * len(objectives)]
    for r in records:
        aucs = measured(r)
        table.append(f"| {r.model_version} | {r.trained_for} | {r.status.value} | " +
                     " | ".join(f"{aucs.get(o, float('nan')):.4f}" for o in objectives) + " |")
    return _figure(fig, folder, "auc_across_nights.png", "## Validation AUC across nights") + "\n\n" + "\n".join(table)


def _gate_history(config: Config, folder: str) -> str:
    rows = [r for r in read_runs(config.paths) if r["stage"] == "gates" and r["status"] == "succeeded"]
    if not rows:
        return ""
    latest = {r["dt"]: r["metrics"] for r in rows}  # the last successful measurement of each date
    frame = pd.DataFrame([{"dt": d, **m} for d, m in sorted(latest.items())]).set_index("dt")
    columns = [c for c in ("profile_share", "tag_coverage", "top_n_stability", "score_shift") if c in frame]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for column in columns:
        ax.plot(frame.index, frame[column].astype(float), marker="o", label=column)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    table = "\n".join(["| dt | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)] + [
        f"| {day} | " + " | ".join("n/a" if pd.isna(v) else f"{float(v):.4f}" for v in row) + " |"
        for day, row in frame[columns].iterrows()])
    return _figure(fig, folder, "coverage_and_stability.png",
                   "## Tag coverage, profile share and day-over-day stability") + "\n\n" + table


def _largest_audiences(profiles) -> str:
    top = (profiles.where(F.col("rank") <= AUDIENCE_RANK)
           .groupBy("objective", "tag_id").agg(F.countDistinct("user_id").alias("users"))
           .orderBy(F.desc("users"), "objective", "tag_id").limit(15).collect())
    if not top:
        return ""
    lines = [f"## Largest audiences (users with the tag in their top {AUDIENCE_RANK})", "",
             "| objective | tag | users |", "|---|---|---|"]
    lines += [f"| {r['objective']} | {r['tag_id']} | {r['users']} |" for r in top]
    return "\n".join(lines)


def _score_distributions(profiles, folder: str) -> str:
    counts = (profiles.withColumn("bin", F.least(F.floor(F.col("score") * SCORE_BINS), F.lit(SCORE_BINS - 1)))
              .groupBy("objective", "bin").count().toPandas())
    if counts.empty:
        return ""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    edges = np.arange(SCORE_BINS) / SCORE_BINS
    for objective, part in counts.groupby("objective"):
        hist = np.zeros(SCORE_BINS)
        hist[part["bin"].astype(int).to_numpy()] = part["count"].to_numpy()
        ax.step(edges, hist / hist.sum(), where="post", label=objective)
    ax.set_xlabel("score")
    ax.set_ylabel("share of profile rows")
    ax.legend()
    return _figure(fig, folder, "score_distributions.png", "## Score distributions")


def _kernel_heatmap(spark: SparkSession, config: Config, date: dt.date, model_version: str, folder: str) -> str:
    """Per objective, which kernel dominates the gate of each category's tags: tonight's tags as
    scoring gives them to the model (tags newer than it left out, categories newer than it unknown)."""
    from mvke import diagnostics
    from mvke.artifact import load_model
    from scoring.inputs import read_tags, split_tags
    from scoring.tag_index import model_category_ids

    model = load_model(registry.get_model(config.paths, model_version).path
                       or registry.model_dir(config.paths, model_version))
    tags = split_tags(read_tags(config.paths, date), model.spec.num_tags)
    seen = tags.seen
    new_category = pc.fill_null(pc.greater_equal(seen["category_id"], model.spec.num_categories), False)
    notes = [
        _note("left out", tags.unseen["tag_id"].to_pylist(),
              "newer than the model (no vector; scoring leaves it out too)"),
        _note("shown as unknown", seen.filter(new_category)["tag_id"].to_pylist(),
              "whose category is newer than the model (as scoring does)"),
    ]
    notes = [n for n in notes if n]
    if seen.num_rows == 0:
        return "\n".join([f"## {KERNEL_TITLE}", "", f"No tag of {date} is known to the model.", "", *notes])
    categories = model_category_ids(seen["category_id"], model.spec.num_categories)
    tables = diagnostics.gate_table(model, seen["tag_index"].to_numpy(), categories)
    if not tables:
        return f"## {KERNEL_TITLE}\n\nThis model has no tag-steered gate (no kernel heatmap)."
    names = {**_category_names(spark, config, date), PAD_ID: "(none)", UNKNOWN_ID: "(unknown to the model)"}
    shown = sorted(set(categories.tolist()))
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 0.35 * len(shown) + 2), squeeze=False)
    summary = []
    for ax, (objective, table) in zip(axes[0], sorted(tables.items())):
        gate_cols = [c for c in table.columns if c.startswith("gate_")]
        share = diagnostics.dominant_kernel_share(table[gate_cols].to_numpy(), table["category"].to_numpy(),
                                                  [int(c.split("_")[1]) for c in gate_cols])
        image = ax.imshow(share.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(share.shape[1]), [f"k{k}" for k in share.columns])
        ax.set_yticks(range(share.shape[0]), [names.get(c, str(c)) for c in share.index], fontsize=7)
        ax.set_title(f"{objective}: dominant kernel share by category", fontsize=9)
        fig.colorbar(image, ax=ax)
        summary.append(f"- {objective}: mean gate entropy {table['entropy'].mean():.3f} "
                       f"(max {np.log(len(gate_cols)):.3f} for a uniform gate)")
    return _figure(fig, folder, "kernel_by_category.png", f"## {KERNEL_TITLE}") \
        + "\n\n" + "\n".join(summary + notes)


def _category_names(spark: SparkSession, config: Config, date: dt.date) -> dict[int, str]:
    rows = delta.read_table(spark, warehouse_uri(config.paths, Warehouse.TAGS)) \
        .where(F.col("dt") == F.lit(date)).select("category_id", "category").distinct().collect()
    return {r["category_id"]: r["category"] or "(none)" for r in rows if r["category_id"] is not None}


def _note(what: str, tag_ids: list[str], why: str) -> str:
    """One line about tags treated apart, e.g. `- left out: 2 tags newer than ...: t1, t2`."""
    if not tag_ids:
        return ""
    shown = ", ".join(sorted(tag_ids)[:SHOWN_IDS]) + (", ..." if len(tag_ids) > SHOWN_IDS else "")
    return f"- {what}: {len(tag_ids)} tag{'s' if len(tag_ids) > 1 else ''} {why}: {shown}"


def _figure(fig, folder: str, name: str, heading: str) -> str:
    fig.tight_layout()
    fig.savefig(f"{folder}/{name}", dpi=90)
    plt.close(fig)
    return f"{heading}\n\n![{name}]({name})"
