"""Dataset records -> training examples for a causal LM, TRL-style: the prompt is masked (-100) when the example
is prepared, so the collator only pads.

The prompt part of an example is rendered exactly as at inference (core.models.local.LocalModel.render): the chat
template with its generation prompt, or the plain completion format with BOS. A model then learns to continue the
very token sequence it will be given later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from core.data.records import KIND_LABELS, problems, trains
from core.data.split import MIN_EXAMPLES
from core.data.split import split_records as assign_splits
from core.errors import StudioError, TrainingError
from core.finetune.config import DATA_KINDS
from core.i18n import Msg
from core.models.base import CompletionLabels, render_completion
from core.prompt import PromptSettings, build_messages, fill

IGNORE = -100  # label value the loss skips (torch CrossEntropyLoss ignore_index)
MEGABATCH = 50  # batches per length-sorted group, as in transformers' LengthGroupedSampler


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken
    record_id: str


@dataclass(frozen=True)
class PreparationReport:
    total: int  # records given
    used: int  # examples produced
    truncated: int  # cut at max_length but still with target tokens
    dropped_too_long: int  # the prompt alone fills max_length
    skipped_invalid: int  # rejected, unreviewed suggestions, invalid fields, no assistant turn
    target_tokens: int  # labeled tokens across used examples
    max_length: int = 0

    def summary(self) -> Msg:
        if not (self.truncated or self.dropped_too_long or self.skipped_invalid):
            return Msg("All {used} examples used ({tokens} answer tokens to learn from).", used=self.used,
                       tokens=self.target_tokens)
        return Msg("{used} of {total} examples used ({tokens} answer tokens); {truncated} truncated at {max_length} "
                   "tokens; {dropped} dropped because the prompt alone fills {max_length} tokens; {skipped} skipped "
                   "as rejected, unreviewed suggestions or invalid.", used=self.used, total=self.total,
                   tokens=self.target_tokens, truncated=self.truncated, max_length=self.max_length,
                   dropped=self.dropped_too_long, skipped=self.skipped_invalid)


def training_messages(record: dict, kind: str, prompt: PromptSettings) -> list[dict]:
    """The conversation a record trains on, with the recipe's system prompt and template as at inference."""
    if kind == "sft":
        system = str(record.get("system") or "").strip()
        if system:  # the record's own system prompt, taken literally; the context still reaches the model
            prompt = replace(prompt, system_prompt=system.replace("{", "{{").replace("}", "}}"))
        messages = build_messages(prompt, record["prompt"], [], record.get("context") or "")
        return messages + [{"role": "assistant", "content": record["response"].strip()}]
    # Answers are stripped as the completion format strips them: stray spaces are not worth learning.
    messages = [{**m, "content": m["content"].strip()} if m.get("role") == "assistant" and isinstance(
        m.get("content"), str) else dict(m) for m in record["messages"]]
    if not any(m.get("role") == "system" for m in messages):
        # Filled as build_messages fills it; a chat has no single question and no retrieved context.
        system = fill(prompt.system_prompt, {**prompt.variables, "context": "", "question": ""}).strip()
        if system:
            messages.insert(0, {"role": "system", "content": system})
    return messages


def encode_record(record: dict, kind: str, tokenizer, prompt: PromptSettings, labels: CompletionLabels,
                  completion_only: bool = True) -> tuple[list[int], list[int]]:
    """Token ids and labels (untruncated); every assistant message is a target."""
    messages = training_messages(record, kind, prompt)
    answers = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not answers:
        raise TrainingError(Msg("The conversation has no assistant message to learn from."))
    chat = bool(getattr(tokenizer, "chat_template", None))
    if chat:
        def prefix_of(i):
            return tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)

        def full_of(i):
            return tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
    else:
        def prefix_of(i):
            return render_completion(messages[:i], labels)  # ends with "Answer:", as at inference

        def full_of(i):
            answer = " " + str(messages[i].get("content") or "").strip()
            return prefix_of(i) + answer + ("\n\n" if i != answers[-1] else "")
    ids: list[int] = []
    targets: list[int] = []
    bos = not chat  # the completion format gets BOS like inference; chat templates write their own
    for text, is_target in _segments(answers, prefix_of, full_of):
        if not text:
            continue
        piece = tokenizer(text, add_special_tokens=bos)["input_ids"]
        bos = False
        ids += piece
        targets += piece if is_target else [IGNORE] * len(piece)
    if not chat and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)  # a base model has no end-of-turn token; EOS teaches it to stop
        targets.append(tokenizer.eos_token_id)
    return ids, (list(ids) if not completion_only else targets)


def _segments(answers: list[int], prefix_of, full_of) -> list[tuple[str, bool]]:
    """(text, is_target) pieces whose concatenation is the conversation rendered up to its last answer."""
    segments, done = [], ""
    for i in answers:
        prefix, full = prefix_of(i), full_of(i)
        if not (prefix.startswith(done) and full.startswith(prefix)):
            break  # the format rewrites earlier turns (a template stripping reasoning, a late system message)
        segments += [(prefix[len(done):], False), (full[len(prefix):], True)]
        done = full
    else:
        return segments
    # Fallback: one rendering of the whole conversation; only the last answer is a target.
    prefix, full = prefix_of(answers[-1]), full_of(answers[-1])
    cut = len(prefix) if full.startswith(prefix) else _common_prefix(prefix, full)
    return [(full[:cut], False), (full[cut:], True)]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _check_kind(kind: str) -> None:
    if kind in DATA_KINDS:
        return
    uses = {"preference": Msg("preference pairs are for preference tuning"),
            "eval": Msg("evaluation sets are for evaluating a model")}
    raise TrainingError(Msg("Fine-tuning trains on training pairs or chat conversations, but this dataset holds "
                            "{kind} ({use}). Pick a dataset of training pairs or chats.",
                            kind=KIND_LABELS.get(kind, kind), use=uses.get(kind, Msg("an unknown kind"))))


