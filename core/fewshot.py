"""Few-shot examples: selection strategies and the context-window budget that trims them before overflow."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import numpy as np

from core.errors import ContextOverflowError, StudioError
from core.models.base import CompletionLabels, ModelBackend, RenderedPrompt
from core.prompt import PromptSettings, build_messages
from core.i18n import Msg

Strategy = Literal["fixed", "random", "semantic", "mmr"]
STRATEGIES: dict[str, str] = {
    "fixed": Msg("Always the same examples (the first ones in the list)."),
    "random": Msg("A random sample, repeatable with the seed."),
    "semantic": Msg("The examples most similar to the question (MiniLM embeddings)."),
    "mmr": Msg("Similar to the question but different from each other (maximal marginal relevance)."),
}
Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class FewShotSettings:
    enabled: bool = field(default=False, metadata={"help": "Add examples to the prompt."})
    dataset: str = field(default="examples", metadata={"help": "Project dataset the examples come from."})
    strategy: Strategy = field(default="fixed", metadata={"help": "How examples are picked for each question."})
    k: int = field(default=3, metadata={"help": "How many examples to add (fewer if they do not fit)."})
    seed: int = field(default=0, metadata={"help": "Seed for the random strategy."})
    mmr_lambda: float = field(default=0.5, metadata={"help": "1 = only similarity, 0 = only diversity."})

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise StudioError(Msg("Unknown selection strategy '{strategy}'.", strategy=self.strategy))
        if not 0 <= self.k <= 50:
            raise StudioError(Msg("Number of examples must be between 0 and 50."))
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise StudioError(Msg("The MMR balance must be between 0 and 1."))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "FewShotSettings":
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# A base model that has seen no question answered in its prompt rambles, repeats itself or copies the passages; one
# answered question shows it the format (dev set, passages and no examples: F1 0.186 -> 0.351 with these two,
# bench/README.md). Invented, about nothing a user's documents hold; a user's own examples or an adapter replace them.
STARTER_EXAMPLES = (("In what year was the Eiffel Tower completed?", "1889"),
                    ("Where does the Mekong rise?", "On the Tibetan Plateau."))
# The same two for a question written in Vietnamese, so the examples do not pull the answer into English.
STARTER_EXAMPLES_VI = (("Tháp Eiffel được hoàn thành vào năm nào?", "1889"),
                       ("Sông Mê Kông bắt nguồn từ đâu?", "Từ cao nguyên Tây Tạng."))


def starter_examples(question: str = "") -> list[dict]:
    from core.text import text_language

    pairs = STARTER_EXAMPLES_VI if text_language(question) == "vi" else STARTER_EXAMPLES
    return [{"id": f"starter-{number}", "prompt": prompt, "response": answer, "starter": True}
            for number, (prompt, answer) in enumerate(pairs, start=1)]


def select_examples(pool: list[dict], question: str, settings: FewShotSettings, embed: Embed | None = None) -> list[dict]:
    """Examples in order of preference (most wanted first), at most k."""
    if not settings.enabled or not pool or settings.k == 0:
        return []
    k = min(settings.k, len(pool))
    if settings.strategy == "fixed":
        return pool[:k]
    if settings.strategy == "random":
        return random.Random(settings.seed).sample(pool, k)
    if embed is None:
        raise StudioError(Msg("Semantic and MMR selection need the embedder."))
    vectors = embed([question] + [row["prompt"] for row in pool])
    query, candidates = vectors[0], vectors[1:]
    similarity = candidates @ query
    if settings.strategy == "semantic":
        return [pool[i] for i in np.argsort(-similarity, kind="stable")[:k]]
    return [pool[i] for i in mmr(similarity, candidates, k, settings.mmr_lambda)]


def mmr(similarity: np.ndarray, candidates: np.ndarray, k: int, balance: float) -> list[int]:
    chosen: list[int] = []
    remaining = list(range(len(similarity)))
    while remaining and len(chosen) < k:
        if chosen:
            redundancy = (candidates[remaining] @ candidates[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(remaining))
        scores = balance * similarity[remaining] - (1 - balance) * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


@dataclass(frozen=True)
class Budget:
    context_window: int
    system_tokens: int       # system prompt and format overhead
    example_tokens: tuple[int, ...]  # each kept example
    question_tokens: int
    answer_reserve: int
    dropped: int             # examples trimmed to fit
    approximate: bool
    context_tokens: int = 0  # retrieved passages
    passages_dropped: int = 0

    @property
    def used(self) -> int:
        return self.system_tokens + self.context_tokens + sum(self.example_tokens) + self.question_tokens

    @property
    def total(self) -> int:
        return self.used + self.answer_reserve

    @property
    def free(self) -> int:
        return self.context_window - self.total

    @property
    def fits(self) -> bool:
        return self.free >= 0


def fit_examples(backend: ModelBackend, prompt_settings: PromptSettings, question: str, examples: list[dict],
                 answer_reserve: int, context_window: int, labels: CompletionLabels,
                 passages: list | None = None, format_context=None,
                 tools=None) -> tuple[list[dict], RenderedPrompt, Budget]:
    """Render the prompt with as many retrieved passages, then preferred examples, as fit; exact token
    counts per part. Passages come first: they carry the facts; examples only show the style. Tools are
    rendered in every candidate, so their tokens count with the system prompt."""
    passages = list(passages or [])
    dropped_passages = 0

    def render(chosen: list[dict], context: str = "") -> RenderedPrompt:
        pairs = [(e["prompt"], e["response"]) for e in chosen]
        messages = build_messages(prompt_settings, question, pairs, context)
        return backend.render(messages, labels, tools=tools) if tools else backend.render(messages, labels)

    without_context = backend.count_tokens(render([]))
    while passages and backend.count_tokens(render([], format_context(passages))) + answer_reserve > context_window:
        passages.pop()  # the least relevant goes first
        dropped_passages += 1
    context = format_context(passages) if passages else ""
    bare = render([], context)
    bare_tokens = backend.count_tokens(bare)
    context_tokens = bare_tokens - without_context
    question_tokens = backend.count_tokens(
        backend.render([{"role": "user", "content": question}], labels)) if question else 0
    question_tokens = min(question_tokens, bare_tokens)
    if bare_tokens + answer_reserve > context_window:
        raise ContextOverflowError(Msg(
            "The system prompt and question need {needed} tokens plus {reserve} for the answer, more than the "
            "{window}-token context window; shorten them or lower max new tokens.",
            needed=bare_tokens, reserve=answer_reserve, window=context_window))
    kept, costs, previous = [], [], bare_tokens
    rendered = bare
    for example in examples:
        candidate = render(kept + [example], context)
        tokens = backend.count_tokens(candidate)
        if tokens + answer_reserve > context_window:
            continue  # try the next one: a shorter example may still fit
        kept.append(example)
        costs.append(tokens - previous)
        previous, rendered = tokens, candidate
    budget = Budget(context_window, without_context - question_tokens, tuple(costs), question_tokens,
                    answer_reserve, len(examples) - len(kept), backend.approximate_tokens, context_tokens,
                    dropped_passages)
    return kept, rendered, budget
