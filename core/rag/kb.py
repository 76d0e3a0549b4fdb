"""A knowledge base: the project's documents for one topic, their chunks in LanceDB, and how they were made.

indexes/<kb>.json      manifest: embedder, chunking config, store location, one entry per document
documents/<kb>/<file>  the uploaded originals (safe names only), kept so the index can be rebuilt
LanceDB table <kb>     the chunks, in indexes/lancedb or at an object-storage URI (s3://…)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core import atomic
from core.errors import StudioError
from core.i18n import Msg
from core.workspace import Project

DEFAULT_KB = "docs"
EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
EMBED_BATCH = 256  # chunks embedded per call across files
Progress = Callable[[float, Msg], None]


@dataclass
class FileResult:
    source: str
    status: str           # indexed | unchanged | error
    chunks: int = 0
    message: Msg | None = None
    warnings: list = field(default_factory=list)


def _embed(texts: list[str]):
    from core.models.embedder import embed

    return embed(texts)


def _count_tokens():
    from core.rag.chunking import embedder_token_counter

    return embedder_token_counter()


class KnowledgeBase:
    def __init__(self, project: Project, name: str = DEFAULT_KB):
        import re

        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,40}", name):
            raise StudioError(Msg("A knowledge-base name uses letters, digits, - and _ only (at most 40)."))
        self.project = project
        self.name = name
        self.manifest_path = project.subdir("indexes") / f"{name}.json"
        self.documents_dir = project.subdir("documents") / name

    # ---- manifest -----------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        if self.manifest_path.exists():
            return atomic.read_json(self.manifest_path)
        from core.rag.chunking import ChunkingConfig

        return {"name": self.name, "embedder": EMBEDDER, "chunking": ChunkingConfig().to_dict(), "uri": None,
                "documents": {}}

    def _write(self, manifest: dict) -> None:
        atomic.write_json(self.manifest_path, manifest)

    @property
    def uri(self) -> str:
        return self.manifest().get("uri") or str(self.project.subdir("indexes") / "lancedb")

    def create(self, uri: str | None = None) -> None:
        """Start an empty knowledge base. `uri` is any location lancedb.connect accepts: a folder, or
        object storage such as s3://bucket/path (credentials come from the usual environment variables);
        by default $STUDIO_LANCEDB_URI, else the project's indexes folder."""
        if self.manifest_path.exists():
            raise StudioError(Msg("A knowledge base called '{name}' already exists.", name=self.name))
        location = (uri or os.environ.get("STUDIO_LANCEDB_URI") or "").strip() or None
        self.documents_dir.mkdir(parents=True, exist_ok=True)
        self._write({**self.manifest(), "uri": location})

    def store(self):
        from core.rag.store import KnowledgeStore

        return KnowledgeStore(self.uri)

    def set_chunking(self, chunking) -> None:
        """Change how documents are cut; only for an empty knowledge base (otherwise reindex)."""
        manifest = self.manifest()
        if manifest["documents"]:
            raise StudioError(Msg("Re-index the documents to change how they are cut."))
        self._write({**manifest, "chunking": chunking.to_dict()})

    def chunking(self):
        from core.rag.chunking import ChunkingConfig

        return ChunkingConfig.from_dict(self.manifest()["chunking"])

    def documents(self) -> dict[str, dict]:
        return self.manifest()["documents"]

    def pending(self) -> list[Path]:
        """Stored originals that are not indexed yet (or changed since)."""
        indexed = self.documents()
        return [p for p in sorted(self.documents_dir.glob("*")) if p.is_file() and p.name not in indexed]

    # ---- documents ----------------------------------------------------------------------------------------
    def add_files(self, files: list[tuple[str, bytes]]) -> list[Path]:
        """Keep uploaded originals under safe names inside the project (never outside it)."""
        from core.rag.parse import safe_name

        saved = []
        for filename, data in files:
            target = self.documents_dir / safe_name(filename)
            atomic.write_bytes(target, data)
            saved.append(target)
        return saved

    def add_folder(self, folder: Path) -> list[Path]:
        """Copy the supported documents of a folder on this machine (and its sub-folders) into the project."""
        from core.rag.parse import SUPPORTED

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise StudioError(Msg("The folder {folder} does not exist; check the path.", folder=str(folder)))
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if not files:
            raise StudioError(Msg("{folder} holds no PDF, Word, HTML, Markdown, text, CSV or Excel files.",
                                  folder=str(folder)))
        return self.add_files([(p.name, p.read_bytes()) for p in files])

    def delete_document(self, source: str) -> None:
        manifest = self.manifest()
        store = self.store()
        if store.exists(self.name):
            store.delete_document(self.name, source)
        manifest["documents"].pop(source, None)
        self._write(manifest)
        (self.documents_dir / source).unlink(missing_ok=True)

    def ingest(self, paths: list[Path], chunking=None, progress: Progress | None = None,
               cancel: threading.Event | None = None) -> list[FileResult]:
        """Parse, chunk, embed and store each file. A file whose content did not change is left alone; an
        edited file replaces its old chunks; a bad file is reported and the others go on."""
        from core.rag.chunking import chunk_sections
        from core.rag.parse import parse_document

        progress = progress or (lambda fraction, message: None)
        manifest = self.manifest()
        new_chunking = chunking is not None and chunking.to_dict() != manifest["chunking"]
        if manifest["documents"] and (new_chunking or manifest["embedder"] != EMBEDDER):
            self.reindex(chunking or self.chunking(), progress, cancel)  # vectors of two embedders never mix
            manifest = self.manifest()
        if chunking is not None:
            manifest["chunking"] = chunking.to_dict()
        config = self.chunking() if chunking is None else chunking
        store, count_tokens, results = self.store(), _count_tokens(), []
        reuse = _Reuse(self.project, manifest["embedder"])
        waiting: list[tuple] = []  # parsed files whose chunks are embedded together, then stored

        def flush() -> None:
            """One embedding call for the chunks of several files (the embedder batches them best), then each
            file's old chunks are replaced and the manifest updated, file by file."""
            if not waiting:
                return
            progress(len(results) / max(len(paths), 1),
                     Msg("Embedding {count} passages", count=sum(len(c) for _, c in waiting)))
            vectors = iter(reuse.embed([c.text for _, chunks in waiting for c in chunks]))
            for parsed, chunks in waiting:
                if store.exists(self.name):
                    store.delete_document(self.name, parsed.source, refresh=False)
                store.upsert(self.name, [{"doc_id": parsed.source, "doc_hash": parsed.content_hash,
                                          "source": parsed.source, "page": c.page or 0, "heading": c.heading,
                                          "text": c.text, "vector": next(vectors)} for c in chunks],
                             EMBEDDING_DIM, manifest["embedder"], config.to_dict(), refresh=False)
                manifest["documents"][parsed.source] = {
                    "hash": parsed.content_hash, "chunks": len(chunks), "ingested_at": time.time(),
                    "pages": len({c.page for c in chunks if c.page}), "warnings": [str(w) for w in parsed.warnings]}
                self._write(manifest)  # after each file: a cancel or crash keeps what is done
                results.append(FileResult(parsed.source, "indexed", len(chunks), warnings=list(parsed.warnings)))
            waiting.clear()

        try:
            for i, path in enumerate(paths):
                if cancel is not None and cancel.is_set():
                    break
                progress(i / max(len(paths), 1), Msg("Reading {file}", file=path.name))
                try:
                    parsed = parse_document(path.read_bytes(), path.name, max_bytes=max_document_bytes())
                    known = manifest["documents"].get(parsed.source)
                    if known and known["hash"] == parsed.content_hash and store.exists(self.name):
                        results.append(FileResult(parsed.source, "unchanged", known["chunks"]))
                        continue
                    chunks = chunk_sections(parsed.sections, config, count_tokens)
                    if not chunks:
                        raise StudioError(Msg("{file} has no text to index.", file=parsed.source))
                except StudioError as exc:
                    results.append(FileResult(path.name, "error", message=exc.args[0]))
                    continue
                waiting.append((parsed, chunks))
                if sum(len(c) for _, c in waiting) >= EMBED_BATCH:
                    flush()
            flush()
        finally:
            store.refresh(self.name)  # once per ingest: the new passages become searchable together
            self._write(manifest)
        progress(1.0, Msg("Done"))
        return results

    def reindex(self, chunking, progress: Progress | None = None, cancel: threading.Event | None = None) -> None:
        """Rebuild every chunk from the stored originals (new chunking or embedder): vectors never mix."""
        manifest = self.manifest()
        sources = [self.documents_dir / source for source in manifest["documents"]]
        self.store().drop(self.name)
        manifest.update(documents={}, chunking=chunking.to_dict(), embedder=EMBEDDER)
        self._write(manifest)
        self.ingest([p for p in sources if p.exists()], None, progress, cancel)

    # ---- search -------------------------------------------------------------------------------------------
    def search(self, query: str, mode: str = "hybrid", k: int = 4, where: str | None = None,
               rrf_k: int = 60, reranker: str = "rrf", text_query: str | None = None, scorer=None) -> list:
        """The k passages for a question, best first (core.rag.ranking.rank: the same order a retrieval sweep
        measures). `reranker`: rrf | linear | llm (llm needs `scorer`, see core.rag.rerank; without one the
        first-stage order is kept). `text_query` replaces the question in the full-text search (rewritten
        keywords); the vector search always embeds the question."""
        from core.rag import ranking

        store = self.store()
        if not query.strip() or not store.exists(self.name):
            return []
        text_query = text_query if text_query and text_query.strip() else query
        fetch = ranking.fetch_depth(mode, k, reranker)
        by_text = store.search_text(self.name, text_query, fetch, where) if mode != "vector" else []
        by_vector = []
        if mode != "fts":
            by_vector = store.search_vector(self.name, _embed([query])[0], fetch, where)
        hits = ranking.rank(mode, by_vector, by_text, k, rrf_k, reranker, query, scorer)
        missing = [h for h in hits if h.similarity is None]
        if missing:  # keyword-only hits: measure their meaning too, so relevance is judged the same way
            query_vector = _embed([query])[0]
            for hit, vector in zip(missing, _embed([h.text for h in missing])):
                hit.similarity = float(vector @ query_vector)
        return hits


