"""A knowledge base: the project's documents for one topic, their chunks in LanceDB, and how they were made.

indexes/<kb>.json              manifest: embedder, chunking config, store location, one entry per document
documents/<kb>/<file>          the uploaded originals (safe names only), kept so the index can be rebuilt; a
                               document added from a folder keeps its path in that folder (sub1/policy.txt), which
                               is its name everywhere (manifest, passages, citations)
documents/<kb>/.failed.json    files that were refused (never copied) or could not be read: name -> reason; they
                               are not "waiting" and are not retried until added again or removed
LanceDB table <kb>             the chunks, in indexes/lancedb or at an object-storage URI (s3://…)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from core import atomic
from core.errors import StudioError
from core.i18n import Msg
from core.workspace import Project

DEFAULT_KB = "docs"
KNOWLEDGE_BASE = Msg("knowledge base")
DOCUMENT = Msg("document")
EMBEDDER = "all-MiniLM-L6-v2"
# How documents are read and cut; an index made by an earlier reader is rebuilt by the next ingest (the Retriever
# page offers it). 2: a PDF's wrapped lines are joined into sentences and paragraphs and its running headers,
# footers and page numbers left out; a line break inside a sentence of hard-wrapped text does not end it. 3: a
# sentence cut by a PDF's page break is finished on its page; a web page's source line breaks and inline code no
# longer break its sentences; Markdown is read as its text (no link addresses, marks, comments or definitions).
# 4: a PDF paragraph ends where the page shows a gap, also after a full last line. 5: a PDF table whose columns
# line up becomes one passage per row, "header: value; …", under the line before it; a list in a PDF or Word file
# stays one paragraph; a web page keeps the headings trafilatura left out; a table of two columns reads "name: value".
# 6: a Word file's numbered paragraphs and headings keep the numbers Word shows ("2.", "b)", "1.2"); a table's
# title row (an infobox's name) heads its rows instead of being a passage of its own, a row of one cell across a
# table ("Europe") the rows under it. 7: a PDF's headings (lines printed larger than its body text, or short bold
# lines before plain text) head the passages after them, and running heads that carry the page number are left out.
# 8: a web page's table rows that are pictures with their captions (an infobox's portrait) are left out.
# 9: a Word file's text inside content controls is read, and its table of contents left out. 10: and its text
# boxes, after the paragraph each is anchored in. 11: and its footnotes and endnotes, after the paragraph that
# refers to them.
READER = 11
EMBEDDING_DIM = 384
EMBED_BATCH = 256  # chunks embedded per call across files
Progress = Callable[[float, Msg], None]
FAILED_FILE = ".failed.json"
log = logging.getLogger(__name__)


@dataclass
class FileResult:
    source: str
    status: str           # indexed | unchanged | error (could not be read) | refused (not copied: too large, …)
    chunks: int = 0
    message: Msg | None = None
    warnings: list = field(default_factory=list)


class Added(list):
    """The paths of the documents kept (a list, as before), with what was not kept: `refused` (FileResults whose
    message says why: too large, wrong type, empty) and `skipped_links` (links that lead outside the allowed
    folder, relative paths)."""

    def __init__(self, saved=(), refused=(), skipped_links=()):
        super().__init__(saved)
        self.refused: list[FileResult] = list(refused)
        self.skipped_links: list[str] = list(skipped_links)


def failure_reason(entry: dict):
    """Why a file failed (a Msg the page translates) from its entry in `KnowledgeBase.failed()`."""
    return Msg(entry["template"], **entry.get("params", {})) if entry.get("template") else entry.get("reason", "")


def _failure(message, refused: bool) -> dict:
    entry = {"reason": str(message), "refused": refused, "at": time.time()}
    if hasattr(message, "template"):
        entry.update(template=message.template, params={k: str(v) for k, v in message.params.items()})
    return entry


def _embed(texts: list[str]):
    from core.models.embedder import embed

    return embed(texts)


def _count_tokens():
    from core.rag.chunking import embedder_token_counter

    return embedder_token_counter()


READ_SHARE = 0.3  # of a file's share of the progress bar: reading and cutting it; the rest is embedding it


def _never_backwards(progress: Progress) -> Progress:
    """Progress that only moves forward, whatever order the steps report in."""
    highest = {"fraction": 0.0}

    def report(fraction: float, message) -> None:
        highest["fraction"] = max(highest["fraction"], fraction)
        progress(highest["fraction"], message)

    return report


class KnowledgeBase:
    def __init__(self, project: Project, name: str = DEFAULT_KB):
        import re

        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,40}", name):
            raise StudioError(Msg("A knowledge-base name uses letters, digits, - and _ only (at most 40)."))
        self.project = project
        self.name = name
        self.manifest_path = project.child("indexes", name, KNOWLEDGE_BASE, suffix=".json")
        self.documents_dir = project.child("documents", name, KNOWLEDGE_BASE)

    # ---- manifest -----------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        if self.manifest_path.exists():
            return atomic.read_json(self.manifest_path)
        from core.rag.chunking import ChunkingConfig

        return {"name": self.name, "embedder": EMBEDDER, "reader": READER, "chunking": ChunkingConfig().to_dict(),
                "uri": None, "documents": {}}

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

    def indexed_before_sentences(self) -> bool:
        """Whether the documents were indexed before passages were also found by their sentences (the next ingest
        indexes them all again)."""
        store = self.store()
        return bool(self.documents()) and store.exists(self.name) and not store.has_sentence_vectors(self.name)

    def indexed_by_earlier_version(self) -> bool:
        """Whether an earlier version indexed the documents, reading or cutting them otherwise or without sentence
        vectors (the next ingest indexes them all again)."""
        return bool(self.documents()) and (self.manifest().get("reader", 1) < READER
                                           or self.indexed_before_sentences())

    def chunking(self):
        from core.rag.chunking import ChunkingConfig

        return ChunkingConfig.from_dict(self.manifest()["chunking"])

    def documents(self) -> dict[str, dict]:
        return self.manifest()["documents"]

    def stored(self) -> list[str]:
        """Names of the originals kept in the project (paths inside documents/<kb>, '/'-separated), sorted."""
        if not self.documents_dir.is_dir():
            return []
        return sorted(p.relative_to(self.documents_dir).as_posix() for p in self.documents_dir.rglob("*")
                      if p.is_file() and not p.is_symlink()
                      and not any(x.startswith(".") for x in p.relative_to(self.documents_dir).parts))

    def path_of(self, source: str) -> Path:
        """Where a document's original is kept ('sub1/policy.txt' in a sub-folder): never outside documents/<kb>,
        not even through a link planted there (UnsafeNameError)."""
        from core.rag.parse import safe_relative_name
        from core.workspace import UnsafeNameError

        path = self.documents_dir / safe_relative_name(source)
        if not path.resolve().is_relative_to(self.documents_dir.resolve()):
            raise UnsafeNameError(Msg("'{name}' cannot be a {kind} name: it leads outside the project folder.",
                                      name=source, kind=DOCUMENT))
        return path

    def source_of(self, path: Path) -> str:
        """A file's document name: its path inside documents/<kb>, else its safe base name."""
        from core.rag.parse import safe_name, safe_relative_name

        path = Path(path)
        for inner, outer in ((path.absolute(), self.documents_dir.absolute()), (path.resolve(),
                                                                              self.documents_dir.resolve())):
            if inner.is_relative_to(outer) and inner != outer:
                return safe_relative_name(inner.relative_to(outer).as_posix())
        return safe_name(path.name)

    def pending(self) -> list[Path]:
        """Stored originals that are not indexed yet, leaving out the files that failed (they wait for the user:
        added again, or removed with `clear_failed`)."""
        indexed, failed = self.documents(), self.failed()
        return [self.documents_dir / s for s in self.stored() if s not in indexed and s not in failed]

    # ---- failed files -------------------------------------------------------------------------------------
    @property
    def failed_path(self) -> Path:
        return self.documents_dir / FAILED_FILE

    def failed(self) -> dict[str, dict]:
        """name -> {"reason", "template", "params", "refused" (never copied), "at"} for the files that were
        refused or could not be read (see failure_reason)."""
        try:
            found = atomic.read_json(self.failed_path)
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def _update_failed(self, changes: dict[str, dict | None]) -> None:
        """Record (entry) or forget (None) failures, in one write."""
        if not changes:
            return
        failed = self.failed()
        for source, entry in changes.items():
            if entry is None:
                failed.pop(source, None)
            else:
                failed[source] = entry
        if failed or self.failed_path.exists():
            atomic.write_json(self.failed_path, failed)

    def clear_failed(self) -> list[str]:
        """Remove every failed file: its record and its copy in the project. A failed file that replaced an indexed
        document (same name) was that document's only original, so the document is removed too. Returns the
        names removed."""
        failed = self.failed()
        indexed = self.documents()
        for source, entry in failed.items():
            if entry.get("refused"):
                continue  # never copied: a file kept under that name is another one
            if source in indexed:
                self.delete_document(source)
            else:
                self._unlink(source)
        self._update_failed(dict.fromkeys(failed))
        return sorted(failed)

    def _unlink(self, source: str) -> None:
        path = self.path_of(source)
        path.unlink(missing_ok=True)
        for folder in path.parents:  # sub-folders a folder's documents were kept in, once empty
            if folder == self.documents_dir or not folder.is_relative_to(self.documents_dir):
                break
            try:
                folder.rmdir()
            except OSError:
                break

    # ---- documents ----------------------------------------------------------------------------------------
    def add_files(self, files: list[tuple[str, bytes]]) -> Added:
        """Keep uploaded originals under safe names inside the project (never outside it). A file too large, of a
        type that cannot be read or empty is refused before it is copied, and recorded as failed."""
        from core.rag.parse import safe_name

        return self._keep((safe_name(filename), lambda data=data: len(data), lambda data=data: data)
                          for filename, data in files)

    def add_folder(self, folder: Path | str) -> Added:
        """Copy the supported documents of a folder on this machine (and its sub-folders) into the project, each
        under its path in the folder (sub1/policy.txt and sub2/policy.txt stay two documents). Only folders
        inside the allowed roots are read (core.rag.folders): a folder outside them raises StudioError."""
        from core.rag import folders
        from core.rag.parse import SUPPORTED, safe_relative_name

        chosen, root = folders.allowed_folder(folder)
        contents = folders.walk(chosen, root, SUPPORTED)
        if not contents.files:
            raise StudioError(Msg("{folder} holds no PDF, Word, HTML, Markdown, text, CSV or Excel files.",
                                  folder=str(folder)))
        added = self._keep((safe_relative_name(rel), lambda path=path: path.stat().st_size, path.read_bytes)
                           for path, rel in contents.files)
        added.skipped_links = contents.skipped_links
        return added

    def _keep(self, files: Iterable[tuple[str, Callable[[], int], Callable[[], bytes]]]) -> Added:
        """Copy (name, size, read) files into documents/<kb>, one at a time, checking each size before reading."""
        from core.rag.parse import check_file

        limit, added, changes = max_document_bytes(), Added(), {}
        for name, size, read in files:
            try:
                check_file(name, size(), limit)
                data = read()
                check_file(name, len(data), limit)  # it may have grown since
                target = self.path_of(name)
                atomic.write_bytes(target, data)
            except (StudioError, OSError) as exc:
                message = exc.args[0] if isinstance(exc, StudioError) else \
                    Msg("{file} could not be copied into the project ({reason}).", file=name, reason=str(exc))
                added.refused.append(FileResult(name, "refused", message=message))
                changes[name] = _failure(message, refused=True)
                continue
            added.append(target)
            changes[name] = None  # a new copy: it waits to be indexed again
        self._update_failed(changes)
        return added

    def delete_document(self, source: str) -> None:
        self.path_of(source)  # never a file outside documents/<kb> (raises before anything is removed)
        manifest = self.manifest()
        store = self.store()
        if store.exists(self.name):
            store.delete_document(self.name, source)
        manifest["documents"].pop(source, None)
        self._write(manifest)
        self._unlink(source)
        self._update_failed({source: None} if source in self.failed() else {})

    def ingest(self, paths: list[Path], chunking=None, progress: Progress | None = None,
               cancel: threading.Event | None = None) -> list[FileResult]:
        """Parse, chunk, embed and store each file. A file whose content did not change is left alone; an
        edited file replaces its old chunks; a bad file is reported and the others go on."""
        from core.rag.chunking import chunk_sections, passage_texts_to_embed, split_passage_vectors

        progress = _never_backwards(progress or (lambda fraction, message: None))
        manifest = self.manifest()
        new_chunking = chunking is not None and chunking.to_dict() != manifest["chunking"]
        outdated = manifest["embedder"] != EMBEDDER or self.indexed_by_earlier_version()
        rebuilt: list[FileResult] = []
        if manifest["documents"] and (new_chunking or outdated):
            rebuilt = self.reindex(chunking or self.chunking(), progress, cancel)  # vectors of two kinds never mix
            manifest = self.manifest()
        manifest["reader"] = READER  # every document in the index is (now) read by this version
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
            progress(share(read["files"], len(results)),
                     Msg("Embedding {count} passages", count=sum(len(c) for _, c in waiting)))
            texts, sentence_counts = passage_texts_to_embed([(c.text, c.heading, parsed.source)
                                                             for parsed, chunks in waiting for c in chunks])
            own, sentences = split_passage_vectors(reuse.embed(texts), sentence_counts)
            rows = iter([{"vector": vector, "sentence_vectors": found} for vector, found in zip(own, sentences)])
            for parsed, chunks in waiting:
                if store.exists(self.name):
                    store.delete_document(self.name, parsed.source, refresh=False)
                store.upsert(self.name, [{"doc_id": parsed.source, "doc_hash": parsed.content_hash,
                                          "source": parsed.source, "page": c.page or 0, "heading": c.heading,
                                          "text": c.text, **next(rows)} for c in chunks],
                             EMBEDDING_DIM, manifest["embedder"], config.to_dict(), refresh=False)
                manifest["documents"][parsed.source] = {
                    "hash": parsed.content_hash, "chunks": len(chunks), "ingested_at": time.time(),
                    "pages": len({c.page for c in chunks if c.page}), "warnings": [str(w) for w in parsed.warnings]}
                self._write(manifest)  # after each file: a cancel or crash keeps what is done
                results.append(FileResult(parsed.source, "indexed", len(chunks), warnings=list(parsed.warnings)))
            waiting.clear()

        read = {"files": 0}

        def share(files_read: int, files_stored: int) -> float:
            """Reading a file is a small part of its work; embedding and storing it is most of it."""
            return (READ_SHARE * files_read + (1 - READ_SHARE) * files_stored) / max(len(paths), 1)

        failures: dict[str, dict | None] = {}  # what this ingest learnt about failed files
        known_failed = self.failed()
        try:
            for i, path in enumerate(paths):
                if cancel is not None and cancel.is_set():
                    break
                source = self.source_of(path)
                progress(share(i, len(results)), Msg("Reading {file}", file=source))
                read["files"] = i + 1
                try:
                    parsed = self._parse(path, source)
                    known = manifest["documents"].get(parsed.source)
                    if known and known["hash"] == parsed.content_hash and store.exists(self.name):
                        results.append(FileResult(parsed.source, "unchanged", known["chunks"]))
                        if source in known_failed:
                            failures[source] = None
                        continue
                    chunks = chunk_sections(parsed.sections, config, count_tokens)
                    if not chunks:
                        raise StudioError(Msg("{file} has no text to index.", file=parsed.source))
                except StudioError as exc:
                    results.append(FileResult(source, "error", message=exc.args[0]))
                    failures[source] = _failure(exc.args[0], refused=False)  # not retried until added again
                    continue
                waiting.append((parsed, chunks))
                if source in known_failed:
                    failures[source] = None
                if sum(len(c) for _, c in waiting) >= EMBED_BATCH:
                    flush()
            flush()
        finally:
            store.refresh(self.name)  # once per ingest: the new passages become searchable together
            self._write(manifest)
            self._update_failed(failures)
        progress(1.0, Msg("Done"))
        again = {r.source for r in rebuilt}  # indexed by the rebuild: not reported a second time as unchanged
        return rebuilt + [r for r in results if not (r.status == "unchanged" and r.source in again)]

    def _parse(self, path: Path, source: str):
        """The parsed document, or StudioError with the reason it cannot be indexed (a library's unexpected error
        on a damaged file too: the file is recorded as failed instead of stopping the whole ingest)."""
        from core.errors import DocumentError
        from core.rag.parse import parse_document
        from core.rag.parsers.common import reason

        try:
            return parse_document(path.read_bytes(), path.name, max_bytes=max_document_bytes(), source=source)
        except StudioError:
            raise
        except Exception as exc:
            log.warning("Could not read %s", path, exc_info=True)
            raise DocumentError(Msg("{file} could not be read ({reason}).", file=source, reason=reason(exc))) from None

    def reindex(self, chunking, progress: Progress | None = None,
                cancel: threading.Event | None = None) -> list[FileResult]:
        """Rebuild every chunk from the stored originals (new chunking or embedder): vectors never mix."""
        manifest = self.manifest()
        sources = [self.path_of(source) for source in manifest["documents"]]
        self.store().drop(self.name)
        manifest.update(documents={}, chunking=chunking.to_dict(), embedder=EMBEDDER, reader=READER)
        self._write(manifest)
        return self.ingest([p for p in sources if p.exists()], None, progress, cancel)

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
        query_vector = _embed([query])[0]  # also judges how relevant keyword-only hits are
        from core.rag.store import both

        by_vector, by_text = both(
            lambda: store.search_vector(self.name, query_vector, fetch, where) if mode != "fts" else [],
            lambda: store.search_text(self.name, text_query, fetch, where, query_vector) if mode != "vector" else [])
        hits = ranking.rank(mode, by_vector, by_text, k, rrf_k, reranker, query, scorer)
        missing = [h for h in hits if h.similarity is None]
        if missing:  # hits without a stored vector: measure their meaning too, so relevance is judged the same way
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


def indexed_knowledge_bases(project: Project) -> list[str]:
    """The knowledge bases that hold indexed documents."""
    return [name for name in list_knowledge_bases(project) if KnowledgeBase(project, name).documents()]
