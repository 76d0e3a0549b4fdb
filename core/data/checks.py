"""Dataset pre-flight checks: duplicates, train/eval leakage, empty or invalid records, rows longer than the
context window, label balance and "too few examples" advice.

The checks return data (findings, per-record lengths, label counts, advice); the UI draws the plots. Records
whose status is "rejected" are left out of every check; "unlabeled" and "skipped" records count as present.
Records that cannot be used (records.problems) are reported once and left out of the content checks
(duplicates, leakage, labels, the example count); their lengths are still measured.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from core.data.records import KINDS, input_output, problems
from core.errors import StudioError
from core.i18n import Msg

CODES = ("invalid", "empty_field", "leakage", "too_few", "too_long", "exact_duplicate", "near_duplicate",
         "label_imbalance", "identical_sides", "length_bias")  # the last two: preference pairs (preference_checks)
SEVERITIES = ("error", "warning", "info")
PURPOSES = ("training", "fewshot", "eval")

# Label detection: outputs drawn from a few distinct short values that repeat.
MAX_LABELS = 20
MAX_LABEL_WORDS = 5
LABEL_COVERAGE = 0.95      # the MAX_LABELS most common outputs cover at least this share of the records
IMBALANCE_RATIO = 5        # warn when the rarest label has fewer than 1/5 of the most common one
MIN_PER_LABEL = 5

MIN_TRAINING, FEW_TRAINING = 10, 50
MIN_EVAL = 20
FEWSHOT_RANGE = (3, 8)

MAX_PAIRS = 500            # near-duplicate and leakage pairs listed per code; the total is told in the advice
BLOCK_CELLS = 4_000_000    # similarity-matrix cells computed at once (16 MB of float32)
EMPTY_TEMPLATES = {"'{field}' is empty.", "Message {n} is empty.", "The conversation has no messages."}

Embed = Callable[[list[str]], Any]  # texts -> (n, d) unit vectors (numpy array)
CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class Finding:
    code: str                     # one of CODES
    severity: str                 # "error" | "warning" | "info"
    message: Msg                  # what is wrong and what to do
    record_ids: tuple[str, ...]   # the records concerned (a pair or group for duplicates and leakage)


@dataclass
class CheckReport:
    findings: list[Finding]
    input_lengths: list[int]      # per checked record (not rejected), in dataset order
    output_lengths: list[int]
    length_unit: str              # "tokens" | "characters"
    label_counts: dict[str, int] | None  # label -> count, most common first; None unless classification-like
    advice: list[Msg]
    record_ids: list[str] = field(default_factory=list)  # the records the lengths belong to, same order
    usable: int = 0               # records that are neither rejected nor invalid

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


def normalize_text(text: str) -> str:
    """Strip, collapse whitespace and casefold; Unicode is NFC-composed first, so diacritics stay distinct
    ("bán" != "bạn") while the same letter typed composed or decomposed compares equal."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text or "")).strip().casefold()


def record_id(record: dict, index: int, prefix: str = "#") -> str:
    return str(record.get("id") or f"{prefix}{index + 1}")


def classification_labels(outputs: list[str]) -> list[str] | None:
    """Per-output label when the outputs look like classification labels, else None.

    Classification-like: at least two distinct values; the MAX_LABELS most common normalized outputs are each
    at most MAX_LABEL_WORDS words and cover LABEL_COVERAGE of the outputs; labels repeat (at least twice per
    label on average). A label reads as its most common spelling (first seen on ties); rare stray outputs
    keep their own label, so a typo shows up as a rare label.
    """
    keys = [normalize_text(o) for o in outputs]
    if not keys or any(not k for k in keys):
        return None
    counts = Counter(keys)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    top = ranked[:MAX_LABELS]
    if len(counts) < 2 or any(len(key.split()) > MAX_LABEL_WORDS for key, _ in top):
        return None
    if sum(n for _, n in top) < LABEL_COVERAGE * len(keys) or len(keys) < 2 * len(top):
        return None
    spellings: dict[str, Counter] = {}
    for key, output in zip(keys, outputs):
        spellings.setdefault(key, Counter())[re.sub(r"\s+", " ", output).strip()] += 1
    shown = {key: c.most_common(1)[0][0] for key, c in spellings.items()}
    return [shown[k] for k in keys]


