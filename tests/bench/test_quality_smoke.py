"""bench/quality.py on a tiny in-memory world (no Spark): every family trains, every metric is filled,
the profile path agrees with the model's own forward pass, and the doc block is replaced in place."""
from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import GenerateConf
from mvke.fields import FieldSpec
from training.data import stored_name

NUM_USERS, NUM_TAGS, NUM_CATEGORIES, MULTI_LEN = 40, 10, 4, 4  # real tag ids 2..9


@pytest.fixture(scope="module")
def quality():
    path = Path(__file__).resolve().parents[2] / "bench" / "quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def world(quality):
    """Examples over two days whose labels are drawn from a known truth, the tags, and the truth."""
    rng = np.random.default_rng(0)
    users = np.array([f"u{i:03d}" for i in range(NUM_USERS)])
    tag_index = np.arange(2, NUM_TAGS)
    ctr = rng.uniform(0.02, 0.6, (NUM_USERS, NUM_TAGS))
    cvr = rng.uniform(0.05, 0.5, (NUM_USERS, NUM_TAGS))
    ctr[:, :2] = cvr[:, :2] = np.nan
    rows = 600
    user = rng.integers(0, NUM_USERS, rows)
    tag = rng.choice(tag_index, rows)
    click = (rng.random(rows) < ctr[user, tag]).astype(np.float32)
    conversion = click * (rng.random(rows) < cvr[user, tag]).astype(np.float32)
    age = (user % 5 + 2).astype(np.int64)
    history = np.where(rng.random((NUM_USERS, MULTI_LEN)) < 0.7, rng.choice(tag_index, (NUM_USERS, MULTI_LEN)), 0)
    columns = {"user_key": user.astype(np.int64), "age": age, "tag": tag.astype(np.int64),
               "tag_category": (tag % NUM_CATEGORIES).astype(np.int64), "click": click, "conversion": conversion}
    for i in range(MULTI_LEN):
        columns[stored_name("clicked_tags", i)] = history[user, i].astype(np.int64)
        columns[stored_name("clicked_tags_weights", i)] = (history[user, i] > 0).astype(np.float32)
    day = np.where(np.arange(rows) < 450, "2026-11-01", "2026-11-02")
    fields = (FieldSpec("age", "single", 7), FieldSpec("clicked_tags", "multi", NUM_TAGS))
    examples = quality.Examples(columns=columns, day=day, user_id=users[user], is_validation=day == "2026-11-02",
                                fields=fields, num_tags=NUM_TAGS, num_categories=NUM_CATEGORIES,
                                multi_len=MULTI_LEN)
    tags = quality.Tags(tag_id=np.array([f"t{i}" for i in tag_index]), tag_index=tag_index,
                        category_id=tag_index % NUM_CATEGORIES, category=np.array([f"c{i % 4}" for i in tag_index]),
                        facet=tag_index % 3)
    truth = quality.Truth(row_of={u: i for i, u in enumerate(users)}, affinity={"ctr": ctr, "cvr": cvr})
    return examples, tags, truth


def _popularity_by_hand(examples, truth) -> dict[str, dict[str, float]]:
    """The popularity reference from its definition: the 5 tags with the most training-day clicks
    (ties to the lower tag index) against each validation user's 5 truest tags per objective."""
    train = ~examples.is_validation
    clicks = {t: 0 for t in range(2, NUM_TAGS)}
    for tag, click in zip(examples.columns["tag"][train], examples.columns["click"][train]):
        clicks[int(tag)] += int(click > 0.5)
    popular = set(sorted(clicks, key=lambda t: (-clicks[t], t))[:5])
    users = sorted(set(examples.user_id[examples.is_validation]))
    out = {}
    for objective, affinity in truth.affinity.items():
        recall = hit = 0.0
        for user in users:
            row = affinity[truth.row_of[user]]
            true_top = sorted(range(2, NUM_TAGS), key=lambda t: (-row[t], t))[:5]
            recall += len(popular & set(true_top)) / 5
            hit += true_top[0] in popular
        out[objective] = {"recall": pytest.approx(recall / len(users)), "hit": pytest.approx(hit / len(users))}
    return out


