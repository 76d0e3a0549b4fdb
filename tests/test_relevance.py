"""Relevance by text (core.rag.relevance) and the ranking shared by search and sweeps (core.rag.ranking), on
literal examples."""

from __future__ import annotations

import pytest

from core.rag import metrics as M
from core.rag import ranking
from core.rag.relevance import GoldUnit, first_relevant_rank, gold_units, judge, labels, matches, overlap
from core.rag.store import Hit, chunk_id

PASSAGE = "Frames have a ten-year warranty against manufacturing defects. Paint is covered for two years."


@pytest.mark.parametrize("a, b, expected", [
    (PASSAGE, PASSAGE, 1.0),
    ("", PASSAGE, 0.0),
    # a chunk cut out of the passage shares all of its own trigrams (the smaller text)
    ("Frames have a ten-year warranty", PASSAGE, 1.0),
    # the same words in another order share no trigram
    ("warranty ten-year a have Frames", PASSAGE, 0.0),
    # case, punctuation and spacing do not matter
    ("FRAMES  have a TEN year, warranty", PASSAGE, 1.0),
    # half of the smaller text: 3 of its 6 trigrams
    ("Paint is covered for two years. Bikes are", "Paint is covered for two years. Helmets are sold apart", 4 / 6),
    # texts shorter than three words are compared whole
    ("warranty", "warranty", 1.0),
    ("warranty", PASSAGE, 1.0),
    ("Đổi trả", "đổi trả trong 30 ngày", 1.0),
    ("Đổi tra", "đổi trả trong 30 ngày", 0.0),   # diacritics stay distinct
])
def test_overlap(a, b, expected):
    assert overlap(a, b) == pytest.approx(expected)


def hit(source, text, cid=None):
    return Hit(cid or chunk_id(source, text), source, source, 0, "", text, 0.0)


@pytest.mark.parametrize("unit, item, expected", [
    (GoldUnit("passage", "warranty.md", PASSAGE), hit("warranty.md", PASSAGE), True),
    (GoldUnit("passage", "warranty.md", PASSAGE), hit("other.md", PASSAGE), False),       # same text, other source
    (GoldUnit("passage", "warranty.md", PASSAGE), hit("warranty.md", "Frames have a ten-year warranty against "
                                                      "defects of any kind, says the shop owner, always."), False),
    (GoldUnit("passage", "warranty.md", PASSAGE),
     hit("warranty.md", "Intro line. " + PASSAGE + " More text after it that is long enough."), True),
    (GoldUnit("document", source="warranty.md"), hit("warranty.md", "anything at all"), True),
    (GoldUnit("document", source="warranty.md"), hit("faq.md", "anything at all"), False),
    (GoldUnit("id", id="abc123"), hit("faq.md", "x", cid="abc123"), True),
    (GoldUnit("id", id="faq.md"), hit("faq.md", "x"), True),
    (GoldUnit("id", id="abc123"), {"chunk_id": "zzz", "source": "faq.md", "text": "x"}, False),
])
def test_matches(unit, item, expected):
    assert matches(unit, item) is expected


def test_gold_units_resolve_documents_chunk_ids_and_passages():
    other = "Delivery is free above eight hundred euros."
    units = gold_units(
        gold_ids=["warranty.md", chunk_id("warranty.md", PASSAGE), "c-old", "c-unknown", "warranty.md"],
        gold_passages=[{"source": "warranty.md", "text": PASSAGE}],
        documents=["warranty.md", "faq.md"],
        passages_by_id={"c-old": {"source": "sales.md", "text": other}})
    assert units == [GoldUnit("passage", "warranty.md", PASSAGE),   # its chunk id is the same passage
                     GoldUnit("document", source="warranty.md"),
                     GoldUnit("passage", "sales.md", other),         # a chunk id found in the index
                     GoldUnit("id", id="c-unknown")]
    assert [GoldUnit.from_dict(u.to_dict()) for u in units] == units


def test_judged_lists_feed_the_retrieval_metrics():
    units = [GoldUnit("passage", "warranty.md", PASSAGE), GoldUnit("document", source="sales.md")]
    retrieved = [hit("faq.md", "Opening hours are nine to six."),
                 hit("warranty.md", "Frames have a ten-year warranty against manufacturing defects."),
                 hit("warranty.md", PASSAGE),          # the same unit again: credited once
                 hit("sales.md", "Returns within thirty days.")]
    judged = judge(retrieved, units)
    assert judged == [(), ("g0",), ("g0",), ("g1",)]
    gold = labels(units)
    assert first_relevant_rank(judged) == 2
    assert M.hit_at_k(judged, gold, 1) == 0.0 and M.hit_at_k(judged, gold, 2) == 1.0
    assert M.recall_at_k(judged, gold, 3) == 0.5 and M.recall_at_k(judged, gold, 4) == 1.0
    assert M.reciprocal_rank(judged, gold) == 0.5
    assert 0 < M.ndcg_at_k(judged, gold, 4) < 1


# ---- ranking ------------------------------------------------------------------------------------------------------

def h(cid, score=0.0, similarity=None):
    return Hit(cid, "d", "d.md", 0, "", f"text {cid}", score, similarity)


VECTOR = [h("a", 0.9, 0.9), h("b", 0.8, 0.8), h("c", 0.1, 0.1)]
TEXT = [h("c", 12.0), h("b", 6.0), h("d", 3.0)]


def test_rrf_fusion_matches_the_formula():
    fused = ranking.fuse(VECTOR, TEXT, 4, rrf_k=60)
    scores = {x.chunk_id: x.score for x in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert [x.chunk_id for x in fused] == ["c", "b", "a", "d"]   # 1/63 + 1/61 > 2/62
    assert fused[1].ranks == {"vector": 2, "text": 2}


def test_linear_fusion_weighs_similarity_and_normalized_text_score():
    fused = ranking.fuse(VECTOR, TEXT, 4, reranker="linear")
    scores = {x.chunk_id: x.score for x in fused}
    w = ranking.LINEAR_WEIGHT
    assert scores["a"] == pytest.approx(w * 0.9)
    assert scores["b"] == pytest.approx(w * 0.8 + (1 - w) * 0.5)
    assert scores["c"] == pytest.approx(w * 0.1 + (1 - w) * 1.0)
    assert scores["d"] == pytest.approx((1 - w) * 0.25)
    assert [x.chunk_id for x in fused] == ["b", "a", "c", "d"]


@pytest.mark.parametrize("mode, reranker, expected", [
    ("vector", "rrf", ["a", "b"]),
    ("fts", "linear", ["c", "b"]),       # fusion settings do not touch single searches
    ("hybrid", "rrf", ["c", "b"]),
    ("hybrid", "linear", ["b", "a"]),
    ("vector", "llm", ["c", "b"]),       # the scorer prefers later letters
    ("hybrid", "llm", ["d", "c"]),
])
def test_rank(mode, reranker, expected):
    scorer = lambda question, texts: [ord(t[-1]) for t in texts]  # noqa: E731
    assert [x.chunk_id for x in ranking.rank(mode, VECTOR, TEXT, 2, 60, reranker, "q", scorer)] == expected
    assert [x.chunk_id for x in VECTOR] == ["a", "b", "c"] and VECTOR[0].score == 0.9  # inputs untouched


def test_fetch_depth():
    assert ranking.fetch_depth("vector", 3) == 3
    assert ranking.fetch_depth("hybrid", 3) == 20 and ranking.fetch_depth("hybrid", 8) == 32
    assert ranking.fetch_depth("fts", 3, "llm") == ranking.LLM_DEPTH
