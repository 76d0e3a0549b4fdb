"""What the scoreboard tells an analyst: the cheapest variant that meets their target, what to try next when none
does, and the failures to label."""

from __future__ import annotations

from dataclasses import dataclass

from core.evaluate.variants import RUNGS, Variant
from core.i18n import Msg
from core.text import text_language

FAILURES_DATASET = "eval-failures"


@dataclass(frozen=True)
class Advice:
    best: str | None          # key of the cheapest variant that meets the target, if any
    message: Msg
    next_steps: tuple[Msg, ...] = ()


def _cost_order(variants: list[Variant], summary: dict[str, dict]) -> list[Variant]:
    """Cheapest first: ladder rungs in ladder order (each adds work), other variants by mean latency after them."""
    def cost(variant: Variant):
        base = variant.key.split("|")[0]
        rung = RUNGS.index(base) if base in RUNGS else len(RUNGS)
        return rung, summary.get(variant.key, {}).get("latency_s", float("inf"))
    return sorted(variants, key=cost)


def advise(variants: list[Variant], summary: dict[str, dict], metric: str, target: float) -> Advice:
    scored = [v for v in variants if v.ready and metric in summary.get(v.key, {})]
    if not scored:
        return Advice(None, Msg("No variant has a {metric} score yet; run the evaluation first.", metric=metric))
    meeting = [v for v in _cost_order(scored, summary) if summary[v.key][metric] >= target]
    if meeting:
        best = meeting[0]
        return Advice(best.key, Msg("{label} is the cheapest variant that reaches the target ({score} ≥ {target}).",
                                    label=best.label, score=f"{summary[best.key][metric]:.2f}",
                                    target=f"{target:.2f}"))
    top = max(scored, key=lambda v: summary[v.key][metric])
    return Advice(None, Msg("No variant reaches {target} yet; the best is {label} with {score}.",
                            target=f"{target:.2f}", label=top.label, score=f"{summary[top.key][metric]:.2f}"),
                  tuple(_next_steps(variants, summary)))


def _next_steps(variants: list[Variant], summary: dict[str, dict]) -> list[Msg]:
    by_key = {v.key: v for v in variants}
    steps = []
    fewshot = by_key.get("fewshot")
    if fewshot is not None and not fewshot.ready:
        steps.append(Msg("Add few-shot examples: a handful of good answers often fixes the style and length."))
    retriever = by_key.get("retriever")
    if retriever is not None and not retriever.ready:
        steps.append(Msg("Upload your documents and index them so answers can cite them (Retriever page)."))
    elif retriever is not None and summary.get("retriever", {}).get("hit_at_k", 1.0) < 0.7:
        steps.append(Msg("The retriever often misses the right passage: try other chunk sizes, hybrid search or "
                         "a larger k (Retrieval optimization)."))
    elif retriever is not None and "answer_in_passages" in summary.get("retriever", {}):
        # Which half fails, finding or reading, decides what to try: the bench's "answer in what it reads".
        share = summary["retriever"]["answer_in_passages"]
        if share < 0.7:
            steps.append(Msg("The passages in the prompt hold the answer for only {share} of the questions: try other "
                             "chunk sizes, hybrid search or a larger k (Retrieval optimization can sweep this "
                             "evaluation set).", share=f"{share:.0%}"))
        else:
            steps.append(Msg("The passages in the prompt hold the answer for {share} of the questions, so finding it "
                             "is not what fails most: the model does not pick it out. Examples of answers in the "
                             "form you want (Few-shot) or an adapter trained with passages (Fine-tune) teach it "
                             "to.", share=f"{share:.0%}"))
    adapter = by_key.get("adapter")
    if adapter is not None and not adapter.ready:
        steps.append(Msg("Fine-tune an adapter on your training pairs (Fine-tune page)."))
    elif adapter is not None:
        steps.append(Msg("Train longer or on more pairs: label the failures below and add them to the training set."))
    steps.append(Msg("Send the failures to the labeling queue, correct them and use them as examples or training "
                     "pairs."))
    return steps


def failures(rows: list[dict], variant_key: str, metric: str, threshold: float) -> list[dict]:
    """The rows of one variant whose `metric` is below `threshold` (rows without the metric are not failures)."""
    return [r for r in rows if r["variant"] == variant_key and metric in r["scores"]
            and r["scores"][metric] < threshold]


def send_to_labeling(project, rows: list[dict], variant_label: str, dataset: str = FAILURES_DATASET) -> int:
    """Add failed questions as training pairs waiting for review (the reference as the draft answer, the model's
    answer in the comment); returns how many were added. Questions already in the dataset are not added twice."""
    from core.data.records import new_record
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    if not store.exists(dataset):
        store.create(dataset, "sft", [], note="Created from evaluation failures")
    records, version = store.load(dataset)
    known = {r.get("prompt") for r in records}
    added = []
    for row in rows:
        if row["question"] in known or not row.get("reference"):
            continue
        known.add(row["question"])
        record = new_record("sft", prompt=row["question"], response=row["reference"])
        record.update(comment=f"{variant_label} answered: {row['answer']}"[:2000], tags=["eval-failure"],
                      suggestion=True)
        added.append(record)
    if added:
        store.save(dataset, records + added, version, note=f"{len(added)} failures from {variant_label}")
    return len(added)


def language_mismatch(rows: list[dict]) -> Msg | None:
    """A warning when most answers are in another language than their references: word-overlap metrics then
    read near zero although an answer may be right."""
    pairs = [(text_language(r.get("reference", "")), text_language(r.get("answer", ""))) for r in rows]
    judged = [(ref, ans) for ref, ans in pairs if ref and ans]
    if len(judged) < 3:
        return None
    different = sum(ref != ans for ref, ans in judged)
    if different / len(judged) < 0.5:
        return None
    return Msg("{n} of {total} answers are in another language than their reference, so word-overlap scores "
               "(exact match, F1, ROUGE-L) read near zero even for right answers. Write the references in the "
               "answers' language, ask for that language in the prompt, or use the judge.",
               n=different, total=len(judged))
