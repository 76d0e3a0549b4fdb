"""Train/eval split: seeded and repeatable, at least one record per side, rejected records left out, and
stratified splits that keep each label's share on both sides."""

from __future__ import annotations

from collections import Counter

import pytest

from core.data.split import split_records, split_summary
from core.errors import StudioError
from core.i18n import Msg


def rows(n: int, label=lambda i: f"answer {i}", **extra) -> list[dict]:
    return [{"id": f"r{i:03d}", "prompt": f"question {i}", "response": label(i), "status": "unlabeled",
             "split": None, "tags": [], **extra} for i in range(n)]


def sides(records: list[dict]) -> dict:
    return {s: [r["id"] for r in records if r["split"] == s] for s in ("train", "eval", None)}


def labels_by_side(records: list[dict]) -> dict[str, Counter]:
    return {s: Counter(r["response"] for r in records if r["split"] == s) for s in ("train", "eval")}


@pytest.mark.parametrize("fraction", [0, -0.1, 0.91, 1, 1.5, True, "0.2", None])
def test_eval_fraction_must_be_in_range(fraction):
    with pytest.raises(StudioError) as caught:
        split_records(rows(10), fraction, seed=0)
    assert isinstance(caught.value.args[0], Msg)


@pytest.mark.parametrize("n, fraction, expected_eval", [
    (10, 0.2, 2), (10, 0.25, 3), (14, 0.25, 4), (10, 0.5, 5), (10, 0.9, 9), (100, 0.1, 10), (7, 0.3, 2),
    (2, 0.01, 1), (2, 0.9, 1), (3, 0.01, 1), (5, 0.9, 4), (1, 0.5, 0), (0, 0.5, 0),
])
def test_eval_size_with_at_least_one_per_side(n, fraction, expected_eval):
    split = split_records(rows(n), fraction, seed=3)
    assert len(sides(split)["eval"]) == expected_eval
    assert len(sides(split)["train"]) == n - expected_eval
    assert sides(split)[None] == []


def test_rejected_records_get_no_split_and_do_not_count():
    records = rows(12)
    for i in (0, 5, 6):
        records[i]["status"] = "rejected"
        records[i]["split"] = "train"  # an old split is cleared
    records[1]["status"], records[2]["status"] = "skipped", "accepted"
    split = split_records(records, 0.34, seed=1)
    assert sides(split)[None] == ["r000", "r005", "r006"]
    assert len(sides(split)["eval"]) == 3 and len(sides(split)["train"]) == 6  # round(9 × 0.34) = 3
    assert split_summary(split) == {"train": 6, "eval": 3, "unassigned": 0, "rejected": 3}


def test_split_is_repeatable_for_a_seed_and_returns_copies():
    records = rows(40)
    before = [dict(r) for r in records]
    first = split_records(records, 0.25, seed=42)
    assert first == split_records(records, 0.25, seed=42)
    assert records == before                                     # the input is not changed
    first[0]["tags"].append("changed")
    assert records[0]["tags"] == []                              # copies, not views
    assert [r["id"] for r in first] == [r["id"] for r in records]  # same order, same content
    assert all({k: v for k, v in a.items() if k != "split"} == {k: v for k, v in b.items() if k != "split"}
               for a, b in zip(split_records(records, 0.25, seed=42), records))
    evals = {seed: tuple(sides(split_records(records, 0.25, seed=seed))["eval"]) for seed in range(6)}
    assert len(set(evals.values())) > 1                          # the seed matters
    assert evals[0] != tuple(r["id"] for r in records[:10])      # not simply the first records


@pytest.mark.parametrize("counts, fraction, expected_eval", [
    ({"positive": 80, "negative": 20}, 0.2, {"positive": 16, "negative": 4}),
    ({"positive": 80, "negative": 20}, 0.25, {"positive": 20, "negative": 5}),
    ({"tích cực": 40, "tiêu cực": 40, "trung lập": 20}, 0.1, {"tích cực": 4, "tiêu cực": 4, "trung lập": 2}),
    ({"spam": 45, "ham": 15}, 0.5, {"spam": 22, "ham": 8}),     # 22.5 + 7.5 = 30: remainders tie, by label
])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stratified_split_keeps_label_shares(counts, fraction, expected_eval, seed):
    records = []
    for label, n in counts.items():
        records += rows(n, label=lambda i, label=label: label)
    for i, record in enumerate(records):
        record["id"] = f"x{i:03d}"
    split = split_records(records, fraction, seed=seed, stratify=True)
    by_side = labels_by_side(split)
    assert dict(by_side["eval"]) == expected_eval
    assert dict(by_side["train"]) == {k: counts[k] - expected_eval[k] for k in counts}


def test_plain_split_does_not_keep_shares_but_stratified_does():
    """The stratified test can fail: a plain split of the same 80/20 data drifts from 16/4 for some seeds."""
    records = rows(100, label=lambda i: "positive" if i % 5 else "negative")
    plain = [dict(labels_by_side(split_records(records, 0.2, seed=s))["eval"]) for s in range(10)]
    assert any(p != {"positive": 16, "negative": 4} for p in plain)
    for s in range(10):
        assert dict(labels_by_side(split_records(records, 0.2, seed=s, stratify=True))["eval"]) == \
            {"positive": 16, "negative": 4}


def test_stratified_split_with_a_rare_label_still_has_the_right_size():
    records = rows(21, label=lambda i: "common" if i else "rare")   # 20 common, 1 rare
    for seed in range(5):
        split = split_records(records, 0.1, seed=seed, stratify=True)
        assert len(sides(split)["eval"]) == 2
        assert labels_by_side(split)["eval"] == Counter({"common": 2})  # 0.1 of one rare record rounds to none


@pytest.mark.parametrize("kind, make", [
    ("sft", lambda i: {"prompt": f"q{i}", "response": "yes" if i % 4 else "no"}),
    ("eval", lambda i: {"question": f"q{i}", "reference": "yes" if i % 4 else "no"}),
    ("chat", lambda i: {"messages": [{"role": "user", "content": f"q{i}"},
                                     {"role": "assistant", "content": "yes" if i % 4 else "no"}]}),
])
def test_stratify_reads_labels_of_each_kind(kind, make):
    records = [{"id": str(i), "status": "unlabeled", "split": None, **make(i)} for i in range(40)]  # 30 yes, 10 no
    for seed in range(4):
        split = split_records(records, 0.5, seed=seed, stratify=True, kind=kind)
        eval_ids = {int(r["id"]) for r in split if r["split"] == "eval"}
        assert sum(1 for i in eval_ids if i % 4 == 0) == 5 and len(eval_ids) == 20


def test_stratify_falls_back_to_a_plain_split_when_outputs_are_not_labels():
    records = rows(30)  # every output distinct: not classification-like
    assert split_records(records, 0.3, seed=5, stratify=True) == split_records(records, 0.3, seed=5)


def test_split_summary_counts_every_split_name():
    records = rows(6)
    records[0]["split"], records[1]["split"], records[2]["split"] = "train", "eval", "test"
    records[3]["status"] = "rejected"
    assert split_summary(records) == {"train": 1, "eval": 1, "unassigned": 2, "rejected": 1, "test": 1}
    assert split_summary([]) == {"train": 0, "eval": 0, "unassigned": 0, "rejected": 0}
