"""Preference data -> token ids, rendered exactly as the studio renders prompts at inference.

Each answer is encoded as a one-turn training pair through data.encode_record (the recipe's system prompt and
template, the chat template or the `Question:/Answer:` format with BOS and a closing EOS), so the tuned model is
compared on the very sequence the Chat page will later give it. The prompt's tokens are labeled -100; the answer's
tokens are the ones whose log-probabilities the preference losses compare.

* Pairs (DPO, ORPO, reward model): a preference record gives a chosen and a rejected example.
* Unpaired (KTO): an answer marked desirable or undesirable, from a preference record (its chosen side is good, its
  rejected side bad) or from the Chat page's feedback (thumbs up: good; thumbs down: bad, and its correction, when
  there is one, good). Each also carries a "mismatched" sequence, its prompt with another item's answer, on which
  KTO estimates how far the model has drifted (see preference.KTOObjective).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.data.rated import Rated, rated_from_feedback, rated_from_pairs, same_text
from core.data.records import problems
from core.data.split import MIN_EXAMPLES
from core.errors import StudioError, TrainingError
from core.finetune.data import IGNORE, Example, PreparationReport, encode_record, why_empty
from core.i18n import Msg


@dataclass(frozen=True)
class PairExample:
    chosen: Example
    rejected: Example
    record_id: str
    reference: tuple[float, ...] = ()  # the starting model's log-probabilities (DPO; set when a run starts)


@dataclass(frozen=True)
class UnpairedExample:
    example: Example
    desirable: bool
    mismatched: Example  # the same prompt with another item's answer (KTO's drift estimate)
    record_id: str
    reference: tuple[float, ...] = ()  # the starting model's log-probabilities of example and mismatched


class _TooLong(Exception):
    """The prompt alone fills max_length."""


def encode_answer(prompt_text: str, answer: str, tokenizer, prompt, labels, max_length: int,
                  record_id: str = "") -> tuple[Example, bool]:
    """(the prompt and answer as one training example, whether it was truncated); raises _TooLong when the prompt
    alone fills max_length."""
    ids, targets = encode_record({"prompt": prompt_text, "response": answer}, "sft", tokenizer, prompt, labels)
    truncated = len(ids) > max_length
    if truncated:
        ids, targets = ids[:max_length], targets[:max_length]
    if all(t == IGNORE for t in targets[1:]):
        raise _TooLong()
    return Example(ids, targets, record_id), truncated


class _Report:
    def __init__(self, total: int, max_length: int):
        self.total, self.max_length = total, max_length
        self.truncated = self.dropped = self.invalid = self.tokens = 0
        self.first_problem = None

    def skip(self, problem) -> None:
        self.invalid += 1
        self.first_problem = self.first_problem or problem

    def done(self, used: int) -> PreparationReport:
        return PreparationReport(self.total, used, self.truncated, self.dropped, self.invalid, self.tokens,
                                 self.max_length)


def _encode(report: _Report, tokenizer, prompt, labels, max_length: int, items: list[tuple[str, str, str]]):
    """Examples for (prompt, answer, id) items, or None (counted in the report) when one cannot be used."""
    out = []
    cut = False
    for prompt_text, answer, record_id in items:
        try:
            example, truncated = encode_answer(prompt_text, answer, tokenizer, prompt, labels, max_length, record_id)
        except _TooLong:
            report.dropped += 1
            return None
        except StudioError:
            raise  # the recipe's prompt is broken: every record would fail the same way
        except Exception as exc:  # a chat template may refuse a conversation
            report.skip((str(exc).splitlines() or [type(exc).__name__])[0][:200])
            return None
        cut = cut or truncated
        out.append(example)
    report.truncated += cut
    report.tokens += sum(sum(t != IGNORE for t in e.labels) for e in out)
    return out


def prepare_pairs(records: list[dict], tokenizer, prompt, labels, max_length: int) -> tuple[list[PairExample],
                                                                                           PreparationReport]:
    """Chosen and rejected examples of the usable preference records (not rejected, no empty side, two different
    answers: a pair with the same answer on both sides teaches nothing)."""
    report = _Report(len(records), max_length)
    pairs = []
    for n, record in enumerate(records):
        found = problems("preference", record)
        if record.get("status") == "rejected" or found:
            report.skip(found[0] if found else Msg("rejected"))
            continue
        if same_text(record["chosen"], record["rejected"]):
            report.skip(Msg("the chosen and rejected answers are the same"))
            continue
        record_id = str(record.get("id") or n)
        encoded = _encode(report, tokenizer, prompt, labels, max_length,
                          [(record["prompt"], record["chosen"], record_id), (record["prompt"], record["rejected"],
                                                                             record_id)])
        if encoded:
            pairs.append(PairExample(encoded[0], encoded[1], record_id))
    result = report.done(len(pairs))
    if not pairs:
        raise TrainingError(_why_empty(result, report.first_problem))
    return pairs, result


def prepare_unpaired(rated: list[Rated], tokenizer, prompt, labels, max_length: int) -> tuple[list[UnpairedExample],
                                                                                              PreparationReport]:
    """Examples of rated answers, each with a mismatched sequence: its prompt followed by the answer of the next
    usable item (in order, wrapping), as TRL's KTOTrainer pairs prompts with shifted completions."""
    report = _Report(len(rated), max_length)
    encoded = []
    for item in rated:
        got = _encode(report, tokenizer, prompt, labels, max_length, [(item.prompt, item.answer, item.id)])
        if got:
            encoded.append((got[0], item))
    result = report.done(len(encoded))
    if not encoded:
        raise TrainingError(_why_empty(result, report.first_problem))
    if len(encoded) < 2:
        raise TrainingError(Msg("KTO needs at least two rated answers; there is {n}.", n=len(encoded)))
    examples = []
    for i, (example, item) in enumerate(encoded):
        other = encoded[(i + 1) % len(encoded)][0]
        examples.append(UnpairedExample(example, item.desirable, mismatch(example, other, max_length), item.id))
    return examples, result


