"""The recipe's model helping retrieval: it scores how relevant a passage is (the ``llm`` reranker) and rewrites
a question into search keywords (query rewriting). Both are plain functions built from a loaded backend, so the
sweep and the tests can pass their own.

Scoring needs the model's next-token probabilities, so only a model loaded in this process (transformers'
`LocalModel` or llama.cpp's `LlamaCppModel`) can score; `llm_scorer` returns None for an OpenAI-compatible
endpoint. Rewriting only generates text, so any backend can rewrite.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Callable

from core.rag.ranking import Scorer

RELEVANCE_PROMPT = ("Passage: {passage}\nQuestion: {question}\n"
                    "Is the passage relevant to the question? Answer Yes or No.")
REWRITE_PROMPT = ("Rewrite this question as a few search keywords, without a sentence.\n"
                  "Question: {question}")
MAX_PASSAGE_TOKENS = 384
SCORE_BATCH = 8
Rewriter = Callable[[str], str]


def can_score(backend) -> bool:
    """Whether the backend is a model in this process (its next-token probabilities are readable): a transformers
    model, or llama.cpp (`choice_logprobs`)."""
    return hasattr(backend, "tokenizer") and (hasattr(backend, "model") or hasattr(backend, "choice_logprobs"))


def _first_token(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


def llm_scorer(backend) -> Scorer | None:
    """score(question, passages) -> [log P(Yes) − log P(No)] for "Is the passage relevant to the question?",
    one float per passage (higher = more relevant); None when the backend cannot score."""
    if not can_score(backend):
        return None
    from core.models.base import CompletionLabels

    tokenizer, model = backend.tokenizer, getattr(backend, "model", None)
    chat = bool(getattr(backend, "has_chat_template", False))
    yes, no = (_first_token(tokenizer, "Yes"), _first_token(tokenizer, "No")) if chat else \
        (_first_token(tokenizer, " Yes"), _first_token(tokenizer, " No"))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def prompt_ids(question: str, passage: str) -> list[int]:
        ids = tokenizer(passage, add_special_tokens=False)["input_ids"][:MAX_PASSAGE_TOKENS]
        text = RELEVANCE_PROMPT.format(passage=tokenizer.decode(ids).strip(), question=question.strip())
        rendered = backend.render([{"role": "user", "content": text}], CompletionLabels())
        return tokenizer(rendered.text, add_special_tokens=rendered.add_special_tokens)["input_ids"]

    def score(question: str, passages: list[str]) -> list[float]:
        if hasattr(backend, "choice_logprobs"):  # llama.cpp reads one prompt at a time
            return [yes_logp - no_logp for yes_logp, no_logp in
                    backend.choice_logprobs([prompt_ids(question, p) for p in passages], [yes, no])]
        import torch

        scores: list[float] = []
        for start in range(0, len(passages), SCORE_BATCH):
            encoded = [prompt_ids(question, p) for p in passages[start:start + SCORE_BATCH]]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=model.device)
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded],
                                     device=model.device)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens start at position 0
            with getattr(backend, "lock", contextlib.nullcontext()), torch.inference_mode():
                logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions).logits
            logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
            scores.extend((logp[:, yes] - logp[:, no]).tolist())
        return scores

    return score


def rewrite_query(backend, recipe, question: str) -> str:
    """The question rewritten by the recipe's model into search keywords (greedy, one short line); the question
    itself when the model writes nothing usable."""
    prompt = backend.render([{"role": "user", "content": REWRITE_PROMPT.format(question=question.strip())}],
                            recipe.labels)
    settings = replace(recipe.generation, max_new_tokens=32, temperature=0.0, stop=("\n",))
    text = backend.stream(prompt, settings).run_to_end()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    for prefix in ("keywords:", "search keywords:", "từ khóa:"):
        if line.casefold().startswith(prefix):
            line = line[len(prefix):].strip()
    return line.strip(" \"'") or question


def llm_rewriter(backend, recipe) -> Rewriter:
    """rewrite(question) -> keywords, with the recipe's model (see `rewrite_query`)."""
    return lambda question: rewrite_query(backend, recipe, question)
