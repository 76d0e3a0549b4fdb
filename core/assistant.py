"""The Assistant: turns a recipe and a question into a rendered prompt and a streamed answer."""

from __future__ import annotations

from dataclasses import dataclass

from core.data import pairs
from core.fewshot import Budget, fit_examples, select_examples, starter_examples
from core.models.base import ModelBackend, RenderedPrompt
from core.models.generation import GenerationStream
from core.recipe import Recipe
from core.tools import merge_tools
from core.workspace import Project
from core.i18n import Msg


@dataclass(frozen=True)
class PreparedPrompt:
    prompt: RenderedPrompt
    examples: list[dict]
    budget: Budget
    sources: tuple = ()       # retrieved passages in the prompt, numbered [1], [2], … in this order
    searched: bool = False    # the recipe searched its knowledge base for this question

    @property
    def nothing_found(self) -> bool:
        return self.searched and not self.sources

    @property
    def prompt_tokens(self) -> int:
        return self.budget.used


def source_dicts(prepared: PreparedPrompt, answer: str | None = None) -> list[dict]:
    """The passages of an answer as plain dicts, numbered as the answer cites them ([1], [2], …). With the
    answer, each says whether the answer is drawn from it ('supports': cited, or holding most of its words)."""
    found = [{"number": i, "source": h.source, "page": h.page, "heading": h.heading, "text": h.text,
              "similarity": h.similarity} for i, h in enumerate(prepared.sources, start=1)]
    if answer is not None:
        from core.rag.attribution import supporting

        drawn_from = set(supporting(answer, [h.text for h in prepared.sources]))
        for source in found:
            source["supports"] = source["number"] in drawn_from
    return found


def example_pool(project: Project | None, recipe: Recipe) -> list[dict]:
    if project is None or not recipe.fewshot.enabled:
        return []
    return pairs.load_pairs(project, recipe.fewshot.dataset)


def adapter_folder(project: Project | None, recipe: Recipe):
    """The folder of the recipe's attached adapter, or None when it has none."""
    if not recipe.adapter or project is None:
        return None
    from core.models.adapters import AdapterRegistry

    return AdapterRegistry(project).get(recipe.adapter).folder


def recipe_backend(project: Project | None, recipe: Recipe, progress=None) -> ModelBackend:
    """The recipe's model with its adapter applied (loaded once per process)."""
    from core.models.registry import get_backend

    return get_backend(recipe.model, progress, adapter=adapter_folder(project, recipe))


def context_window(recipe: Recipe, backend: ModelBackend) -> int:
    return min(recipe.context_window or backend.context_length, backend.context_length)


def retrieve(project: Project | None, recipe: Recipe, question: str, backend: ModelBackend | None = None) -> list:
    """Relevant passages from the recipe's knowledge base, best first ([] when retrieval is off). With `backend`
    (the recipe's model), the settings' LLM reranker and query rewriting use it; without one they are skipped."""
    settings = recipe.retriever
    if project is None or not settings.enabled or not question.strip():
        return []
    from core.rag.kb import KnowledgeBase
    from core.rag.retriever import relevant

    scorer = text_query = None
    if backend is not None and (settings.reranker == "llm" or settings.query_rewrite):
        from core.rag import rerank

        scorer = rerank.llm_scorer(backend) if settings.reranker == "llm" else None
        text_query = rerank.rewrite_query(backend, recipe, question) if settings.query_rewrite else None
    hits = KnowledgeBase(project, settings.knowledge_base).search(question, settings.mode, settings.k,
                                                                  rrf_k=settings.rrf_k, reranker=settings.reranker,
                                                                  text_query=text_query, scorer=scorer)
    return relevant(hits, settings)

def recipe_tools(recipe: Recipe, tools: list | None = None) -> tuple[dict, ...]:
    """The recipe's tools plus those given for one question (an eval record's); one per name, the question's win."""
    return merge_tools(recipe.tools, tools)


def prepare(recipe: Recipe, question: str, backend: ModelBackend, pool: list[dict],
            project: Project | None = None, passages: list | None = None, *,
            tools: list | None = None) -> PreparedPrompt:
    """The prompt for one question: examples and passages fitted to the context window. `tools` (OpenAI function
    tools, e.g. an eval record's) are offered with the recipe's tools."""
    from functools import partial

    from core.rag.retriever import cites_sources, context_block

    embed = None
    if recipe.fewshot.enabled and recipe.fewshot.strategy in ("semantic", "mmr") and pool:
        from core.models.embedder import embed
    if passages is None:
        # The model is passed only when the settings use it (callers and tests replace retrieve with 3 arguments).
        uses_model = recipe.retriever.reranker == "llm" or recipe.retriever.query_rewrite
        passages = retrieve(project, recipe, question, backend) if uses_model else retrieve(project, recipe, question)
    preferred = select_examples(pool, question, recipe.fewshot, embed)
    if not preferred and wants_starter_examples(recipe, backend):
        preferred = starter_examples(question)
    kept, rendered, budget = fit_examples(backend, recipe.prompt, question, preferred,
                                          recipe.generation.max_new_tokens, context_window(recipe, backend),
                                          recipe.labels, passages, partial(context_block, cite=cites_sources(backend)),
                                          recipe_tools(recipe, tools))
    sources = tuple(passages[:len(passages) - budget.passages_dropped])
    return PreparedPrompt(rendered, kept, budget, sources, recipe.retriever.enabled and project is not None)


