"""The labeling queue: which records still need a person, labeling them, and turning feedback into data."""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.data.records import FIELDS, STATUSES, label, new_record


@dataclass(frozen=True)
class Progress:
    total: int
    by_status: dict

    @property
    def labeled(self) -> int:
        return self.by_status.get("accepted", 0) + self.by_status.get("rejected", 0)

    @property
    def fraction(self) -> float:
        return self.labeled / self.total if self.total else 0.0


def progress(records: list[dict]) -> Progress:
    counts = {status: 0 for status in STATUSES}
    for record in records:
        counts[record.get("status", "unlabeled")] = counts.get(record.get("status", "unlabeled"), 0) + 1
    return Progress(len(records), counts)


def all_tags(records: list[dict]) -> list[str]:
    return sorted({tag for record in records for tag in record.get("tags") or []})


def filtered(records: list[dict], statuses: set[str] | None = None, tag: str | None = None,
             suggestions_only: bool = False) -> list[dict]:
    return [r for r in records
            if (not statuses or r.get("status", "unlabeled") in statuses)
            and (not tag or tag in (r.get("tags") or []))
            and (not suggestions_only or r.get("suggestion"))]


def apply(records: list[dict], record_id: str, status: str, labeler: str, edits: dict | None = None,
          comment: str | None = None, tags: list[str] | None = None, kind: str = "sft") -> list[dict]:
    """A new list in which one record is labeled, optionally edited; other records are untouched."""
    updated = []
    for record in records:
        if record["id"] == record_id:
            changed = {**record, **{k: v for k, v in (edits or {}).items() if k in FIELDS[kind]}}
            if comment is not None:
                changed["comment"] = comment
            if tags is not None:
                changed["tags"] = sorted({t.strip() for t in tags if t.strip()})
            record = label(changed, status, labeler)
        updated.append(record)
    return updated


def bulk_status(records: list[dict], record_ids: set[str], status: str, labeler: str) -> list[dict]:
    return [label(r, status, labeler) if r["id"] in record_ids else r for r in records]


def next_index(records: list[dict], current_id: str | None) -> int:
    """Position after `current_id` (wrapping), so Skip moves on instead of showing the same item."""
    ids = [r["id"] for r in records]
    if current_id not in ids:
        return 0
    return (ids.index(current_id) + 1) % len(ids) if ids else 0


# ---- feedback from the Chat page ------------------------------------------------------------------------------

def feedback_to_sft(entry: dict) -> dict:
    """A rated chat answer as a training pair: the correction when there is one, else the liked answer."""
    response = entry.get("correction") or entry.get("answer", "")
    record = new_record("sft", prompt=entry["question"], response=response)
    record["comment"] = f"chat feedback {entry['id']}"
    return record


def feedback_to_preference(entry: dict) -> dict | None:
    """A thumbs-down answer with a correction: the correction is chosen over the answer given."""
    if not entry.get("correction") or entry.get("rating", 0) > 0:
        return None
    record = new_record("preference", prompt=entry["question"], chosen=entry["correction"], rejected=entry["answer"])
    record["comment"] = f"chat feedback {entry['id']}"
    return record


# ---- drafts from the current recipe (written by core.assistant.draft_answer) -----------------------------------

def with_suggestion(record: dict, field: str, text: str) -> dict:
    return {**record, field: text, "suggestion": True, "status": "unlabeled", "labeled_at": None,
            "comment": record.get("comment") or f"drafted {time.strftime('%Y-%m-%d %H:%M')}"}


# ---- ranking candidate answers with a reward model ------------------------------------------------------------

def rank_by_score(answers: list[str], scores: list[float], names: list[str] | None = None) -> list[dict]:
    """Candidate answers best first by their reward-model scores (core.finetune.reward.score_answers); each as
    {"answer", "score", "position" (its place in `answers`), "name"}. Ties keep their order."""
    names = names or [""] * len(answers)
    ranked = sorted(range(len(answers)), key=lambda i: -scores[i])
    return [{"answer": answers[i], "score": float(scores[i]), "position": i, "name": names[i]} for i in ranked]
