"""The one module that talks to LanceDB: a table of chunks per knowledge base, upserts by content hash,
vector and full-text search. The location may be a project folder or an object-storage URI (s3://…).

Each chunk has its own vector and, in `sentence_vectors`, that vector followed by one per sentence of the chunk
(a LanceDB multivector column). Vector search ranks a chunk by the best of them, and `Hit.similarity` (what the
minimum similarity is compared with, for keyword hits too) is that best: a passage one of whose sentences answers
the question is kept even when the rest of it is about something else (a procedure asked about one step). Tables
made before that column existed are searched and judged by their chunk vectors until the knowledge base is indexed
again."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa

# Every tokenizer option is pinned so an index never changes meaning with a library default. No ASCII folding:
# in Vietnamese "bán", "bạn" and "ban" are different words and must stay different. English stemming ("returns"
# finds "returned") is decided per table from its text (stems_words): the English stemmer would merge Vietnamese
# words ("ngày" and "ngài").
# Past this many chunks a flat vector scan gets slow (≈90 ms p95 hybrid at 100k on 2 cores); an IVF_SQ index
# brings it to ≈11 ms while finding ≈96% of the exact top 5 (bench/query.py).
VECTOR_INDEX_FROM = 10_000
FTS_OPTIONS = dict(use_tantivy=False, base_tokenizer="simple", language="English", max_token_length=40,
                   lower_case=True, stem=False, remove_stop_words=False, ascii_folding=False, with_position=True)
# Text whose words carry non-ASCII letters more often than this is not stemmed as English.
STEM_MAX_ACCENTED_WORDS = 0.05
STEM_SAMPLE_ROWS = 2000


def stems_words(texts) -> bool:
    """Whether keyword search should stem this text as English: its words are (almost all) plain ASCII. On public
    English articles stemming put the right passage first for 0.75 of questions instead of 0.72 (bench/README.md)."""
    words = accented = 0
    for text in texts:
        for word in str(text or "").split():
            words += 1
            accented += not word.isascii()
    return words > 0 and accented / words <= STEM_MAX_ACCENTED_WORDS


def fts_options(texts) -> dict:
    return {**FTS_OPTIONS, "stem": stems_words(texts)}


def chunk_id(doc_id: str, text: str) -> str:
    return hashlib.sha256(f"{doc_id}\x00{text}".encode("utf-8")).hexdigest()[:32]


SENTENCE_VECTORS = "sentence_vectors"
HIT_COLUMNS = ["chunk_id", "doc_id", "source", "page", "heading", "text", "vector"]


def schema(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("chunk_id", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("doc_hash", pa.string()),
        pa.field("source", pa.string()),
        pa.field("page", pa.int32()),
        pa.field("heading", pa.string()),
        pa.field("text", pa.string()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("embedder", pa.string()),
        pa.field("chunking", pa.string()),
        pa.field(SENTENCE_VECTORS, pa.list_(pa.list_(pa.float32(), dim))),
    ])


def _has_sentences(table) -> bool:
    return SENTENCE_VECTORS in table.schema.names


@dataclass
class Hit:
    chunk_id: str
    doc_id: str
    source: str
    page: int
    heading: str
    text: str
    score: float
    similarity: float | None = None  # cosine of the query to the chunk's or its closest sentence's vector, when known
    ranks: dict | None = None        # rank in each search that found it (hybrid)


_CHECKED_TEXT_INDEXES: set[tuple[str, str]] = set()


class KnowledgeStore:
    def __init__(self, uri: str):
        import lancedb

        self.uri = uri
        self.db = lancedb.connect(uri)

    def table(self, name: str, dim: int):
        if name in self.db.list_tables().tables:
            return self.db.open_table(name)
        return self.db.create_table(name, schema=schema(dim))

    def upsert(self, name: str, rows: list[dict], dim: int, embedder: str, chunking: dict,
               refresh: bool = True) -> int:
        """Insert chunks; a chunk already stored (same doc and text) is left as it is. Returns rows written.
        A row may carry "sentence_vectors", one per sentence of its text. With refresh=False the caller calls
        refresh() once after a batch of writes."""
        table = self.table(name, dim)
        records = [{"chunk_id": chunk_id(r["doc_id"], r["text"]), "doc_id": r["doc_id"],
                    "doc_hash": r.get("doc_hash", ""), "source": r.get("source", ""),
                    "page": int(r.get("page") or 0), "heading": r.get("heading", ""), "text": r["text"],
                    "vector": [float(x) for x in r["vector"]], "embedder": embedder,
                    "chunking": json.dumps(chunking, sort_keys=True),
                    SENTENCE_VECTORS: [[float(x) for x in v] for v in [r["vector"], *r.get(SENTENCE_VECTORS, ())]]}
                   for r in rows]
        if not records:
            return 0
        if not _has_sentences(table):  # a table from before sentence vectors: it keeps its columns
            for record in records:
                del record[SENTENCE_VECTORS]
        result = table.merge_insert("chunk_id").when_not_matched_insert_all().execute(records)
        if refresh:
            self.refresh(name)
        return int(getattr(result, "num_inserted_rows", len(records)))

    def refresh(self, name: str) -> None:
        """Indexes after writes: the full-text index with the pinned options (built again when the text's language
        calls for other stemming), a vector index once the table is large; optimize() folds new and deleted rows
        into both, so they are searchable at once."""
        if not self.exists(name):
            return
        table = self.db.open_table(name)
        kinds = {index.index_type for index in table.list_indices()}
        self._text_index_current(table)
        if not kinds & {"IVF_SQ", "IvfSq"} and table.count_rows() >= VECTOR_INDEX_FROM:
            for column in ["vector"] + ([SENTENCE_VECTORS] if _has_sentences(table) else []):
                table.create_index(metric="cosine", vector_column_name=column, index_type="IVF_SQ")
        table.optimize()

    def _text_index_current(self, table) -> None:
        """Builds the full-text index when it is missing or its stemming no longer fits the table's text (an index
        from before stemming was decided by language is rebuilt once)."""
        found = next((index for index in table.list_indices() if index.index_type == "FTS"), None)
        options = fts_options(row["text"] for row in table.head(STEM_SAMPLE_ROWS).select(["text"]).to_pylist())
        details = getattr(found, "index_details", None) or {}
        if found is None or details.get("stem", options["stem"]) != options["stem"]:
            table.create_fts_index("text", replace=True, **options)

    def delete_document(self, name: str, doc_id: str, refresh: bool = True) -> None:
        table = self.db.open_table(name)
        table.delete(f"doc_id = '{doc_id.replace(chr(39), chr(39) * 2)}'")
        if refresh:
            self.refresh(name)

    def count(self, name: str) -> int:
        return self.db.open_table(name).count_rows() if self.exists(name) else 0

    def version(self, name: str) -> int | None:
        """The table's LanceDB version (it grows with every commit), recorded to reproduce a result."""
        return int(self.db.open_table(name).version) if self.exists(name) else None

    def rows(self, name: str, columns: list[str]) -> list[dict]:
        """Some columns of every chunk (no vectors: see `texts_and_vectors`)."""
        return self.db.open_table(name).to_arrow().select(columns).to_pylist() if self.exists(name) else []

    def texts_and_vectors(self, name: str):
        """(the text each vector was made from, the vectors as one float32 array), read in one go: the chunks'
        and their sentences'."""
        import numpy as np

        from core.rag.chunking import sentences_to_embed, text_to_embed

        if not self.exists(name):
            return [], np.zeros((0, 0), dtype=np.float32)
        opened = self.db.open_table(name)
        sentences = _has_sentences(opened)
        table = opened.to_arrow().select(["text", "heading", "source", "vector"]
                                         + ([SENTENCE_VECTORS] if sentences else []))
        vectors = table.column("vector").combine_chunks()
        dim = vectors.type.list_size
        rows = list(zip(*(table.column(c).to_pylist() for c in ("text", "heading", "source"))))
        embedded = [text_to_embed(text, heading or "", source or "") for text, heading, source in rows]
        found = [vectors.flatten().to_numpy().astype(np.float32).reshape(-1, dim)]
        if sentences:
            for (text, heading, source), stored in zip(rows, table.column(SENTENCE_VECTORS).to_pylist()):
                texts = sentences_to_embed(text, heading or "", source or "")
                if stored and len(texts) == len(stored) - 1:  # cut the same way as when it was stored
                    embedded.extend(texts)
                    found.append(np.asarray(stored[1:], dtype=np.float32).reshape(-1, dim))
        return embedded, np.concatenate(found)

    def exists(self, name: str) -> bool:
        return name in self.db.list_tables().tables

    def has_sentence_vectors(self, name: str) -> bool:
        """Whether the table's chunks carry their sentences' vectors (tables made before that do not)."""
        return self.exists(name) and _has_sentences(self.db.open_table(name))

    def export_table(self, name: str) -> pa.Table:
        """Every column of every chunk, vectors included (what an assistant bundle carries)."""
        return self.db.open_table(name).to_arrow()

    def import_table(self, name: str, rows: pa.Table) -> int:
        """A new table holding exported chunks, with the same indexes as an ingest builds. Returns the row count."""
        if rows.num_rows == 0:
            return 0
        dim = rows.schema.field("vector").type.list_size
        fields = schema(dim)
        if SENTENCE_VECTORS not in rows.schema.names:  # exported before sentence vectors: kept as it was, so the
            fields = pa.schema([f for f in fields if f.name != SENTENCE_VECTORS])  # next ingest rebuilds it
        self.db.create_table(name, data=rows.select(fields.names).cast(fields))
        self.refresh(name)
        return rows.num_rows

    def drop(self, name: str) -> None:
        if self.exists(name):
            self.db.drop_table(name)

    def documents(self, name: str) -> dict[str, tuple[str, int]]:
        """doc_id -> (document hash, number of chunks)."""
        if not self.exists(name):
            return {}
        found: dict[str, tuple[str, int]] = {}
        for row in self.db.open_table(name).to_arrow().select(["doc_id", "doc_hash"]).to_pylist():
            doc_hash, count = found.get(row["doc_id"], (row["doc_hash"], 0))
            found[row["doc_id"]] = (doc_hash, count + 1)
        return found

    def search_text(self, name: str, query: str, k: int = 5, where: str | None = None,
                    vector=None) -> list[Hit]:
        """Full-text hits; with the query's `vector`, each hit's similarity comes from its stored vector (the
        passages need not be embedded again)."""
        if not query.strip():
            return []
        table = self.db.open_table(name)
        if (self.uri, name) not in _CHECKED_TEXT_INDEXES:  # once per process: indexes built by older versions
            self._text_index_current(table)
            _CHECKED_TEXT_INDEXES.add((self.uri, name))
        search = table.search(query, query_type="fts", fts_columns="text").select([*_columns(table), "_score"])
        rows = (search.where(where) if where else search).limit(k).to_list()
        return [_hit(row, row.get("_score", 0.0), _relevance(row, vector)) for row in rows]

    def search_vector(self, name: str, vector, k: int = 5, where: str | None = None) -> list[Hit]:
        """The k chunks nearest the query: by the best of each chunk's vector and its sentences' (`score`, and
        `similarity`)."""
        table = self.db.open_table(name)
        column = SENTENCE_VECTORS if _has_sentences(table) else "vector"
        search = table.search(list(map(float, vector)), query_type="vector",
                              vector_column_name=column).metric("cosine").select([*_columns(table), "_distance"])
        rows = (search.where(where) if where else search).limit(k).to_list()
        return [_hit(row, 1.0 - row.get("_distance", 0.0), _relevance(row, vector)) for row in rows]

    def search_hybrid(self, name: str, query: str, vector, k: int = 5, where: str | None = None,
                      rrf_k: int = 60, depth: int | None = None, reranker: str = "rrf") -> list[Hit]:
        """Vector and full-text results fused (core.rag.ranking.fuse): reciprocal rank fusion, score = sum of
        1 / (rrf_k + rank), or with reranker="linear" a weighted sum of the normalized scores."""
        from core.rag import ranking

        depth = depth or ranking.depth(k)
        by_vector, by_text = both(lambda: self.search_vector(name, vector, depth, where),
                                  lambda: self.search_text(name, query, depth, where))
        return ranking.fuse(by_vector, by_text, k, rrf_k, reranker)


