"""Ingestion as a job: `python -m core.rag.ingest_job PROJECT_DIR KB [CHUNKING_JSON] FILE…` prints one JSON event
per step (progress, then one per file with its status), so the page can show progress, survive a refresh and
cancel without taking the server down."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.jobs import print_event as _event


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
