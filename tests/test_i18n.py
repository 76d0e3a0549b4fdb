"""English and Vietnamese: the catalog matches the code, placeholders survive, and every page renders in
Vietnamese without an English catalog string left on screen."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from core.i18n import LOCALES, Msg, catalog, language_from_locale, translate

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "studio" / "app.py")
PAGES = ["projects", "model", "prompt", "fewshot", "retriever", "retrieval_test", "datasets", "labeling", "feedback", "chat", "finetune",
         "retrieval_opt", "evaluate", "share"]
SOURCE_DIRS = ("core", "studio", "pages")


def source_messages() -> set[str]:
    found = set()
    for folder in SOURCE_DIRS:
        for _, _, message, _, _ in extract_from_dir(ROOT / folder, method_map=[("**.py", "python")],
                                                    keywords={"t": None, "Msg": None}):
            found.add(message)
    return found


def vietnamese_po():
    with (LOCALES / "vi" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def placeholders(text: str) -> list[str]:
    return sorted(name for _, name, _, _ in string.Formatter().parse(text) if name)


def test_every_message_in_the_code_has_a_vietnamese_translation_and_nothing_is_stale():
    in_code = source_messages()
    entries = {m.id: m.string for m in vietnamese_po() if m.id}
    assert sorted(in_code - set(entries)) == [], "run `make i18n` and translate the new messages"
    assert sorted(set(entries) - in_code) == [], "the catalog has messages the code no longer uses"
    assert sorted(k for k, v in entries.items() if not v.strip()) == [], "untranslated messages"


def test_translations_keep_their_placeholders():
    for message in vietnamese_po():
        if message.id and "python-brace-format" in message.flags:
            assert placeholders(message.string) == placeholders(message.id), message.id
            values = {name: "X" for name in placeholders(message.id)}
            message.string.format(**values)


def test_translate_fills_values_and_translates_nested_messages():
    problem = Msg("Line {line}: not valid JSON ({reason}); skipped.", line=3, reason="x")
    outer = Msg("No usable rows were found. {problems}", problems=[problem])
    assert str(outer) == "No usable rows were found. Line 3: not valid JSON (x); skipped."
    vietnamese = translate(outer, "vi")
    assert "3" in vietnamese and vietnamese != str(outer)
    assert translate(problem, "vi") in vietnamese
    assert translate("Projects", "en") == "Projects" and translate("Projects", "vi") == catalog("vi")["Projects"]


@pytest.mark.parametrize("locale, language", [("vi-VN", "vi"), ("vi", "vi"), ("en-US", "en"), ("fr-FR", "en"),
                                              (None, "en"), ("", "en"), ("VI_vn", "vi")])
def test_language_from_the_browser_locale(locale, language):
    assert language_from_locale(locale) == language


# ---- rendered pages ---------------------------------------------------------------------------------------------

SKIPPED_KEYS = {"id", "formId", "icon", "fragmentId", "deltaPath"}


def rendered_strings(at: AppTest) -> list[str]:
    found: list[str] = []

    def collect(value, key=""):
        if isinstance(value, str) and key not in SKIPPED_KEYS:
            found.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                collect(v, k)
        elif isinstance(value, list):
            for v in value:
                collect(v, key)

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            collect(MessageToDict(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def english_fragments() -> list[str]:
    """Literal parts of English messages that differ from their translation and are long enough to be telling."""
    translations = catalog("vi")
    kept_terms = " ".join(translations.values())  # English terms Vietnamese practitioners keep (chat template, …)
    fragments = []
    for message_id, translated in translations.items():
        if translated == message_id:
            continue
        for literal, *_ in string.Formatter().parse(message_id.replace("{{", "(").replace("}}", ")")):
            literal = literal.strip(" .,:;·—()*`'")
            if len(literal) >= 12 and " " in literal and literal not in kept_terms:
                fragments.append(literal)
    return fragments


def render_all(project_fixture, language: str) -> dict[str, list[str]]:
    seen = {}
    for page in PAGES:
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["language"] = language
        at.run()
        if page != "projects":
            at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        seen[page] = rendered_strings(at)
    return seen


@pytest.fixture
def open_project(workspace, tiny_model_dir):
    from core.data.pairs import save_pairs
    from core.feedback import record_feedback
    from core.models.source import ModelSource
    from core.recipe import Recipe, RecipeStore

    project = workspace.create("Cửa hàng xe đạp")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    save_pairs(project, "examples", [{"prompt": "Mấy giờ mở cửa?", "response": "Từ 8 giờ đến 18 giờ."}])
    record_feedback(project, question="Có giao hàng không?", answer="Có.", rating=-1, correction="Có, trong 20 km.")
    return project


def test_pages_in_vietnamese_show_no_english_catalog_text(open_project):
    fragments = english_fragments()
    assert len(fragments) > 100
    seen = render_all(open_project, "vi")
    leaks = {page: sorted({f for f in fragments for s in strings if f in s}) for page, strings in seen.items()}
    assert {page: found for page, found in leaks.items() if found} == {}
    assert any("Cửa hàng xe đạp" in s for s in seen["projects"])  # user data keeps its diacritics


def test_the_same_scan_finds_english_on_english_pages(open_project):
    """The leak check above can fail: in English the same scan finds the catalog's text on every page."""
    fragments = english_fragments()
    seen = render_all(open_project, "en")
    assert all(any(f in s for f in fragments for s in strings) for strings in seen.values())


# ---- no literal UI text outside t() ---------------------------------------------------------------------------

UI_CALLS = {"title", "header", "subheader", "write", "markdown", "caption", "info", "warning", "error", "success",
            "toast", "button", "form_submit_button", "download_button", "text_input", "text_area", "number_input",
            "selectbox", "radio", "slider", "toggle", "checkbox", "file_uploader", "chat_input", "expander",
            "metric", "progress", "spinner", "segmented_control", "multiselect", "page_link", "TextColumn",
            "NumberColumn", "tabs", "status"}
TEXT_KEYWORDS = {"label", "help", "placeholder", "text", "body", "caption", "value"}


def is_words(text: str) -> bool:
    """Human text, as opposed to an identifier example such as a path, a hub id or OPENAI_API_KEY."""
    if not re.search(r"[A-Za-z]{2}", text):
        return False
    identifier = not re.search(r"\s", text.strip()) and (re.search(r"[/._0-9:]", text) or text.isupper())
    return not identifier


def literal_text(node) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.Constant) and is_words(str(v.value)) for v in node.values)
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and is_words(node.value)


def test_pages_and_widgets_wrap_their_text_in_t():
    problems = []
    for path in [*(ROOT / "pages").glob("*.py"), *(ROOT / "studio").rglob("*.py")]:
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in UI_CALLS):
                continue
            line = source.splitlines()[node.lineno - 1]
            if "bilingual" in line:
                continue
            first = node.args[:1] if node.func.attr != "page_link" else []
            candidates = first + [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
            if node.func.attr in {"selectbox", "radio", "segmented_control"}:
                candidates = candidates[:1] + [k.value for k in node.keywords if k.arg in {"help", "placeholder"}]
            if any(literal_text(c) for c in candidates):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {line.strip()[:100]}")
    assert problems == []
