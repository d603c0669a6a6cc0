"""scoring.topn.top_n against a plain sort: descending by value, ties by lowest column."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scoring.topn import top_n


def _reference(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    cols = np.stack([np.lexsort((np.arange(len(row)), -row))[:n] for row in scores])
    return np.take_along_axis(scores, cols, 1), cols


def _check(scores: np.ndarray, n: int) -> None:
    values, cols = top_n(torch.from_numpy(scores), n)
    expected_values, expected_cols = _reference(scores, n)
    np.testing.assert_array_equal(cols.numpy(), expected_cols)
    np.testing.assert_array_equal(values.numpy(), expected_values)


@pytest.mark.parametrize("rows, cols, n", [(64, 1000, 10), (33, 997, 11), (5, 40, 1), (7, 12, 12), (7, 12, 30),
                                           (3, 1, 10), (50, 10007, 10)])
def test_random_rows(rows, cols, n):
    _check(np.random.default_rng(rows * cols + n).standard_normal((rows, cols), dtype=np.float32), n)


@pytest.mark.parametrize("n", [1, 4, 9, 12])
def test_ties_go_to_the_lowest_column(n):
    _check(np.random.default_rng(n).integers(0, 4, (64, 12)).astype(np.float32), n)


def test_ascending_rows_infinities_and_a_constant_row():
    ascending = np.tile(np.arange(300, dtype=np.float32), (2, 1))  # every value raises the floor
    ascending[1, ::7] = -np.inf
    rows = np.vstack([ascending, np.full((1, 300), -np.inf, np.float32), np.zeros((1, 300), np.float32),
                      np.arange(300, 0, -1, dtype=np.float32)[None, :]])
    _check(rows, 10)


def test_an_empty_block():
    values, cols = top_n(torch.empty(0, 50), 10)
    assert values.shape == cols.shape == (0, 10)


@pytest.mark.parametrize("column", [3, 999])  # inside the groups of the floor, and in the tail past them
def test_a_nan_score_is_an_error(column):
    scores = torch.randn(4, 1000)
    scores[2, column] = float("nan")
    with pytest.raises(ValueError, match="row 2 contain NaN"):
        top_n(scores, 11)
