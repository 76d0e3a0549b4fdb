"""Ingestion as a job: `python -m core.rag.ingest_job PROJECT_DIR KB [CHUNKING_JSON] FILE…` prints one JSON event
per step (progress, then one per file with its status), so the page can show progress, survive a refresh and
cancel without taking the server down. A file that cannot be read is recorded as failed with its reason
(KnowledgeBase.failed): it no longer waits, and the next "Index waiting files" does not try it again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.jobs import Job
from core.jobs import print_event as _event


def jobs_folder(project, kb_name: str) -> Path:
    return project.subdir("runs") / "ingest" / kb_name


def latest_job(project, kb_name: str) -> Job | None:
    folder = jobs_folder(project, kb_name)
    started = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []
    return Job(started[-1]) if started else None


def start(project, kb_name: str, paths, chunking=None) -> Job:
    """Index `paths` into knowledge base `kb_name` in a background job (the Retriever page shows it)."""
    return Job.start(jobs_folder(project, kb_name), ["-m", "core.rag.ingest_job", str(project.path), kb_name,
                                                     json.dumps(chunking.to_dict()) if chunking else "",
                                                     *map(str, paths)], label="Ingest")


def main(argv: list[str]) -> int:
    from core.rag.chunking import ChunkingConfig
    from core.rag.kb import KnowledgeBase
    from core.workspace import Project

    folder, kb_name, chunking_json, *files = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()
    kb = KnowledgeBase(project, kb_name)
    chunking = ChunkingConfig.from_dict(json.loads(chunking_json)) if chunking_json else None
    results = kb.ingest([Path(f) for f in files], chunking, lambda fraction, message: _event(progress=fraction,
                                                                                          message=message))
    for result in results:
        _event(file=result.source, status=result.status, chunks=result.chunks, problem=result.message,
               warnings=[str(w) for w in result.warnings])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