def run_checks(records: list[dict], kind: str, *, count_tokens: CountTokens | None = None,
               context_window: int | None = None, embed: Embed | None = None,
               near_duplicate_threshold: float = 0.95, eval_records: list[dict] | None = None,
               eval_kind: str | None = None, purpose: str = "training") -> CheckReport:
    """Check a dataset before it is used for `purpose` ("training", "fewshot" or "eval").

    eval_records (of eval_kind, the same kind by default) are checked for leakage against the records that are
    not on the eval side; within `records`, split "train" is also checked against split "eval". Near
    duplicates and near leakage need `embed` (list of texts -> unit vectors), called once with each distinct
    input. Lengths are tokens when `count_tokens` is given, else characters.
    """
    eval_kind = eval_kind or kind
    for name in (kind, eval_kind):
        if name not in KINDS:
            raise StudioError(Msg("Unknown dataset kind '{kind}'.", kind=name))
    if purpose not in PURPOSES:
        raise StudioError(Msg("Unknown purpose '{purpose}'; use training, fewshot or eval.", purpose=purpose))
    if not 0.0 < near_duplicate_threshold <= 1.0:
        raise StudioError(Msg("The near-duplicate threshold must be more than 0 and at most 1."))

    out = _Collector()
    active = [(i, r) for i, r in enumerate(records) if r.get("status") != "rejected"]
    ids = [record_id(r, i) for i, r in active]
    texts = [input_output(kind, r) for _, r in active]
    usable = _record_problems(kind, [r for _, r in active], ids, out)

    measure = count_tokens if count_tokens is not None else len
    input_lengths = [int(measure(i)) if i else 0 for i, _ in texts]
    output_lengths = [int(measure(o)) if o else 0 for _, o in texts]
    if count_tokens is not None and context_window:
        for n, (a, b) in enumerate(zip(input_lengths, output_lengths)):
            if a + b > context_window:
                out.add("too_long", "warning", Msg(
                    "This record has {tokens} tokens (input {input_tokens} + output {output_tokens}), more than the "
                    "{window}-token context window, so it would be truncated; shorten it or raise the context window.",
                    tokens=a + b, input_tokens=a, output_tokens=b, window=context_window), (ids[n],), (n,))

    if kind == "preference":
        from core.data.preference_checks import side_findings

        for finding in side_findings([(ids[n], active[n][1]) for n in usable]):
            out.add(finding.code, finding.severity, finding.message, finding.record_ids)
    data = _Data(ids, texts, usable, [r.get("split") for _, r in active], eval_records or [], eval_kind)
    _duplicates_and_leaks(data, out, embed, near_duplicate_threshold)

    labels = classification_labels([texts[n][1] for n in usable]) if usable else None
    label_counts = _label_balance(labels, [ids[n] for n in usable], purpose, out) if labels else None
    _too_few(len(usable), purpose, out)

    out.found.sort(key=lambda item: item[0])
    return CheckReport(findings=[f for _, f in out.found], input_lengths=input_lengths, output_lengths=output_lengths,
                       length_unit="tokens" if count_tokens is not None else "characters",
                       label_counts=label_counts, advice=out.advice, record_ids=ids, usable=len(usable))


class _Collector:
    """Findings with their sort key (severity, code, then positions in the data), and advice in order."""

    def __init__(self):
        self.found: list[tuple[tuple, Finding]] = []
        self.advice: list[Msg] = []

    def add(self, code: str, severity: str, message: Msg, record_ids: tuple[str, ...], key: tuple = ()):
        self.found.append(((SEVERITIES.index(severity), CODES.index(code), key),
                           Finding(code, severity, message, record_ids)))


def _record_problems(kind: str, records: list[dict], ids: list[str], out: _Collector) -> list[int]:
    """Report empty and invalid records; return the positions of the usable ones."""
    usable = []
    for n, record in enumerate(records):
        issues = problems(kind, record)
        empty = [p for p in issues if getattr(p, "template", p) in EMPTY_TEMPLATES]
        other = [p for p in issues if getattr(p, "template", p) not in EMPTY_TEMPLATES]
        if empty:
            out.add("empty_field", "error", Msg("This record has empty required fields: {problems} Fill them in or "
                                                "reject the record.", problems=empty), (ids[n],), (n,))
        if other:
            out.add("invalid", "error", Msg("This record cannot be used: {problems} Fix it or reject it.",
                                            problems=other), (ids[n],), (n,))
        if not issues:
            usable.append(n)
    return usable


@dataclass
class _Data:
    ids: list[str]
    texts: list[tuple[str, str]]
    usable: list[int]
    splits: list[str | None]
    eval_records: list[dict]
    eval_kind: str