def wants_starter_examples(recipe: Recipe, backend: ModelBackend) -> bool:
    """A base model (no chat template) without an adapter, which would have learned the answers' form itself (a
    merged export of one too)."""
    from core.models.adapters import merged_with_adapter
    from core.rag.retriever import cites_sources

    return (recipe.prompt.starter_examples and not recipe.adapter and not cites_sources(backend)
            and not merged_with_adapter(recipe.model))


def plan(recipe: Recipe, question: str, backend: ModelBackend, pool: list[dict], project: Project | None = None, *,
         tools: list | None = None) -> tuple[PreparedPrompt, str | None]:
    """The one place a question becomes what the model is asked, for chat, the CLI, the API server and evaluation:
    the prepared prompt, and the recipe's "not found" sentence when the model must not be asked at all."""
    from core.errors import StudioError

    if not question.strip():
        raise StudioError(Msg("Type a question first."))
    prepared = prepare(recipe, question, backend, pool, project, tools=tools)
    return prepared, canned_answer(recipe, prepared)


def answer(recipe: Recipe, question: str, backend: ModelBackend, pool: list[dict],
           project: Project | None = None, *, tools: list | None = None) -> tuple[PreparedPrompt, GenerationStream]:
    """The prepared prompt and the answer stream. With retrieval on and no relevant passage, the stream says
    the recipe's "not found" sentence instead of letting the model invent an answer, unless the model was offered
    tools: a question for a tool (a repair status, a booking) rarely matches a document."""
    prepared, canned = plan(recipe, question, backend, pool, project, tools=tools)
    if canned is not None:
        return prepared, fixed_answer(canned, backend.count_tokens(prepared.prompt))
    return prepared, backend.stream(prepared.prompt, recipe.generation)


def answer_batch(recipe: Recipe, questions: list[str], backend: ModelBackend, pool: list[dict],
                 project: Project | None = None, *, tools: list | None = None,
                 should_stop=None) -> list[tuple[PreparedPrompt, dict]]:
    """`answer` for several questions in one batched generation (evaluation): the same prompts, the same "not found"
    rule. Each result has the text, latency_s, prompt_tokens and output_tokens. `tools`: one list per question.
    `should_stop()` true ends the generation early (its answers are cut: the caller drops them)."""
    planned = [plan(recipe, question, backend, pool, project, tools=question_tools)
               for question, question_tools in zip(questions, tools or [None] * len(questions))]
    to_generate = [prepared.prompt for prepared, canned in planned if canned is None]
    stop = {"should_stop": should_stop} if should_stop is not None else {}
    generated = iter(backend.generate_batch(to_generate, recipe.generation, **stop) if to_generate else [])
    results = []
    for prepared, canned in planned:
        if canned is None:
            out = next(generated)
            result = {key: out[key] for key in ("text", "latency_s", "prompt_tokens", "output_tokens")}
        else:
            result = {"text": canned, "latency_s": 0.0, "prompt_tokens": backend.count_tokens(prepared.prompt),
                      "output_tokens": 0}
        results.append((prepared, result))
    return results


def canned_answer(recipe: Recipe, prepared: PreparedPrompt) -> str | None:
    """The recipe's "not found" sentence when its retriever found nothing relevant (and no tool was offered)."""
    if prepared.nothing_found and not prepared.prompt.tools:
        return recipe.retriever.no_answer
    return None


def fixed_answer(text: str, prompt_tokens: int) -> GenerationStream:
    def produce(emit, cancel_event):
        emit(text)
        return prompt_tokens, 0

    stream = GenerationStream(produce)
    stream.stopped_by = "not found"
    return stream


def draft_answer(recipe: Recipe, backend: ModelBackend, question: str, pool: list[dict],
                 temperature: float | None = None, project: Project | None = None) -> str:
    """The recipe's answer to a question, as a labeling draft (a suggestion until a person accepts it)."""
    from dataclasses import replace

    if temperature is not None:
        recipe = recipe.with_changes(generation=replace(recipe.generation, temperature=temperature))
    _, stream = answer(recipe, question, backend, pool, project)
    return stream.run_to_end()
