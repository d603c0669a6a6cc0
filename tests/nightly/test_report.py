"""The nightly report on a real model and tonight's tags, with tags and categories newer than the model."""
from __future__ import annotations

import contextlib
import math
import os
import shutil

import numpy as np
import pytest
import torch

from core import delta
from nightly import publish, report
from nightly.night import NightResult
from tests.scoring.warehouse import D2, NUM_CATEGORIES, NUM_TAGS, World, make_tags

SCHEMA = "dt date, user_id string, objective string, rank int, tag_id string, score double, model_version string"
PROFILES = [(D2, "u1", "ctr", 1, "t03", 0.9, "v1"), (D2, "u1", "ctr", 2, "t04", 0.8, "v1"),
            (D2, "u2", "ctr", 1, "t03", 0.7, "v1"), (D2, "u2", "cvr", 1, "t05", 0.2, "v1")]
KERNEL_HEADING = "## Which virtual kernel drives which tags"


@pytest.fixture
def night(spark, tmp_path):
    """A published model v1 (tags 2..13, categories below 5), tonight's catalogue of `make_tags`
    (t_new is newer than the model, t07's category 6 too) and a few published profiles."""
    world = World(tmp_path)
    model = world.publish("v1")
    world.write_tags(D2, make_tags())
    delta.write_table(spark.createDataFrame(PROFILES, SCHEMA), publish.profiles_uri(world.paths), mode="overwrite",
                      partition_by=["dt"], replace_partitions=[D2.isoformat()])
    return world, model


def _write(spark, world):
    result = NightResult(run_id="r1", date=D2, model_version="v1", trained=False)
    written = report.write_report(spark, world.config(), D2, result)
    with open(written.path) as f:
        return written, f.read()


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def _expected_entropy_lines(model):
    """Mean gate entropy per objective over the tags the model knows, unseen categories as 1
    (unknown) and no category as 0, straight from the model's tag tower."""
    known = [t for t in make_tags() if t["tag_index"] < NUM_TAGS]
    categories = [1 if t["category_id"] >= NUM_CATEGORIES else t["category_id"] for t in known]
    with torch.no_grad():
        sides = model.tag_vectors(torch.tensor([t["tag_index"] for t in known]), torch.tensor(categories))
    lines = []
    for objective in sorted(sides):
        gate = sides[objective].gate.double().numpy()
        entropy = -(gate * np.log(np.where(gate > 0, gate, 1.0))).sum(axis=1).mean()
        lines.append(f"- {objective}: mean gate entropy {entropy:.3f} (max {math.log(gate.shape[1]):.3f} "
                     f"for a uniform gate)")
    return lines


def test_the_kernel_section_leaves_out_new_tags_and_maps_new_categories_to_unknown(spark, night):
    world, model = night
    written, text = _write(spark, world)
    assert written.not_computed == ()
    expected = "\n".join([
        KERNEL_HEADING, "", "![kernel_by_category.png](kernel_by_category.png)", "",
        *_expected_entropy_lines(model),
        "- left out: 1 tag newer than the model (no vector; scoring leaves it out too): t_new",
        "- shown as unknown: 1 tag whose category is newer than the model (as scoring does): t07",
    ]) + "\n"
    assert _section(text, KERNEL_HEADING) == expected
    assert os.path.getsize(os.path.join(os.path.dirname(written.path), "kernel_by_category.png")) > 1000


def test_a_section_that_cannot_be_computed_says_why_and_the_report_is_still_written(spark, night):
    world, _ = night
    shutil.rmtree(world.paths.models)  # the model folder is gone: no kernel diagnostics
    written, text = _write(spark, world)
    assert written.not_computed == ("Which virtual kernel drives which tags",)
    assert _section(text, KERNEL_HEADING).startswith(
        f"{KERNEL_HEADING}\n\nNot computed: ValueError: model artifact incomplete: ")
    audiences = "\n".join([
        "## Largest audiences (users with the tag in their top 5)", "",
        "| objective | tag | users |", "|---|---|---|",
        "| ctr | t03 | 2 |", "| ctr | t04 | 1 |", "| cvr | t05 | 1 |",
    ]) + "\n"
    assert _section(text, "## Largest audiences") == audiences
    assert "## Score distributions" in text


