"""The recipe's model helping retrieval: it scores how likely the question is after each passage (the ``llm``
reranker) and rewrites a question into search keywords (query rewriting). Both are plain functions built from a
loaded backend, so the sweep and the tests can pass their own.

Scoring needs the model's token probabilities, so only a model loaded in this process (transformers'
`LocalModel` or llama.cpp's `LlamaCppModel`) can score; `llm_scorer` returns None for an OpenAI-compatible
endpoint. Rewriting only generates text, so any backend can rewrite.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Callable

from core.rag.ranking import Scorer

# Question likelihood (Sachan et al., "Improving Passage Retrieval with Zero-Shot Question Generation", 2022): a
# passage is as relevant as the question is likely after it. A 270M model scores this far better than it answers
# "is this passage relevant?" (bench/README.md).
QUESTION_PROMPT = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"
REWRITE_PROMPT = ("Rewrite this question as a few search keywords, without a sentence.\n"
                  "Question: {question}")
MAX_PASSAGE_TOKENS = 384
MAX_QUESTION_TOKENS = 64
SCORE_BATCH = 8
Rewriter = Callable[[str], str]


def can_score(backend) -> bool:
    """Whether the backend is a model in this process (its token probabilities are readable): a transformers
    model, or llama.cpp (`continuation_logprobs`)."""
    return hasattr(backend, "tokenizer") and (hasattr(backend, "model") or hasattr(backend, "continuation_logprobs"))


def llm_scorer(backend) -> Scorer | None:
    """score(question, passages) -> the mean log-probability of the question's tokens after each passage and
    `QUESTION_PROMPT`, one float per passage (higher = more relevant); None when the backend cannot score. Plain
    text, no chat template: it measures what the model expects, not what it would answer."""
    if not can_score(backend):
        return None
    tokenizer, model = backend.tokenizer, getattr(backend, "model", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def prompt_ids(passage: str) -> list[int]:
        ids = tokenizer(passage, add_special_tokens=False)["input_ids"][:MAX_PASSAGE_TOKENS]
        return tokenizer(QUESTION_PROMPT.format(passage=tokenizer.decode(ids).strip()))["input_ids"]

    def score(question: str, passages: list[str]) -> list[float]:
        asked = tokenizer(" " + " ".join(question.split()), add_special_tokens=False)["input_ids"][:MAX_QUESTION_TOKENS]
        if not asked or not passages:
            return [0.0] * len(passages)
        if hasattr(backend, "continuation_logprobs"):  # llama.cpp reads one prompt at a time
            return [sum(row) / len(row) for row in
                    backend.continuation_logprobs([prompt_ids(p) for p in passages], asked)]
        import torch

        scores: list[float] = []
        for start in range(0, len(passages), SCORE_BATCH):
            encoded = [prompt_ids(p) + asked for p in passages[start:start + SCORE_BATCH]]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=model.device)
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded],
                                     device=model.device)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens start at position 0
            with getattr(backend, "lock", contextlib.nullcontext()), torch.inference_mode():
                # the last len(asked) + 1 positions: each predicts the next question token (the last one, nothing)
                logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                               logits_to_keep=len(asked) + 1).logits[:, :-1, :]
            logp = torch.log_softmax(logits.float(), dim=-1)
            targets = torch.tensor(asked, device=logp.device).expand(logp.shape[0], -1)
            scores.extend(logp.gather(2, targets.unsqueeze(-1)).squeeze(-1).mean(-1).tolist())
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
