"""Labeled retrieval queries: eval records that say where their answer is.

A retrieval query is an eval-kind record with a `question` and gold information: `gold_ids` (document names or
chunk ids) and/or `gold_passages` ([{"source": document name, "text": passage text}]). It needs no reference
answer (`core.data.records.has_gold`). Four ways to get them:

* `mark_supporting`: a person marks the passages that answer a question (the retrieval test page);
* an eval set whose questions carry gold ids (the sample project's);
* an eval set of questions with short reference answers and no gold: a passage that holds one of the answers
  counts (`answer_targets`, core.rag.relevance);
* `generate_queries`: the recipe's model writes a question for random passages; the drafts are suggestions
  (unlabeled) and only count once a person accepted them in the labeling queue.

Gold passages are kept by text, so they stay meaningful when the documents are cut differently
(core.rag.relevance judges a chunk against them).
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, replace
from typing import Callable

from core.data import records as rec
from core.errors import StudioError
from core.i18n import Msg
from core.workspace import Project

DEFAULT_DATASET = "retrieval-queries"
GENERATE_PROMPT = ("Write one question a customer could ask that this passage answers. Write only the "
                   "question.\n\nPassage: {passage}")
MIN_PASSAGE_WORDS = 8
# A reference answer longer than this is a sentence written for the reader, which no passage holds word for word.
MAX_ANSWER_WORDS = 8
# Answers that a passage about anything may hold: they tell nothing about where the answer is.
_NO_PLACE_ANSWERS = {"yes", "no", "true", "false", "none", "có", "không", "đúng", "sai"}
Progress = Callable[[float, Msg], None]


@dataclass(frozen=True)
class RetrievalQuery:
    id: str
    question: str
    gold_ids: tuple[str, ...] = ()
    gold_passages: tuple[dict, ...] = ()   # {"source", "text"}
    answers: tuple[str, ...] = ()          # only for a question without gold: a passage holding one counts

    def to_dict(self) -> dict:
        return {"id": self.id, "question": self.question, "gold_ids": list(self.gold_ids),
                "gold_passages": [dict(p) for p in self.gold_passages], "answers": list(self.answers)}


def answer_targets(record: dict) -> list[str]:
    """The reference answers a passage can be checked for: short ones (at most MAX_ANSWER_WORDS words) that are not
    a bare yes or no."""
    from core.rag.relevance import words

    found = []
    for answer in rec.accepted_answers(record):
        said = words(answer)
        if said and len(said) <= MAX_ANSWER_WORDS and not set(said) <= _NO_PLACE_ANSWERS:
            found.append(answer)
    return found


def is_usable(record: dict) -> bool:
    """Not rejected, not an unreviewed suggestion, a question, and some gold or a short reference answer."""
    if record.get("status") == "rejected":
        return False
    if record.get("suggestion") and record.get("status") != "accepted":
        return False
    return bool(str(record.get("question") or "").strip()) and (rec.has_gold(record) or bool(answer_targets(record)))


def queries_from_records(records: list[dict]) -> list[RetrievalQuery]:
    """The usable retrieval queries among eval records (see `is_usable`), in order. A question's answers are used
    only when it names no gold: a marked passage says more than a passage that happens to hold the answer."""
    return [RetrievalQuery(r["id"], r["question"].strip(), tuple(str(g) for g in r.get("gold_ids") or ()),
                           tuple({"source": str(p.get("source") or ""), "text": p["text"]}
                                 for p in r.get("gold_passages") or () if str(p.get("text") or "").strip()),
                           () if rec.has_gold(r) else tuple(answer_targets(r)))
            for r in records if is_usable(r)]


def load_queries(project: Project, dataset: str, version: int | None = None) -> tuple[list[RetrievalQuery], int]:
    """The usable queries of an eval dataset's version (the latest by default) and that version's number."""
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    if not store.exists(dataset):
        raise StudioError(Msg("Dataset '{name}' does not exist.", name=dataset))
    if store.kind(dataset) != "eval":
        raise StudioError(Msg("'{name}' is not an evaluation set; pick a dataset of questions with gold passages "
                              "or documents.", name=dataset))
    records, number = store.load(dataset, version)
    queries = queries_from_records(records)
    if not queries:
        raise StudioError(Msg("'{name}' has no usable retrieval queries: mark the passages that answer a question, "
                              "give questions short reference answers, or accept generated questions in the "
                              "labeling queue.", name=dataset))
    return queries, number


def _same_question(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def _hit_fields(hit) -> tuple[str, str, str]:
    if isinstance(hit, dict):
        return hit.get("chunk_id", ""), hit.get("source", ""), hit.get("text", "")
    return hit.chunk_id, hit.source, hit.text


def _save(project: Project, dataset: str, change: Callable[[list[dict]], list[dict]], note: str,
          author: str | None) -> int:
    """Apply `change` to the latest records and save a new version (the dataset, kind eval, is created when
    missing); when someone saved in between, the change is applied again to their version."""
    from core.data.store import ConflictError, DatasetStore

    store = DatasetStore(project)
    if not store.exists(dataset):
        return store.create(dataset, "eval", change([]), note=note, author=author)
    if store.kind(dataset) != "eval":
        raise StudioError(Msg("'{name}' is not an evaluation set; pick a dataset of questions with gold passages "
                              "or documents.", name=dataset))
    for attempt in range(3):
        records, base = store.load(dataset)
        try:
            return store.save(dataset, change(records), base, note=note, author=author)
        except ConflictError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def mark_supporting(project: Project, dataset: str, question: str, hits: list, author: str | None = None) -> int:
    """Record that `hits` (search hits, or dicts with chunk_id, source and text) answer `question`: the record
    with the same question (case and spacing aside) gets them added to its gold_ids (chunk ids) and gold_passages
    (source + text), else a new record is appended. Marked by a person, the record is accepted. Returns the
    dataset version saved."""
    question = (question or "").strip()
    if not question:
        raise StudioError(Msg("Type a question first."))
    if not hits:
        raise StudioError(Msg("Pick at least one passage that answers the question."))
    marked = [_hit_fields(h) for h in hits]

    def change(records: list[dict]) -> list[dict]:
        out, merged = [], False
        for record in records:
            if not merged and _same_question(record.get("question") or "", question):
                record, merged = _with_gold(record, marked, author), True
            out.append(record)
        if not merged:
            out.append(_with_gold(rec.new_record("eval", question=question), marked, author))
        return out

    return _save(project, dataset, change, f"Marked {len(marked)} supporting passage(s)", author)


def _with_gold(record: dict, marked: list[tuple[str, str, str]], author: str | None) -> dict:
    ids = list(record.get("gold_ids") or [])
    passages = list(record.get("gold_passages") or [])
    for chunk_id, source, text in marked:
        if chunk_id and chunk_id not in ids:
            ids.append(chunk_id)
        if text.strip() and not any(p.get("source") == source and p.get("text") == text for p in passages):
            passages.append({"source": source, "text": text})
    return rec.label({**record, "gold_ids": ids, "gold_passages": passages}, "accepted", author or _user())


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _clean_question(text: str) -> str:
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    line = re.sub(r"^(question|q|câu hỏi)\s*[:：]\s*", "", line, flags=re.IGNORECASE).strip(" \"'“”")
    return line[:300]


def generate_queries(project: Project, kb, backend, recipe, n: int = 20, seed: int = 0,
                     progress: Progress | None = None, dataset: str = DEFAULT_DATASET,
                     author: str | None = None) -> list[dict]:
    """Draft `n` retrieval queries with the recipe's model: `n` passages of knowledge base `kb` (a
    KnowledgeBase or its name) are picked at random with `seed`, and for each the model writes a question the
    passage answers. The records (gold_ids = the chunk id, gold_passages = the passage) are appended to
    `dataset` (created when missing) as suggestions, unlabeled, so a person reviews them in the labeling queue
    before a sweep uses them. Returns the new records (fewer than n when the knowledge base has fewer passages
    or the model wrote nothing usable)."""
    from core.rag.kb import KnowledgeBase

    if n < 1:
        raise StudioError(Msg("Ask for at least one question."))
    base = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase(project, kb)
    rows = [r for r in base.store().rows(base.name, ["chunk_id", "source", "text"])
            if len(r["text"].split()) >= MIN_PASSAGE_WORDS]
    if not rows:
        raise StudioError(Msg("The knowledge base '{name}' has no indexed passages yet; index documents first.",
                              name=base.name))
    rows.sort(key=lambda r: r["chunk_id"])
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    progress = progress or (lambda fraction, message: None)
    settings = replace(recipe.generation, max_new_tokens=64, temperature=0.0)
    prompts = [backend.render([{"role": "user", "content": GENERATE_PROMPT.format(passage=r["text"].strip())}],
                              recipe.labels) for r in picked]
    drafted: list[str] = []
    batch = 8 if hasattr(backend, "generate_batch") else 1
    for start in range(0, len(prompts), batch):
        progress(start / len(prompts), Msg("Writing questions: {done} of {total}", done=start, total=len(prompts)))
        part = prompts[start:start + batch]
        if batch > 1:
            drafted.extend(out["text"] for out in backend.generate_batch(part, settings))
        else:
            drafted.extend(backend.stream(p, settings).run_to_end() for p in part)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    new = []
    for row, text in zip(picked, drafted):
        question = _clean_question(text)
        if not question:
            continue
        record = rec.new_record("eval", question=question, gold_ids=[row["chunk_id"]],
                                gold_passages=[{"source": row["source"], "text": row["text"]}])
        record.update(suggestion=True, comment=f"generated from {row['source']} {stamp}", tags=["generated"])
        new.append(record)
    if new:
        _save(project, dataset, lambda records: records + new, f"Generated {len(new)} retrieval question(s)", author)
    progress(1.0, Msg("Done"))
    return new