def test_auc_across_nights_leaves_out_an_undefined_auc(spark, night, tmp_path):
    """Training records a NaN AUC as null; such a model must not break the section for every later night."""
    import datetime as dt

    from core import registry

    world, _ = night
    for version, day, metrics in (("v2", D2, {"ctr": {"auc": 0.71}, "cvr": {"auc": None}}),
                                  ("v3", D2 + dt.timedelta(days=1), {"ctr": {"auc": 0.72}, "cvr": {"auc": 0.66}})):
        registry.register(world.paths, registry.ModelRecord(version, day, registry.ModelStatus.REJECTED,
                                                            dt.datetime(2026, 11, 6, tzinfo=dt.timezone.utc), metrics,
                                                            f"/m/{version}"))
    section = report._auc_across_nights(world.config(), str(tmp_path))
    assert section.split("\n\n")[-1].splitlines() == [  # v1 has no AUC recorded: no line
        "| model | trained for | status | AUC ctr | AUC cvr |", "|---|---|---|---|---|",
        f"| v2 | {D2} | rejected | 0.7100 | nan |", f"| v3 | {D2 + dt.timedelta(days=1)} | rejected | 0.7200 | 0.6600 |"]
    assert os.path.getsize(tmp_path / "auc_across_nights.png") > 1000


def test_the_gates_and_their_history_are_tabled_as_measured(spark, night):
    """Tonight's gates as the night measured them, and per date the last measurement that passed
    (a failed attempt of a date is left out, a later passing one replaces an earlier one)."""
    from nightly import runlog
    from nightly.gates import GateResult
    from tests.scoring.warehouse import D1

    world, _ = night
    measured = [
        ("first", D1, {"profile_share": 0.9, "tag_coverage": 0.5, "top_n_stability": None, "score_shift": None}),
        ("second", D2, {"profile_share": 0.8, "tag_coverage": 0.4, "top_n_stability": 0.7, "score_shift": 0.1}),
        ("failed", D2, {"profile_share": 0.1, "tag_coverage": 0.1, "top_n_stability": 0.1, "score_shift": 0.9}),
        ("rerun", D2, {"profile_share": 0.85, "tag_coverage": 0.45, "top_n_stability": 0.75, "score_shift": 0.05}),
    ]
    for run_id, day, metrics in measured:
        with pytest.raises(RuntimeError) if run_id == "failed" else contextlib.nullcontext():
            with runlog.stage(world.paths, run_id, "gates", day) as out:
                out.metrics = metrics
                if run_id == "failed":
                    raise RuntimeError("a gate failed")
    result = NightResult(run_id="rerun", date=D2, model_version="v1", gate_results=[
        GateResult("profile_share", 0.85, 0.95, "min", False, "share"),
        GateResult("score_shift", None, 0.2, "max", True, "skipped"),
        GateResult("tag_coverage", 0.45, 0.3, "min", True, "coverage")])
    written = report.write_report(spark, world.config(), D2, result)
    with open(written.path) as f:
        text = f.read()
    assert _section(text, "## Quality gates") == "\n".join([
        "## Quality gates", "", "| gate | value | threshold | passed |", "|---|---|---|---|",
        "| profile_share | 0.8500 | >= 0.95 | NO |", "| score_shift | n/a | <= 0.2 | yes |",
        "| tag_coverage | 0.4500 | >= 0.3 | yes |"]) + "\n"
    history = "## Tag coverage, profile share and day-over-day stability"
    assert _section(text, history) == "\n".join([
        history, "", "![coverage_and_stability.png](coverage_and_stability.png)", "",
        "| dt | profile_share | tag_coverage | top_n_stability | score_shift |", "|---|---|---|---|---|",
        f"| {D1} | 0.9000 | 0.5000 | n/a | n/a |", f"| {D2} | 0.8500 | 0.4500 | 0.7500 | 0.0500 |"]) + "\n"
