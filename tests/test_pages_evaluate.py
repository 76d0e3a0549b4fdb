"""The Evaluation page with streamlit's AppTest: the ladder with its missing rungs, a stored run's scoreboard
(charts, table, advice), failures only, failures sent to labeling, a running (fake) evaluation with Cancel, and
a project without an eval set. Answers are canned (runs._ask is replaced), so no model generates."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from apptest_helpers import button, open_page
from canned_ladder import ANSWERS, QUESTIONS, finish, make_eval_project
from core.data.records import new_record
from core.data.store import DatasetStore
from core.evaluate import advice, runs, variants
from core.jobs import Job
from core.recipe import RecipeStore

@pytest.fixture
def eval_project(workspace, tiny_model_dir):
    return make_eval_project(workspace, tiny_model_dir)


@pytest.fixture
def finished_run(eval_project, monkeypatch) -> runs.EvalRun:
    """A ladder run answered with canned answers (prompt and few-shot are set up; the rest are not)."""
    run = finish(eval_project, monkeypatch)
    (run.folder / "models.json").write_text('{"prompt": {"weights_bytes": 10485760, "precision": "fp32", "engine": "llama.cpp"}}')
    return run


def examples_frame(at):
    return next(d.value for d in at.dataframe if "question" in d.value.columns)


def page_links(at) -> list[str]:
    return [link.proto.label for link in at.get("page_link")]


def test_ladder_rungs_not_set_up_link_to_their_page(eval_project):
    at = open_page("evaluate")
    assert any("3 questions" in c.value for c in at.caption)
    assert any("Word overlap (F1)" in m.value for m in at.markdown)  # what can be measured
    links = page_links(at)
    assert "Set it up on the 3 · Retriever page" in links and "Set it up on the 4 · Fine-tune page" in links
    assert any("ready" in m.value and "+ few-shot" in m.value for m in at.markdown)
    assert any("2 of 5 variants" in c.value for c in at.caption)
    assert not button(at, "Run evaluation").disabled
    assert any("No evaluation yet" in c.value for c in at.caption)


def test_scoreboard_shows_charts_table_and_advice(finished_run):
    at = open_page("evaluate")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 3  # scores, costs, and quality against latency
    summary = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert list(summary["variant"]) == ["Prompt (zero-shot)", "+ few-shot", "+ retriever", "+ adapter",
                                        "+ adapter + retriever"]
    assert summary["token_f1"].iloc[1] == pytest.approx(1.0) and summary["token_f1"].iloc[0] < 0.6
    assert summary["status"].iloc[2].startswith("not set up")
    assert summary["weights_mb"].iloc[0] == pytest.approx(10.0)  # costs: the model's memory too
    assert list(summary["engine"])[:2] == ["llama.cpp", ""]  # what answered, where the run recorded it
    assert pd.isna(summary["token_f1"].iloc[2])  # a rung not set up has no score…
    assert all(d.proto.placeholder == "–" for d in at.dataframe)  # …and the tables draw it as "–", not "None"
    assert at.selectbox(key="evaluate.eval-shop.metric").value == "token_f1"
    assert any("+ few-shot is the cheapest variant" in s.value for s in at.success)
    at.slider(key="evaluate.eval-shop.target").set_value(0.3).run()
    assert any("Prompt (zero-shot) is the cheapest variant" in s.value for s in at.success)
    at.slider(key="evaluate.eval-shop.target").set_value(1.0).run()
    assert any("+ few-shot is the cheapest" in s.value for s in at.success)  # 1.0 ≥ 1.0
    assert {"Download answers (CSV)", "Download scores (JSON)"} <= {b.proto.label for b in at.get("download_button")}


def test_each_step_is_shown_with_its_interval(finished_run):
    at = open_page("evaluate")
    steps = next(d.value for d in at.dataframe if "interval" in d.value.columns)
    assert list(steps["variant"]) == ["+ few-shot"] and list(steps["below"]) == ["Prompt (zero-shot)"]
    assert steps["score"].iloc[0] == pytest.approx(1.0) and steps["step"].iloc[0] > 0.3
    assert steps["questions"].iloc[0] == 3
    low, high = (float(x) for x in steps["interval"].iloc[0].split(" … "))
    assert 0 <= low <= steps["step"].iloc[0] <= high
    assert steps["reading"].iloc[0] == ("a real gain" if low > 0 else "could be noise")
    assert any("95% interval" in c.value for c in at.caption)


def test_show_only_failures_keeps_the_failed_questions(finished_run):
    at = open_page("evaluate")
    assert len(examples_frame(at)) == 3
    assert at.selectbox(key="evaluate.eval-shop.failing").value == "prompt"
    at.toggle(key="evaluate.eval-shop.only_failures").set_value(True).run()
    failed = examples_frame(at)
    assert list(failed["question"]) == [q for q, _ in QUESTIONS[1:]]
    at.selectbox(key="evaluate.eval-shop.failing").set_value("fewshot").run()
    assert examples_frame(at).empty


def test_send_failures_to_labeling(finished_run, eval_project):
    at = open_page("evaluate")
    button(at, "Send failures to labeling").click().run()
    assert not at.exception, [e.value for e in at.exception]
    records, _ = DatasetStore(eval_project).load(advice.FAILURES_DATASET)
    assert sorted(r["prompt"] for r in records) == sorted(q for q, _ in QUESTIONS[1:])
    assert any("Added 2 question(s)" in s.value for s in at.success)
    assert "Review them on the Labeling page" in page_links(at)


def test_running_evaluation_shows_progress_and_cancel(eval_project):
    rungs = variants.ladder(eval_project, RecipeStore(eval_project).load())
    run = runs.create_eval_run(eval_project, "faq", rungs, runs.EvalOptions(semantic=False))
    message = {"progress": 0.2, "message": "+ few-shot: answering", "message_template": "{variant}: answering",
               "message_params": {"variant": "+ few-shot"}}
    Job.start(run.folder / "jobs", ["-c", f"import json,time\nprint(json.dumps({message!r}), flush=True)\n"
                                          "time.sleep(120)\n"], label="fake evaluation")
    deadline = time.time() + 30
    while not run.jobs()[-1].events() and time.time() < deadline:
        time.sleep(0.1)
    at = open_page("evaluate")
    assert at.get("progress") and "0 of 6 answers" in at.get("progress")[0].proto.text
    assert any("+ few-shot: answering" in c.value for c in at.caption)
    assert button(at, "Run evaluation").disabled  # one evaluation at a time
    assert any("the run " + time.strftime("%Y-%m-%d", time.localtime(run.spec["created"])) in c.value
               and "· faq ·" in c.value and "is answering now" in c.value for c in at.caption)  # named, not its id
    button(at, "Cancel").click().run()
    deadline = time.time() + 30
    while run.status().state == "running" and time.time() < deadline:  # Cancel returns at once; the job ends soon
        time.sleep(0.1)
    assert run.status().state == "cancelled"
    at.run()
    assert button(at, "Continue")


def test_failed_evaluation_shows_the_error_and_continue(eval_project):
    run = runs.create_eval_run(eval_project, "faq", [variants.saved_recipe(eval_project, "assistant")],
                               runs.EvalOptions(semantic=False))
    error = {"error": "The model file is missing.", "error_template": "The model file is missing.",
             "error_params": {}}
    job = Job.start(run.folder / "jobs", ["-c", f"import json,sys\nprint(json.dumps({error!r}))\nsys.exit(1)\n"],
                    label="fake evaluation")
    deadline = time.time() + 30
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.1)
    at = open_page("evaluate")
    assert any("The model file is missing." in e.value for e in at.error)
    assert not button(at, "Continue").disabled


def test_project_without_an_eval_set_says_how_to_make_one(workspace):
    project = workspace.create("Empty shop")
    at = open_page("evaluate")
    assert any("No evaluation set yet" in i.value for i in at.info)
    assert {"Go to Datasets", "Go to Labeling"} <= set(page_links(at))


def test_questions_without_references_only_measure_costs(eval_project):
    DatasetStore(eval_project).create("open", "eval", [new_record("eval", question="Tell me about your shop.")])
    at = open_page("evaluate")
    at.selectbox(key="evaluate.eval-shop.dataset").set_value("open").run()
    assert any("only the time and tokens" in w.value for w in at.warning)


def test_unsupported_precisions_are_disabled_with_the_reason(eval_project):
    at = open_page("evaluate")
    at.toggle(key="evaluate.eval-shop.precisions").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    nf4 = at.checkbox(key="evaluate.eval-shop.precision.nf4")
    import torch

    if not torch.cuda.is_available():
        assert nf4.disabled and any("CUDA" in c.value for c in at.caption)
    at.checkbox(key="evaluate.eval-shop.precision.bf16").check().run()
    assert any("3 of 6 variants" in c.value for c in at.caption)


def test_merged_exports_can_be_compared_with_base_plus_adapter(eval_project, monkeypatch):
    from core.evaluate.variants import MergedExport

    export = MergedExport("/tmp/exports/run1-merged", "run1")
    gguf = MergedExport("/tmp/exports/assistant-run1-q8_0-gguf", "run1", "/tmp/exports/assistant-run1-q8_0-gguf/"
                        "model.gguf", "Q8_0")
    monkeypatch.setattr(variants, "merged_exports", lambda project: [export, gguf])
    at = open_page("evaluate")
    picker = next(m for m in at.multiselect if m.label == "Exports (export parity)")
    assert picker.options == ["run1-merged (from adapter run1)", "assistant-run1-q8_0-gguf (from adapter run1)"]
    picker.set_value([picker.options[0]]).run()
    assert any("4 of 7 variants" in c.value for c in at.caption)  # the pair joins the ladder's ready rungs
    picker.set_value(picker.options).run()
    assert any("5 of 8 variants" in c.value for c in at.caption)  # base + adapter once, and each export


def test_one_question_can_be_read_in_full_for_every_rung(finished_run):
    """The side-by-side table cuts long answers; the view below it shows each rung's whole answer, wrapped."""
    at = open_page("evaluate")
    pick = next(s for s in at.selectbox if s.label == "Read one question's answers in full")
    pick.set_value(finished_run.spec["record_ids"][1]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(m.value for m in at.markdown)
    question, _ = QUESTIONS[1]
    assert question.replace("?", "") in shown.replace("\\", "")
    for key in ("prompt", "fewshot"):
        assert ANSWERS[key][1].replace(".", "") in shown.replace("\\", "")
