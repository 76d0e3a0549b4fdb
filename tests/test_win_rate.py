"""Win rate of a preference-tuned recipe over its parent on held-out preference prompts, judged by a reward model
or by an OpenAI-compatible judge; the preference rung on the ladder."""

from __future__ import annotations

import pytest

from core.errors import StudioError
from core.evaluate import runs, variants, win_rate
from core.models.generation import GenerationSettings
from core.recipe import RecipeStore
from tests.test_preference import PAIRS, make_project, quick, train


@pytest.fixture
def tuned(project, tiny_model_dir):
    """A project with preference pairs, a DPO adapter that held out a quarter of them, and a reward model."""
    recipe = make_project(project, tiny_model_dir("llama"))
    recipe = recipe.with_changes(generation=GenerationSettings(max_new_tokens=8))
    RecipeStore(project).save(recipe)
    dpo, _ = train(project, recipe, quick(epochs=1, eval_fraction=0.25))
    reward, _ = train(project, recipe, quick(objective="reward", epochs=2))
    return recipe, dpo.id, reward.id


def test_ladder_gains_a_preference_rung_with_the_dpo_adapter(project, tuned):
    recipe, dpo_id, reward_id = tuned
    rungs = {v.key: v for v in variants.ladder(project, recipe)}
    assert list(rungs)[:len(variants.RUNGS)] == list(variants.RUNGS)
    assert rungs["preference"].recipe.adapter == dpo_id
    assert not rungs["adapter"].ready  # a DPO adapter or a reward model is not the supervised adapter rung
    held = win_rate.heldout_ids(project, dpo_id)
    assert held is not None and len(held) == 3  # 12 pairs, a quarter held out
    assert win_rate.heldout_ids(project, reward_id) is None  # trained on every pair


def run_with(project, recipe, only_ids, **options):
    ladder = {v.key: v for v in variants.ladder(project, recipe)}
    chosen = [ladder["prompt"], ladder["preference"]]
    run = runs.create_eval_run(project, "prefs", chosen, runs.EvalOptions(semantic=False, **options),
                               only_ids=only_ids)
    result = runs.execute(project, run.id, lambda **event: None)
    assert result["finished"]
    return run


def test_win_rate_by_reward_model_on_held_out_prompts(project, tuned, monkeypatch):
    recipe, dpo_id, reward_id = tuned
    held = win_rate.heldout_ids(project, dpo_id)
    calls = []
    real = __import__("core.finetune.reward", fromlist=["score_answers"]).score_answers

    def recording(project_, model_id, prompt, answers):
        scores = real(project_, model_id, prompt, answers)
        calls.append((model_id, prompt, list(answers), scores))
        return scores

    monkeypatch.setattr("core.finetune.reward.score_answers", recording)
    run = run_with(project, recipe, held, win_judge=f"reward:{reward_id}", win_parent="prompt")
    rows = run.results()
    assert {r["record_id"] for r in rows} == held  # only the held-out prompts were asked
    assert {r["question"] for r in rows} <= {p for p, _, _ in PAIRS}
    parent = {r["record_id"]: r for r in rows if r["variant"] == "prompt"}
    for row in rows:
        if row["variant"] == "prompt":
            assert row["scores"]["win_rate"] == 0.5
            continue
        theirs = parent[row["record_id"]]["answer"]
        if row["answer"].strip() == theirs.strip():
            assert row["scores"]["win_rate"] == 0.5
            continue
        model_id, _, _, scores = next(c for c in calls if c[1:3] == (row["question"], [row["answer"], theirs]))
        assert model_id == reward_id
        assert row["scores"]["win_rate"] == (0.5 if abs(scores[0] - scores[1]) <= win_rate.TIE_MARGIN
                                             else float(scores[0] > scores[1]))
    assert calls, "the tuned and the parent recipe answered alike everywhere; nothing was judged"
    summary = run.summary()
    assert summary["prompt"]["win_rate"] == 0.5
    assert 0.0 <= summary["preference"]["win_rate"] <= 1.0
    assert "token_f1" in summary["preference"]  # the chosen answer is the reference


class AlwaysFirst:
    """A judge that always prefers the answer shown first."""

    def __init__(self):
        self.prompts = []

    def render(self, messages, labels, tools=None):
        self.prompts.append(messages[0]["content"])
        return messages[0]["content"]

    def stream(self, prompt, settings):
        from core.models.generation import GenerationStream

        return GenerationStream(lambda emit, cancel: (emit("A") or (1, 1)))


def test_llm_judge_sees_both_orders_so_position_bias_cancels(project, tuned, monkeypatch):
    recipe, dpo_id, _ = tuned
    judge = AlwaysFirst()
    monkeypatch.setattr(win_rate, "judge_backend", lambda options: judge)
    monkeypatch.setattr("core.evaluate.judge.judge_rows", lambda rows, records, options: False)  # grades: not here
    endpoint = {"kind": "openai", "location": "http://127.0.0.1:9/v1", "model_name": "judge", "api_key_env": ""}
    run = run_with(project, recipe, None, win_judge="judge", win_parent="prompt", judge_model=endpoint)
    rows = [r for r in run.results() if r["variant"] == "preference"]
    parent = {r["record_id"]: r["answer"] for r in run.results() if r["variant"] == "prompt"}
    compared = [r for r in rows if r["answer"].strip() != parent[r["record_id"]].strip()]
    assert len(compared) >= 2 and len(judge.prompts) == len(compared)
    for row in compared:
        flipped = win_rate._order_flipped(row["record_id"], "preference")
        assert row["scores"]["win_rate"] == (0.0 if flipped else 1.0)  # "A" is the parent when flipped
    assert any("Answer A:" in p and "Answer B:" in p for p in judge.prompts)


@pytest.mark.parametrize("reply,choice", [("A", "A"), ("b.", "B"), ("Tie", "TIE"), ("Answer B is better", "B"),
                                          ("neither", None), ("", None)])
def test_parse_choice(reply, choice):
    assert win_rate.parse_choice(reply) == choice


@pytest.mark.parametrize("options,message", [
    (dict(win_judge="reward:x"), "compares against"),
    (dict(win_judge="judge", win_parent="prompt"), "LLM judge"),
    (dict(win_judge="magic", win_parent="prompt"), "reward model or"),
])
def test_win_options_are_checked(options, message):
    with pytest.raises(StudioError, match=message):
        runs.EvalOptions(**options)


def test_evaluation_page_offers_held_out_prompts_and_the_win_rate(project, tuned, workspace):
    from tests.apptest_helpers import button, open_page

    at = open_page("evaluate")
    at.selectbox(key=f"evaluate.{project.slug}.dataset").set_value("prefs").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.toggle(key=f"evaluate.{project.slug}.heldout").value is True
    assert any("3 prompts held out" in t.label for t in at.toggle)
    labels = [m.value for m in at.markdown]
    assert any("+ preference tuning" in v for v in labels)
    at.toggle(key=f"evaluate.{project.slug}.win").set_value(True).run()
    judged_by = at.selectbox(key=f"evaluate.{project.slug}.win_judge")
    assert judged_by.options and judged_by.options[0].startswith("reward model")
    assert at.selectbox(key=f"evaluate.{project.slug}.win_parent").value == "prompt"
    assert button(at, "Run evaluation") is not None
