"""The LanceDB store: upserts by content hash, deletes, and full-text search that keeps Vietnamese diacritics."""

from __future__ import annotations

import numpy as np
import pytest

from core.rag.store import FTS_OPTIONS, KnowledgeStore

DIM = 8
DOCS = [
    ("hanoi", "Thủ đô của Việt Nam là Hà Nội. Phở bò Hà Nội nổi tiếng khắp nơi."),
    ("ascii", "Ha Noi pho bo, written without any diacritics at all."),
    ("sell", "Tôi muốn bán chiếc xe máy này trước cuối tháng."),
    ("friend", "Bạn có khỏe không? Lâu rồi không gặp bạn."),
]


def rows(docs=DOCS, seed=0):
    rng = np.random.default_rng(seed)
    return [{"doc_id": d, "text": text, "source": f"{d}.txt", "vector": rng.random(DIM)} for d, text in docs]


@pytest.fixture
def store(tmp_path):
    kb = KnowledgeStore(str(tmp_path / "lancedb"))
    kb.upsert("kb", rows(), DIM, "fake", {"size": 100})
    return kb


@pytest.mark.parametrize("query, expected", [
    ("Hà Nội", ["hanoi"]),
    ("phở", ["hanoi"]),
    ("pho", ["ascii"]),       # no folding: the plain word finds only the plain text
    ("bán", ["sell"]),        # "bán" (sell) is not "bạn" (you) …
    ("bạn", ["friend"]),      # … and the other way round
    ("ban", []),
])
def test_full_text_search_keeps_vietnamese_diacritics(store, query, expected):
    assert [hit.doc_id for hit in store.search_text("kb", query)] == expected


def test_hits_return_the_exact_vietnamese_text(store):
    hit = store.search_text("kb", "khỏe")[0]
    assert hit.text == DOCS[3][1] and hit.source == "friend.txt"


def test_reingesting_changes_nothing_and_new_rows_are_searchable_at_once(store):
    assert store.upsert("kb", rows(), DIM, "fake", {"size": 100}) == 0
    assert store.count("kb") == len(DOCS)
    store.upsert("kb", rows([("bun", "Bún chả là món ăn Hà Nội.")]), DIM, "fake", {"size": 100})
    assert [h.doc_id for h in store.search_text("kb", "bún")] == ["bun"]


def test_delete_a_document(store):
    store.delete_document("kb", "sell")
    assert store.count("kb") == len(DOCS) - 1
    assert store.search_text("kb", "bán") == []


def test_vector_search_finds_the_nearest(store):
    target = rows()[2]["vector"]
    assert store.search_vector("kb", target, k=1)[0].doc_id == "sell"


def test_tokenizer_options_are_pinned():
    assert FTS_OPTIONS["ascii_folding"] is False and FTS_OPTIONS["stem"] is False  # stem: decided per table
    assert {"base_tokenizer", "language", "lower_case", "remove_stop_words", "max_token_length"} <= set(FTS_OPTIONS)


def test_a_vector_index_is_built_once_the_table_is_large(tmp_path, monkeypatch):
    from core.rag import store as store_module

    monkeypatch.setattr(store_module, "VECTOR_INDEX_FROM", 600)
    kb = KnowledgeStore(str(tmp_path / "lancedb"))
    rng = np.random.default_rng(1)
    batch = [{"doc_id": f"d{i}", "text": f"passage number {i}", "vector": rng.random(DIM)} for i in range(400)]
    kb.upsert("kb", batch, DIM, "fake", {})
    kinds = lambda: {index.index_type for index in kb.db.open_table("kb").list_indices()}  # noqa: E731
    assert kinds() == {"FTS"}
    more = [{"doc_id": f"e{i}", "text": f"other passage {i}", "vector": rng.random(DIM)} for i in range(400)]
    kb.upsert("kb", more, DIM, "fake", {})
    assert "FTS" in kinds() and len(kinds()) == 2
    target = more[7]["vector"]
    assert kb.search_vector("kb", target, k=1)[0].doc_id == "e7"


def test_english_text_is_stemmed_and_vietnamese_text_is_not(tmp_path):
    english = [("returns", "Returns are accepted within thirty days."), ("ship", "The shop shipped the parcel.")]
    store = KnowledgeStore(str(tmp_path / "en"))
    store.upsert("kb", rows(english), DIM, "fake", {"size": 100})
    assert [hit.doc_id for hit in store.search_text("kb", "returned")] == ["returns"]
    assert [hit.doc_id for hit in store.search_text("kb", "shipping")] == ["ship"]

    vietnamese = [("day", "Ngày mai tôi đi làm ở cửa hàng."), ("sir", "Thưa ngài, xin mời vào cửa hàng.")]
    store = KnowledgeStore(str(tmp_path / "vi"))
    store.upsert("kb", rows(vietnamese), DIM, "fake", {"size": 100})
    # the English stemmer would turn "ngày" (day) into "ngài" (sir)
    assert [hit.doc_id for hit in store.search_text("kb", "ngày")] == ["day"]
    assert [hit.doc_id for hit in store.search_text("kb", "ngài")] == ["sir"]


