"""Document ingestion hardening: folders only inside the allowed roots (no system folders, no links leading out),
documents keep their path in the chosen folder, refused and unreadable files end failed (not waiting) and can be
removed, and the in-memory embedding cache stays bounded."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from core.errors import StudioError
from core.rag import folders
from core.rag.kb import KnowledgeBase, failure_reason
from core.rag.parse import SUPPORTED, safe_relative_name


@pytest.fixture
def kb(project, fake_embedder):
    return KnowledgeBase(project, "docs")


@pytest.fixture
def allowed(tmp_path, monkeypatch):
    """An allowed root (the only one) with a document folder in it, and a folder outside every root."""
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("the outside secret", encoding="utf-8")
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", str(root))
    return root, outside


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fts(kb, query):
    return {(h.source, h.text) for h in kb.search(query, "fts", 20)}


# ---- 1. allowed roots ------------------------------------------------------------------------------------------
def test_default_roots_are_home_and_the_studio_home(monkeypatch, tmp_path, studio_home):
    monkeypatch.delenv("STUDIO_ALLOWED_FOLDERS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert folders.allowed_roots() == [(tmp_path / "home").resolve(), studio_home.resolve()]
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", os.pathsep.join([str(tmp_path / "a"), " ", str(tmp_path / "b")]))
    assert folders.allowed_roots() == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]


@pytest.mark.parametrize("case, message", [
    ("outside", "outside the folders the studio may read"),
    ("dotdot", "outside the folders the studio may read"),      # allowed/docs/../../outside
    ("link_out", "outside the folders the studio may read"),    # a link in the root to a folder outside it
    ("hidden", "outside the folders the studio may read"),      # allowed/.ssh
    ("missing", "does not exist"),
    ("empty", "Type the path"),
])
def test_folders_outside_the_allowed_roots_are_refused(allowed, case, message):
    root, outside = allowed
    (root / ".ssh").mkdir()
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    folder = {"outside": str(outside), "dotdot": str(root / "docs" / ".." / ".." / "outside"),
              "link_out": str(root / "link_out"), "hidden": str(root / ".ssh"), "missing": str(root / "nope"),
              "empty": "  "}[case]
    with pytest.raises(StudioError, match=message):
        folders.allowed_folder(folder)


def test_a_folder_inside_a_root_resolves_to_it(allowed):
    root, _ = allowed
    assert folders.allowed_folder(str(root / "docs" / ".." / "docs")) == ((root / "docs").resolve(), root.resolve())


@pytest.mark.skipif(os.name == "nt", reason="POSIX system folders")
@pytest.mark.parametrize("folder", ["/etc", "/proc", "/sys", "/proc/self", "/usr/share"])
def test_system_folders_are_refused_even_when_a_root_contains_them(monkeypatch, folder):
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", "/")
    with pytest.raises(StudioError, match="system folder"):
        folders.allowed_folder(folder)


def test_the_walk_follows_no_link_that_leads_outside_the_root(allowed):
    root, outside = allowed
    docs = root / "docs"
    write(docs / "kept.md", "# Kept")
    write(root / "shared" / "shared.md", "# Shared")          # in the root, outside the chosen folder
    write(root / ".private" / "key.txt", "private")
    (docs / "file_out.txt").symlink_to(outside / "secret.txt")
    (docs / "dir_out").symlink_to(outside, target_is_directory=True)
    (docs / "hidden_in").symlink_to(root / ".private", target_is_directory=True)
    (docs / "shared").symlink_to(root / "shared", target_is_directory=True)
    (docs / "loop").symlink_to(docs, target_is_directory=True)   # walked once
    (docs / "broken.md").symlink_to(root / "missing.md")           # leads nowhere: nothing to add
    found = folders.walk(*folders.allowed_folder(docs), SUPPORTED)
    assert [rel for _, rel in found.files] == ["kept.md", "shared/shared.md"]
    assert sorted(found.skipped_links) == ["dir_out", "file_out.txt", "hidden_in"]


def test_add_folder_copies_nothing_from_outside(kb, allowed):
    root, outside = allowed
    write(root / "docs" / "hours.md", "# Hours\n\nOpen at nine.")
    (root / "docs" / "secret.txt").symlink_to(outside / "secret.txt")
    added = kb.add_folder(root / "docs")
    assert [kb.source_of(p) for p in added] == ["hours.md"] and added.skipped_links == ["secret.txt"]
    assert kb.stored() == ["hours.md"]
    with pytest.raises(StudioError, match="outside"):
        kb.add_folder(outside)
    assert kb.stored() == ["hours.md"]


# ---- 2. documents keep their path in the folder -------------------------------------------------------------------
def test_same_named_files_in_sub_folders_are_two_documents(kb, allowed):
    root, _ = allowed
    docs = root / "docs"
    write(docs / "sub1" / "policy.txt", "Returns are accepted within thirty days.")
    write(docs / "sub2" / "policy.txt", "Deliveries arrive within five days.")
    results = kb.ingest(kb.add_folder(docs))
    assert sorted((r.source, r.status) for r in results) == [("sub1/policy.txt", "indexed"),
                                                             ("sub2/policy.txt", "indexed")]
    assert sorted(kb.documents()) == kb.stored() == ["sub1/policy.txt", "sub2/policy.txt"]
    assert {s for s, _ in fts(kb, "returns")} == {"sub1/policy.txt"}      # the citation names the sub-folder
    assert {s for s, _ in fts(kb, "deliveries")} == {"sub2/policy.txt"}

    write(docs / "sub1" / "policy.txt", "Returns are accepted within fourteen days.")
    again = {r.source: r.status for r in kb.ingest(kb.add_folder(docs))}
    assert again == {"sub1/policy.txt": "indexed", "sub2/policy.txt": "unchanged"}
    texts = {t for _, t in fts(kb, "within")}
    assert any("fourteen" in t for t in texts) and not any("thirty" in t for t in texts)
    assert any("Deliveries" in t for t in texts)                          # the other one's passages stay
    assert set(kb.store().documents("docs")) == {"sub1/policy.txt", "sub2/policy.txt"}

    kb.delete_document("sub1/policy.txt")
    assert kb.stored() == ["sub2/policy.txt"] and not (kb.documents_dir / "sub1").exists()
    assert set(kb.store().documents("docs")) == {"sub2/policy.txt"}


def test_uploads_keep_their_base_name(kb):
    added = kb.add_files([("some/folder/notes.md", b"# Notes\n\nText."), ("notes2.md", b"# Two\n\nMore.")])
    assert [kb.source_of(p) for p in added] == ["notes.md", "notes2.md"]
    assert [r.source for r in kb.ingest(added)] == ["notes.md", "notes2.md"]


@pytest.mark.parametrize("path, name", [("sub1/policy.txt", "sub1/policy.txt"), ("a\\b.md", "a/b.md"),
                                        ("../../x.md", "x.md"), ("/abs/./y.md", "abs/y.md"), ("", "document")])
def test_relative_names_never_leave_the_folder(path, name):
    assert safe_relative_name(path) == name


def test_a_link_planted_in_the_documents_folder_leads_nowhere(kb, tmp_path):
    from core.workspace import UnsafeNameError

    kb.documents_dir.mkdir(parents=True, exist_ok=True)
    (kb.documents_dir / "planted").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafeNameError):
        kb.path_of("planted/x.md")
    added = kb.add_files([("x.md", b"# X\n\nfine")])
    assert kb.stored() == ["x.md"] and len(added) == 1


# ---- 3. refused and unreadable files ------------------------------------------------------------------------------
def encrypted_pdf() -> bytes:
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_corrupt_encrypted_and_oversize_files_end_failed_not_waiting(kb, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_DOCUMENT_MB", "0.001")  # about 1 KB
    added = kb.add_files([("broken.pdf", b"%PDF-1.4 broken"), ("locked.pdf", encrypted_pdf()[:1000]),
                          ("big.md", b"# Big\n\n" + b"word " * 400), ("waiting.md", b"# Waiting\n\nSoon.")])
    assert [r.source for r in added.refused] == ["big.md"]
    assert not (kb.documents_dir / "big.md").exists()                   # refused before it was copied
    assert sorted(p.name for p in kb.pending()) == ["broken.pdf", "locked.pdf", "waiting.md"]
    monkeypatch.delenv("STUDIO_MAX_DOCUMENT_MB")
    kb.add_files([("locked.pdf", encrypted_pdf())])
    results = {r.source: r.status for r in kb.ingest([p for p in kb.pending() if p.name != "waiting.md"])}
    assert results == {"broken.pdf": "error", "locked.pdf": "error"}

    failed = kb.failed()
    assert sorted(failed) == ["big.md", "broken.pdf", "locked.pdf"]
    assert failed["big.md"]["refused"] and not failed["broken.pdf"]["refused"]
    assert "limit" in failure_reason(failed["big.md"]) and "password" in failure_reason(failed["locked.pdf"])
    assert failure_reason(failed["broken.pdf"]).template.startswith("{file} could not be read as a PDF")
    assert [p.name for p in kb.pending()] == ["waiting.md"]             # the waiting count leaves them out
    assert {r.source for r in kb.ingest(kb.pending())} == {"waiting.md"}  # and they are not retried

    assert kb.clear_failed() == ["big.md", "broken.pdf", "locked.pdf"]
    assert kb.failed() == {} and kb.stored() == ["waiting.md"]          # gone from disk too
    assert list(kb.documents()) == ["waiting.md"]


def test_an_oversize_file_in_a_folder_is_never_read(kb, allowed, monkeypatch):
    root, _ = allowed
    write(root / "docs" / "big.txt", "word " * 400)
    write(root / "docs" / "small.txt", "small")
    monkeypatch.setenv("STUDIO_MAX_DOCUMENT_MB", "0.001")
    read = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or original(self))
    added = kb.add_folder(root / "docs")
    assert [r.source for r in added.refused] == ["big.txt"] and read == ["small.txt"]
    assert kb.stored() == ["small.txt"] and kb.failed()["big.txt"]["refused"]


def test_adding_a_failed_file_again_makes_it_wait_again(kb):
    kb.ingest(kb.add_files([("broken.pdf", b"%PDF-1.4 broken")]))
    assert kb.pending() == [] and "broken.pdf" in kb.failed()
    kb.add_files([("broken.pdf", b"%PDF-1.4 still broken")])
    assert [p.name for p in kb.pending()] == ["broken.pdf"] and kb.failed() == {}


def test_an_unexpected_parser_error_is_recorded_not_raised(kb, monkeypatch):
    from core.rag import parse

    def crash(data, filename, **options):
        raise RecursionError("maximum recursion depth exceeded")

    paths = kb.add_files([("deep.html", b"<html>" * 10)])
    monkeypatch.setattr(parse, "parse_document", crash)
    [result] = kb.ingest(paths)
    assert result.status == "error" and "maximum recursion" in str(result.message)
    assert "deep.html" in kb.failed() and kb.pending() == []


def test_the_ingest_job_records_failures(kb, project, capsys):
    from core.rag import ingest_job

    paths = kb.add_files([("broken.pdf", b"%PDF-1.4 broken"), ("good.md", b"# Good\n\nFine text.")])
    assert ingest_job.main([str(project.path), "docs", "", *map(str, paths)]) == 0
    assert '"status": "error"' in capsys.readouterr().out
    assert list(kb.failed()) == ["broken.pdf"] and list(kb.documents()) == ["good.md"] and kb.pending() == []


def test_removing_a_failed_file_that_replaced_an_indexed_document(kb):
    kb.ingest(kb.add_files([("manual.pdf", b"%PDF-1.4 broken"), ("handbook.md", b"# H\n\nOpen at nine.")]))
    kb.ingest(kb.add_files([("handbook.md", b"")]))  # refused: the indexed original is kept
    assert (kb.documents_dir / "handbook.md").read_bytes() == b"# H\n\nOpen at nine."
    kb.clear_failed()
    assert list(kb.documents()) == ["handbook.md"] and kb.stored() == ["handbook.md"]
    kb.ingest(kb.add_files([("handbook.md", b"\x00\x01\x02 binary")]))  # copied over the original, unreadable
    assert kb.documents()["handbook.md"] and "handbook.md" in kb.failed()
    kb.clear_failed()  # its only original is gone: the document goes with it
    assert kb.documents() == {} and kb.stored() == [] and kb.store().documents("docs") == {}


def test_cli_clean_failed(workspace, fake_embedder):
    from typer.testing import CliRunner

    from core import cli

    project = workspace.create("Docs")
    base = KnowledgeBase(project, "docs")
    base.ingest(base.add_files([("broken.pdf", b"%PDF-1.4 broken")]))
    result = CliRunner().invoke(cli.app, ["kb", "clean-failed", "Docs"])
    assert result.exit_code == 0, result.output
    assert "broken.pdf" in result.stdout and "1 failed file(s) removed" in result.stdout
    assert base.failed() == {} and base.stored() == []


# ---- 4. the embedding cache is bounded ------------------------------------------------------------------------------
class CountingModel:
    def __init__(self):
        self.encoded: list[str] = []

    def encode(self, texts, **options):
        self.encoded += texts
        return np.stack([np.full(384, len(t), dtype=np.float32) for t in texts])


def test_the_embedding_cache_never_grows_past_its_bound(monkeypatch):
    from collections import OrderedDict

    from core.models import embedder

    model = CountingModel()
    monkeypatch.setattr(embedder, "_load", lambda: model)
    monkeypatch.setattr(embedder, "_cache", OrderedDict())
    monkeypatch.setattr(embedder, "MAX_CACHED", 3)
    for n in range(1, 30):
        vectors = embedder.embed(["x" * i for i in range(n, n + 4)])   # more texts than the bound in one call
        assert [float(v[0]) for v in vectors] == [float(i) for i in range(n, n + 4)]
        assert len(embedder._cache) <= 3
    model.encoded.clear()
    embedder._cache.clear()
    embedder.embed(["a"]), embedder.embed(["b"]), embedder.embed(["c"])
    embedder.embed(["a"])   # used again: the least recently used is now "b"
    embedder.embed(["d"])
    embedder.embed(["a", "c", "d"])
    assert model.encoded == ["a", "b", "c", "d"]                        # a, c and d came from the cache
    embedder.embed(["b"])
    assert model.encoded[-1] == "b" and len(embedder._cache) == 3
