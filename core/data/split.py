"""Train/eval split of a dataset's records: seeded, optionally stratified by label for classification-like data."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter

from core.data.checks import classification_labels
from core.data.records import input_output
from core.errors import StudioError
from core.i18n import Msg

SPLITS = ("train", "eval")
MAX_EVAL_FRACTION = 0.9
MIN_EXAMPLES = 8  # below this an eval split and a measurable loss curve are not possible; training refuses fewer


def split_records(records: list[dict], eval_fraction: float, seed: int, stratify: bool = False,
                  kind: str = "sft") -> list[dict]:
    """Copies of the records with "split" set to "train" or "eval"; rejected records get split None.

    The eval side gets n × eval_fraction (halves round up) of the n records that are not rejected, but at least one record
    goes to each side when n >= 2 (a single record goes to train). The same records and seed always give the
    same split. stratify=True keeps each label's share on both sides when the outputs look like classification
    labels (see checks.classification_labels); otherwise it falls back to a plain random split.
    """
    if not isinstance(eval_fraction, (int, float)) or not 0.0 < eval_fraction <= MAX_EVAL_FRACTION:
        raise StudioError(Msg("The evaluation share must be more than 0 and at most {most}.",
                              most=MAX_EVAL_FRACTION))
    result = [copy.deepcopy(record) for record in records]
    usable = [i for i, record in enumerate(result) if record.get("status") != "rejected"]
    for record in result:
        record["split"] = None
    n = len(usable)
    if n == 0:
        return result
    n_eval = 0 if n == 1 else min(n - 1, max(1, math.floor(n * eval_fraction + 0.5)))
    rng = random.Random(seed)

    labels = _labels([input_output(kind, result[i])[1] for i in usable]) if stratify else None
    if labels is None:
        order = usable[:]
        rng.shuffle(order)
        chosen = set(order[:n_eval])
    else:
        chosen = _stratified(usable, labels, n_eval, eval_fraction, rng)
    for i in usable:
        result[i]["split"] = "eval" if i in chosen else "train"
    return result


def _stratified(usable: list[int], labels: list[str], n_eval: int, fraction: float, rng: random.Random) -> set[int]:
    """Each label gives floor(size × fraction) records to eval; the remaining places go to the labels with the
    largest remainders (ties by label), so the total is exactly n_eval."""
    members: dict[str, list[int]] = {}
    for index, label in zip(usable, labels):
        members.setdefault(label, []).append(index)
    names = sorted(members)
    quota = {name: len(members[name]) * fraction for name in names}
    take = {name: min(len(members[name]), int(quota[name])) for name in names}
    missing = n_eval - sum(take.values())  # fewer places than labels with a remainder (floor <= n_eval <= sum of ceilings)
    for name in sorted(names, key=lambda name: (-(quota[name] - int(quota[name])), name))[:missing]:
        take[name] = min(len(members[name]), take[name] + 1)
    chosen: set[int] = set()
    for name in names:
        group = members[name][:]
        rng.shuffle(group)
        chosen.update(group[:take[name]])
    return chosen


def _labels(outputs: list[str]) -> list[str] | None:
    """Labels of classification-like outputs; records without an output form a group of their own."""
    present = [o for o in outputs if o.strip()]
    found = classification_labels(present)
    if found is None:
        return None
    named = iter(found)
    return [next(named) if o.strip() else "" for o in outputs]


def split_summary(records: list[dict]) -> dict[str, int]:
    """Records per split: "train", "eval", "unassigned" (no split yet) and "rejected" (left out of the split),
    plus any other split name found in the data."""
    counts = Counter({"train": 0, "eval": 0, "unassigned": 0, "rejected": 0})
    for record in records:
        if record.get("status") == "rejected":
            counts["rejected"] += 1
        else:
            counts[record.get("split") or "unassigned"] += 1
    return dict(counts)
