"""Knowledge bases: ingest, idempotent re-ingest, edits, deletes, re-index, search modes, and the RAG rung."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import assistant
from core.rag import kb as kb_module
from core.rag.chunking import ChunkingConfig
from core.rag.kb import READER, KnowledgeBase
from core.rag.retriever import RetrieverSettings
from core.recipe import Recipe

HANDBOOK = """# Handbook

## Opening hours
The shop opens at nine in the morning and closes at six in the evening.

## Returns
Bikes can be returned within thirty days with the receipt.

## Warranty
Frames have a ten-year warranty against defects.
"""


@pytest.fixture
def kb(project, fake_embedder):
    return KnowledgeBase(project, "docs")


def ingest_text(kb, name, text):
    return kb.ingest(kb.add_files([(name, text.encode("utf-8"))]))


def test_ingest_then_reingest_changes_nothing(kb):
    first = ingest_text(kb, "handbook.md", HANDBOOK)
    assert [(r.source, r.status) for r in first] == [("handbook.md", "indexed")]
    chunks = kb.store().count("docs")
    assert chunks == first[0].chunks >= 3
    again = ingest_text(kb, "handbook.md", HANDBOOK)
    assert [(r.status, r.chunks) for r in again] == [("unchanged", chunks)]
    assert kb.store().count("docs") == chunks


def test_an_edited_file_replaces_its_old_chunks(kb):
    ingest_text(kb, "handbook.md", HANDBOOK)
    ingest_text(kb, "handbook.md", HANDBOOK.replace("thirty days", "fourteen days"))
    texts = [h.text for h in kb.search("returned receipt", "fts", 10)]
    assert any("fourteen days" in t for t in texts) and not any("thirty days" in t for t in texts)
    assert set(kb.store().documents("docs")) == {"handbook.md"}


def test_bad_files_are_reported_and_the_rest_ingest(kb):
    paths = kb.add_files([("empty.txt", b""), ("photo.png", b"\x89PNG"), ("broken.pdf", b"%PDF-1.4 broken"),
                          ("good.md", HANDBOOK.encode())])
    assert {r.source for r in paths.refused} == {"empty.txt", "photo.png"}  # refused before they are copied
    assert all(r.message for r in paths.refused)
    results = {r.source: r for r in kb.ingest(paths)}
    assert results["good.md"].status == "indexed"
    assert {s for s, r in results.items() if r.status == "error"} == {"broken.pdf"}
    assert all(r.message for r in results.values() if r.status == "error")
    assert list(kb.documents()) == ["good.md"]
    assert set(kb.failed()) == {"empty.txt", "photo.png", "broken.pdf"}


@pytest.mark.parametrize("name, stored", [("../../escape.md", "escape.md"), ("/etc/abs.md", "abs.md"),
                                          ("C:\\Users\\x\\win.md", "win.md")])
def test_uploaded_names_never_leave_the_project(kb, project, name, stored):
    [path] = kb.add_files([(name, b"# T\n\ntext")])
    assert path == project.path / "documents" / "docs" / stored
    assert path.resolve().is_relative_to(project.path.resolve())


def test_delete_a_document(kb):
    ingest_text(kb, "handbook.md", HANDBOOK)
    ingest_text(kb, "other.md", "# Other\n\nDelivery is free above 800 euros.")
    kb.delete_document("handbook.md")
    assert list(kb.documents()) == ["other.md"]
    assert set(kb.store().documents("docs")) == {"other.md"}
    assert not (kb.documents_dir / "handbook.md").exists()


def test_new_chunking_reindexes_everything(kb):
    long_section = "\n\n## Service\n" + " ".join(f"word{i}" for i in range(60))
    ingest_text(kb, "handbook.md", HANDBOOK + long_section)
    before = kb.store().count("docs")
    results = kb.ingest([kb.path_of("handbook.md")], ChunkingConfig("fixed", chunk_tokens=16, overlap_tokens=0))
    assert [(r.source, r.status) for r in results] == [("handbook.md", "indexed")]  # once, not also "unchanged"
    assert kb.chunking().strategy == "fixed"
    rows = kb.store().db.open_table("docs").to_arrow().to_pylist()
    assert {json.loads(r["chunking"])["strategy"] for r in rows} == {"fixed"} and len(rows) != before


def test_another_embedder_in_the_manifest_triggers_a_full_reindex(kb):
    ingest_text(kb, "handbook.md", HANDBOOK)
    manifest = kb.manifest()
    manifest["embedder"] = "some-older-embedder"
    kb._write(manifest)
    ingest_text(kb, "other.md", "# Other\n\nDelivery is free above 800 euros.")
    rows = kb.store().db.open_table("docs").to_arrow().to_pylist()
    assert {r["embedder"] for r in rows} == {kb_module.EMBEDDER}
    assert {r["doc_id"] for r in rows} == {"handbook.md", "other.md"}


def test_search_modes_and_source_filter(kb):
    ingest_text(kb, "handbook.md", HANDBOOK)
    ingest_text(kb, "other.md", "# Other\n\nThe warranty on batteries is two years.")
    for mode in ("vector", "fts", "hybrid"):
        hits = kb.search("warranty", mode, 5)
        assert hits and all(h.similarity is not None for h in hits)
    only = kb.search("warranty", "hybrid", 5, where="source = 'other.md'")
    assert {h.source for h in only} == {"other.md"}


def test_each_sentence_of_a_passage_is_embedded_and_finds_it(kb, fake_embedder):
    from core.rag.chunking import sentences_to_embed, text_to_embed

    paragraph = ("The shop opens at nine. Staff wear blue shirts. Parking is behind the building. Coffee is free "
                 "for members. Carbon frames carry a lifetime warranty.")
    ingest_text(kb, "handbook.md", f"# Handbook\n\n{paragraph}")
    [row] = kb.store().db.open_table("docs").to_arrow().to_pylist()
    sentences = sentences_to_embed(paragraph, "Handbook", "handbook.md")
    assert len(sentences) == 5 and sentences[-1] == "Handbook\nCarbon frames carry a lifetime warranty."
    assert len(row["sentence_vectors"]) == 6  # the passage's own vector, then one per sentence
    expected = fake_embedder([text_to_embed(paragraph, "Handbook", "handbook.md"), *sentences])
    assert all(abs(a - b) < 1e-6 for stored, wanted in zip(row["sentence_vectors"], expected)
               for a, b in zip(stored, wanted))
    [hit] = kb.search("Do carbon frames carry a lifetime warranty?", "vector", 1)
    whole = float(np.asarray(row["vector"]) @ fake_embedder(["Do carbon frames carry a lifetime warranty?"])[0])
    assert hit.similarity == pytest.approx(hit.score) and hit.score > 0.8 > whole  # found and judged by its sentence


def test_a_passage_whose_one_sentence_answers_is_not_left_out_as_irrelevant(kb, fake_embedder):
    """A procedure asked about one of its steps: the passage as a whole is far from the question, its step is not."""
    from core.assistant import retrieve

    steps = ("Log in to your account and open Orders. Choose the order and click Return. Print the prepaid "
             "shipping label. Pack the product in its original box. Drop the parcel at any post office. Refunds "
             "reach the original payment method within five business days. Store credit never expires.")
    ingest_text(kb, "returns.md", f"# Returns\n\n{steps}")
    question = "What do I do after I print the shipping label?"
    [hit] = kb.search(question, "hybrid", 1)
    whole = float(np.asarray(kb.store().db.open_table("docs").to_arrow().to_pylist()[0]["vector"]) @
                  fake_embedder([question])[0])
    settings = RetrieverSettings(enabled=True)
    assert whole < settings.min_similarity <= hit.similarity
    assert retrieve(kb.project, Recipe(retriever=settings), question) == [hit]


def test_a_store_location_uri_is_used(kb, tmp_path):
    manifest = kb.manifest()
    manifest["uri"] = str(tmp_path / "elsewhere")
    kb._write(manifest)
    ingest_text(kb, "handbook.md", HANDBOOK)
    assert (tmp_path / "elsewhere").exists() and kb.store().count("docs") > 0


# ---- the RAG rung -------------------------------------------------------------------------------------------

def test_answers_quote_numbered_passages(kb, project, tiny_backend):
    ingest_text(kb, "handbook.md", HANDBOOK)
    recipe = Recipe(retriever=RetrieverSettings(enabled=True, k=2, min_similarity=0.1))
    recipe = recipe.with_changes(generation=recipe.generation.__class__(max_new_tokens=8))  # tiny model: 256 tokens
    prepared, stream = assistant.answer(recipe, "When does the shop open in the morning?", tiny_backend("llama"),
                                        [], project)
    assert prepared.sources and prepared.sources[0].heading == "Handbook > Opening hours"
    assert "[1] (handbook.md — Handbook > Opening hours) The shop opens at nine" in prepared.prompt.text
    assert prepared.budget.context_tokens > 0
    assert prepared.budget.used == tiny_backend("llama").count_tokens(prepared.prompt)
    stream.run_to_end()


def test_nothing_relevant_means_no_invented_answer(kb, project, tiny_backend):
    ingest_text(kb, "handbook.md", HANDBOOK)
    recipe = Recipe(retriever=RetrieverSettings(enabled=True, min_similarity=0.9, no_answer="Không tìm thấy."))
    prepared, stream = assistant.answer(recipe, "Who painted the Mona Lisa?", tiny_backend("llama"), [], project)
    assert prepared.nothing_found
    assert stream.run_to_end() == "Không tìm thấy." and stream.output_tokens == 0


def test_passages_that_do_not_fit_are_dropped_before_overflowing(kb, project, tiny_backend):
    ingest_text(kb, "handbook.md", HANDBOOK * 3)
    recipe = Recipe(retriever=RetrieverSettings(enabled=True, k=6, min_similarity=0.0), context_window=200)
    recipe = recipe.with_changes(generation=recipe.generation.__class__(max_new_tokens=20))
    prepared, _ = assistant.answer(recipe, "warranty", tiny_backend("llama"), [], project)
    assert prepared.budget.passages_dropped > 0 and prepared.budget.fits


@pytest.mark.real_model
def test_hybrid_finds_a_keyword_only_match_that_vector_search_misses(project):
    """Real MiniLM: a part number means little to a meaning-based embedder; keywords find it."""
    kb = KnowledgeBase(project, "docs")
    topics = ["The shop opens at nine in the morning and closes at six.", "Bikes can be returned within thirty days.",
              "The warranty covers frames for ten years.", "Delivery is free above eight hundred euros.",
              "Spare part QZ-7781 fits the rear derailleur of city bikes.", "We accept cards and bank transfers."]
    ingest_text(kb, "handbook.md", "# Handbook\n\n" + "\n\n".join(f"## Topic {i}\n\n{t}" for i, t in enumerate(topics)))
    question = "Is QZ-7781 covered by the frame warranty?"
    by_vector = [h.text for h in kb.search(question, "vector", 1)]
    by_text = [h.text for h in kb.search(question, "fts", 2)]
    by_hybrid = [h.text for h in kb.search(question, "hybrid", 2)]
    # meaning picks the warranty passage; keywords (stemmed: "covered" finds "covers") find both
    assert "QZ-7781" not in by_vector[0] and any("QZ-7781" in t for t in by_text)
    assert any("QZ-7781" in t for t in by_hybrid)


def test_create_with_a_location_and_the_size_limit(project, fake_embedder, tmp_path, monkeypatch):
    from core.errors import StudioError

    handbook = KnowledgeBase(project, "handbook")
    handbook.create(str(tmp_path / "remote-like"))
    with pytest.raises(StudioError, match="already exists"):
        handbook.create()
    monkeypatch.setenv("STUDIO_MAX_DOCUMENT_MB", "0.001")  # about 1 KB
    added = handbook.add_files([("big.md", ("# Big\n\n" + "word " * 400).encode("utf-8"))])
    [result] = added.refused  # refused before it is copied
    assert not added and result.status == "refused" and "limit" in str(result.message)
    monkeypatch.delenv("STUDIO_MAX_DOCUMENT_MB")
    [result] = ingest_text(handbook, "big.md", "# Big\n\n" + "word " * 400)
    assert result.status == "indexed" and (tmp_path / "remote-like").exists()


def test_add_a_folder_of_documents(kb, tmp_path, monkeypatch):
    from core.errors import StudioError

    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", str(tmp_path))

    folder = tmp_path / "handbook"
    (folder / "policies").mkdir(parents=True)
    (folder / "hours.md").write_text("# Hours\n\nOpen at nine.", encoding="utf-8")
    (folder / "policies" / "returns.txt").write_text("Returns within 30 days.", encoding="utf-8")
    (folder / "photo.png").write_bytes(b"\x89PNG")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "secret.md").write_text("# no", encoding="utf-8")
    added = kb.add_folder(folder)
    assert sorted(p.name for p in added) == ["hours.md", "returns.txt"]
    assert sorted(p.name for p in kb.pending()) == ["hours.md", "returns.txt"]
    with pytest.raises(StudioError, match="does not exist"):
        kb.add_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StudioError, match="holds no"):
        kb.add_folder(empty)


def test_ingest_progress_never_goes_backwards(kb, monkeypatch):
    """It read "[21%] Reading ..." then "[0%] Embedding 382 passages": the bar must only move forward."""
    from core.rag import kb as kb_module

    monkeypatch.setattr(kb_module, "EMBED_BATCH", 4)  # several embedding rounds in one ingest
    paths = kb.add_files([(f"part-{i}.md", (HANDBOOK + f"\nPart {i}.").encode()) for i in range(5)])
    seen = []
    kb.ingest(paths, progress=lambda fraction, message: seen.append((fraction, str(message))))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.startswith("Embedding") and f > 0 for f, m in seen)


def test_an_index_made_by_an_earlier_reader_is_rebuilt_by_the_next_ingest(kb):
    wrapped = "Members can borrow a tent from the store at any time during the opening hours of\nthe shop. " * 3
    ingest_text(kb, "club.md", wrapped)
    assert kb.manifest()["reader"] == READER and not kb.indexed_by_earlier_version()
    manifest = kb.manifest()
    del manifest["reader"]  # as an earlier version wrote it
    kb._write(manifest)
    assert kb.indexed_by_earlier_version()
    assert [(r.source, r.status) for r in kb.ingest([])] == [("club.md", "indexed")]
    assert kb.manifest()["reader"] == READER and not kb.indexed_by_earlier_version()
    assert kb.ingest([]) == []  # current now: nothing is indexed again


def test_an_empty_knowledge_base_from_an_earlier_version_is_current_after_its_first_ingest(kb):
    kb.create()
    manifest = kb.manifest()
    del manifest["reader"]
    kb._write(manifest)
    assert not kb.indexed_by_earlier_version()  # nothing indexed, nothing to redo
    ingest_text(kb, "handbook.md", HANDBOOK)
    assert kb.manifest()["reader"] == READER and not kb.indexed_by_earlier_version()


def test_an_index_from_before_sentence_vectors_is_rebuilt_by_the_next_ingest(kb):
    ingest_text(kb, "handbook.md", HANDBOOK)
    store = kb.store()
    older = store.export_table("docs").drop_columns(["sentence_vectors"])
    store.drop("docs")
    store.db.create_table("docs", data=older)
    assert kb.indexed_before_sentences() and kb.search("warranty", "vector", 1)  # still searched, by passages
    assert [(r.source, r.status) for r in kb.ingest([])] == [("handbook.md", "indexed")]
    assert not kb.indexed_before_sentences() and list(kb.documents()) == ["handbook.md"]
    assert store.count("docs") == older.num_rows