def mismatch(example: Example, other: Example, max_length: int) -> Example:
    """`example`'s prompt followed by `other`'s answer (token ids; the prompt unlabeled)."""
    prompt_end = _prompt_length(example)
    answer = other.input_ids[_prompt_length(other):]
    ids = (example.input_ids[:prompt_end] + answer)[:max_length]
    labels = ([IGNORE] * prompt_end + answer)[:max_length]
    return Example(ids, labels, example.record_id + ":mismatched")


def _prompt_length(example: Example) -> int:
    return next((i for i, label in enumerate(example.labels) if label != IGNORE), len(example.labels))


def _why_empty(report: PreparationReport, first_problem) -> Msg:
    return why_empty(report, first_problem, Msg(
        "There is no preference data yet; label pairs (Labeling page) or rate answers on the Chat page."))


# -- where a run's preference data comes from -------------------------------------------------------------------

def check_source(project, config) -> int | None:
    """Refuse a config whose data cannot serve its objective; returns the dataset version to pin (None for the
    Chat page's feedback, which a run copies into its run.json instead)."""
    from core.data.store import DatasetStore
    from core.feedback import list_feedback

    if config.data_source == "feedback":
        if not rated_from_feedback(list_feedback(project)):
            raise TrainingError(Msg("There are no thumbs up or down from the Chat page yet; rate some answers there "
                                    "first, or pick a preference dataset."))
        return None
    store = DatasetStore(project)
    if not config.dataset or not store.exists(config.dataset):
        raise TrainingError(Msg("Pick a preference dataset first (Datasets or Labeling page)."))
    if store.kind(config.dataset) != "preference":
        raise TrainingError(Msg("{objective} learns from preference pairs (prompt, chosen, rejected), and "
                                "'{name}' is not a preference dataset. Pick a preference dataset, or supervised "
                                "fine-tuning for training pairs.", objective=config.objective.upper(),
                                name=config.dataset))
    return config.dataset_version or store.latest_version(config.dataset)


def source_records(project, spec: dict, config) -> list[dict]:
    """The records (preference pairs) or feedback entries a run trains on: its copy of the feedback when it has
    one, else the project's current feedback; or the pinned dataset version."""
    from core.data.store import DatasetStore
    from core.feedback import list_feedback

    if config.data_source == "feedback":
        return list(spec["feedback"]) if "feedback" in spec else list_feedback(project)
    store = DatasetStore(project)
    if not store.exists(config.dataset):
        raise TrainingError(Msg("Dataset '{name}' no longer exists.", name=config.dataset))
    return store.load(config.dataset, config.dataset_version)[0]


def prepare_for(config, records: list[dict], tokenizer, prompt, labels):
    """(examples, report) for `config.objective` from preference records or feedback entries."""
    if config.objective == "kto":
        rated = rated_from_feedback(records) if config.data_source == "feedback" else rated_from_pairs(records)
        return prepare_unpaired(rated, tokenizer, prompt, labels, config.max_length)
    return prepare_pairs(records, tokenizer, prompt, labels, config.max_length)


def check_size(n_train: int, config) -> None:
    if n_train < MIN_EXAMPLES:
        unit = Msg("rated answers") if config.objective == "kto" else Msg("pairs")
        raise TrainingError(Msg("Preference tuning needs at least {minimum} {unit} to train on, and there are {n}. "
                                "Label more (a few hundred is typical).", minimum=MIN_EXAMPLES, unit=unit, n=n_train))
