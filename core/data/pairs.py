"""The few-shot view of a training-pair dataset: (prompt, response) pairs, saved as dataset versions."""

from __future__ import annotations

import json

from core.data.records import new_id
from core.workspace import Project


def load_pairs(project: Project, name: str) -> list[dict]:
    """The usable (prompt, response) pairs of a dataset's latest version: what may train a model (records.trains),
    so rejected records and suggestions nobody has accepted stay out of prompts too."""
    from core.data.records import trains
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    if not store.exists(name):
        return []
    records, _ = store.load(name)
    return [{"id": r["id"], "prompt": r["prompt"], "response": r["response"]} for r in records
            if trains(r) and r.get("prompt") and r.get("response")]


def clean_rows(rows: list[dict]) -> list[dict]:
    """Keep rows with a prompt and a response; give each an id."""
    cleaned = []
    for row in rows:
        prompt, response = str(row.get("prompt") or "").strip(), str(row.get("response") or "").strip()
        if prompt and response:
            cleaned.append({"id": row.get("id") or new_id(), "prompt": prompt, "response": response})
    return cleaned


def save_pairs(project: Project, name: str, rows: list[dict], base_version: int | None = -1,
               note: str = "Edited examples") -> list[dict]:
    """Save pairs as a new version of an SFT dataset (created if needed). Labels of records kept by id stay;
    the records the pair view hides (rejected ones, suggestions awaiting review) are kept. base_version=-1 means "on top of the latest";
    another number makes a concurrent save raise ConflictError."""
    from core.data.records import new_record, trains
    from core.data.store import DatasetStore

    rows = clean_rows(rows)
    store = DatasetStore(project)
    if not store.exists(name):
        store.create(name, "sft", [new_record("sft", **r) for r in rows], note=note)
        return rows
    existing, latest = store.load(name)
    by_id = {r["id"]: r for r in existing}
    records = [{**by_id[r["id"]], "prompt": r["prompt"], "response": r["response"]} if r["id"] in by_id
               else new_record("sft", **r) for r in rows]
    kept = {r["id"] for r in rows}
    records += [r for r in existing if not trains(r) and r["id"] not in kept]
    store.save(name, records, latest if base_version == -1 else base_version, note=note)
    return rows


def export_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps({"prompt": r["prompt"], "response": r["response"]}, ensure_ascii=False) + "\n"
                   for r in rows).encode("utf-8")
