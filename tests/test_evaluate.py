"""Eval runs on tiny models: the ladder, a row per rung, cached answers reused, resume after a stop, advice, and
failures sent to labeling."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core import cli
from core.data.pairs import save_pairs
from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError
from core.evaluate import advice, runs, variants
from core.evaluate.variants import Variant
from core.fewshot import FewShotSettings
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore

QUESTIONS = [("When do orders ship?", "Within two business days."), ("What is the capital of France?", "Paris."),
             ("Thủ đô của Việt Nam là gì?", "Hà Nội.")]


@pytest.fixture
def eval_project(project, tiny_model_dir):
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))),
                    fewshot=FewShotSettings(enabled=False, dataset="examples", strategy="random", k=2),
                    generation=GenerationSettings(temperature=0.0, max_new_tokens=4))
    RecipeStore(project).save(recipe)
    save_pairs(project, "examples", [{"prompt": "Do you ship abroad?", "response": "Yes, to the EU."},
                                     {"prompt": "Are you open Sunday?", "response": "No."}])
    DatasetStore(project).create("eval", "eval", [new_record("eval", question=q, reference=a, gold_ids=["faq.md"])
                                                  for q, a in QUESTIONS])
    return project


def test_ladder_marks_missing_rungs_with_their_setup_page(eval_project):
    rungs = variants.ladder(eval_project, RecipeStore(eval_project).load())
    assert [v.key for v in rungs] == list(variants.RUNGS)
    ready = {v.key: v.ready for v in rungs}
    assert ready == {"prompt": True, "fewshot": True, "retriever": False, "adapter": False,
                     "adapter_retriever": False}
    by_key = {v.key: v for v in rungs}
    assert by_key["retriever"].setup_page == "retriever" and by_key["adapter"].setup_page == "finetune"
    assert not by_key["prompt"].recipe.fewshot.enabled and by_key["fewshot"].recipe.fewshot.enabled
    assert all(v.recipe.adapter is None for v in rungs if v.ready)


def test_a_ladder_run_gives_a_row_per_rung_and_reuses_cached_answers(eval_project, monkeypatch):
    rungs = variants.ladder(eval_project, RecipeStore(eval_project).load())
    run = runs.create_eval_run(eval_project, "eval", rungs)
    events = []
    result = runs.execute(eval_project, run.id, lambda **e: events.append(e))
    assert result["finished"] and run.status().state == "done"
    rows = run.results()
    assert len(rows) == 2 * len(QUESTIONS) and not any(r["cached"] for r in rows)
    summary = run.summary()
    assert set(summary) == {"prompt", "fewshot"}
    for key in summary:
        assert summary[key]["answered"] == len(QUESTIONS)
        assert {"exact_match", "token_f1", "rouge_l", "semantic_similarity", "latency_s", "prompt_tokens"} \
            <= set(summary[key])
        assert "hit_at_k" not in summary[key]  # no retriever, no retrieval metrics
    assert summary["fewshot"]["prompt_tokens"] > summary["prompt"]["prompt_tokens"]  # the examples cost tokens
    assert summary["prompt"]["weights_mb"] == pytest.approx(summary["fewshot"]["weights_mb"]) \
        and summary["prompt"]["weights_mb"] > 0
    assert events[-1]["type"] == "done"

    def no_generation(*args, **kwargs):
        raise AssertionError("an unchanged variant must come from the cache")

    monkeypatch.setattr(runs, "_ask", no_generation)
    again = runs.create_eval_run(eval_project, "eval", rungs)
    runs.execute(eval_project, again.id, lambda **e: None)
    assert all(r["cached"] for r in again.results()) and len(again.results()) == len(rows)
    assert again.summary()["prompt"]["weights_mb"] == summary["prompt"]["weights_mb"]  # known without loading
    assert {r["answer"] for r in again.results()} == {r["answer"] for r in rows}


def test_a_changed_recipe_is_answered_again(eval_project):
    recipe = RecipeStore(eval_project).load()
    first = Variant("a", "a", recipe)
    changed = Variant("a", "a", recipe.with_changes(generation=GenerationSettings(temperature=0.0, max_new_tokens=3)))
    assert runs.variant_fingerprint(eval_project, first) != runs.variant_fingerprint(eval_project, changed)
    assert runs.variant_fingerprint(eval_project, first) == runs.variant_fingerprint(
        eval_project, Variant("b", "b", recipe.with_changes(name="other")))  # the name does not shape answers
    from dataclasses import replace

    off = recipe.with_changes(retriever=replace(recipe.retriever, enabled=False, k=7))
    assert runs.variant_fingerprint(eval_project, Variant("c", "c", off)) == runs.variant_fingerprint(
        eval_project, first)  # nor do the settings of a switched-off retriever


def test_a_stopped_run_keeps_its_answers_and_finishes_later(eval_project):
    run = runs.create_eval_run(eval_project, "eval", [variants.saved_recipe(eval_project, "assistant")],
                               runs.EvalOptions(batch_size=1))
    answered = []

    def stop_after_two() -> bool:
        return len(run.results()) >= 2

    result = runs.execute(eval_project, run.id, lambda **e: answered.append(e), should_stop=stop_after_two)
    assert not result["finished"] and len(run.results()) == 2 and run.status().state == "new"
    result = runs.execute(eval_project, run.id, lambda **e: None)
    assert result["finished"] and len(run.results()) == len(QUESTIONS)
    assert sorted(r["record_id"] for r in run.results()) == sorted(run.spec["record_ids"])


def test_a_stop_request_ends_a_batch_mid_generation_and_keeps_none_of_its_cut_answers(eval_project, tiny_model_dir):
    """SIGTERM or Ctrl-C on `studio eval` must not wait for a whole batch of long answers."""
    from core import assistant

    recipe = RecipeStore(eval_project).load().with_changes(
        generation=GenerationSettings(temperature=0.0, max_new_tokens=150, stop=()))
    RecipeStore(eval_project).save(recipe)
    backend = assistant.recipe_backend(eval_project, recipe)
    tokens = {"seen": 0}

    def stop_after_five_tokens() -> bool:
        tokens["seen"] += 1
        return tokens["seen"] > 5

    prompts = [assistant.plan(recipe, q, backend, [], eval_project)[0].prompt for q, _ in QUESTIONS]
    cut = backend.generate_batch(prompts, recipe.generation, should_stop=stop_after_five_tokens)
    assert max(out["output_tokens"] for out in cut) <= 6

    run = runs.create_eval_run(eval_project, "eval", [variants.saved_recipe(eval_project, "assistant")],
                               runs.EvalOptions(batch_size=8))
    tokens["seen"] = 0
    result = runs.execute(eval_project, run.id, lambda **e: None, should_stop=stop_after_five_tokens)
    assert not result["finished"] and run.results() == []
    assert runs.AnswerCache(eval_project).load() == {}  # cut answers are not cached either


def test_bad_runs_are_refused_with_a_sentence(eval_project):
    with pytest.raises(StudioError, match="does not exist"):
        runs.create_eval_run(eval_project, "nope", [])
    with pytest.raises(StudioError, match="not an evaluation set"):
        runs.create_eval_run(eval_project, "examples", [])
    rungs = variants.ladder(eval_project, RecipeStore(eval_project).load())
    with pytest.raises(StudioError, match="set up"):
        runs.create_eval_run(eval_project, "eval", [v for v in rungs if not v.ready])


def test_tool_call_questions_are_scored_on_the_call(eval_project, monkeypatch):
    call = {"name": "book_service", "arguments": {"service": "basic", "date": "2026-12-01"}}
    DatasetStore(eval_project).create("tools", "eval", [new_record("eval", question="Book a basic service on 1 Dec",
                                                                    expected_call=call)])
    monkeypatch.setattr(runs, "_ask", lambda *a, **k: {"answer": json.dumps(call), "latency_s": 0.1,
                                                       "prompt_tokens": 10, "output_tokens": 5, "retrieved": []})
    run = runs.create_eval_run(eval_project, "tools", [variants.saved_recipe(eval_project, "assistant")])
    runs.execute(eval_project, run.id, lambda **e: None)
    scores = run.results()[0]["scores"]
    assert scores["tool_name"] == 1.0 and scores["tool_args"] == 1.0 and scores["valid_json"] == 1.0
    assert "exact_match" not in scores


def test_advice_names_the_cheapest_rung_that_meets_the_target():
    ladder = [Variant(k, k, Recipe()) for k in ("prompt", "fewshot", "retriever")] + \
             [Variant("adapter", "adapter", None, missing="no adapter", setup_page="finetune")]
    summary = {"prompt": {"token_f1": 0.2}, "fewshot": {"token_f1": 0.55}, "retriever": {"token_f1": 0.7,
                                                                                          "hit_at_k": 0.9}}
    assert advice.advise(ladder, summary, "token_f1", 0.5).best == "fewshot"
    assert advice.advise(ladder, summary, "token_f1", 0.65).best == "retriever"
    missed = advice.advise(ladder, summary, "token_f1", 0.9)
    assert missed.best is None and "retriever" in str(missed.message)
    assert any("Fine-tune" in str(step) for step in missed.next_steps)
    assert advice.advise(ladder, {}, "token_f1", 0.5).best is None


def test_failures_go_to_the_labeling_queue_once(eval_project):
    rows = [{"variant": "prompt", "question": "Q1", "reference": "A1", "answer": "wrong", "scores": {"token_f1": 0.1}},
            {"variant": "prompt", "question": "Q2", "reference": "A2", "answer": "A2", "scores": {"token_f1": 1.0}},
            {"variant": "fewshot", "question": "Q3", "reference": "A3", "answer": "no", "scores": {"token_f1": 0.0}}]
    failed = advice.failures(rows, "prompt", "token_f1", 0.5)
    assert [r["question"] for r in failed] == ["Q1"]
    assert advice.send_to_labeling(eval_project, failed, "Prompt") == 1
    assert advice.send_to_labeling(eval_project, failed, "Prompt") == 0
    records, _ = DatasetStore(eval_project).load(advice.FAILURES_DATASET)
    assert records[0]["prompt"] == "Q1" and records[0]["response"] == "A1" and records[0]["status"] == "unlabeled"
    assert "wrong" in records[0]["comment"] and records[0]["tags"] == ["eval-failure"]


def test_cli_eval_ladder_json(eval_project):
    result = CliRunner().invoke(cli.app, ["eval", eval_project.name, "--ladder", "--json", "--limit", "2"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    by_key = {row["variant"]: row for row in payload["variants"]}
    assert list(by_key) == list(variants.RUNGS)
    assert by_key["prompt"]["answered"] == 2 and "token_f1" in by_key["fewshot"]
    assert not by_key["adapter"]["ready"] and by_key["adapter"]["missing"]


def test_export_parity_scores_the_merged_folder_like_base_plus_adapter(eval_project, tiny_model_dir):
    from core.finetune import runs as finetune_runs
    from core.finetune.adapters import merge_and_export
    from core.models.adapters import AdapterRegistry
    from core.finetune.config import TrainConfig

    DatasetStore(eval_project).create("pairs", "sft", [new_record("sft", prompt=f"Question {i}?", response=f"Answer {i}.")
                                                       for i in range(12)])
    recipe = RecipeStore(eval_project).load()
    config = TrainConfig(dataset="pairs", method="lora", epochs=2, batch_size=4, learning_rate=5e-2, lora_rank=4,
                         max_length=64, eval_fraction=0.0, precision="fp32")
    run = finetune_runs.create_run(eval_project, config, recipe)
    finetune_runs.execute(eval_project, run.id, lambda **e: None)
    info = AdapterRegistry(eval_project).get(run.id)
    merge_and_export(info, tiny_model_dir("llama"), eval_project.subdir("exports") / f"{run.id}-merged")

    [export] = variants.merged_exports(eval_project)
    assert export.adapter == run.id
    pair = variants.export_parity(eval_project, recipe, export)
    assert pair[0].recipe.adapter == run.id and pair[1].recipe.adapter is None
    evaluation = runs.create_eval_run(eval_project, "eval", pair, runs.EvalOptions(semantic=False))
    runs.execute(eval_project, evaluation.id, lambda **e: None)
    answers = {}
    for row in evaluation.results():
        answers.setdefault(row["record_id"], {})[row["variant"]] = row["answer"]
    assert all(len(set(by_variant.values())) == 1 for by_variant in answers.values())  # greedy: same answers
    summary = evaluation.summary()
    assert summary[pair[0].key]["token_f1"] == pytest.approx(summary[pair[1].key]["token_f1"])


def test_answers_in_another_language_than_the_references_are_flagged():
    assert advice.text_language("Cửa hàng mở cửa lúc 9 giờ sáng.") == "vi"
    assert advice.text_language("The shop opens at nine in the morning.") == "latin"
    assert advice.text_language("OK") is None
    rows = [{"reference": "Cửa hàng mở cửa lúc 9 giờ sáng.", "answer": "We open at nine in the morning."}] * 3
    warning = advice.language_mismatch(rows)
    assert warning is not None and "3 of 3" in str(warning)
    same = [{"reference": "We open at nine.", "answer": "The shop opens at nine in the morning."}] * 3
    assert advice.language_mismatch(same) is None


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_batched_answers_match_one_by_one_answers(eval_project, tiny_model_dir, arch):
    from core import assistant

    recipe = RecipeStore(eval_project).load().with_changes(
        model=ModelSource(kind="local", location=str(tiny_model_dir(arch))),
        generation=GenerationSettings(temperature=0.0, max_new_tokens=6))
    variant = Variant("v", "v", recipe)
    backend = assistant.recipe_backend(eval_project, recipe)
    records = [{"question": q} for q, _ in QUESTIONS] + [{"question": "Hi?"}]  # different lengths: left padding
    batched = runs._ask_batch(eval_project, variant, records, backend, [])
    single = [runs._ask(eval_project, variant, r, backend, []) for r in records]
    assert [b["answer"] for b in batched] == [s["answer"] for s in single]
    assert [b["output_tokens"] for b in batched] == [s["output_tokens"] for s in single]
    assert [b["prompt_tokens"] for b in batched] == [s["prompt_tokens"] for s in single]
    assert all(b["batched"] and b["latency_s"] > 0 for b in batched)


def test_answers_are_not_reused_after_the_model_folder_changed(eval_project, tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llama"), folder)
    recipe = RecipeStore(eval_project).load().with_changes(model=ModelSource(kind="local", location=str(folder)))
    before = runs.variant_fingerprint(eval_project, Variant("v", "v", recipe))
    shutil.rmtree(folder)
    shutil.copytree(tiny_model_dir("gemma3"), folder)  # same path, other weights
    assert runs.variant_fingerprint(eval_project, Variant("v", "v", recipe)) != before


def test_a_missing_model_fails_with_a_sentence_and_keeps_other_answers(eval_project, tmp_path):
    recipe = RecipeStore(eval_project).load()
    good = Variant("good", "good", recipe)
    gone = Variant("gone", "gone", recipe.with_changes(model=ModelSource(kind="local", location=str(tmp_path / "x"))))
    run = runs.create_eval_run(eval_project, "eval", [good, gone], runs.EvalOptions(semantic=False))
    with pytest.raises(StudioError) as failure:
        runs.execute(eval_project, run.id, lambda **e: None)
    assert str(tmp_path / "x") in str(failure.value) or "folder" in str(failure.value).lower()
    assert {r["variant"] for r in run.results()} == {"good"} and len(run.results()) == len(QUESTIONS)


def test_a_command_line_run_shows_on_the_page_as_a_job(eval_project):
    result = CliRunner().invoke(cli.app, ["eval", eval_project.name, "--limit", "1", "--json"])
    assert result.exit_code == 0, result.output
    [run] = runs.list_eval_runs(eval_project)
    [job] = run.jobs()
    assert job.status().state == "done" and run.status().state == "done"
    assert any("answered" in str(e.get("message", "")) for e in job.events())


def test_evaluation_asks_the_model_exactly_what_chat_asks(eval_project, tiny_model_dir, monkeypatch):
    """The scoreboard measures what chat answers: both paths hand the model the same rendered prompts."""
    from core import assistant

    recipe = RecipeStore(eval_project).load().with_changes(
        model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))),
        generation=GenerationSettings(temperature=0.0, max_new_tokens=3))
    backend = assistant.recipe_backend(eval_project, recipe)
    pool = [{"id": "a", "prompt": "When do you open?", "response": "At nine."},
            {"id": "b", "prompt": "Where are you?", "response": "Main St."}]
    recipe = recipe.with_changes(fewshot=FewShotSettings(enabled=True, k=2, strategy="fixed"))
    asked: dict[str, list] = {"chat": [], "eval": []}
    real_stream, real_batch = backend.stream, backend.generate_batch
    monkeypatch.setattr(backend, "stream", lambda prompt, settings: asked["chat"].append(prompt) or
                        real_stream(prompt, settings))
    monkeypatch.setattr(backend, "generate_batch", lambda prompts, settings, **kw: asked["eval"].extend(prompts) or
                        real_batch(prompts, settings, **kw))
    records = [{"question": q} for q, _ in QUESTIONS]
    for record in records:
        assistant.answer(recipe, record["question"], backend, pool, eval_project)[1].run_to_end()
    runs._ask_batch(eval_project, Variant("v", "v", recipe), records, backend, pool)
    assert asked["chat"] and asked["chat"] == asked["eval"]


def test_a_retriever_rung_measures_whether_its_passages_hold_the_answer(eval_project, fake_embedder):
    """The split between finding and reading: a passage in the prompt holds the short reference or it does not."""
    from core.rag.retriever import RetrieverSettings
    from tests.test_sweep import CODES, make_kb, parts_corpus

    make_kb(eval_project, parts_corpus())
    DatasetStore(eval_project).create("parts", "eval", [
        new_record("eval", question=f"What does part {CODES[0]} fit?", reference="the rear derailleur"),
        new_record("eval", question=f"What is part {CODES[1]}?", reference="a tyre lever"),   # in no document
        new_record("eval", question="Do you sell parts?", reference="Yes.")])                  # nothing to look for
    recipe = RecipeStore(eval_project).load()
    searching = recipe.with_changes(retriever=RetrieverSettings(enabled=True, knowledge_base="docs", k=1,
                                                                min_similarity=0.0, mode="fts"))
    run = runs.create_eval_run(eval_project, "parts", [Variant("prompt", "prompt", recipe),
                                                       Variant("retriever", "retriever", searching)],
                               runs.EvalOptions(semantic=False))
    runs.execute(eval_project, run.id, lambda **e: None)
    found = {(r["variant"], r["question"]): r["scores"].get("answer_in_passages") for r in run.results()}
    assert found[("retriever", f"What does part {CODES[0]} fit?")] == 1.0
    assert found[("retriever", f"What is part {CODES[1]}?")] == 0.0
    assert found[("retriever", "Do you sell parts?")] is None
    assert all(value is None for (variant, _), value in found.items() if variant == "prompt")
    assert run.summary()["retriever"]["answer_in_passages"] == 0.5
    RecipeStore(eval_project).save(searching, note="search")
    table = CliRunner().invoke(cli.app, ["eval", eval_project.name, "--dataset", "parts"])
    assert table.exit_code == 0, table.output
    header, row = next(line for line in table.stdout.splitlines() if line.startswith("variant")), \
        table.stdout.splitlines()[-1]
    assert "answer_in_passages" in header and "0.500" in row  # the terminal's table shows it too


def test_advice_tells_finding_from_reading_by_the_answer_in_the_passages():
    ladder = [Variant(k, k, Recipe()) for k in ("prompt", "fewshot", "retriever")]
    reading = advice.advise(ladder, {"retriever": {"token_f1": 0.3, "answer_in_passages": 0.85}}, "token_f1", 0.6)
    assert any("hold the answer for 85% of the questions" in str(step) and "Fine-tune" in str(step)
               for step in reading.next_steps)
    finding = advice.advise(ladder, {"retriever": {"token_f1": 0.3, "answer_in_passages": 0.4}}, "token_f1", 0.6)
    assert any("only 40%" in str(step) and "Retrieval optimization" in str(step) for step in finding.next_steps)
