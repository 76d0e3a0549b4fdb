"""Retriever settings of a recipe and the numbered passages the prompt cites as [1], [2], …"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.errors import StudioError
from core.i18n import Msg
from core.rag.ranking import RERANKERS

MODES = {"vector": Msg("Meaning (vector)"), "fts": Msg("Keywords (full text)"),
         "hybrid": Msg("Both, fused (hybrid)")}


@dataclass(frozen=True)
class RetrieverSettings:
    enabled: bool = field(default=False, metadata={"help": "Add passages from the knowledge base to the prompt."})
    knowledge_base: str = field(default="docs", metadata={"help": "Which knowledge base to search."})
    mode: str = field(default="hybrid", metadata={"help": "vector, fts or hybrid (reciprocal rank fusion)."})
    # 3: with 4 or 5 passages the embedded 270M model answered worse (F1 0.27 / 0.28 against 0.31, bench/README.md)
    k: int = field(default=3, metadata={"help": "Passages added to the prompt."})
    # 0.35 with similarity as the best of a passage's and its sentences' (0.3 of the passage's own before): on the
    # dev set 0.4% of the right passages found are dropped instead of 4.7%, off-topic questions kept no more often
    min_similarity: float = field(default=0.35, metadata={
        "help": "Passages less similar to the question than this are left out; with none left, the assistant "
                "says it did not find the answer instead of inventing one."})
    rrf_k: int = field(default=60, metadata={"help": "Reciprocal rank fusion constant."})
    no_answer: str = field(default="I could not find this in the documents.",
                           metadata={"help": "What the assistant says when no passage is relevant."})
    # Added with the retrieval sweep; after the older fields so positional construction keeps working.
    reranker: str = field(default="rrf", metadata={
        "help": "How passages are ordered: rrf (reciprocal rank fusion of both searches in hybrid mode), linear "
                "(weighted sum of their scores) or llm (the recipe's local model re-scores the first passages; "
                "needs a local model). See core.rag.ranking."})
    query_rewrite: bool = field(default=False, metadata={
        "help": "The recipe's model first rewrites the question into search keywords for the full-text search."})

    def __post_init__(self):
        if self.mode not in MODES:
            raise StudioError(Msg("Unknown search mode '{mode}'.", mode=self.mode))
        if not 1 <= self.k <= 20:
            raise StudioError(Msg("The number of passages must be between 1 and 20."))
        if not 0.0 <= self.min_similarity <= 1.0:
            raise StudioError(Msg("The minimum similarity must be between 0 and 1."))
        if self.reranker not in RERANKERS:
            raise StudioError(Msg("Unknown reranker '{reranker}'.", reranker=self.reranker))
        if self.rrf_k < 1:
            raise StudioError(Msg("The fusion constant must be at least 1."))

    def to_dict(self) -> dict:
        # The fields added with the retrieval sweep are left out at their defaults, so recipes saved before keep
        # their fingerprints (cached eval answers stay valid).
        data = asdict(self)
        for name in ("reranker", "query_rewrite"):
            if data[name] == self.__dataclass_fields__[name].default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> "RetrieverSettings":
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# Raise when the passage block's text, or which passages are kept, changes: evaluation answers cached before are
# asked again. 3: similarity is the best of a passage's and its sentences' vectors.
PASSAGE_PROMPT_VERSION = 3
CITE_INSTRUCTION = "Answer from the context above and cite the passages you use like [1]."
PLAIN_INSTRUCTION = "Answer from the context above."


def format_passages(hits: list) -> str:
    """Numbered passages with where they come from, as the model reads them."""
    lines = []
    for number, hit in enumerate(hits, start=1):
        where = hit.source + (f", p. {hit.page}" if hit.page else "") + (f" — {hit.heading}" if hit.heading else "")
        lines.append(f"[{number}] ({where}) {hit.text.strip()}")
    return "\n".join(lines)


def context_block(hits: list, cite: bool = True) -> str:
    """The passages as the model reads them, with the instruction to answer from them. `cite`: also ask for [n]
    citations; for models without a chat template it is left out: a small base model cannot follow it, it made
    answers longer and worse (F1 0.28 against 0.31 on 120 questions, bench/README.md) and it invites copying the
    passage labels."""
    if not hits:
        return ""
    ask = CITE_INSTRUCTION if cite else PLAIN_INSTRUCTION
    return "Context:\n" + format_passages(hits) + "\n\n" + ask


def cites_sources(model) -> bool:
    """Whether prompts for this model ask it to cite passages: models with a chat template (and endpoints) do.
    `model`: a backend, or the tokenizer a training run renders with."""
    if hasattr(model, "has_chat_template"):
        return bool(model.has_chat_template)
    return bool(getattr(model, "chat_template", True))


def relevant(hits: list, settings: RetrieverSettings) -> list:
    return [h for h in hits if h.similarity is None or h.similarity >= settings.min_similarity]
