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
         "label_imbalance")
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

    eval_records (of eval_kind, the same kind by default) are checked for leakage against `records`; within
    `records`, split "train" is also checked against split "eval". Near duplicates and near leakage need
    `embed` (list of texts -> unit vectors). Lengths are tokens when `count_tokens` is given, else characters.
    """
    eval_kind = eval_kind or kind
    for name in (kind, eval_kind):
        if name not in KINDS:
            raise StudioError(Msg("Unknown dataset kind '{kind}'.", kind=name))
    if purpose not in PURPOSES:
        raise StudioError(Msg("Unknown purpose '{purpose}'; use training, fewshot or eval.", purpose=purpose))
    if not 0.0 < near_duplicate_threshold <= 1.0:
        raise StudioError(Msg("The near-duplicate threshold must be more than 0 and at most 1."))

    found: list[tuple[tuple, Finding]] = []  # (sort key, finding)
    advice: list[Msg] = []
    active = [(i, r) for i, r in enumerate(records) if r.get("status") != "rejected"]
    ids = [record_id(r, i) for i, r in active]
    position = {rid: n for n, rid in enumerate(ids)}

    def add(code: str, severity: str, message: Msg, record_ids: tuple[str, ...], key: tuple = ()):
        found.append(((SEVERITIES.index(severity), CODES.index(code), key), Finding(code, severity, message, record_ids)))

    # Invalid and empty records.
    usable: list[int] = []  # indexes into `active`
    texts: list[tuple[str, str]] = []
    for n, (_, record) in enumerate(active):
        texts.append(input_output(kind, record))
        issues = problems(kind, record)
        empty = [p for p in issues if getattr(p, "template", p) in EMPTY_TEMPLATES]
        other = [p for p in issues if getattr(p, "template", p) not in EMPTY_TEMPLATES]
        if empty:
            add("empty_field", "error", Msg("This record has empty required fields: {problems} Fill them in or "
                                            "reject the record.", problems=empty), (ids[n],), (n,))
        if other:
            add("invalid", "error", Msg("This record cannot be used: {problems} Fix it or reject it.",
                                        problems=other), (ids[n],), (n,))
        if not issues:
            usable.append(n)

    # Lengths and rows that would be truncated.
    measure = count_tokens if count_tokens is not None else len
    input_lengths = [int(measure(i)) if i else 0 for i, _ in texts]
    output_lengths = [int(measure(o)) if o else 0 for _, o in texts]
    if count_tokens is not None and context_window:
        for n, (a, b) in enumerate(zip(input_lengths, output_lengths)):
            if a + b > context_window:
                add("too_long", "warning", Msg(
                    "This record has {tokens} tokens (input {input_tokens} + output {output_tokens}), more than the "
                    "{window}-token context window, so it would be truncated; shorten it or raise the context window.",
                    tokens=a + b, input_tokens=a, output_tokens=b, window=context_window), (ids[n],), (n,))

    # Exact duplicates: same normalized input and output.
    inputs = {n: normalize_text(texts[n][0]) for n in usable}
    pair_key = {n: (inputs[n], normalize_text(texts[n][1])) for n in usable}
    groups: dict[tuple[str, str], list[int]] = {}
    for n in usable:
        groups.setdefault(pair_key[n], []).append(n)
    for members in groups.values():
        if len(members) > 1:
            add("exact_duplicate", "warning", Msg(
                "These {count} records have the same input and output; keep one and reject the others so the "
                "example does not count {count} times.", count=len(members)),
                tuple(ids[n] for n in members), tuple(members))

    # Train/eval leakage by exact input.
    train_side = [n for n in usable if active[n][1].get("split") == "train"]
    eval_side = [n for n in usable if active[n][1].get("split") == "eval"]
    others: list[tuple[str, str, str]] = []  # (id, raw input, normalized input) of eval_records
    for j, record in enumerate(eval_records or []):
        if record.get("status") == "rejected":
            continue
        text = input_output(eval_kind, record)[0]
        if normalize_text(text):
            others.append((record_id(record, j, "eval #"), text, normalize_text(text)))
    candidates = [n for n in usable if inputs[n] and active[n][1].get("split") != "eval"]

    leaks: list[tuple[tuple, tuple[str, str], float | None]] = []  # (sort key, ids, similarity or None if exact)
    by_input: dict[str, list[int]] = {}
    for j, (_, _, norm) in enumerate(others):
        by_input.setdefault(norm, []).append(j)
    for n in candidates:
        for j in by_input.get(inputs[n], []):
            leaks.append(((0, n, j), (ids[n], others[j][0]), None))
    eval_by_input: dict[str, list[int]] = {}
    for m in eval_side:
        if inputs[m]:
            eval_by_input.setdefault(inputs[m], []).append(m)
    for n in train_side:
        for m in eval_by_input.get(inputs[n], []) if inputs[n] else []:
            leaks.append(((1, n, m), (ids[n], ids[m]), None))

    # Near duplicates and near leakage: one embedding call, blocked matrix products.
    near_total = 0
    if embed is not None:
        import numpy as np

        embedded = [n for n in usable if inputs[n]]
        unique: dict[str, int] = {}
        for text in [texts[n][0] for n in embedded] + [o[1] for o in others]:
            unique.setdefault(text, len(unique))
        if unique:
            vectors = np.asarray(embed(list(unique)), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1.0)
            row = {n: unique[texts[n][0]] for n in embedded}
            threshold = near_duplicate_threshold - 1e-6
            group_of = {key: g for g, key in enumerate(groups)}

            def matrix(indexes, text_of):
                return vectors[np.asarray([unique[text_of(x)] for x in indexes], dtype=np.int64)] \
                    if indexes else np.zeros((0, vectors.shape[1]), dtype=np.float32)

            own = matrix(embedded, lambda n: texts[n][0])
            pairs, near_total = _similar_pairs(own, own, threshold, same=True, cap=MAX_PAIRS,
                                               groups=np.asarray([group_of[pair_key[n]] for n in embedded]))
            for a, b, similarity in pairs:
                n, m = embedded[a], embedded[b]
                add("near_duplicate", "info", Msg(
                    "These two records have almost the same input (similarity {similarity}); check that their "
                    "answers agree and reject one if it adds nothing.", similarity=similarity),
                    (ids[n], ids[m]), (n, m))
            if near_total > len(pairs):
                advice.append(Msg("{total} near-duplicate pairs were found; only the first {shown} are listed.",
                                  total=near_total, shown=len(pairs)))

            norm_ids: dict[str, int] = {}
            for text in [inputs[n] for n in embedded] + [o[2] for o in others]:
                norm_ids.setdefault(text, len(norm_ids))
            if candidates and others:
                cand = [n for n in candidates if n in row]
                found_pairs, _ = _similar_pairs(
                    matrix(cand, lambda n: texts[n][0]), matrix(list(range(len(others))), lambda j: others[j][1]),
                    threshold, same=False, cap=None,
                    groups=np.asarray([norm_ids[inputs[n]] for n in cand]),
                    other_groups=np.asarray([norm_ids[o[2]] for o in others]))
                leaks.extend(((0, cand[a], b), (ids[cand[a]], others[b][0]), s) for a, b, s in found_pairs)
            train_in = [n for n in train_side if n in row]
            eval_in = [m for m in eval_side if m in row]
            if train_in and eval_in:
                found_pairs, _ = _similar_pairs(
                    matrix(train_in, lambda n: texts[n][0]), matrix(eval_in, lambda n: texts[n][0]),
                    threshold, same=False, cap=None,
                    groups=np.asarray([norm_ids[inputs[n]] for n in train_in]),
                    other_groups=np.asarray([norm_ids[inputs[m]] for m in eval_in]))
                leaks.extend(((1, train_in[a], eval_in[b]), (ids[train_in[a]], ids[eval_in[b]]), s)
                             for a, b, s in found_pairs)

    leaks.sort(key=lambda leak: leak[0])
    for key, pair, similarity in leaks[:MAX_PAIRS]:
        if similarity is None:
            add("leakage", "error", Msg(
                "The same input is in both the training and the evaluation data; remove it from one side, or "
                "evaluation scores will look better than they are."), pair, key)
        else:
            add("leakage", "warning", Msg(
                "A training input is almost the same as an evaluation input (similarity {similarity}); remove it "
                "from one side, or evaluation scores will look better than they are.", similarity=similarity),
                pair, key)
    if len(leaks) > MAX_PAIRS:
        advice.append(Msg("{total} training/evaluation leaks were found; only the first {shown} are listed.",
                          total=len(leaks), shown=MAX_PAIRS))

    # Label balance.
    labels = classification_labels([texts[n][1] for n in usable]) if usable else None
    label_counts = None
    if labels is not None:
        counted = Counter(labels)
        label_counts = dict(sorted(counted.items(), key=lambda item: (-item[1], item[0])))
        common, most = next(iter(label_counts.items()))
        severity = "warning" if purpose == "training" else "info"
        for rank, (name, count) in enumerate(label_counts.items()):
            if count * IMBALANCE_RATIO >= most and count >= MIN_PER_LABEL:
                continue
            members = tuple(ids[n] for n, lab in zip(usable, labels) if lab == name)
            if count * IMBALANCE_RATIO < most:
                message = Msg("Label '{label}' has {count} examples against {most} for '{common}'; the model will "
                              "favour the common labels, so add examples of '{label}' or remove some of the others.",
                              label=name, count=count, most=most, common=common)
            else:
                message = Msg("Label '{label}' has only {count} examples; add at least {minimum} so the model can "
                              "learn it.", label=name, count=count, minimum=MIN_PER_LABEL)
            add("label_imbalance", severity, message, members, (rank,))

    # Too few examples for the purpose.
    count = len(usable)
    if purpose == "training":
        if count < MIN_TRAINING:
            add("too_few", "error", Msg("Only {count} usable examples: too few to fine-tune; use them as few-shot "
                                        "examples or collect at least {minimum}.", count=count, minimum=FEW_TRAINING), ())
        elif count < FEW_TRAINING:
            add("too_few", "warning", Msg("Only {count} usable examples; fine-tuning will be unreliable, so collect "
                                          "more or use few-shot examples.", count=count), ())
        if count < FEW_TRAINING:
            advice.append(Msg("A small model needs dozens to hundreds of examples to learn a format or a style, and "
                              "more to learn new facts; with fewer, few-shot examples in the prompt usually work "
                              "better."))
    elif purpose == "fewshot":
        low, high = FEWSHOT_RANGE
        if count == 0:
            add("too_few", "error", Msg("There are no usable examples; add at least one, ideally {low} to {high}.",
                                        low=low, high=high), ())
        elif count < low:
            add("too_few", "info", Msg("Only {count} usable examples; {low} to {high} show the model the format "
                                       "more reliably.", count=count, low=low, high=high), ())
        advice.append(Msg("A few-shot prompt works best with {low} to {high} examples that look like real questions; "
                          "more take context without helping much.", low=low, high=high))
    else:
        if count == 0:
            add("too_few", "error", Msg("The evaluation set has no usable questions; add some before evaluating."), ())
        elif count < MIN_EVAL:
            step = round(100 / count, 1)
            add("too_few", "warning", Msg("Only {count} evaluation questions: each one moves the score by {step} "
                                          "percentage points, so scores will be noisy; add more questions.",
                                          count=count, step=step), ())
            advice.append(Msg("Differences smaller than a few questions are noise; aim for at least {minimum} "
                              "questions, and 100 or more to compare close settings.", minimum=MIN_EVAL))

    found.sort(key=lambda item: item[0])
    return CheckReport(findings=[f for _, f in found], input_lengths=input_lengths, output_lengths=output_lengths,
                       length_unit="tokens" if count_tokens is not None else "characters",
                       label_counts=label_counts, advice=advice, record_ids=ids, usable=count)


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
