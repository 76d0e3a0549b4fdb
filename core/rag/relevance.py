"""Is a retrieved chunk relevant to a labeled query? Judged by source and text, so it holds across chunkings.

Chunk ids change whenever documents are cut differently, so a sweep cannot compare ids. A query's gold
(`gold_ids` and `gold_passages` of an eval record) becomes a list of *gold units*, and each retrieved chunk is
matched to them:

* ``passage`` ({"source", "text"}): a chunk of the same source that shares at least half of the smaller of the
  two texts (`overlap`, counted in word trigrams, so a chunk cut from the passage, or one that holds it, counts);
* ``document`` (a gold id that names a document of the knowledge base): any chunk of that document;
* ``id`` (any other gold id, e.g. a chunk id that could not be turned into a passage): a chunk with exactly that
  chunk id or source name, as `core.evaluate.metrics` matches ids;
* ``answer`` (the short reference answers of a question that names no gold, one unit for all of them): any chunk
  whose words hold one answer's words in order, as open-domain QA scores a retriever when only answers are known
  (Karpukhin et al., "Dense Passage Retrieval", 2020). A passage can hold the answer by chance, so this is a
  weaker label than a marked passage.

Each unit is credited once, to the first chunk that matches it, by the retrieval metrics of
`core.evaluate.metrics`: `judge` turns every retrieved chunk into the tuple of unit labels ("g0", "g1", …) it
matches and `labels` gives the gold list, so hit@k, recall@k, MRR and nDCG@k apply unchanged.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable

THRESHOLD = 0.5   # share of the smaller text that must be shared
SHINGLE = 3       # words per shingle (fewer when a text is shorter)
UNIT_KINDS = ("passage", "document", "id", "answer")


@dataclass(frozen=True)
class GoldUnit:
    kind: str           # passage | document | id
    source: str = ""    # passage, document: the document's name
    text: str = ""      # passage: its text; answer: the accepted answers, one a line
    id: str = ""        # id: the gold id as given

    def __post_init__(self):
        if self.kind not in UNIT_KINDS:
            raise ValueError(f"unknown gold unit kind {self.kind!r}")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: dict) -> "GoldUnit":
        return cls(**{k: data[k] for k in ("kind", "source", "text", "id") if k in data})


def words(text: str) -> list[str]:
    """Casefolded words (Unicode letters and digits, NFC, so Vietnamese diacritics stay distinct)."""
    return re.findall(r"\w+", unicodedata.normalize("NFC", text or "").casefold())


@functools.lru_cache(maxsize=65536)
def _shingles(text: str, n: int) -> frozenset:
    found = words(text)
    return frozenset(tuple(found[i:i + n]) for i in range(len(found) - n + 1))


def overlap(a: str, b: str) -> float:
    """Share of the smaller text's word trigrams that the other text has too (0..1). Texts shorter than three
    words are compared in shingles of their own length; an empty text overlaps nothing."""
    n = min(SHINGLE, len(words(a)), len(words(b)))
    if n == 0:
        return 0.0
    left, right = _shingles(a, n), _shingles(b, n)
    return len(left & right) / min(len(left), len(right))


def holds_answer(text: str, answer: str) -> bool:
    """Whether `text` holds the words of `answer` in order, case, accents' composition and punctuation aside."""
    wanted = words(answer)
    return bool(wanted) and f" {' '.join(wanted)} " in f" {' '.join(words(text))} "


def chunk_fields(item) -> tuple[str, str, str]:
    """(chunk_id, source, text) of a Hit, a dict or a (chunk_id, source, text) tuple."""
    if isinstance(item, dict):
        return item.get("chunk_id", ""), item.get("source", ""), item.get("text", "")
    if isinstance(item, (tuple, list)):
        return tuple((list(item) + ["", "", ""])[:3])
    return getattr(item, "chunk_id", ""), getattr(item, "source", ""), getattr(item, "text", "")


def matches(unit: GoldUnit, item, threshold: float = THRESHOLD) -> bool:
    """Whether one retrieved chunk (Hit, dict or tuple, see `chunk_fields`) is relevant to one gold unit."""
    chunk_id, source, text = chunk_fields(item)
    if unit.kind == "document":
        return source == unit.source
    if unit.kind == "id":
        return unit.id in (chunk_id, source)
    if unit.kind == "answer":
        return any(holds_answer(text, answer) for answer in unit.text.splitlines())
    return source == unit.source and overlap(text, unit.text) >= threshold


def gold_units(gold_ids: Iterable[str] = (), gold_passages: Iterable[dict] = (), documents: Iterable[str] = (),
               passages_by_id: dict[str, dict] | None = None, answers: Iterable[str] = ()) -> list[GoldUnit]:
    """The gold units of one query, passages first, answers last, without repeats.

    `documents` are the knowledge base's document names (gold ids naming one become ``document`` units);
    `passages_by_id` maps chunk ids to {"source", "text"} (gold ids found there become ``passage`` units, so they
    are judged by text in every chunking). A gold id that is the chunk id of one of the gold passages is that
    passage and is not counted twice.
    """
    from core.rag.store import chunk_id

    documents, passages_by_id = set(documents), passages_by_id or {}
    units: list[GoldUnit] = []
    covered: set[str] = set()

    def add(unit: GoldUnit) -> None:
        if unit not in units:
            units.append(unit)

    for passage in gold_passages or ():
        source, text = str(passage.get("source") or ""), str(passage.get("text") or "")
        if text.strip():
            add(GoldUnit("passage", source=source, text=text))
            covered.add(chunk_id(source, text))
    for gold in gold_ids or ():
        gold = str(gold)
        if gold in covered:
            continue
        if gold in documents:
            add(GoldUnit("document", source=gold))
        elif gold in passages_by_id:
            found = passages_by_id[gold]
            add(GoldUnit("passage", source=found["source"], text=found["text"]))
        else:
            add(GoldUnit("id", id=gold))
    said = [str(answer).strip() for answer in answers or () if str(answer).strip()]
    if said:  # one unit for all of a question's answers: finding any of them is finding where the answer is
        add(GoldUnit("answer", text="\n".join(said)))
    return units


def labels(units: list[GoldUnit]) -> list[str]:
    """The gold list the metrics take: one label per unit."""
    return [f"g{i}" for i in range(len(units))]


def judge(retrieved: Iterable, units: list[GoldUnit], threshold: float = THRESHOLD) -> list[tuple[str, ...]]:
    """Per retrieved chunk, in order, the labels of the gold units it is relevant to (empty when none)."""
    return [tuple(f"g{i}" for i, unit in enumerate(units) if matches(unit, item, threshold)) for item in retrieved]


def first_relevant_rank(judged: list[tuple[str, ...]]) -> int | None:
    """1-based rank of the first relevant chunk, or None."""
    return next((rank for rank, found in enumerate(judged, start=1) if found), None)
