"""An eval project and a finished ladder run answered with canned answers (no model runs), for the Evaluation
page tests and the report tests."""

from __future__ import annotations

from core.data.pairs import save_pairs
from core.data.records import new_record
from core.data.store import DatasetStore
from core.evaluate import runs, variants
from core.fewshot import FewShotSettings
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore

QUESTIONS = [("When do orders ship?", "Within two business days."),
             ("Do you ship abroad?", "Yes, to the EU."),
             ("Are you open on Sunday?", "No, only Monday to Saturday.")]
ANSWERS = {  # the prompt rung gets one question right, few-shot all three
    "prompt": ["Within two business days.", "I do not know.", "Maybe."],
    "fewshot": ["Within two business days.", "Yes, to the EU.", "No, only Monday to Saturday."],
}


def recipe_for(tiny_model_dir, **changes) -> Recipe:
    return Recipe(**{"model": ModelSource(kind="local", location=str(tiny_model_dir("llama"))),
                     "fewshot": FewShotSettings(enabled=False, dataset="examples"), **changes})


def make_eval_project(workspace, tiny_model_dir):
    """Project "Eval shop": a tiny local model, one few-shot example and the eval set "faq" of QUESTIONS."""
    project = workspace.create("Eval shop")
    RecipeStore(project).save(recipe_for(tiny_model_dir))
    save_pairs(project, "examples", [{"prompt": "Do you repair bikes?", "response": "Yes, in two days."}])
    DatasetStore(project).create("faq", "eval", [new_record("eval", question=q, reference=a) for q, a in QUESTIONS])
    return project


def finish(project, monkeypatch, answers: dict[str, list[str]] = ANSWERS, questions=QUESTIONS,
           retrieved=()) -> runs.EvalRun:
    """A ladder run over `questions`, answered with canned `answers` (prompt and few-shot are set up)."""
    by_question = {q: i for i, (q, _) in enumerate(questions)}

    def canned(project, variant, record, backend, pool):
        return {"answer": answers[variant.key][by_question[record["question"]]], "latency_s": 0.5,
                "prompt_tokens": 40 if variant.key == "fewshot" else 20, "output_tokens": 6,
                "retrieved": list(retrieved)}

    monkeypatch.setattr(runs, "_backend", lambda project, variant: object())
    monkeypatch.setattr(runs, "_ask", canned)
    rungs = variants.ladder(project, RecipeStore(project).load())
    run = runs.create_eval_run(project, "faq", rungs, runs.EvalOptions(semantic=False))
    runs.execute(project, run.id, lambda **e: None)
    assert run.status().state == "done"
    return run