@functools.cache
def _search_pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="search")


def both(first, second):
    """(first(), second()) with the two run side by side: LanceDB searches run in Rust without holding the GIL, so a
    vector and a full-text search overlap instead of adding up (bench/query.py)."""
    pending = _search_pool().submit(second)
    return first(), pending.result()


def _columns(table) -> list[str]:
    return [*HIT_COLUMNS, SENTENCE_VECTORS] if _has_sentences(table) else HIT_COLUMNS


def _relevance(row: dict, query) -> float | None:
    """Cosine of the query to the passage's closest vector: its own or one of its sentences'."""
    vectors = [v for v in (row.get(SENTENCE_VECTORS) or ()) if v is not None] or [row.get("vector")]
    found = [c for c in (_cosine(v, query) for v in vectors) if c is not None]
    return max(found) if found else None


def _cosine(stored, query) -> float | None:
    """Cosine of two vectors, or None when one is missing."""
    if stored is None or query is None:
        return None
    import numpy as np

    a, b = np.asarray(stored, dtype=np.float32), np.asarray(query, dtype=np.float32)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms else 0.0


def _hit(row: dict, score: float, similarity: float | None) -> Hit:
    return Hit(row["chunk_id"], row["doc_id"], row["source"], row["page"], row["heading"], row["text"],
               float(score), similarity)
