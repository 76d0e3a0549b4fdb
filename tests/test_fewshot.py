"""Few-shot examples: selection strategies (with a deterministic fake embedder) and the token budget."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ContextOverflowError, StudioError
from core.fewshot import Budget, FewShotSettings, fit_examples, mmr, select_examples
from core.models.base import CompletionLabels
from core.prompt import PromptSettings, build_messages

QUESTION = "how can I reset my password"
POOL = [{"id": str(i), "prompt": p, "response": f"answer {i}"} for i, p in enumerate([
    "What are your opening hours on weekends",
    "How do I reset my password",
    "How do I reset my password please",  # near-duplicate of the one above
    "Can I change my password by email",
    "Where is the nearest store",
    "Do you ship orders abroad",
])]


def _settings(**changes) -> FewShotSettings:
    return FewShotSettings(**{"enabled": True, "k": 2, **changes})


def _prompts(rows) -> list[str]:
    return [row["prompt"] for row in rows]


# --- selection -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, pool", [
    (FewShotSettings(enabled=False, k=3), POOL),
    (_settings(k=0), POOL),
    (_settings(), []),
    (_settings(strategy="semantic"), []),
])
def test_nothing_selected(settings, pool, hash_embedder):
    assert select_examples(pool, QUESTION, settings, hash_embedder) == []
    assert hash_embedder.calls == []  # no embedding work when nothing is wanted


@pytest.mark.parametrize("k, expected", [(1, ["0"]), (3, ["0", "1", "2"]), (50, [str(i) for i in range(6)])])
def test_fixed_takes_the_first_k(k, expected):
    assert [row["id"] for row in select_examples(POOL, QUESTION, _settings(k=k))] == expected


def test_random_is_seeded_and_repeatable():
    pool = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(30)]
    picks = {seed: _prompts(select_examples(pool, "x", _settings(strategy="random", k=4, seed=seed)))
             for seed in range(5)}
    for seed, chosen in picks.items():
        assert chosen == _prompts(select_examples(pool, "x", _settings(strategy="random", k=4, seed=seed)))
        assert len(chosen) == len(set(chosen)) == 4
        assert set(chosen) <= {row["prompt"] for row in pool}
    assert len({tuple(c) for c in picks.values()}) > 1  # the seed matters
    assert picks[0] != _prompts(pool[:4])  # not just the fixed strategy


def test_random_with_k_larger_than_pool_returns_all():
    chosen = select_examples(POOL, QUESTION, _settings(strategy="random", k=10, seed=3))
    assert sorted(_prompts(chosen)) == sorted(_prompts(POOL))


@pytest.mark.parametrize("strategy", ["semantic", "mmr"])
def test_embedding_strategies_need_the_embedder(strategy):
    with pytest.raises(StudioError, match="embedder"):
        select_examples(POOL, QUESTION, _settings(strategy=strategy))


@pytest.mark.parametrize("question, nearest", [
    ("how can I reset my password", "How do I reset my password"),
    ("opening hours on weekends?", "What are your opening hours on weekends"),
    ("do you ship abroad", "Do you ship orders abroad"),
    ("nearest store please", "Where is the nearest store"),
])
def test_semantic_picks_the_nearest_first(question, nearest, hash_embedder):
    chosen = select_examples(POOL, question, _settings(strategy="semantic", k=1), hash_embedder)
    assert _prompts(chosen) == [nearest]
    assert hash_embedder.calls == [[question] + _prompts(POOL)]


def test_semantic_orders_by_similarity(hash_embedder):
    chosen = select_examples(POOL, QUESTION, _settings(strategy="semantic", k=3), hash_embedder)
    assert _prompts(chosen) == ["How do I reset my password", "How do I reset my password please",
                                "Can I change my password by email"]


def test_mmr_avoids_the_near_duplicate(hash_embedder):
    semantic = select_examples(POOL, QUESTION, _settings(strategy="semantic", k=2), hash_embedder)
    diverse = select_examples(POOL, QUESTION, _settings(strategy="mmr", k=2, mmr_lambda=0.5), hash_embedder)
    assert _prompts(semantic) == ["How do I reset my password", "How do I reset my password please"]
    assert _prompts(diverse) == ["How do I reset my password", "Can I change my password by email"]


def test_mmr_balance_one_equals_semantic(hash_embedder):
    semantic = select_examples(POOL, QUESTION, _settings(strategy="semantic", k=4), hash_embedder)
    pure = select_examples(POOL, QUESTION, _settings(strategy="mmr", k=4, mmr_lambda=1.0), hash_embedder)
    assert _prompts(pure) == _prompts(semantic)


def test_mmr_function_directly():
    # three candidates: 0 and 1 identical and most similar, 2 orthogonal and a bit less similar
    candidates = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    similarity = np.array([0.9, 0.9, 0.8])
    assert mmr(similarity, candidates, 2, 0.5) == [0, 2]
    assert mmr(similarity, candidates, 2, 1.0) == [0, 1]
    assert mmr(similarity, candidates, 5, 0.5) == [0, 2, 1]  # never more than there are
    assert mmr(similarity, candidates, 0, 0.5) == []


@pytest.mark.parametrize("changes, fragment", [
    (dict(strategy="closest"), "Unknown selection strategy"),
    (dict(k=-1), "between 0 and 50"),
    (dict(k=51), "between 0 and 50"),
    (dict(mmr_lambda=1.5), "MMR balance"),
    (dict(mmr_lambda=-0.1), "MMR balance"),
])
def test_invalid_settings(changes, fragment):
    with pytest.raises(StudioError, match=fragment):
        FewShotSettings(**changes)


def test_settings_round_trip():
    settings = FewShotSettings(enabled=True, dataset="faq", strategy="mmr", k=5, seed=7, mmr_lambda=0.25)
    assert FewShotSettings.from_dict(settings.to_dict()) == settings
    assert FewShotSettings.from_dict({**settings.to_dict(), "unknown": 1}) == settings
    assert FewShotSettings.from_dict(None) == FewShotSettings()


# --- token budget with a real (tiny) tokenizer ---------------------------------------------------------------

PROMPT = PromptSettings(system_prompt="You help {company}. Answer briefly.", template="{question}",
                        variables={"company": "ACME"})
LABELS = CompletionLabels()
SHORT = [{"prompt": f"Short question {i}?", "response": f"Short answer {i}."} for i in range(1, 3)]
LONG = [{"prompt": "A long question " + "about the weather today " * 3, "response": "Sunny. " * 4}
        for _ in range(2)]


@pytest.fixture(params=[("llama", False), ("gemma3", True)], ids=["completion", "chat-template"])
def backend(request, tiny_backend):
    return tiny_backend(*request.param)


def _count(backend, question, examples):
    pairs = [(e["prompt"], e["response"]) for e in examples]
    return backend.count_tokens(backend.render(build_messages(PROMPT, question, pairs), LABELS))


def test_everything_fits_with_exact_counts(backend):
    question = "Thủ đô của Việt Nam là gì?"
    kept, rendered, budget = fit_examples(backend, PROMPT, question, SHORT + LONG, answer_reserve=20,
                                          context_window=256, labels=LABELS)
    assert kept == SHORT + LONG
    assert budget.dropped == 0
    assert budget.used == backend.count_tokens(rendered) == _count(backend, question, kept)
    assert budget.total == budget.used + 20
    assert budget.free == 256 - budget.total >= 0
    assert budget.fits
    assert not budget.approximate
    assert len(budget.example_tokens) == 4
    assert all(t > 0 for t in budget.example_tokens)
    assert budget.example_tokens[2] > budget.example_tokens[0]  # long examples cost more
    assert budget.question_tokens == backend.count_tokens(backend.render([{"role": "user", "content": question}],
                                                                        LABELS))
    assert budget.system_tokens == _count(backend, question, []) - budget.question_tokens
    for example in kept:
        assert example["prompt"].strip() in rendered.text and example["response"].strip() in rendered.text
    assert rendered.text.rstrip().endswith(("Answer:", "<|assistant|>"))
    assert question in rendered.text


def test_per_example_costs_add_up(backend):
    question = "Hours?"
    bare = _count(backend, question, [])
    _, _, budget = fit_examples(backend, PROMPT, question, SHORT, 10, 256, LABELS)
    assert budget.example_tokens[0] == _count(backend, question, SHORT[:1]) - bare
    assert budget.example_tokens[1] == _count(backend, question, SHORT) - _count(backend, question, SHORT[:1])


def test_trimming_at_the_exact_boundary(backend):
    question = "Where is the store?"
    reserve = 16
    examples = SHORT + LONG
    two = _count(backend, question, SHORT)
    assert _count(backend, question, SHORT + LONG[:1]) > two  # sanity: a long example adds tokens

    kept, rendered, budget = fit_examples(backend, PROMPT, question, examples, reserve, two + reserve, LABELS)
    assert kept == SHORT
    assert budget.dropped == 2
    assert budget.free == 0 and budget.fits
    assert budget.used == backend.count_tokens(rendered) == two

    kept, _, budget = fit_examples(backend, PROMPT, question, examples, reserve, two + reserve - 1, LABELS)
    assert kept == SHORT[:1]
    assert budget.dropped == 3
    assert budget.fits


def test_a_shorter_later_example_still_fits(backend):
    question = "Where is the store?"
    reserve = 8
    window = _count(backend, question, SHORT[:1]) + reserve
    kept, _, budget = fit_examples(backend, PROMPT, question, LONG[:1] + SHORT[:1], reserve, window, LABELS)
    assert kept == SHORT[:1]
    assert budget.dropped == 1


def test_only_the_bare_prompt_fits(backend):
    question = "Where is the store?"
    reserve = 8
    bare = _count(backend, question, [])
    kept, rendered, budget = fit_examples(backend, PROMPT, question, SHORT, reserve, bare + reserve, LABELS)
    assert kept == []
    assert budget.example_tokens == ()
    assert budget.dropped == 2
    assert budget.used == bare == backend.count_tokens(rendered)
    assert budget.free == 0


def test_context_overflow_when_the_bare_prompt_does_not_fit(backend):
    question = "Where is the store?"
    reserve = 8
    bare = _count(backend, question, [])
    with pytest.raises(ContextOverflowError, match=f"need {bare} tokens plus {reserve}"):
        fit_examples(backend, PROMPT, question, SHORT, reserve, bare + reserve - 1, LABELS)


def test_budget_arithmetic():
    budget = Budget(context_window=100, system_tokens=10, example_tokens=(5, 7), question_tokens=3,
                    answer_reserve=80, dropped=1, approximate=True)
    assert budget.used == 25
    assert budget.total == 105
    assert budget.free == -5
    assert not budget.fits


# --- starter examples --------------------------------------------------------------------------------------------

def test_a_base_model_without_examples_gets_the_starter_examples_and_nothing_else_does(tiny_backend, tmp_path):
    """Without a question answered in its prompt the base model rambled (F1 0.186 against 0.351 with the two
    starters, bench/README.md); a user's examples, an adapter, a merged export, a chat model or the switch turn
    them off."""
    import json

    from core.assistant import prepare
    from core.fewshot import STARTER_EXAMPLES, STARTER_EXAMPLES_VI
    from core.models.adapters import EXPORT_MANIFEST
    from core.models.source import ModelSource
    from core.recipe import Recipe

    from core.models.generation import GenerationSettings

    base, chat = tiny_backend("llama"), tiny_backend("llama", chat_template=True)
    recipe = Recipe(generation=GenerationSettings(max_new_tokens=16))  # the tiny model reads 256 tokens at most
    prepared = prepare(recipe, QUESTION, base, [])
    assert [(e["prompt"], e["response"]) for e in prepared.examples] == list(STARTER_EXAMPLES)
    assert f"Question: {STARTER_EXAMPLES[0][0]}\nAnswer: {STARTER_EXAMPLES[0][1]}" in prepared.prompt.text
    assert prepared.prompt.text.endswith(f"Question: {QUESTION}\nAnswer:")
    vietnamese = "Cửa hàng mở cửa lúc mấy giờ vào Chủ nhật?"  # examples in the question's language
    assert [(e["prompt"], e["response"]) for e in prepare(recipe, vietnamese, base, []).examples] == \
        list(STARTER_EXAMPLES_VI)
    mine = recipe.with_changes(fewshot=_settings(strategy="fixed", k=1))
    assert _prompts(prepare(mine, QUESTION, base, POOL).examples) == [POOL[0]["prompt"]]
    assert not prepare(recipe.with_changes(adapter="an-adapter"), QUESTION, base, []).examples
    assert not prepare(recipe, QUESTION, chat, []).examples
    off = recipe.with_changes(prompt=PromptSettings(starter_examples=False))
    assert not prepare(off, QUESTION, base, []).examples and "Eiffel" not in prepare(off, QUESTION, base, []).prompt.text
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / EXPORT_MANIFEST).write_text(json.dumps({"adapter": "run-1"}))
    assert not prepare(recipe.with_changes(model=ModelSource(kind="local", location=str(merged))), QUESTION, base,
                       []).examples
    assert PromptSettings.from_dict({}).starter_examples  # recipes saved before the setting get it
    assert not PromptSettings.from_dict(off.prompt.to_dict()).starter_examples
