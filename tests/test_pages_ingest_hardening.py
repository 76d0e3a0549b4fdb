"""AppTest of the Retriever page: folders outside the allowed roots are refused with st.error, failed files are
listed with their reason and can be removed."""

from __future__ import annotations

from core.rag.kb import KnowledgeBase
from tests.apptest_helpers import button, open_page


def test_a_folder_outside_the_allowed_roots_is_refused(workspace, tmp_path, monkeypatch):
    project = workspace.create("Docs")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret", encoding="utf-8")
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", str(tmp_path / "allowed"))
    at = open_page("retriever")
    at.text_input(key=f"retriever.{project.slug}.folder").set_value(str(outside)).run()
    button(at, "Add the folder's documents").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("outside the folders the studio may read" in e.value for e in at.error)
    assert KnowledgeBase(project, "docs").stored() == []


def test_failed_files_are_listed_and_removed(workspace, fake_embedder):
    project = workspace.create("Docs")
    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("broken.pdf", b"%PDF-1.4 broken"), ("empty.md", b"")]))
    at = open_page("retriever")
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert "broken.pdf" in errors and "could not be read as a PDF" in errors and "empty.md" in errors
    assert not any(b.label.startswith("Index ") for b in at.button)  # nothing waits: no retry on every click
    button(at, "Remove failed files").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert kb.failed() == {} and kb.stored() == []
    assert not any("broken.pdf" in e.value for e in at.error)