class _Reuse:
    """Embeds chunk texts for ingest, taking the vectors a retrieval sweep already made for the same embedder from
    the project's embedding cache (read only: ingest does not grow the cache), so re-indexing with a chunking a
    sweep tried costs no embedding."""

    def __init__(self, project: Project, embedder: str):
        from core.rag.embedders import EmbeddingCache

        cache = EmbeddingCache.for_project(project, embedder)
        self.cache = cache if embedder == EMBEDDER and cache.exists() else None

    def embed(self, texts: list[str]):
        if self.cache is None:
            return _embed(texts)
        import numpy as np

        found = self.cache.lookup(texts)
        missing = [t for t, v in zip(texts, found) if v is None]
        fresh = iter(_embed(missing) if missing else [])
        return np.stack([v if v is not None else next(fresh) for v in found]) if texts else _embed(texts)


def max_document_bytes() -> int:
    """Largest document accepted, from $STUDIO_MAX_DOCUMENT_MB (default 100 MB)."""
    from core.rag.parse import DEFAULT_MAX_BYTES

    value = os.environ.get("STUDIO_MAX_DOCUMENT_MB", "").strip()
    return int(float(value) * 2**20) if value else DEFAULT_MAX_BYTES


def list_knowledge_bases(project: Project) -> list[str]:
    names = {p.stem for p in project.subdir("indexes").glob("*.json")}
    names |= {p.name for p in project.subdir("documents").iterdir() if p.is_dir()}
    return sorted(names)
