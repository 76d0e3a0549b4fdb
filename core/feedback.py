"""Thumbs up/down on answers, with an optional correction; the labeling queue turns them into training pairs."""

from __future__ import annotations

import json
import time
import uuid

from filelock import FileLock

from core import atomic
from core.workspace import Project


def _path(project: Project):
    return project.subdir("feedback") / "feedback.jsonl"


def record_feedback(project: Project, *, question: str, answer: str, rating: int, correction: str = "",
                    recipe: str = "", recipe_version: int | None = None, user: str = "", stats: dict | None = None) -> dict:
    project.require()
    if rating not in (-1, 1):
        raise ValueError("rating is 1 (thumbs up) or -1 (thumbs down)")
    entry = {"id": uuid.uuid4().hex[:12], "time": time.time(), "question": question, "answer": answer,
             "rating": rating, "correction": correction.strip(), "recipe": recipe, "recipe_version": recipe_version,
             "user": user, "stats": stats or {}, "status": "new"}
    path = _path(project)
    with FileLock(str(path) + ".lock"):  # two sessions rating at once both land
        rows = list_feedback(project)
        rows.append(entry)
        atomic.write_jsonl(path, rows)
    return entry


def update_feedback(project: Project, entry_id: str, **changes) -> None:
    path = _path(project)
    with FileLock(str(path) + ".lock"):
        rows = list_feedback(project)
        for row in rows:
            if row["id"] == entry_id:
                row.update(changes)
        atomic.write_jsonl(path, rows)


def list_feedback(project: Project) -> list[dict]:
    path = _path(project)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