def test_study_fills_every_metric(quality, world):
    torch.set_num_threads(1)
    examples, tags, truth = world
    budget = quality.Budget(epochs=1, batch_size=64, learning_rate=0.01, embedding_dim=8, hidden_dim=8)
    result = quality.study(examples, tags, truth, budget, [0], log=lambda line: None)

    assert [r["family"] for r in result["records"]] == [r.family for r in quality.RUNS]
    summary = quality.summarise(result["records"])
    for family in quality.FAMILIES:
        for objective in quality.OBJECTIVES:
            for key in (("metrics", objective, "auc"), ("metrics", objective, "gauc"),
                        ("metrics", objective, "log_loss"), ("profile", objective, "recall"),
                        ("profile", objective, "hit")):
                assert len(summary[family][key]) == 1 and np.isfinite(summary[family][key][0]), (family, key)
    references = result["references"]
    assert references[quality.ORACLE]["profile"] == {o: {"recall": 1.0, "hit": 1.0} for o in quality.OBJECTIVES}
    assert references[quality.ORACLE]["metrics"]["ctr"]["auc"] > 0.6  # labels were drawn from the truth
    assert references[quality.POPULARITY]["profile"] == _popularity_by_hand(examples, truth)
    (diagnostics,) = result["diagnostics"]
    for stats in diagnostics["objectives"].values():
        assert 0 <= stats["mean_entropy"] <= stats["uniform_entropy"] + 1e-9
        assert stats["facet_consistency"] >= 1 / stats["experts"]

    assert {o: set(gaps) for o, gaps in result["paired"].items()} == {o: set(quality.BASELINES)
                                                                         for o in quality.OBJECTIVES}
    for objective in quality.OBJECTIVES:  # one seed: the paired gap is the plain AUC difference
        for baseline, gap in result["paired"][objective].items():
            expected = summary["mvke"][("metrics", objective, "auc")][0] - \
                summary[baseline][("metrics", objective, "auc")][0]
            assert gap.gap == pytest.approx(expected) and gap.seed_se == 0.0 and gap.data_se > 0

    block = quality.report(result, command="bench/quality.py --tiny", sizes={"users": NUM_USERS}, budget=budget,
                           seeds=[0], timings={"total": 1.0})
    assert "| mvke |" in block and "| oracle | " in block and "MVKE" in block
    assert "| cvr | mind |" in block


def test_tag_fields_reach_every_family(quality, world):
    """--tag-fields is part of the shared budget: every run gets it, and the report names it."""
    torch.set_num_threads(1)
    examples, tags, truth = world
    budget = quality.Budget(epochs=1, batch_size=64, learning_rate=0.01, embedding_dim=8, hidden_dim=8,
                            tag_fields=("clicked_tags",))
    assert {run.conf(budget, 0).tag_fields for run in quality.RUNS} == {("clicked_tags",)}
    train_rows = examples.rows(~examples.is_validation)
    model = quality.train(quality.Run("mvke"), examples, train_rows, budget, 0).model
    assert "clicked_tags" not in model.field_embedding.tables
    assert quality.budget_of(quality.parse_args(["--tag-fields", "clicked_tags, converted_tags"])).tag_fields == \
        ("clicked_tags", "converted_tags")
    assert quality.budget_of(quality.parse_args([])).tag_fields == ()


def test_shared_experts_give_mvke_and_mmoe_every_expert_for_both_objectives(quality, world):
    """--shared-experts changes the expert sets of the two families that have experts, and only theirs."""
    torch.set_num_threads(1)
    examples, tags, truth = world
    shared = quality.budget_of(quality.parse_args(["--shared-experts"]))
    default = quality.budget_of(quality.parse_args([]))
    every, split = (0, 1, 2, 3, 4), {"ctr": (0, 1, 2), "cvr": (1, 2, 3, 4)}
    assert {run.label: run.conf(shared, 0).expert_sets for run in quality.RUNS} == {
        "mvke": {"ctr": every, "cvr": every}, "mmoe": {"ctr": every, "cvr": every}, "two_tower[ctr]": split,
        "two_tower[cvr]": split, "hard_sharing": split, "mind": split}
    assert {run.conf(default, 0).expert_sets == split for run in quality.RUNS} == {True}
    train_rows = examples.rows(~examples.is_validation)
    small = dataclasses.replace(shared, epochs=1, batch_size=64, embedding_dim=8, hidden_dim=8)
    model = quality.train(quality.Run("mvke"), examples, train_rows, small, 0).model
    gates = model.tag_vectors(torch.arange(2, NUM_TAGS), torch.ones(NUM_TAGS - 2, dtype=torch.long))
    assert {o: gates[o].experts.tolist() for o in ("ctr", "cvr")} == {"ctr": list(every), "cvr": list(every)}


