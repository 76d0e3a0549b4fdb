"""The assistant report (core.report): it holds the scoreboard of a real (tiny) eval run answered with canned
answers, hostile text ends up escaped in the HTML and readable in the PDF, and the Evaluation and Demo & share pages
offer the two downloads."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from apptest_helpers import open_page
from canned_ladder import ANSWERS, QUESTIONS, finish, make_eval_project, recipe_for
from core import report, report_pdf
from core.data.records import new_record
from core.data.pairs import save_pairs
from core.data.store import DatasetStore
from core.evaluate import runs
from core.fewshot import FewShotSettings
from core.prompt import PromptSettings
from core.rag.retriever import RetrieverSettings
from core.recipe import Recipe, RecipeStore

RETRIEVED = [["c0ffee1234567890", "shipping.md"], ["beef5678", "hours.pdf"]]

HOSTILE = {
    "script": "<script>alert('x')</script>",
    "closing tags": "</td></tr></table><b>broken</b>",
    "markdown": "**bold** _it_ [click](javascript:alert(1)) `code`",
    "entities": "Tom &amp; Jerry &lt;3",
    "template": "{{ 7*7 }} {% if true %}yes{% endif %} {name}",
    "rtl override": "invoice\u202egnp.exe",
    "direction marks": "left\u200eright\u061cend",
    "vietnamese": "Thủ đô của Việt Nam là Hà Nội. Đường phố đông đúc.",
}


@pytest.fixture
def eval_project(workspace, tiny_model_dir):
    return make_eval_project(workspace, tiny_model_dir)


@pytest.fixture
def finished_run(eval_project, monkeypatch) -> runs.EvalRun:
    return finish(eval_project, monkeypatch, ANSWERS, QUESTIONS, RETRIEVED)


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


def needs_font():
    if report_pdf.find_font() is None:
        pytest.skip("no Unicode TrueType font on this computer")


# ---- what the report holds --------------------------------------------------------------------------------------

def test_the_report_holds_the_scoreboard_of_the_run(finished_run, eval_project):
    recipe = RecipeStore(eval_project).load()
    built = report.build_report(eval_project, finished_run, recipe, "en", recipe_version=1, now=0)
    summary = finished_run.summary()
    assert [row.key for row in built.rows] == [v.key for v in finished_run.variants]
    assert [row.label for row in built.rows] == ["Prompt (zero-shot)", "+ few-shot", "+ retriever", "+ adapter",
                                                 "+ adapter + retriever"]
    for row in built.rows:
        assert row.scores == summary.get(row.key, {})
    assert built.main_metric == "token_f1"
    prompt, fewshot = built.rows[0], built.rows[1]
    assert fewshot.main == pytest.approx(1.0)
    assert prompt.main == pytest.approx(summary["prompt"]["token_f1"]) and prompt.main < 0.6
    assert fewshot.best and not prompt.best and [r.key for r in built.bars] == ["prompt", "fewshot"]
    assert built.rows[2].note.startswith("not set up") and built.rows[2].cells[0] == "–"
    f1 = built.metrics.index("token_f1")
    assert fewshot.cells[0] == "3" and fewshot.cells[1 + f1] == "1.00"
    assert prompt.cells[1 + f1] == f"{summary['prompt']['token_f1']:.2f}"
    assert built.headers[:2] == ("Variant", "Answers") and "Word overlap (F1)" in built.headers
    assert "latency_s" in built.metrics and fewshot.cells[-1] == "0.50 s"
    assert "Best variant on Word overlap (F1): + few-shot (1.00)." == built.text["best"]
    # the best rung's answers, in the eval set's order, with their sources
    assert [s.question for s in built.samples] == [q for q, _ in QUESTIONS]
    assert [s.answer for s in built.samples] == ANSWERS["fewshot"]
    assert [s.reference for s in built.samples] == [a for _, a in QUESTIONS]
    assert built.samples[0].sources == ("shipping.md · #c0ffee12", "hours.pdf · #beef5678")
    assert built.title == "Eval shop" and built.subtitle == "Recipe assistant, version 1 · 1970-01-01"
    assert ("Evaluation set", "faq version 1 · 3 questions") in built.data
    assert built.run_caption.startswith(f"Evaluation run {finished_run.id} of ")

    html = report.render_html(built)
    assert html.count('class="best"') == 1 and html.count("<rect") == 3  # background + one bar per answered rung
    assert "1.00" in html and "Within two business days." in html and "shipping.md" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # self-contained: nothing fetched
    assert "@media print" in html


def test_the_recipe_and_the_adapter_it_was_trained_with(finished_run, eval_project, tiny_model_dir):
    folder = eval_project.subdir("adapters") / "run-1"
    folder.mkdir()
    (folder / "adapter.json").write_text(json.dumps({
        "name": "shop lora", "config": {"method": "lora"}, "dataset": "pairs", "dataset_version": 2,
        "metrics": {"steps": 40, "train_loss": 0.51234, "eval_loss": 0.6}, "base_model": {"kind": "embedded"}}))
    recipe = recipe_for(tiny_model_dir, adapter="run-1",
                        fewshot=FewShotSettings(enabled=True, dataset="examples", k=2),
                        retriever=RetrieverSettings(enabled=True, knowledge_base="handbook", mode="fts", k=3))
    built = report.build_report(eval_project, finished_run, recipe, "en")
    items = dict(built.recipe)
    assert items["Model"] == Path(recipe.model.location).name  # a folder by its name, not its whole path
    assert items["Adapter"] == "shop lora · lora"
    assert items["Few-shot examples"] == "on · up to 2 examples from examples"
    assert items["Knowledge base"] == "on · handbook · Keywords (full text) · 3 passages per question"
    assert items["System prompt"].startswith("You are a helpful assistant")
    assert items["Generation settings"].startswith("temperature 0.0 · top-p 0.95 · up to 200 new tokens")
    assert items["Context window"] == "4096 tokens"
    data = dict(built.data)
    assert data["Adapter training data"] == "pairs version 2"
    assert data["Adapter metrics"] == "Steps 40 · Training loss 0.5123 · Eval loss 0.6"
    gone = report.build_report(eval_project, None, recipe.with_changes(adapter="deleted"), "en")
    assert dict(gone.recipe)["Adapter"] == "deleted (no longer in the project)"
    assert "Adapter metrics" not in dict(gone.data)


def test_without_a_run_the_report_says_how_to_get_one(eval_project):
    built = report.build_report(eval_project, None, Recipe(), "en")
    assert built.rows == () and built.samples == () and built.data == ()
    html = report.render_html(built)
    assert "No finished evaluation yet" in html and "<svg" not in html
    assert "not saved yet" in built.subtitle


def test_the_report_speaks_vietnamese(finished_run, eval_project):
    built = report.build_report(eval_project, finished_run, RecipeStore(eval_project).load(), "vi")
    assert built.text["scoreboard"] == "Bảng điểm" and built.text["question"] == "Câu hỏi"
    assert built.rows[1].label == "+ ví dụ few-shot"
    assert 'lang="vi"' in report.render_html(built)


def test_latest_finished_run(finished_run, eval_project):
    assert report.latest_finished_run(eval_project).id == finished_run.id


def test_a_sample_shows_every_accepted_answer(workspace, tiny_model_dir, monkeypatch):
    project = workspace.create("Several answers")
    RecipeStore(project).save(recipe_for(tiny_model_dir))
    save_pairs(project, "examples", [{"prompt": "Do you repair bikes?", "response": "Yes."}])
    DatasetStore(project).create("faq", "eval", [new_record("eval", question="Who wrote it?", reference="Ann",
                                                            references=["Ann Lee", "A. Lee"])])
    run = finish(project, monkeypatch, {"prompt": ["Ann Lee"], "fewshot": ["Ann Lee"]}, [("Who wrote it?", "Ann")])
    built = report.build_report(project, run, RecipeStore(project).load(), "en")
    assert built.samples[0].reference == "Ann | Ann Lee | A. Lee"


# ---- hostile text -----------------------------------------------------------------------------------------------

@pytest.fixture
def hostile_report(request, workspace, tiny_model_dir, monkeypatch):
    """A report whose project name, question, reference, answer, source and system prompt all carry one string."""
    text = request.param
    project = workspace.create(f"Shop {text}")
    RecipeStore(project).save(recipe_for(tiny_model_dir))
    save_pairs(project, "examples", [{"prompt": "Do you repair bikes?", "response": "Yes."}])
    questions = [(f"Q {text}", f"R {text}")]
    DatasetStore(project).create("faq", "eval", [new_record("eval", question=q, reference=a) for q, a in questions])
    run = finish(project, monkeypatch, {"prompt": [f"A {text}"], "fewshot": [f"A {text}"]}, questions,
                 [["chunk-1", f"S {text}"]])
    recipe = recipe_for(tiny_model_dir, prompt=PromptSettings(system_prompt=f"P {text}"))
    return text, report.build_report(project, run, recipe, "en"), project.name  # names drop bidi controls


@pytest.mark.parametrize("hostile_report", list(HOSTILE.values()), ids=list(HOSTILE), indirect=True)
def test_hostile_text_is_escaped_in_the_html(hostile_report):
    text, built, name = hostile_report
    html = report.render_html(built)
    shown = report.clean(text)
    assert str(escape(name)) in html
    for prefix in ("Q", "R", "A", "S", "P"):
        assert str(escape(f"{prefix} {shown}")) in html, prefix
    if "<" in text:
        assert text not in html
    assert "<script" not in html and "<b>" not in html and "<strong>bold" not in html and "\u202e" not in html
    if "\u202e" in text:
        assert "invoice[U+202E]gnp.exe" in html
    if "\u200e" in text:
        assert "left[U+200E]right[U+061C]end" in html and "\u200e" not in html and "\u061c" not in html


@pytest.mark.parametrize("hostile_report", list(HOSTILE.values()), ids=list(HOSTILE), indirect=True)
def test_hostile_text_is_readable_in_the_pdf(hostile_report):
    needs_font()
    text, built, name = hostile_report
    extracted = pdf_text(report.render_pdf(built))
    shown = " ".join(report.clean(text).split())
    assert " ".join(name.split()) in extracted
    for prefix in ("Q", "R", "A", "P"):
        assert f"{prefix} {shown}" in extracted, prefix
    assert "S " + shown[:10] in extracted  # the source (in a narrow list; long ones wrap)


def test_the_pdf_holds_every_section(finished_run, eval_project):
    needs_font()
    built = report.build_report(eval_project, finished_run, RecipeStore(eval_project).load(), "vi")
    data = report.render_pdf(built)
    assert data.startswith(b"%PDF")
    extracted = pdf_text(data)
    for expected in ("Eval shop", "Bảng điểm", "+ ví dụ few-shot", "1.00", "Within two business days.",
                     "shipping.md", "Prompt hệ thống", "faq"):
        assert expected in extracted, expected


def test_without_a_font_there_is_no_pdf(monkeypatch, eval_project):
    monkeypatch.setattr(report_pdf, "FONT_CANDIDATES", ())
    assert not report.pdf_font_found()
    with pytest.raises(FileNotFoundError):
        report.render_pdf(report.build_report(eval_project, None, Recipe(), "en"))


# ---- pages ------------------------------------------------------------------------------------------------------

def download_buttons(at) -> dict[str, object]:
    return {b.proto.label: b.proto for b in at.get("download_button")}


def test_the_evaluation_page_offers_the_report(finished_run):
    at = open_page("evaluate")
    assert not at.exception and not at.error, [e.value for e in at.error]
    buttons = download_buttons(at)
    assert {"Download report (HTML)", "Download report (PDF)"} <= set(buttons)
    assert buttons["Download report (PDF)"].disabled == (report_pdf.find_font() is None)


def test_without_a_font_the_pdf_button_is_disabled_and_says_why(finished_run, monkeypatch):
    monkeypatch.setattr(report_pdf, "FONT_CANDIDATES", ())
    at = open_page("evaluate")
    buttons = download_buttons(at)
    assert buttons["Download report (PDF)"].disabled and not buttons["Download report (HTML)"].disabled
    assert any("print it to PDF from the browser" in c.value for c in at.caption)


def test_the_share_page_offers_the_report(finished_run):
    at = open_page("share")
    assert not at.exception
    assert {"Download report (HTML)", "Download report (PDF)"} <= set(download_buttons(at))
    assert any(finished_run.id in c.value for c in at.caption)
