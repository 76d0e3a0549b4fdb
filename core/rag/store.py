"""The one module that talks to LanceDB: a table of chunks per knowledge base, upserts by content hash,
vector and full-text search. The location may be a project folder or an object-storage URI (s3://…)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa

# Every tokenizer option is pinned so an index never changes meaning with a library default. No ASCII folding
# and no stemming: in Vietnamese "bán", "bạn" and "ban" are different words and must stay different.
FTS_OPTIONS = dict(use_tantivy=False, base_tokenizer="simple", language="English", max_token_length=40,
                   lower_case=True, stem=False, remove_stop_words=False, ascii_folding=False, with_position=True)


def chunk_id(doc_id: str, text: str) -> str:
    return hashlib.sha256(f"{doc_id}\x00{text}".encode("utf-8")).hexdigest()[:32]


def schema(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("chunk_id", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("page", pa.int32()),
        pa.field("heading", pa.string()),
        pa.field("text", pa.string()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("embedder", pa.string()),
        pa.field("chunking", pa.string()),
    ])


@dataclass
class Hit:
    chunk_id: str
    doc_id: str
    source: str
    page: int
    heading: str
    text: str
    score: float


class KnowledgeStore:
    def __init__(self, uri: str):
        import lancedb

        self.db = lancedb.connect(uri)

    def table(self, name: str, dim: int):
        if name in self.db.list_tables().tables:
            return self.db.open_table(name)
        return self.db.create_table(name, schema=schema(dim))

    def upsert(self, name: str, rows: list[dict], dim: int, embedder: str, chunking: dict) -> int:
        """Insert chunks; a chunk already stored (same doc and text) is left as it is. Returns rows written."""
        table = self.table(name, dim)
        records = [{"chunk_id": chunk_id(r["doc_id"], r["text"]), "doc_id": r["doc_id"], "source": r.get("source", ""),
                    "page": int(r.get("page") or 0), "heading": r.get("heading", ""), "text": r["text"],
                    "vector": [float(x) for x in r["vector"]], "embedder": embedder,
                    "chunking": json.dumps(chunking, sort_keys=True)} for r in rows]
        if not records:
            return 0
        result = table.merge_insert("chunk_id").when_not_matched_insert_all().execute(records)
        self._refresh_fts(table)
        return int(getattr(result, "num_inserted_rows", len(records)))

    def _refresh_fts(self, table) -> None:
        # Rebuilt after each write so rows are searchable at once (an index only covers rows it has seen).
        table.create_fts_index("text", replace=True, **FTS_OPTIONS)

    def delete_document(self, name: str, doc_id: str) -> None:
        table = self.db.open_table(name)
        table.delete(f"doc_id = '{doc_id.replace(chr(39), chr(39) * 2)}'")
        self._refresh_fts(table)

    def count(self, name: str) -> int:
        return self.db.open_table(name).count_rows() if name in self.db.list_tables().tables else 0

    def search_text(self, name: str, query: str, k: int = 5) -> list[Hit]:
        table = self.db.open_table(name)
        rows = table.search(query, query_type="fts", fts_columns="text").limit(k).to_list()
        return [_hit(row, row.get("_score", 0.0)) for row in rows]

    def search_vector(self, name: str, vector, k: int = 5) -> list[Hit]:
        table = self.db.open_table(name)
        rows = table.search(list(map(float, vector)), query_type="vector").metric("cosine").limit(k).to_list()
        return [_hit(row, 1.0 - row.get("_distance", 0.0)) for row in rows]


def _hit(row: dict, score: float) -> Hit:
    return Hit(row["chunk_id"], row["doc_id"], row["source"], row["page"], row["heading"], row["text"], float(score))