def test_cvr_mode_reaches_every_multi_objective_family(quality, world):
    """--cvr-mode esmm trains every family with a ctr output ESMM-style; the single-objective towers
    stay on their own labels, and cvr is scored on clicked samples either way."""
    torch.set_num_threads(1)
    examples, tags, truth = world
    budget = quality.Budget(epochs=1, batch_size=64, learning_rate=0.01, embedding_dim=8, hidden_dim=8,
                            cvr_mode="esmm")
    assert {run.label: run.conf(budget, 0).cvr_mode for run in quality.RUNS} == {
        "mvke": "esmm", "two_tower[ctr]": "clicked", "two_tower[cvr]": "clicked", "hard_sharing": "esmm",
        "mmoe": "esmm", "mind": "esmm"}
    assert quality.budget_of(quality.parse_args(["--cvr-mode", "esmm"])).cvr_mode == "esmm"
    assert quality.budget_of(quality.parse_args([])).cvr_mode == "clicked"

    train_rows, rows = examples.rows(~examples.is_validation), examples.rows(examples.is_validation)
    esmm = quality.train(quality.Run("mvke"), examples, train_rows, budget, 0).model
    clicked = quality.train(quality.Run("mvke"), examples, train_rows,
                            dataclasses.replace(budget, cvr_mode="clicked"), 0).model
    flat = lambda model: torch.cat([v.flatten().float() for v in model.state_dict().values()])  # noqa: E731
    assert not torch.equal(flat(esmm), flat(clicked))  # same seed and batches: only the loss differs
    logits = quality.model_logits(esmm, examples, rows)
    clicked_rows = examples.columns["click"][rows] > 0.5
    expected = quality.auc(examples.columns["conversion"][rows][clicked_rows], logits["cvr"][clicked_rows])
    assert quality.model_metrics(esmm, examples, rows)["cvr"]["auc"] == pytest.approx(expected)


def test_kernel_history_changes_mvke_only(quality):
    budget = quality.Budget(epochs=1, batch_size=64, learning_rate=0.01, embedding_dim=8, hidden_dim=8)
    runs = quality.runs_of(quality.parse_args(["--kernel-history"]))
    assert [r.family for r in runs] == [r.family for r in quality.RUNS]
    assert {r.family: r.conf(budget, 0).kernel_history for r in runs} == {
        "mvke": True, "two_tower": False, "hard_sharing": False, "mmoe": False, "mind": False}
    assert quality.runs_of(quality.parse_args([])) == quality.RUNS


def test_world_settings_reach_the_generator(quality, tmp_path):
    args = quality.parse_args(["--users", "300", "--facets", "12", "--interest-sharpness", "8", "--base-cvr", "0.005"])
    conf = quality.study_config(tmp_path, **quality.sizes_of(args)).generate
    assert (conf.users, conf.facets, conf.interest_sharpness, conf.base_cvr) == (300, 12, 8.0, 0.005)
    assert (conf.tags, conf.items, conf.days, conf.seed) == (60, 400, 12, 7)
    defaults = quality.study_config(tmp_path, **quality.sizes_of(quality.parse_args([]))).generate
    assert (defaults.base_cvr, defaults.interest_sharpness) == (GenerateConf.base_cvr, GenerateConf.interest_sharpness)


def test_a_reused_world_is_rebuilt_when_the_code_that_wrote_it_changes(quality, tmp_path):
    """--work-dir reuses a world only if its generator settings and world code are those of this run."""
    root = Path(__file__).resolve().parents[2]
    code = tmp_path / "code"
    for package in ("core", "features", "jobs", "synthetic", "mvke"):
        shutil.copytree(root / package, code / package)
    config = quality.study_config(tmp_path, **quality.sizes_of(quality.parse_args([])))
    stamp = quality.world_stamp(config, code)
    assert quality.world_stamp(config, code) == stamp
    other = quality.study_config(tmp_path, **quality.sizes_of(quality.parse_args(["--users", "300"])))
    assert quality.world_stamp(other, code) != stamp
    with open(code / "mvke" / "models.py", "a") as model_code:  # the models do not write the world
        model_code.write("\n# edited\n")
    assert quality.world_stamp(config, code) == stamp
    for edited in ("synthetic/dataset.py", "features/__init__.py", "jobs/features.py", "core/contract.py"):
        before = quality.world_stamp(config, code)
        with open(code / edited, "a") as world_code:
            world_code.write("\n# edited\n")
        assert quality.world_stamp(config, code) != before, edited


def test_ablation_trains_each_declared_variant_with_its_options(quality, world):
    torch.set_num_threads(1)
    examples, tags, truth = world
    budget = quality.Budget(epochs=1, batch_size=64, learning_rate=0.01, embedding_dim=8, hidden_dim=8)
    assert quality.ABLATION[1].conf(budget, 0).diversity_weight == 0.1
    assert quality.ABLATION[2].conf(budget, 0).projected_gate and not quality.ABLATION[0].conf(budget, 0).projected_gate
    logged = []
    table = quality.ablation(examples, tags, truth, budget, [0], log=logged.append).splitlines()
    assert [row.split(" | ")[0].lstrip("| ") for row in table[2:]] == [r.label for r in quality.ABLATION]
    assert table[3].startswith("| mvke diversity_weight=0.1 | 0.")
    assert len(logged) == len(quality.ABLATION)


