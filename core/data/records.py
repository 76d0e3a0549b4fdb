"""Dataset records: the four kinds, their fields, and the labeling fields every record carries.

A record is a plain dict (it is stored as one JSON line). Content fields depend on the kind; labeling fields
are the same for all kinds.
"""

from __future__ import annotations

import time
import uuid

from core.i18n import Msg

KINDS = ("sft", "chat", "preference", "eval")
KIND_LABELS = {
    "sft": Msg("Training pairs (prompt → response)"),
    "chat": Msg("Chat conversations"),
    "preference": Msg("Preference pairs (chosen vs rejected)"),
    "eval": Msg("Evaluation set (question → reference)"),
}
# Content fields of each kind; the first ones listed are required (see REQUIRED). An eval record's 'references'
# lists further accepted answers (public sets such as SQuAD have several); see accepted_answers.
FIELDS = {
    "sft": ("prompt", "response", "system", "context"),
    "chat": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "eval": ("question", "reference", "references", "gold_ids", "tools", "expected_call", "gold_passages"),
}
REQUIRED = {"sft": ("prompt", "response"), "chat": ("messages",), "preference": ("prompt", "chosen", "rejected"),
            "eval": ("question",)}
# Lists and objects.
STRUCTURED_FIELDS = ("messages", "references", "gold_ids", "tools", "expected_call", "gold_passages")
TEXT_FIELDS = {k: tuple(f for f in v if f not in STRUCTURED_FIELDS) for k, v in FIELDS.items()}

# The answer a model can draft for a person to accept: a file of questions alone can be imported.
DRAFTABLE = {"sft": "response", "eval": "reference"}

STATUSES = ("unlabeled", "accepted", "rejected", "skipped")
LABEL_FIELDS = ("id", "status", "labeler", "labeled_at", "comment", "tags", "suggestion", "split")
ROLES = ("system", "user", "assistant", "tool")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def new_record(kind: str, **content) -> dict:
    """A record with its content and fresh labeling fields (unlabeled, no tags, not a suggestion, no split)."""
    record = {"id": content.pop("id", None) or new_id(), "status": "unlabeled", "labeler": "", "labeled_at": None,
              "comment": "", "tags": [], "suggestion": False, "split": None}
    record.update({k: v for k, v in content.items() if k in FIELDS[kind]})
    return record


def content(kind: str, record: dict) -> dict:
    """Only the content fields (what exports carry and round-trips compare)."""
    return {f: record[f] for f in FIELDS[kind] if record.get(f) not in (None, "", [], {})}


def problems(kind: str, record: dict, answer_optional: bool = False) -> list[Msg]:
    """Why a record cannot be used; empty when it is fine. With answer_optional, a missing draftable answer
    (see DRAFTABLE) is not a problem: the record waits for a drafted or typed answer."""
    found = []
    for field in REQUIRED[kind]:
        if answer_optional and field == DRAFTABLE.get(kind):
            continue
        value = record.get(field)
        if field == "messages":
            found.extend(_message_problems(value))
        elif not isinstance(value, str) or not value.strip():
            found.append(Msg("'{field}' is empty.", field=field))
    if kind == "eval" and record.get("references") not in (None, []) and not _text_list(record["references"]):
        found.append(Msg("'{field}' should be a list of answers (texts).", field="references"))
    elif kind == "eval" and not answer_optional and not has_gold(record) and \
            not (accepted_answers(record) or record.get("expected_call")):
        found.append(Msg("An eval question needs a reference answer or an expected tool call."))
    if kind == "eval" and record.get("gold_passages") not in (None, []) and \
            passages_problem(record["gold_passages"]) is not None:
        found.append(passages_problem(record["gold_passages"]))
    if record.get("status", "unlabeled") not in STATUSES:
        found.append(Msg("Unknown status '{status}'.", status=record.get("status")))
    return found


def accepted_answers(record: dict) -> list[str]:
    """An eval record's accepted answers: 'reference' first, then each of 'references' (either may be missing or
    empty), stripped, without blanks or repeats. Metrics take the best score over them."""
    texts = [str(record.get("reference") or "")]
    if _text_list(record.get("references")):
        texts.extend(record["references"])
    return list(dict.fromkeys(text.strip() for text in texts if text.strip()))


def _text_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def has_gold(record: dict) -> bool:
    """An eval record that names where its answer is (gold document or chunk ids, or gold passages): it is a
    labeled retrieval query and is usable without a reference answer (retrieval metrics only)."""
    return bool(record.get("gold_ids")) or bool(record.get("gold_passages"))


def passages_problem(value) -> Msg | None:
    """Why a `gold_passages` value is malformed (a list of {"source", "text"} with some text), or None."""
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"].strip()
                                       and isinstance(p.get("source", ""), str) for p in value):
        return None
    return Msg("'{field}' should be a list of passages, each an object with a 'source' and a 'text'.",
               field="gold_passages")


def _message_problems(messages) -> list[Msg]:
    if not isinstance(messages, list) or not messages:
        return [Msg("The conversation has no messages.")]
    found = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            found.append(Msg("Message {n} has no valid role (system, user, assistant or tool).", n=i))
        elif not str(message.get("content") or "").strip() and not message.get("tool_calls"):
            found.append(Msg("Message {n} is empty.", n=i))
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if "user" not in roles or "assistant" not in roles:
        found.append(Msg("A conversation needs at least one user and one assistant message."))
    return found


def input_output(kind: str, record: dict) -> tuple[str, str]:
    """The text a model reads and the text it should write, for length checks, duplicates and leakage."""
    if kind == "sft":
        parts = [record.get("system") or "", record.get("context") or "", record.get("prompt") or ""]
        return "\n".join(p for p in parts if p), record.get("response") or ""
    if kind == "chat":
        messages = record.get("messages") or []
        said = [m.get("content") or "" for m in messages if m.get("role") != "assistant"]
        answered = [m.get("content") or "" for m in messages if m.get("role") == "assistant"]
        return "\n".join(said), "\n".join(answered)
    if kind == "preference":
        return record.get("prompt") or "", record.get("chosen") or ""
    answers = accepted_answers(record)
    return record.get("question") or "", record.get("reference") or (answers[0] if answers else "")


def trains(record: dict) -> bool:
    """Whether a record may train a model: not rejected, and not a model's suggestion no one has accepted yet
    (drafted pairs, rewritten answers)."""
    status = record.get("status")
    return status != "rejected" and not (record.get("suggestion") and status != "accepted")


def label(record: dict, status: str, labeler: str) -> dict:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status}")
    return {**record, "status": status, "labeler": labeler, "labeled_at": time.time(),
            "suggestion": False if status == "accepted" else record.get("suggestion", False)}