def test_an_index_built_without_stemming_is_rebuilt_for_english_text(tmp_path):
    from core.rag import store as store_module

    uri = str(tmp_path / "old")
    old = KnowledgeStore(uri)
    table = old.table("kb", DIM)
    table.add([{**row, "chunk_id": row["doc_id"], "doc_hash": "", "page": 0, "heading": "", "embedder": "fake",
                "chunking": "{}", "vector": [float(x) for x in row["vector"]]}
               for row in rows([("returns", "Returns are accepted within thirty days.")])])
    table.create_fts_index("text", replace=True, **FTS_OPTIONS)  # as versions before stemming built it
    assert KnowledgeStore(uri).db.open_table("kb").search("returned", query_type="fts").to_list() == []
    store_module._CHECKED_TEXT_INDEXES.discard((uri, "kb"))
    assert [hit.doc_id for hit in KnowledgeStore(uri).search_text("kb", "returned")] == ["returns"]


@pytest.mark.parametrize("texts, stems", [
    (["Returns are accepted within thirty days at the Lyon café, and the shop pays the full price back to the "
      "card the customer used, usually within a week of the return."], True),
    (["Thủ đô của Việt Nam là Hà Nội. Phở bò Hà Nội nổi tiếng."], False),
    ([], False),
])
def test_stemming_follows_the_language_of_the_text(texts, stems):
    from core.rag.store import stems_words

    assert stems_words(texts) is stems


# ---- sentence vectors ---------------------------------------------------------------------------------------------

def _unit(*values):
    vector = np.zeros(DIM, dtype=np.float32)
    vector[:len(values)] = values
    return vector / np.linalg.norm(vector)


def test_a_chunk_is_found_and_judged_by_its_best_sentence(tmp_path):
    store = KnowledgeStore(str(tmp_path / "lancedb"))
    query = _unit(1)
    store.upsert("kb", [
        {"doc_id": "near", "text": "Close on the whole.", "vector": _unit(0.6, 0.8)},
        {"doc_id": "answer", "text": "Far on the whole. One sentence answers.", "vector": _unit(0.3, 0, 0.95),
         "sentence_vectors": [_unit(0.1, 0, 0, 1), _unit(0.95, 0, 0, 0, 0.3)]},
    ], DIM, "fake", {})
    hits = store.search_vector("kb", query, k=2)
    assert [h.doc_id for h in hits] == ["answer", "near"]
    assert hits[0].score == pytest.approx(float(_unit(0.95, 0, 0, 0, 0.3)[0]), abs=1e-5)
    # how relevant: its answering sentence, not its own vector (0.3), which the rest of its text pulls away
    assert hits[0].similarity == pytest.approx(hits[0].score, abs=1e-5)
    assert hits[1].score == pytest.approx(0.6, abs=1e-5) == hits[1].similarity
    # a keyword hit is judged the same way
    assert store.search_text("kb", "sentence", vector=query)[0].similarity == pytest.approx(hits[0].similarity)
    assert store.search_text("kb", "sentence")[0].similarity is None  # no query vector: the caller measures it


def test_a_table_from_before_sentence_vectors_keeps_working(tmp_path):
    import pyarrow as pa

    from core.rag.store import SENTENCE_VECTORS, schema

    store = KnowledgeStore(str(tmp_path / "lancedb"))
    old = pa.schema([f for f in schema(DIM) if f.name != SENTENCE_VECTORS])
    store.db.create_table("kb", schema=old)
    store.upsert("kb", [{"doc_id": "a", "text": "First one. Second one.", "vector": _unit(1),
                         "sentence_vectors": [_unit(0, 1), _unit(0, 0, 1)]},
                        {"doc_id": "b", "text": "Other.", "vector": _unit(0.5, 0.5)}], DIM, "fake", {})
    assert SENTENCE_VECTORS not in store.db.open_table("kb").schema.names
    assert [h.doc_id for h in store.search_vector("kb", _unit(0, 1), k=2)] == ["b", "a"]  # chunk vectors only
    texts, vectors = store.texts_and_vectors("kb")
    assert len(texts) == 2 and vectors.shape == (2, DIM)


def test_an_exported_table_without_sentence_vectors_is_imported_as_it_was(tmp_path):
    from core.rag.store import SENTENCE_VECTORS

    source = KnowledgeStore(str(tmp_path / "source"))
    source.upsert("kb", rows(), DIM, "fake", {})
    older = source.export_table("kb").drop_columns([SENTENCE_VECTORS])
    target = KnowledgeStore(str(tmp_path / "target"))
    assert target.import_table("kb", older) == len(DOCS)
    assert not target.has_sentence_vectors("kb")  # a knowledge base indexed before them: the next ingest rebuilds it
    assert target.search_vector("kb", rows()[2]["vector"], k=1)[0].doc_id == "sell"
    assert target.search_text("kb", "khỏe")[0].doc_id == "friend"
    assert target.import_table("kb2", source.export_table("kb")) == len(DOCS) and target.has_sentence_vectors("kb2")


def test_the_sentences_embedded_are_read_back_with_their_vectors(tmp_path):
    from core.rag.chunking import sentences_to_embed, text_to_embed

    store = KnowledgeStore(str(tmp_path / "lancedb"))
    text = "Returns are free. Refunds take a week."
    store.upsert("kb", [{"doc_id": "d", "source": "policy.md", "heading": "Policy", "text": text,
                         "vector": _unit(1), "sentence_vectors": [_unit(0, 1), _unit(0, 0, 1)]}], DIM, "fake", {})
    texts, vectors = store.texts_and_vectors("kb")
    assert texts == [text_to_embed(text, "Policy", "policy.md"),
                     *sentences_to_embed(text, "Policy", "policy.md")]
    assert texts[1:] == ["Policy\nReturns are free.", "Policy\nRefunds take a week."]
    assert np.allclose(vectors, [_unit(1), _unit(0, 1), _unit(0, 0, 1)])