def test_profile_top_tags_match_forward(quality, world):
    """The serving path's top tags equal the top tags of `forward` over every (user, tag) pair."""
    from core.config import ModelConf
    from mvke import build_model

    examples, tags, _ = world
    _, user_rows = quality.validation_users(examples)
    for name in ("mvke", "mind"):
        model = build_model(ModelConf(name=name, embedding_dim=8, hidden_dim=8, seed=3), examples.fields,
                            NUM_TAGS, NUM_CATEGORIES).eval()
        top = quality.model_top_tags(model, examples, user_rows, tags, 3)
        (batch,) = quality.batches(examples, np.repeat(user_rows, len(tags.tag_index)), 10_000)
        batch["tag"] = torch.as_tensor(np.tile(tags.tag_index, len(user_rows)))
        batch["tag_category"] = torch.as_tensor(np.tile(tags.category_id, len(user_rows)))
        with torch.no_grad():
            logits = model(batch)
        for objective, chosen in top.items():
            scores = logits[objective].reshape(len(user_rows), len(tags.tag_index)).numpy()
            expected = tags.tag_index[np.argsort(-scores, axis=1)[:, :3]]
            assert np.array_equal(np.sort(chosen, axis=1), np.sort(expected, axis=1)), (name, objective)


def test_profile_overlap_and_priors(quality):
    top = np.array([[2, 3, 4], [5, 6, 7]])
    true_top = np.array([[4, 9, 8], [2, 3, 1]])
    assert quality.profile_overlap(top, true_top) == {"recall": pytest.approx(1 / 6), "hit": 0.5}

    rate = quality.smoothed_rate(np.array([2, 2, 3]), np.array([1.0, 1.0, 0.0]), np.ones(3), 4)
    overall, m = 2 / 3, quality.PRIOR_STRENGTH
    assert rate[2] == pytest.approx((2 + m * overall) / (2 + m))
    assert rate[3] == pytest.approx((0 + m * overall) / (1 + m))
    assert rate[0] == pytest.approx(overall)


def test_generated_block_is_replaced_in_place(quality, tmp_path):
    doc = tmp_path / "quality.md"
    doc.write_text("# Title\n\nreading above\n")
    quality.write_generated(doc, "first")
    doc.write_text(doc.read_text() + "\nreading below\n")
    quality.write_generated(doc, "second")
    begin, end = "<!-- BEGIN GENERATED by bench/quality.py -->", "<!-- END GENERATED -->"
    assert doc.read_text() == f"# Title\n\nreading above\n\n{begin}\nsecond\n{end}\n\nreading below\n"


def test_paired_gaps_match_a_brute_force_paired_bootstrap(quality):
    """The weighted AUC and the paired bootstrap against row repetition and training.metrics.auc."""
    from training.metrics import auc

    rng = np.random.default_rng(5)
    n, users = 900, 120
    groups = rng.integers(0, users, n)
    labels = (rng.random(n) < 0.3).astype(np.float64)
    mine = [np.round(labels + rng.normal(0, s, n), 1) for s in (0.9, 1.0)]  # rounded: ties
    theirs = {"a": [np.round(labels + rng.normal(0, s, n), 1) for s in (1.1, 1.3)]}

    weights = rng.poisson(1.0, n)
    keep = np.repeat(np.arange(n), weights)
    assert quality.weighted_auc(labels, mine[0])(weights) == pytest.approx(auc(labels[keep], mine[0][keep]))

    (gap,) = quality.paired_auc_gaps(labels, groups, mine, theirs, replicates=30, seed=9).values()
    per_seed = [auc(labels, m) - auc(labels, t) for m, t in zip(mine, theirs["a"])]
    assert gap.gap == pytest.approx(np.mean(per_seed))
    assert gap.seed_se == pytest.approx(np.std(per_seed, ddof=1) / np.sqrt(2))
    _, user = np.unique(groups, return_inverse=True)
    draw = np.random.default_rng(9)
    replicate_gaps = []
    for _ in range(30):
        rows = np.repeat(np.arange(n), draw.poisson(1.0, user.max() + 1)[user])
        replicate_gaps.append(np.mean([auc(labels[rows], m[rows]) - auc(labels[rows], t[rows])
                                       for m, t in zip(mine, theirs["a"])]))
    assert gap.data_se == pytest.approx(np.std(replicate_gaps, ddof=1))
    assert gap.z == pytest.approx(gap.gap / np.hypot(gap.data_se, gap.seed_se))