def _duplicates_and_leaks(data: _Data, out: _Collector, embed: Embed | None, threshold: float) -> None:
    ids, texts, usable = data.ids, data.texts, data.usable
    inputs = {n: normalize_text(texts[n][0]) for n in usable}
    pair_key = {n: (inputs[n], normalize_text(texts[n][1])) for n in usable}

    # Exact duplicates: same normalized input and output.
    groups: dict[tuple[str, str], list[int]] = {}
    for n in usable:
        groups.setdefault(pair_key[n], []).append(n)
    for members in groups.values():
        if len(members) > 1:
            out.add("exact_duplicate", "warning", Msg(
                "These {count} records have the same input and output; keep one and reject the others so the "
                "example does not count {count} times.", count=len(members)),
                tuple(ids[n] for n in members), tuple(members))

    # Leakage by exact input: records not on the eval side against eval_records (key 0), and split "train"
    # against split "eval" within the dataset (key 1). Pairs are (record id, eval record id).
    others: list[tuple[str, str, str]] = []  # (id, raw input, normalized input) of the eval records
    for j, record in enumerate(data.eval_records):
        text = input_output(data.eval_kind, record)[0]
        if record.get("status") != "rejected" and normalize_text(text):
            others.append((record_id(record, j, "eval #"), text, normalize_text(text)))
    embedded = [n for n in usable if inputs[n]]
    candidates = [n for n in embedded if data.splits[n] != "eval"]
    train_side = [n for n in embedded if data.splits[n] == "train"]
    eval_side = [n for n in embedded if data.splits[n] == "eval"]
    leaks: list[tuple[tuple, tuple[str, str], float | None]] = []  # (sort key, pair, similarity; None if exact)
    other_by_input: dict[str, list[int]] = {}
    for j, (_, _, norm) in enumerate(others):
        other_by_input.setdefault(norm, []).append(j)
    eval_by_input: dict[str, list[int]] = {}
    for m in eval_side:
        eval_by_input.setdefault(inputs[m], []).append(m)
    leaks += [((0, n, j), (ids[n], others[j][0]), None) for n in candidates for j in other_by_input.get(inputs[n], [])]
    leaks += [((1, n, m), (ids[n], ids[m]), None) for n in train_side for m in eval_by_input.get(inputs[n], [])]
    leak_total = len(leaks)

    # Near duplicates and near leakage: one embedding call, blocked matrix products.
    unique: dict[str, int] = {}
    for text in [texts[n][0] for n in embedded] + [o[1] for o in others]:
        unique.setdefault(text, len(unique))
    if embed is not None and unique:
        import numpy as np

        vectors = np.asarray(embed(list(unique)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        limit = threshold - 1e-6  # float32 rounding: identical texts score 0.9999999

        def rows_of(raw_texts: list[str]):
            return vectors[np.asarray([unique[t] for t in raw_texts], dtype=np.int64).reshape(-1)]

        def numbered(keys: list) -> np.ndarray:  # equal keys -> equal numbers: pairs already reported as exact
            numbers: dict = {}
            return np.asarray([numbers.setdefault(k, len(numbers)) for k in keys], dtype=np.int64)

        own = rows_of([texts[n][0] for n in embedded])
        pairs, total = _similar_pairs(own, own, limit, same=True, cap=MAX_PAIRS,
                                      groups=numbered([pair_key[n] for n in embedded]))
        for a, b, similarity in pairs:
            n, m = embedded[a], embedded[b]
            out.add("near_duplicate", "info", Msg(
                "These two records have almost the same input (similarity {similarity}); check that their "
                "answers agree and reject one if it adds nothing.", similarity=similarity),
                (ids[n], ids[m]), (n, m))
        if total > len(pairs):
            out.advice.append(Msg("{total} near-duplicate pairs were found; only the first {shown} are listed.",
                                  total=total, shown=len(pairs)))

        for side, left, right, right_ids, right_inputs, right_texts in (
                (0, candidates, list(range(len(others))), [o[0] for o in others], [o[2] for o in others],
                 [o[1] for o in others]),
                (1, train_side, eval_side, [ids[m] for m in eval_side], [inputs[m] for m in eval_side],
                 [texts[m][0] for m in eval_side])):
            if not left or not right:
                continue
            both = numbered([inputs[n] for n in left] + right_inputs)
            pairs, total = _similar_pairs(rows_of([texts[n][0] for n in left]), rows_of(right_texts), limit,
                                          same=False, cap=MAX_PAIRS, groups=both[:len(left)],
                                          other_groups=both[len(left):])
            leaks += [((side, left[a], right[b]), (ids[left[a]], right_ids[b]), s) for a, b, s in pairs]
            leak_total += total

    leaks.sort(key=lambda leak: leak[0])
    for key, pair, similarity in leaks[:MAX_PAIRS]:
        if similarity is None:
            out.add("leakage", "error", Msg(
                "The same input is in both the training and the evaluation data; remove it from one side, or "
                "evaluation scores will look better than they are."), pair, key)
        else:
            out.add("leakage", "warning", Msg(
                "A training input is almost the same as an evaluation input (similarity {similarity}); remove it "
                "from one side, or evaluation scores will look better than they are.", similarity=similarity),
                pair, key)
    if leak_total > MAX_PAIRS:
        out.advice.append(Msg("{total} training/evaluation leaks were found; only the first {shown} are listed.",
                              total=leak_total, shown=MAX_PAIRS))


def _label_balance(labels: list[str], ids: list[str], purpose: str, out: _Collector) -> dict[str, int]:
    """Counts per label, most common first; a finding for each label that is rare against the most common one
    (under 1/IMBALANCE_RATIO of it) or has fewer than MIN_PER_LABEL examples."""
    label_counts = dict(sorted(Counter(labels).items(), key=lambda item: (-item[1], item[0])))
    common, most = next(iter(label_counts.items()))
    severity = "warning" if purpose == "training" else "info"
    for rank, (name, count) in enumerate(label_counts.items()):
        if count * IMBALANCE_RATIO >= most and count >= MIN_PER_LABEL:
            continue
        if count * IMBALANCE_RATIO < most:
            message = Msg("Label '{label}' has {count} examples against {most} for '{common}'; the model will "
                          "favour the common labels, so add examples of '{label}' or remove some of the others.",
                          label=name, count=count, most=most, common=common)
        else:
            message = Msg("Label '{label}' has only {count} examples; add at least {minimum} so the model can "
                          "learn it.", label=name, count=count, minimum=MIN_PER_LABEL)
        out.add("label_imbalance", severity, message, tuple(i for i, lab in zip(ids, labels) if lab == name), (rank,))
    return label_counts


def _too_few(count: int, purpose: str, out: _Collector) -> None:
    if purpose == "training":
        if count < MIN_TRAINING:
            out.add("too_few", "error", Msg("Only {count} usable examples: too few to fine-tune; use them as few-shot "
                                            "examples or collect at least {minimum}.", count=count,
                                            minimum=FEW_TRAINING), ())
        elif count < FEW_TRAINING:
            out.add("too_few", "warning", Msg("Only {count} usable examples; fine-tuning will be unreliable, so "
                                              "collect more or use few-shot examples.", count=count), ())
        if count < FEW_TRAINING:
            out.advice.append(Msg("A small model needs dozens to hundreds of examples to learn a format or a style, "
                                  "and more to learn new facts; with fewer, few-shot examples in the prompt usually "
                                  "work better."))
    elif purpose == "fewshot":
        low, high = FEWSHOT_RANGE
        if count == 0:
            out.add("too_few", "error", Msg("There are no usable examples; add at least one, ideally {low} to "
                                            "{high}.", low=low, high=high), ())
        elif count < low:
            out.add("too_few", "info", Msg("Only {count} usable examples; {low} to {high} show the model the format "
                                           "more reliably.", count=count, low=low, high=high), ())
        out.advice.append(Msg("A few-shot prompt works best with {low} to {high} examples that look like real "
                              "questions; more take context without helping much.", low=low, high=high))
    elif count == 0:
        out.add("too_few", "error", Msg("The evaluation set has no usable questions; add some before evaluating."), ())
    elif count < MIN_EVAL:
        out.add("too_few", "warning", Msg("Only {count} evaluation questions: each one moves the score by {step} "
                                          "percentage points, so scores will be noisy; add more questions.",
                                          count=count, step=round(100 / count, 1)), ())
        out.advice.append(Msg("Differences smaller than a few questions are noise; aim for at least {minimum} "
                              "questions, and 100 or more to compare close settings.", minimum=MIN_EVAL))


def _similar_pairs(left, right, threshold: float, *, same: bool, cap: int | None, groups=None, other_groups=None):
    """Pairs (i, j, similarity) with left[i]·right[j] >= threshold, in (i, j) order, computed in row blocks.

    same=True: left is right and only i < j is kept. Pairs whose `groups` ids are equal (already reported as
    exact matches) are left out. Returns at most `cap` pairs and the total count.
    """
    import numpy as np

    if other_groups is None:
        other_groups = groups
    kept: list[tuple[int, int, float]] = []
    total = 0
    rows = len(left)
    block = max(1, BLOCK_CELLS // max(1, len(right)))
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        offset = start if same else 0
        similarity = left[start:stop] @ right[offset:].T
        mask = similarity >= threshold
        if same:
            mask = np.triu(mask, k=1)
        if groups is not None:
            mask &= groups[start:stop, None] != other_groups[None, offset:]
        i, j = np.nonzero(mask)
        total += len(i)
        room = len(i) if cap is None else max(0, cap - len(kept))
        for a, b in zip(i[:room].tolist(), j[:room].tolist()):
            kept.append((start + a, offset + b, round(float(similarity[a, b]), 3)))
    return kept, total
