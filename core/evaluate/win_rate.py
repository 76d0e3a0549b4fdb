"""Win rate: how often a variant's answer beats its parent's answer to the same question (ties count half).

The usual check after preference tuning: ask the tuned recipe and the recipe it started from the held-out
preference prompts and let a judge pick the better answer of each pair. The judge is one of the project's reward
models (core.finetune.reward.score_answers) or the evaluation's OpenAI-compatible judge, asked which of two answers
is better; the two answers are shown in an order that alternates with the question, so a judge that favours the
first position does not favour either variant.
"""

from __future__ import annotations

import hashlib
import re

from core.errors import StudioError
from core.i18n import Msg
from core.workspace import Project

PAIRWISE_TEMPLATE = ("Which answer to the question is better: more correct, more helpful and better written?\n\n"
                     "Question: {question}\n\nAnswer A: {first}\n\nAnswer B: {second}\n\n"
                     "Reply with one letter, A or B, or TIE when they are equally good.")
TIE_MARGIN = 1e-4


def check_win_options(win_judge: str, win_parent: str, judge_model: dict | None) -> None:
    if not win_judge:
        return
    if not win_parent:
        raise StudioError(Msg("Pick the variant the win rate compares against."))
    if win_judge == "judge" and not judge_model:
        raise StudioError(Msg("Turn on the LLM judge and set its endpoint to judge the win rate with it."))
    if win_judge != "judge" and not win_judge.startswith("reward:"):
        raise StudioError(Msg("The win rate is judged by a reward model or by the LLM judge."))


def heldout_ids(project: Project, adapter_id: str) -> set[str] | None:
    """Ids of the preference records the adapter's run held out from training (its eval split); None when the
    run trained on everything or did not learn from a dataset."""
    from core.data.store import DatasetStore
    from core.finetune.adapters import train_config
    from core.finetune.data import split_records
    from core.models.adapters import AdapterRegistry

    config = train_config(AdapterRegistry(project).get(adapter_id))
    store = DatasetStore(project)
    if config.data_source != "dataset" or not config.dataset or not store.exists(config.dataset):
        return None
    records, _ = store.load(config.dataset, config.dataset_version)
    _, held_out = split_records(records, config.eval_fraction, config.seed)
    return {r["id"] for r in held_out} or None


def _order_flipped(record_id: str, variant: str) -> bool:
    return hashlib.sha1(f"{record_id}|{variant}".encode()).digest()[0] % 2 == 1


def parse_choice(text: str) -> str | None:
    """'A', 'B' or 'TIE' from a judge's reply; None when it gave none."""
    found = re.search(r"\b(TIE|A|B)\b", (text or "").upper())
    return found.group(1) if found else None


def _reward_outcome(project: Project, model_id: str, question: str, answer: str, parent: str) -> float:
    from core.finetune.reward import score_answers

    ours, theirs = score_answers(project, model_id, question, [answer, parent])
    return 0.5 if abs(ours - theirs) <= TIE_MARGIN else float(ours > theirs)


def _judge_outcome(judge, question: str, answer: str, parent: str, flipped: bool) -> float | None:
    from core.models.base import CompletionLabels
    from core.models.generation import GenerationSettings

    first, second = (parent, answer) if flipped else (answer, parent)
    prompt = judge.render([{"role": "user", "content": PAIRWISE_TEMPLATE.format(question=question, first=first,
                                                                                 second=second)}],
                          CompletionLabels())
    choice = parse_choice(judge.stream(prompt, GenerationSettings(temperature=0.0, max_new_tokens=4)).run_to_end())
    if choice is None:
        return None
    if choice == "TIE":
        return 0.5
    return float((choice == "A") != flipped)


def judge_backend(options):
    from core.models.registry import get_backend
    from core.models.source import ModelSource

    return get_backend(ModelSource.from_dict(options.judge_model))


def win_rows(project: Project, rows: list[dict], options) -> bool:
    """Add `win_rate` (1 win, 0.5 tie, 0 loss) to every row that has none and whose question the parent answered;
    the parent's own rows get 0.5. True when any row changed."""
    parent_key = options.win_parent
    parents = {row["record_id"]: row for row in rows if row["variant"] == parent_key}
    pending = [row for row in rows if "win_rate" not in row["scores"] and row["record_id"] in parents]
    if not pending:
        return False
    judge = judge_backend(options) if options.win_judge == "judge" else None
    changed = False
    for row in pending:
        parent = parents[row["record_id"]]
        if row["variant"] == parent_key or row["answer"].strip() == parent["answer"].strip():
            outcome = 0.5
        elif judge is None:
            outcome = _reward_outcome(project, options.win_judge.split(":", 1)[1], row["question"], row["answer"],
                                      parent["answer"])
        else:
            outcome = _judge_outcome(judge, row["question"], row["answer"], parent["answer"],
                                     _order_flipped(row["record_id"], row["variant"]))
        if outcome is not None:
            row["scores"]["win_rate"] = outcome
            changed = True
    return changed
