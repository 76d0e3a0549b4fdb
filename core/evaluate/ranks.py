"""Ranks that treat equal scores as equal: settings that score the same share a rank ("1, 1, 3"), so a table
never crowns one of several ties."""

from __future__ import annotations

TIE_TOLERANCE = 1e-9  # scores are means of per-question values; equal means can differ in the last bits


def tied_ranks(scores: list[float], tolerance: float = TIE_TOLERANCE) -> list[int]:
    """Competition ranks of `scores` sorted best (highest) first: each rank is 1 + the number of better scores."""
    return [1 + sum(1 for other in scores if other > score + tolerance) for score in scores]


def tied_with_best(scores: list[float], tolerance: float = TIE_TOLERANCE) -> int:
    """How many scores equal the best one."""
    if not scores:
        return 0
    best = max(scores)
    return sum(1 for score in scores if score >= best - tolerance)