def prepare_examples(records: list[dict], kind: str, tokenizer, prompt: PromptSettings, labels: CompletionLabels,
                     max_length: int, completion_only: bool = True) -> tuple[list[Example], PreparationReport]:
    _check_kind(kind)
    examples: list[Example] = []
    truncated = dropped = invalid = target_tokens = 0
    first_problem = None  # shown when no record at all can be used
    for n, record in enumerate(records):
        found = problems(kind, record)
        if not trains(record) or found:
            invalid += 1
            first_problem = first_problem or (found[0] if found else Msg("rejected or an unreviewed suggestion"))
            continue
        try:
            ids, targets = encode_record(record, kind, tokenizer, prompt, labels, completion_only)
        except TrainingError as exc:
            invalid += 1
            first_problem = first_problem or exc.args[0]
            continue
        except StudioError:
            raise  # the recipe's prompt is broken: every record would fail the same way
        except Exception as exc:  # a chat template may refuse one conversation (roles out of order, ...)
            invalid += 1
            first_problem = first_problem or (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            continue
        if len(ids) > max_length:
            ids, targets = ids[:max_length], targets[:max_length]
            if all(t == IGNORE for t in targets):
                dropped += 1
                continue
            truncated += 1
        elif all(t == IGNORE for t in targets):
            invalid += 1  # an answer that renders to no token at all
            continue
        target_tokens += sum(t != IGNORE for t in targets)
        examples.append(Example(ids, targets, str(record.get("id") or n)))
    report = PreparationReport(len(records), len(examples), truncated, dropped, invalid, target_tokens, max_length)
    if not examples:
        raise TrainingError(why_empty(report, first_problem))
    return examples, report


def why_empty(report: PreparationReport, first_problem: str | None, nothing: Msg | None = None) -> Msg:
    """Why no example is left; `nothing` is the sentence for data with no records at all."""
    if report.total == 0:
        return nothing or Msg("The dataset has no records; add training examples first.")
    if report.dropped_too_long and not report.skipped_invalid:
        return Msg("All {n} examples are too long: the prompt alone fills the max length of {max_length} tokens. Raise "
                   "the max length or shorten the prompts (system prompt, context).", n=report.dropped_too_long,
                   max_length=report.max_length)
    if report.dropped_too_long:
        return Msg("No example is left: {invalid} skipped as rejected or invalid, {dropped} dropped because the "
                   "prompt alone fills the max length of {max_length} tokens. Fix the records or raise the max length.",
                   invalid=report.skipped_invalid, dropped=report.dropped_too_long, max_length=report.max_length)
    return Msg("None of the {n} records can be used: each is rejected, invalid or has no answer (first problem: "
               "{problem}). Fix the records on the Data page.", n=report.total, problem=first_problem or "?")


PROGRESS_EVERY = 50  # questions between two "Finding passages" progress events


def with_retrieved_context(records: list[dict], context_for, mode: str, progress=None) -> list[dict]:
    """Training pairs with the passages a retriever finds for their question, rendered as inference renders them
    (`context_for(question) -> str`, the recipe's context block). "always" replaces each pair; "mixed" keeps the
    pair and adds the one with passages. Pairs with their own context, chats and pairs for which nothing relevant
    is found stay as they are. `progress(done, total)` is called every PROGRESS_EVERY records and at the end."""
    if mode == "none":
        return records
    out = []
    for number, record in enumerate(records, start=1):
        if progress is not None and (number % PROGRESS_EVERY == 0 or number == len(records)):
            progress(number, len(records))
        context = context_for(record["prompt"]) if record.get("prompt") and not record.get("context") else ""
        if not context:
            out.append(record)
            continue
        with_context = {**record, "context": context, "id": f"{record.get('id', '')}+passages"}
        out += [record, with_context] if mode == "mixed" else [with_context]
    return out


def split_records(records: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval). Splits set on the records win (the Data page's split, say); without them, a seeded random
    split. Rejected records and unreviewed suggestions go to neither side."""
    usable = [r for r in records if trains(r)]
    if any(r.get("split") in ("train", "eval") for r in usable):
        return [r for r in usable if r.get("split") != "eval"], [r for r in usable if r.get("split") == "eval"]
    if eval_fraction <= 0:
        return list(usable), []
    assigned = assign_splits(usable, eval_fraction, seed)  # the Data page's rule, so the same seed agrees
    return [r for r in assigned if r["split"] == "train"], [r for r in assigned if r["split"] == "eval"]


def check_size(n_train: int) -> None:
    if n_train < MIN_EXAMPLES:
        raise TrainingError(Msg("Fine-tuning needs at least {minimum} training examples, and there are {n}. With fewer, "
                                "the model just memorises them and the loss curve says nothing; add examples (a few "
                                "hundred is typical) or use few-shot examples in the prompt instead.",
                                minimum=MIN_EXAMPLES, n=n_train))


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """Batches of example indices for one epoch; every index once, the same for the same (seed, epoch)."""
    rng = random.Random(f"{seed}:{epoch}")  # str seeds hash the same way in every process
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    # Similar lengths share a batch (less padding) while the mega-batches keep the epoch random.
    size = MEGABATCH * batch_size
    batches = []
    for start in range(0, len(order), size):
        group = sorted(order[start:start + size], key=lambda i: -lengths[i])
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    used = sum(lengths[i] for b in batches for i in b)
    return (slots - used) / slots if slots else 0.0


def collate(examples: list[Example], pad_id: int) -> dict:
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
