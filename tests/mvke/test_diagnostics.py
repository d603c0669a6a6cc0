"""Kernel diagnostics on a hand-made gate matrix, against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mvke.builder import build_model
from mvke.diagnostics import (dominant_kernel, dominant_kernel_share, gate_entropy, gate_table,
                              kernel_cosine_similarity, mean_gate_entropy)

GATE = np.array([
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.0],
    [1 / 3, 1 / 3, 1 / 3],
    [0.2, 0.7, 0.1],
])
EXPERTS = [1, 2, 4]
CATEGORIES = [5, 5, 6, 6]


def test_gate_entropy():
    # 0; ln 2; ln 3; -(0.2 ln 0.2 + 0.7 ln 0.7 + 0.1 ln 0.1) = 0.3218876 + 0.2496725 + 0.2302585
    expected = [0.0, 0.6931472, 1.0986123, 0.8018186]
    np.testing.assert_allclose(gate_entropy(GATE), expected, atol=1e-6)
    assert mean_gate_entropy(torch.tensor(GATE)) == pytest.approx(sum(expected) / 4, abs=1e-6)


def test_dominant_kernel_maps_columns_to_expert_ids():
    assert dominant_kernel(GATE, EXPERTS).tolist() == [1, 1, 1, 2]  # ties: the first column
    assert dominant_kernel(GATE).tolist() == [0, 0, 0, 1]


def test_dominant_kernel_share_by_category():
    share = dominant_kernel_share(GATE, CATEGORIES, EXPERTS)
    expected = pd.DataFrame([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], index=pd.Index([5, 6], name="category"),
                            columns=pd.Index([1, 2, 4], name="kernel"))
    pd.testing.assert_frame_equal(share, expected, check_index_type=False, check_column_type=False)


def test_kernel_cosine_similarity():
    got = kernel_cosine_similarity(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]]))
    r = 1 / math.sqrt(2)
    expected = [[1, 0, r, 0], [0, 1, r, 0], [r, r, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_gate_table_reads_the_model_gates(toy, conf_for):
    model = build_model(conf_for("mvke"), toy.fields, toy.num_tags, toy.num_categories)
    tags, categories = np.arange(2, 12), np.arange(10) % 4 + 1
    tables = gate_table(model, tags, categories)
    assert set(tables) == {"ctr", "cvr"}
    cvr = tables["cvr"]
    assert list(cvr.columns) == ["tag", "category", "entropy", "dominant_kernel", "gate_1", "gate_2", "gate_3",
                                 "gate_4"]
    gates = cvr[["gate_1", "gate_2", "gate_3", "gate_4"]].to_numpy()
    assert cvr["tag"].tolist() == tags.tolist() and cvr["category"].tolist() == categories.tolist()
    with torch.no_grad():  # g_k(t) = softmax over the objective's kernels of e_t . VK_k (mvke.gate)
        embs = model.tag_tower(torch.as_tensor(tags), torch.as_tensor(categories))
        kernels = model.experts.kernels
        for objective, experts in {"ctr": [0, 1, 2], "cvr": [1, 2, 3, 4]}.items():
            expected = torch.softmax(embs[objective] @ kernels[experts].T, dim=-1).numpy()
            got = tables[objective][[f"gate_{k}" for k in experts]].to_numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cvr["entropy"], -(gates * np.log(gates)).sum(axis=1), atol=1e-6)
    assert cvr["dominant_kernel"].tolist() == [[1, 2, 3, 4][i] for i in gates.argmax(axis=1)]
    mind = build_model(conf_for("mind"), toy.fields, toy.num_tags, toy.num_categories)
    assert gate_table(mind, tags, categories) == {}
