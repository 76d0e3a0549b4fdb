"""AppTest of the Retriever and Retrieval test pages."""

from __future__ import annotations

import time

import pytest

from core import sample
from core.jobs import Job
from core.rag import kb as kb_module
from core.rag.kb import KnowledgeBase
from core.recipe import RecipeStore
from tests.apptest_helpers import button, open_page


@pytest.fixture
def sample_project(workspace):
    project = sample.create_sample_project(workspace)
    return project


def test_index_waiting_documents_in_a_job_then_use_them_in_the_recipe(sample_project):
    at = open_page("retriever")
    button(at, "Index 8 waiting file(s)").click().run()   # runs in a subprocess with the real MiniLM
    assert not at.exception, [e.value for e in at.exception]
    jobs = sorted((sample_project.path / "runs" / "ingest" / "docs").iterdir())
    job = Job(jobs[-1])
    deadline = time.time() + 180
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert job.status().state == "done", job.status().error
    statuses = {e["file"]: e["status"] for e in job.events() if "file" in e}
    assert statuses == {name: "indexed" for name in (  # Markdown, PDF, DOCX and CSV
        "faq.docx", "opening-hours-and-contact.md", "price-list.csv", "product-manual.pdf", "rental-terms.md",
        "sales-policies.md", "warranty-policy.md", "workshop-and-services.md")}
    at.run()
    assert any("sales-policies.md" in str(df.value["source"].tolist()) for df in at.dataframe)
    not_used = "The assistant does not use these documents yet"
    assert any(i.value.startswith(not_used) for i in at.info)
    at.toggle(key=f"retriever.{sample_project.slug}.enabled").set_value(True).run()
    button(at, "Save as new recipe version").click().run()
    recipe = RecipeStore(sample_project).load()
    assert recipe.retriever.enabled and recipe.retriever.knowledge_base == "docs"
    assert not any(i.value.startswith(not_used) for i in at.info)


def test_retrieval_test_compares_the_three_searches(sample_project, monkeypatch):
    from tests.conftest import HashEmbedder

    monkeypatch.setattr(kb_module, "_embed", HashEmbedder(dims=384))
    monkeypatch.setattr(kb_module, "_count_tokens", lambda: (lambda text: len(text.split())))
    base = KnowledgeBase(sample_project, "docs")
    base.ingest(base.pending())
    at = open_page("retrieval_test")
    at.text_input(key=f"retrieval_test.{sample_project.slug}.question").set_value("deposit weekend rule").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.subheader] == ["Meaning (vector)", "Keywords (full text)", "Both, fused (hybrid)"]
    passages = " ".join(h.proto.body for h in at.get("html"))
    assert ">deposit</mark>" in passages  # matching words are highlighted
    assert any("rental" in c.value and "terms" in c.value and "Pick" in c.value for c in at.caption)  # source, heading


def test_pages_explain_an_empty_knowledge_base(workspace):
    project = workspace.create("Empty")
    at = open_page("retrieval_test")
    assert any("no indexed documents" in i.value for i in at.info)
    at = open_page("retriever")
    assert any("No documents yet" in i.value for i in at.info)


def test_documents_indexed_before_sentence_vectors_are_offered_a_new_index(sample_project, monkeypatch):
    from tests.conftest import HashEmbedder

    monkeypatch.setattr(kb_module, "_embed", HashEmbedder(dims=384))
    monkeypatch.setattr(kb_module, "_count_tokens", lambda: (lambda text: len(text.split())))
    base = KnowledgeBase(sample_project, "docs")
    base.ingest(base.pending())
    store = base.store()
    older = store.export_table("docs").drop_columns(["sentence_vectors"])  # as an earlier version stored it
    store.drop("docs")
    store.db.create_table("docs", data=older)
    assert base.indexed_before_sentences()
    at = open_page("retriever")
    assert any("indexed by an earlier version" in i.value for i in at.info)
    button(at, "Index the documents again").click().run()   # a job with the real MiniLM
    assert not at.exception, [e.value for e in at.exception]
    job = Job(sorted((sample_project.path / "runs" / "ingest" / "docs").iterdir())[-1])
    deadline = time.time() + 180
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert job.status().state == "done", job.status().error
    assert not base.indexed_before_sentences() and len(base.documents()) == 8
    assert sorted(e["status"] for e in job.events() if "file" in e) == ["indexed"] * 8
    at.run()
    assert not any("indexed by an earlier version" in i.value for i in at.info)
    assert any("Last indexing: 8 file(s)" in e.label for e in at.expander)
