"""Ties share a rank, so a sweep where every setting scores the same crowns no winner."""

from __future__ import annotations

import pytest

from core.evaluate.ranks import tied_ranks, tied_with_best


@pytest.mark.parametrize("scores, ranks, best", [
    ([1.0] * 9, [1] * 9, 9),
    ([0.9, 0.8, 0.8, 0.5], [1, 2, 2, 4], 1),
    ([0.7, 0.7, 0.6], [1, 1, 3], 2),
    ([0.5 + 1e-12, 0.5], [1, 1], 2),  # equal means that differ only in the last bits
    ([], [], 0),
])
def test_equal_scores_share_a_rank(scores, ranks, best):
    assert tied_ranks(scores) == ranks
    assert tied_with_best(scores) == best
