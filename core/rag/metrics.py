"""Retrieval metrics on ranked lists of ids: hit@k, recall@k, reciprocal rank and nDCG@k. The retrieval sweep
(core.evaluate.sweep_exec) and the evaluation (core.evaluate.metrics) both score with these."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

# A retrieved item is a str or a collection of strs (its chunk id and its document name); gold ids may name
# either. Each gold id is credited once, to the first item that matches it.

Retrieved = Sequence["str | Iterable[str]"]


def _item_ids(item) -> set[str]:
    return {item} if isinstance(item, str) else set(item)


def _new_hits(retrieved: Retrieved, gold: Iterable[str], k: int | None = None) -> list[int]:
    """How many not-yet-credited gold ids each of the top k items matches."""
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    remaining = set(gold)
    hits = []
    for item in list(retrieved)[:k]:
        matched = _item_ids(item) & remaining
        remaining -= matched
        hits.append(len(matched))
    return hits


def hit_at_k(retrieved: Retrieved, gold: Iterable[str], k: int) -> float:
    return float(any(_new_hits(retrieved, gold, k)))


def recall_at_k(retrieved: Retrieved, gold: Iterable[str], k: int) -> float:
    gold = set(gold)
    return sum(_new_hits(retrieved, gold, k)) / len(gold) if gold else 0.0


def reciprocal_rank(retrieved: Retrieved, gold: Iterable[str]) -> float:
    hits = _new_hits(retrieved, gold)
    return next((1.0 / rank for rank, hit in enumerate(hits, start=1) if hit), 0.0)


def ndcg_at_k(retrieved: Retrieved, gold: Iterable[str], k: int) -> float:
    """Binary gain for an item that credits a new gold id (so 3 chunks of one gold document count once)."""
    gold = set(gold)
    hits = _new_hits(retrieved, gold, k)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(hits, start=1) if hit)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal if ideal else 0.0
