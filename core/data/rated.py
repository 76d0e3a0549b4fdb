"""Preference data as unpaired rated answers (what KTO trains on, and what the pre-flight checks count): a
preference record gives its chosen side as good and its rejected side as bad; the Chat page's feedback gives thumbs
up as good, thumbs down as bad, and a thumbs-down correction as good."""

from __future__ import annotations

from dataclasses import dataclass

from core.data.records import problems


@dataclass(frozen=True)
class Rated:
    """One answer to a prompt, marked good (desirable) or bad."""
    prompt: str
    answer: str
    desirable: bool
    id: str


def same_text(a: str, b: str) -> bool:
    return " ".join(str(a or "").split()).casefold() == " ".join(str(b or "").split()).casefold()


def rated_from_pairs(records: list[dict]) -> list[Rated]:
    """Preference records as unpaired answers: the chosen side good, the rejected side bad."""
    rated = []
    for n, record in enumerate(records):
        if record.get("status") == "rejected" or problems("preference", record) \
                or same_text(record["chosen"], record["rejected"]):
            continue
        record_id = str(record.get("id") or n)
        rated += [Rated(record["prompt"], record["chosen"], True, record_id + ":chosen"),
                  Rated(record["prompt"], record["rejected"], False, record_id + ":rejected")]
    return rated


def rated_from_feedback(entries: list[dict]) -> list[Rated]:
    """The Chat page's ratings as unpaired answers: thumbs up good, thumbs down bad, a correction good. Dismissed
    entries are left out."""
    rated = []
    for entry in entries:
        question, answer = str(entry.get("question") or "").strip(), str(entry.get("answer") or "").strip()
        if entry.get("status") == "dismissed" or not question or entry.get("rating") not in (1, -1):
            continue
        entry_id = str(entry.get("id") or len(rated))
        if answer:
            rated.append(Rated(question, answer, entry["rating"] > 0, entry_id))
        correction = str(entry.get("correction") or "").strip()
        if correction and entry["rating"] < 0 and not same_text(correction, answer):
            rated.append(Rated(question, correction, True, entry_id + ":correction"))
    return rated
