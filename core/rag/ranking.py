"""From the hits of a vector search and a full-text search to the passages a recipe uses: one pure function,
`rank`, shared by `KnowledgeBase.search` and the retrieval sweep, so a sweep measures exactly what the assistant
will do.

* mode ``vector`` / ``fts``: the first hits of that search.
* mode ``hybrid``: both searches fused. Reranker ``rrf`` (reciprocal rank fusion): score = Σ 1 / (rrf_k + rank).
  Reranker ``linear``: score = w · cosine similarity + (1 − w) · full-text score / the best full-text score of
  the list (a hit missing from one search gets 0 there; w = `LINEAR_WEIGHT`, LanceDB's default).
* reranker ``llm`` (any mode): the first `LLM_DEPTH` hits of the above (fused with RRF in hybrid mode) are
  scored by a `Scorer` (how likely the recipe's local model finds the question after each passage, see
  core.rag.rerank) and re-ordered. Without a scorer the first-stage order is kept.
"""

from __future__ import annotations

from typing import Callable

from core.i18n import Msg

RERANKERS = {
    "rrf": Msg("Reciprocal rank fusion"),
    "linear": Msg("Weighted sum of scores"),
    "llm": Msg("The model reranks (slower)"),
}
LINEAR_WEIGHT = 0.7   # weight of the vector similarity in the linear combination
LLM_DEPTH = 10        # first-stage passages the model re-scores

Scorer = Callable[[str, list[str]], list[float]]  # (question, passage texts) -> relevance, higher is better


def depth(k: int) -> int:
    """How many hits of each search a hybrid fusion reads to pick `k`."""
    return max(k * 4, 20)


def first_stage(k: int, reranker: str) -> int:
    """How many passages the first stage keeps (more than k when a model re-scores them)."""
    return max(k, LLM_DEPTH) if reranker == "llm" else k


def fetch_depth(mode: str, k: int, reranker: str = "rrf") -> int:
    """How many hits to ask each search for, so that `rank` has all it needs."""
    n = first_stage(k, reranker)
    return depth(n) if mode == "hybrid" else n


def fuse(by_vector: list, by_text: list, k: int, rrf_k: int = 60, reranker: str = "rrf") -> list:
    """The top k of two ranked hit lists fused (new Hit objects with `score` and `ranks` set)."""
    from core.rag.store import Hit

    fused: dict[str, Hit] = {}
    best_text = max((h.score for h in by_text), default=0.0) or 1.0
    for mode, hits in (("vector", by_vector), ("text", by_text)):
        for rank, hit in enumerate(hits, start=1):
            kept = fused.setdefault(hit.chunk_id, Hit(**{**hit.__dict__, "score": 0.0, "ranks": {}}))
            if reranker == "linear":
                part = LINEAR_WEIGHT * (hit.similarity or 0.0) if mode == "vector" else \
                    (1.0 - LINEAR_WEIGHT) * max(hit.score, 0.0) / best_text
            else:
                part = 1.0 / (rrf_k + rank)
            kept.score += part
            kept.ranks[mode] = rank
            kept.similarity = kept.similarity if kept.similarity is not None else hit.similarity
    return sorted(fused.values(), key=lambda h: -h.score)[:k]


def rerank(question: str, hits: list, scorer: Scorer) -> list:
    """Hits re-ordered by the scorer (stable for equal scores); `score` becomes the scorer's value."""
    if not hits:
        return []
    scores = scorer(question, [h.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
    out = []
    for i in order:
        hit = hits[i]
        hit.ranks = {**(hit.ranks or {}), "first_stage": i + 1}
        hit.score = float(scores[i])
        out.append(hit)
    return out


def rank(mode: str, by_vector: list, by_text: list, k: int, rrf_k: int = 60, reranker: str = "rrf",
         question: str = "", scorer: Scorer | None = None) -> list:
    """The k passages a recipe with these settings uses, from search results at least `fetch_depth` deep."""
    n = first_stage(k, reranker)
    if mode == "vector":
        hits = list(by_vector[:n])
    elif mode == "fts":
        hits = list(by_text[:n])
    else:
        hits = fuse(by_vector[:depth(n)], by_text[:depth(n)], n, rrf_k, "linear" if reranker == "linear" else "rrf")
    if reranker == "llm" and scorer is not None:
        from copy import copy

        hits = rerank(question, [copy(h) for h in hits], scorer)
    return hits[:k]
