"""The sample project: its files are valid and consistent, and creating it loads every one of them."""

from __future__ import annotations

import json

import pytest

from core import sample
from core.data.records import new_record, problems
from core.data.store import DatasetStore
from core.rag.parse import parse_document

DOCS = sample.SAMPLE_DIR / "docs"


def rows(filename: str) -> list[dict]:
    return sample._jsonl(sample.SAMPLE_DIR / filename)


@pytest.mark.parametrize(("filename", "kind"), [(f, k) for _, k, f, _ in sample.DATASETS])
def test_every_sample_row_is_a_valid_record(filename, kind):
    found = {n: problems(kind, new_record(kind, **row)) for n, row in enumerate(rows(filename), start=1)}
    assert {n: p for n, p in found.items() if p} == {}


def test_eval_questions_are_not_training_prompts_and_name_existing_documents():
    prompts = {row["prompt"].strip().lower() for row in rows("train.jsonl")}
    questions = [row["question"] for row in rows("eval.jsonl") + rows("tools_eval.jsonl")]
    assert [q for q in questions if q.strip().lower() in prompts] == []
    documents = {path.name for path in DOCS.iterdir()}
    assert all(row["gold_ids"] and set(row["gold_ids"]) <= documents for row in rows("eval.jsonl"))


def test_tool_calls_use_the_shared_schemas():
    tools = json.loads((sample.SAMPLE_DIR / "tools.json").read_text(encoding="utf-8"))
    parameters = {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}
    for row in rows("tools_eval.jsonl"):
        assert row["tools"] == tools
        call = row["expected_call"]
        assert set(call["arguments"]) == set(parameters[call["name"]]["required"])


@pytest.mark.parametrize(("filename", "first", "last"), [
    ("product-manual.pdf", "1. About this manual", "12. Warranty and contact"),
    ("faq.docx", "When is the shop open?", "How does the theft insurance work?"),
])
def test_generated_documents_parse_in_reading_order(filename, first, last):
    parsed = parse_document((DOCS / filename).read_bytes(), filename)
    text = "\n".join(" ".join(section.headings) + "\n" + section.text for section in parsed.sections)
    assert parsed.warnings == [] and 0 <= text.index(first) < text.index(last)
    if filename.endswith(".pdf"):
        pages = [s.page for s in parsed.sections]
        assert pages == sorted(pages) and set(pages) == set(range(1, 9))
        assert "Specification: Price; Lumen Harbour: 649 euros; Lumen Metro: 899 euros; Lumen Volt: 2,690 euros" in [
            s.text for s in parsed.sections if s.is_table_row]  # the models table, a row per passage
        assert text.index("E01 - Speed sensor") < text.index("E10 - Battery fault")


def test_create_sample_project_loads_every_dataset_and_document(workspace):
    project = sample.create_sample_project(workspace)
    store = DatasetStore(project)
    assert {info.name: info.kind for info in store.list()} == {
        "examples": "sft", "eval": "eval", "preferences": "preference", "tools_eval": "eval"}
    examples, _ = store.load("examples")
    assert len(examples) == len(rows("train.jsonl")) and {r["split"] for r in examples} == {None}
    evaluation, _ = store.load("eval")
    assert [r["gold_ids"] for r in evaluation] == [row["gold_ids"] for row in rows("eval.jsonl")]
    assert store.load("tools_eval")[0][0]["expected_call"] == rows("tools_eval.jsonl")[0]["expected_call"]
    copied = project.subdir("documents") / sample.KNOWLEDGE_BASE
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in DOCS.iterdir())
