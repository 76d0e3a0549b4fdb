"""The Assistant: turns a recipe and a question into a rendered prompt and a streamed answer."""

from __future__ import annotations

from dataclasses import dataclass

from core.data import pairs
from core.fewshot import Budget, fit_examples, select_examples
from core.models.base import ModelBackend, RenderedPrompt
from core.models.generation import GenerationStream
from core.recipe import Recipe
from core.workspace import Project
from core.i18n import Msg


@dataclass(frozen=True)
class PreparedPrompt:
    prompt: RenderedPrompt
    examples: list[dict]
    budget: Budget

    @property
    def prompt_tokens(self) -> int:
        return self.budget.used


def example_pool(project: Project | None, recipe: Recipe) -> list[dict]:
    if project is None or not recipe.fewshot.enabled:
        return []
    return pairs.load_pairs(project, recipe.fewshot.dataset)


def context_window(recipe: Recipe, backend: ModelBackend) -> int:
    return min(recipe.context_window or backend.context_length, backend.context_length)


def prepare(recipe: Recipe, question: str, backend: ModelBackend, pool: list[dict]) -> PreparedPrompt:
    embed = None
    if recipe.fewshot.enabled and recipe.fewshot.strategy in ("semantic", "mmr") and pool:
        from core.models.embedder import embed
    preferred = select_examples(pool, question, recipe.fewshot, embed)
    kept, rendered, budget = fit_examples(backend, recipe.prompt, question, preferred,
                                          recipe.generation.max_new_tokens, context_window(recipe, backend),
                                          recipe.labels)
    return PreparedPrompt(rendered, kept, budget)


def answer(recipe: Recipe, question: str, backend: ModelBackend, pool: list[dict]) -> tuple[PreparedPrompt, GenerationStream]:
    from core.errors import StudioError

    if not question.strip():
        raise StudioError(Msg("Type a question first."))
    prepared = prepare(recipe, question, backend, pool)
    return prepared, backend.stream(prepared.prompt, recipe.generation)
