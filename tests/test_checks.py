"""Dataset pre-flight checks on crafted data with known duplicates, leaks, empty fields, long rows and labels."""

from __future__ import annotations

import time
import unicodedata

import numpy as np
import pytest

from core.data import checks
from core.data.checks import CheckReport, Finding, classification_labels, normalize_text, run_checks
from core.errors import StudioError
from core.i18n import Msg


def sft(rid: str, prompt: str, response: str = "ok", **labels) -> dict:
    return {"id": rid, "prompt": prompt, "response": response, "status": labels.pop("status", "unlabeled"),
            "split": labels.pop("split", None), **labels}


def ids_of(report: CheckReport, code: str) -> list[tuple[str, ...]]:
    return [f.record_ids for f in report.by_code(code)]


def filler(n: int, start: int = 0) -> list[dict]:
    """Distinct unrelated records (no shared words), to pad datasets past the too-few thresholds."""
    return [sft(f"f{i}", f"filler question number {i} zq{i}x", f"filler answer {i} zr{i}y") for i in range(start, start + n)]


PASSWORD = "How do I reset my password on the website today"
PASSWORD_REORDERED = "Today on the website how do I reset my password"       # cosine 1.0 with hash_embedder
PASSWORD_PLEASE = "How do I reset my password on the website today please"  # cosine 0.953
PASSWORD_APP = "How do I reset my password on the mobile app"              # cosine 0.80
BAN = "Tôi muốn bán chiếc xe máy cũ của tôi với giá tốt"
BAN_DOT = "Tôi muốn bạn chiếc xe máy cũ của tôi với giá tốt"                 # cosine 0.938 with BAN
VI = "Làm sao để đặt lại mật khẩu trên trang web hôm nay"
VI_REORDERED = "Hôm nay trên trang web làm sao để đặt lại mật khẩu"


# --- normalization -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, same", [
    ("  Hello   World\n", "hello world", True),
    ("STRASSE", "straße", True),                                  # casefold, not just lower
    ("bán", "bạn", False),                                        # Vietnamese diacritics stay distinct
    ("bán", "ban", False),
    ("Đà Nẵng", "đà nẵng", True),
    (unicodedata.normalize("NFD", "Hà Nội"), "Hà Nội", True),    # decomposed and composed are the same text
    ("Hà\tNội ", " hà nội", True),
    ("a b", "ab", False),
])
def test_normalize_text(a, b, same):
    assert (normalize_text(a) == normalize_text(b)) is same


# --- exact duplicates ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, expected", [
    ([sft("a", "Hi there", "Hello"), sft("b", "  hi   THERE ", "hello "), sft("c", "Hi there", "Bye")], [("a", "b")]),
    ([sft("a", "Giá bán là bao nhiêu?", "50.000 ₫"), sft("b", "Giá bạn là bao nhiêu?", "50.000 ₫")], []),
    ([sft("a", "Xin chào", "Chào bạn"), sft("b", unicodedata.normalize("NFD", "Xin chào"), "Chào bạn")], [("a", "b")]),
    ([sft("a", "q", "r"), sft("b", "q", "r"), sft("c", "x", "y"), sft("d", "Q", "R"), sft("e", "x", "y")],
     [("a", "b", "d"), ("c", "e")]),
    ([sft("a", "q", "r"), sft("b", "q", "r", status="rejected")], []),     # rejected records are ignored
    ([sft("a", "q", "r", status="skipped"), sft("b", "q", "r", status="accepted")], [("a", "b")]),
    ([sft("a", "q", "r"), sft("b", "q", "r", system="Be brief.")], []),     # the system prompt is part of the input
])
def test_exact_duplicates(rows, expected):
    report = run_checks(rows, "sft")
    assert ids_of(report, "exact_duplicate") == expected
    for finding in report.by_code("exact_duplicate"):
        assert finding.severity == "warning"
        assert isinstance(finding.message, Msg) and str(len(finding.record_ids)) in finding.message


def test_chat_duplicates_compare_the_whole_conversation():
    def chat(rid, user, answer):
        return {"id": rid, "status": "unlabeled", "split": None,
                "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}

    rows = [chat("a", "Mấy giờ mở cửa?", "8 giờ."), chat("b", "mấy giờ  mở cửa?", "8 GIỜ."),
            chat("c", "Mấy giờ mở cửa?", "9 giờ.")]
    assert ids_of(run_checks(rows, "chat"), "exact_duplicate") == [("a", "b")]


# --- near duplicates -----------------------------------------------------------------------------------------

NEAR_ROWS = [
    sft("p1", PASSWORD, "Open settings."),
    sft("p2", PASSWORD_REORDERED, "Use the reset link."),    # same words, other order: near duplicate of p1
    sft("p3", PASSWORD_PLEASE, "Open settings."),            # 0.953 with p1 and p2
    sft("p4", PASSWORD_APP, "Open the app."),                # 0.80: not a duplicate
    sft("p5", PASSWORD, "Open settings."),                   # exact duplicate of p1: not a near-duplicate pair
    sft("v1", VI, "Mở cài đặt."),
    sft("v2", VI_REORDERED, "Mở trang cài đặt."),
    sft("b1", BAN, "Được."),
    sft("b2", BAN_DOT, "Được."),                             # 0.938 with b1
    sft("r1", VI, "Mở cài đặt.", status="rejected"),
]


@pytest.mark.parametrize("threshold, expected", [
    (0.95, [("p1", "p2"), ("p1", "p3"), ("p2", "p3"), ("p2", "p5"), ("p3", "p5"), ("v1", "v2")]),
    (0.99, [("p1", "p2"), ("p2", "p5"), ("v1", "v2")]),
    (0.90, [("p1", "p2"), ("p1", "p3"), ("p2", "p3"), ("p2", "p5"), ("p3", "p5"), ("v1", "v2"), ("b1", "b2")]),
    (0.75, [("p1", "p2"), ("p1", "p3"), ("p1", "p4"), ("p2", "p3"), ("p2", "p4"), ("p2", "p5"), ("p3", "p4"),
            ("p3", "p5"), ("p4", "p5"), ("v1", "v2"), ("b1", "b2")]),
])
def test_near_duplicates_by_threshold(threshold, expected, hash_embedder):
    report = run_checks(NEAR_ROWS, "sft", embed=hash_embedder, near_duplicate_threshold=threshold)
    assert sorted(ids_of(report, "near_duplicate")) == sorted(expected)
    assert ids_of(report, "exact_duplicate") == [("p1", "p5")]
    assert len(hash_embedder.calls) == 1                   # one call, each distinct input once, rejected left out
    assert sorted(hash_embedder.calls[0]) == sorted({r["prompt"] for r in NEAR_ROWS[:-1]})
    similarities = [f.message.params["similarity"] for f in report.by_code("near_duplicate")]
    assert all(threshold - 1e-3 <= s <= 1.0 + 1e-3 for s in similarities)


@pytest.mark.parametrize("cells", [1, 3, 10, 64])
def test_blocks_of_any_size_give_the_same_pairs(cells, hash_embedder, monkeypatch):
    expected = run_checks(NEAR_ROWS + TRAIN_SET, "sft", embed=hash_embedder, eval_records=EVAL_SET, eval_kind="eval")
    monkeypatch.setattr(checks, "BLOCK_CELLS", cells)
    blocked = run_checks(NEAR_ROWS + TRAIN_SET, "sft", embed=hash_embedder, eval_records=EVAL_SET, eval_kind="eval")
    assert blocked.findings == expected.findings
    assert len(expected.by_code("near_duplicate")) >= 6 and len(expected.by_code("leakage")) >= 3


def test_near_duplicates_need_the_embedder(hash_embedder):
    report = run_checks(NEAR_ROWS, "sft")
    assert report.by_code("near_duplicate") == []
    assert ids_of(report, "exact_duplicate") == [("p1", "p5")]


def test_near_duplicate_pairs_are_capped_with_the_total_in_the_advice(hash_embedder, monkeypatch):
    monkeypatch.setattr(checks, "MAX_PAIRS", 4)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    rows = [sft(str(i), " ".join(words[i:] + words[:i]), f"answer {i}") for i in range(6)]  # 6 rotations: 15 pairs
    report = run_checks(rows, "sft", embed=hash_embedder)
    assert ids_of(report, "near_duplicate") == [("0", "1"), ("0", "2"), ("0", "3"), ("0", "4")]
    assert any(a.params.get("total") == 15 and a.params.get("shown") == 4 for a in report.advice)


def test_near_duplicates_scale_to_5000_records():
    """5,000 records with 40 planted near-duplicate pairs: found exactly, in well under 10 seconds."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((5000, 384)).astype(np.float32)
    planted = {int(i): int(j) for i, j in zip(range(0, 4000, 100), range(4999, 4599, -10))}  # j copies i
    for i, j in planted.items():
        base[j] = base[i] + 0.05 * rng.standard_normal(384).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    index = {f"question {i}": i for i in range(5000)}

    def fast_embed(texts):
        return base[[index[t] for t in texts]]

    rows = [sft(f"r{i:04d}", f"question {i}", f"answer {i}") for i in range(5000)]
    started = time.perf_counter()
    report = run_checks(rows, "sft", embed=fast_embed)
    elapsed = time.perf_counter() - started
    assert sorted(ids_of(report, "near_duplicate")) == sorted((f"r{i:04d}", f"r{j:04d}") for i, j in planted.items())
    assert elapsed < 10, elapsed
    assert report.ok and len(report.input_lengths) == 5000


# --- leakage -------------------------------------------------------------------------------------------------

EVAL_SET = [
    {"id": "e1", "question": "  how do i reset my PASSWORD on the website today", "reference": "Settings.",
     "status": "accepted"},
    {"id": "e2", "question": VI_REORDERED, "reference": "Cài đặt."},
    {"id": "e3", "question": BAN_DOT, "reference": "Không."},
    {"id": "e4", "question": "Where is the store?", "reference": "Main street.", "status": "rejected"},
]
TRAIN_SET = [
    sft("t1", PASSWORD, "Open settings."),          # exact leak of e1 (case and spaces differ)
    sft("t2", VI, "Mở cài đặt."),                   # near leak of e2 (same words, other order)
    sft("t3", BAN, "Được."),                        # bán vs bạn: neither exact nor near at 0.95
    sft("t4", "Where is the store?", "Main street."),  # e4 is rejected: no leak
    sft("t5", PASSWORD_APP, "Open the app."),
]


@pytest.mark.parametrize("with_embed, expected", [
    (False, [("error", ("t1", "e1"))]),
    (True, [("error", ("t1", "e1")), ("warning", ("t2", "e2"))]),
])
def test_leakage_against_an_eval_set_of_another_kind(with_embed, expected, hash_embedder):
    report = run_checks(TRAIN_SET, "sft", eval_records=EVAL_SET, eval_kind="eval",
                        embed=hash_embedder if with_embed else None)
    assert [(f.severity, f.record_ids) for f in report.by_code("leakage")] == expected
    assert report.ok is False


def test_leakage_embeds_each_distinct_input_once(hash_embedder):
    run_checks(TRAIN_SET + [sft("t6", PASSWORD, "Again.")], "sft", eval_records=EVAL_SET, eval_kind="eval",
               embed=hash_embedder)
    assert len(hash_embedder.calls) == 1
    embedded = hash_embedder.calls[0]
    assert len(embedded) == len(set(embedded))
    assert set(embedded) == {r["prompt"] for r in TRAIN_SET} | {e["question"] for e in EVAL_SET[:3]}


@pytest.mark.parametrize("with_embed, total", [(False, 6), (True, 9)])
def test_leakage_pairs_are_capped_with_the_total_in_the_advice(with_embed, total, monkeypatch, hash_embedder):
    monkeypatch.setattr(checks, "MAX_PAIRS", 2)
    rows = [sft(f"t{i}", "Giờ mở cửa?", f"answer {i}") for i in range(3)]
    other = [sft("x1", "giờ mở cửa?"), sft("x2", "GIỜ MỞ CỬA?"), sft("x3", "Mở cửa giờ?")]  # x3: near, same words
    report = run_checks(rows, "sft", eval_records=other, embed=hash_embedder if with_embed else None)
    assert ids_of(report, "leakage") == [("t0", "x1"), ("t0", "x2")]
    assert any(a.params.get("total") == total and a.params.get("shown") == 2 for a in report.advice)


def test_leakage_without_eval_kind_reads_eval_records_as_the_same_kind():
    other = [sft("x1", PASSWORD, "Something else.")]
    assert ids_of(run_checks(TRAIN_SET, "sft", eval_records=other), "leakage") == [("t1", "x1")]
    # read as sft, the eval set's questions are not prompts: nothing to compare
    assert run_checks(TRAIN_SET, "sft", eval_records=EVAL_SET).by_code("leakage") == []


@pytest.mark.parametrize("rows, expected_exact, expected_near", [
    ([sft("a", "Thủ đô là gì?", "Hà Nội", split="train"), sft("b", "thủ đô là gì?", "Hà Nội.", split="eval")],
     [("a", "b")], []),
    ([sft("a", PASSWORD, split="train"), sft("b", PASSWORD_REORDERED, split="eval")], [], [("a", "b")]),
    ([sft("a", PASSWORD, split="train"), sft("b", PASSWORD, split="train")], [], []),   # same side: duplicate only
    ([sft("a", PASSWORD, split=None), sft("b", PASSWORD, split="eval")], [], []),       # unsplit: no side yet
    ([sft("a", PASSWORD, split="train"), sft("b", PASSWORD, split="eval", status="rejected")], [], []),
    ([sft("a", "Thủ đô là gì?", split="train"), sft("b", "Thủ đô là gí?", split="eval")], [], []),  # gì ≠ gí
])
def test_leakage_between_splits_of_one_dataset(rows, expected_exact, expected_near, hash_embedder):
    report = run_checks(rows, "sft", embed=hash_embedder)
    assert [f.record_ids for f in report.by_code("leakage") if f.severity == "error"] == expected_exact
    assert [f.record_ids for f in report.by_code("leakage") if f.severity == "warning"] == expected_near


def test_eval_side_records_are_not_checked_against_the_eval_set():
    rows = [sft("a", PASSWORD, split="eval"), sft("b", PASSWORD, split="train")]
    other = [sft("x", PASSWORD)]
    assert ids_of(run_checks(rows, "sft", eval_records=other), "leakage") == [("b", "x"), ("b", "a")]


# --- empty and invalid records -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, record, codes", [
    ("sft", {"prompt": "   ", "response": "ok"}, ["empty_field"]),
    ("sft", {"prompt": "Q", "response": "\n\t"}, ["empty_field"]),
    ("sft", {"prompt": "Q", "response": "A"}, []),
    ("sft", {"prompt": "Q", "response": "A", "status": "maybe"}, ["invalid"]),
    ("sft", {"prompt": "", "response": "A", "status": "maybe"}, ["invalid", "empty_field"]),
    ("preference", {"prompt": "Q", "chosen": "good", "rejected": " "}, ["empty_field"]),
    ("chat", {"messages": [{"role": "user", "content": "Chào"}]}, ["invalid"]),
    ("chat", {"messages": [{"role": "user", "content": "Chào"}, {"role": "assistant", "content": "  "}]},
     ["empty_field"]),
    ("chat", {"messages": []}, ["empty_field"]),
    ("eval", {"question": "Q"}, ["invalid"]),                    # no reference and no expected call
    ("eval", {"question": "Q", "expected_call": {"name": "f"}}, []),
    ("sft", {"prompt": " ", "response": "", "status": "rejected"}, []),   # rejected: ignored
])
def test_empty_and_invalid_records(kind, record, codes):
    report = run_checks([{"id": "r", **record}], kind)
    problems = [f for f in report.findings if f.code in ("empty_field", "invalid")]
    assert sorted(f.code for f in problems) == sorted(codes)
    assert all(f.severity == "error" and f.record_ids == ("r",) for f in problems)
    for finding in problems:  # the problem messages from records.problems are carried, as Msgs
        assert finding.message.params["problems"] and all(isinstance(p, Msg) for p in finding.message.params["problems"])
    if codes:
        assert not report.ok


def test_invalid_records_are_left_out_of_duplicates_and_the_count():
    rows = [sft("a", "  ", "x"), sft("b", "", "x"), sft("c", "q", "r")]
    report = run_checks(rows, "sft", purpose="fewshot")
    assert report.by_code("exact_duplicate") == []
    assert report.usable == 1 and report.record_ids == ["a", "b", "c"]
    assert report.input_lengths == [2, 0, 1]  # raw text is measured, spaces included


# --- lengths and the context window ---------------------------------------------------------------------------

def test_lengths_in_characters_without_a_tokenizer():
    rows = [sft("a", "Xin chào", "Chào bạn!"), sft("b", "Hi", ""), sft("c", "gone", "x", status="rejected")]
    report = run_checks(rows, "sft")
    assert report.length_unit == "characters"
    assert report.input_lengths == [8, 2] and report.output_lengths == [9, 0]
    assert report.record_ids == ["a", "b"]
    assert report.by_code("too_long") == []


def test_token_lengths_and_rows_longer_than_the_context_window(tiny_backend):
    count = tiny_backend("llama").count_tokens
    rows = [sft("short", "Xin chào", "Chào bạn."),
            sft("long", "Thủ đô của Việt Nam là gì? " * 8, "Thủ đô của Việt Nam là Hà Nội. " * 8),
            sft("gone", "x " * 500, "y " * 500, status="rejected")]
    sizes = [(count(r["prompt"]), count(r["response"])) for r in rows[:2]]
    assert sizes[0] != (len("Xin chào"), len("Chào bạn."))   # really tokens, not characters
    report = run_checks(rows, "sft", count_tokens=count)
    assert report.length_unit == "tokens"
    assert list(zip(report.input_lengths, report.output_lengths)) == sizes
    total = sum(sizes[1])
    for window, expected in [(total, []), (total - 1, [("long",)]), (sum(sizes[0]) - 1, [("short",), ("long",)]),
                             (None, [])]:
        found = run_checks(rows, "sft", count_tokens=count, context_window=window).by_code("too_long")
        assert [f.record_ids for f in found] == expected, window
        for finding in found:
            assert finding.severity == "warning"
            assert finding.message.params["window"] == window and "truncated" in finding.message
    long = run_checks(rows, "sft", count_tokens=count, context_window=total - 1).by_code("too_long")[0]
    assert long.message.params["tokens"] == total and str(total) in long.message


def test_no_too_long_check_without_token_counts():
    rows = [sft("a", "word " * 1000, "x")]
    assert run_checks(rows, "sft", context_window=10).by_code("too_long") == []


# --- labels --------------------------------------------------------------------------------------------------

def labelled(counts: dict[str, int]) -> list[dict]:
    rows = []
    for label, n in counts.items():
        rows += [sft(f"{label}-{i}", f"review {label} number {i}", label) for i in range(n)]
    return rows


@pytest.mark.parametrize("counts, expected_counts, flagged", [
    ({"positive": 30, "negative": 30}, {"negative": 30, "positive": 30}, []),
    ({"positive": 40, "negative": 8}, {"positive": 40, "negative": 8}, []),                  # exactly 1/5
    ({"positive": 40, "negative": 7}, {"positive": 40, "negative": 7}, ["negative"]),        # 7 < 40/5
    ({"positive": 25, "negative": 5}, {"positive": 25, "negative": 5}, []),                  # 1/5 and 5 examples
    ({"tích cực": 12, "tiêu cực": 12, "trung lập": 3}, {"tích cực": 12, "tiêu cực": 12, "trung lập": 3},
     ["trung lập"]),                                                                         # fewer than 5
    ({"a": 20, "b": 20, "c": 20, "d": 1}, {"a": 20, "b": 20, "c": 20, "d": 1}, ["d"]),
])
def test_label_balance(counts, expected_counts, flagged):
    rows = labelled(counts)
    report = run_checks(rows, "sft")
    assert report.label_counts == expected_counts
    assert list(report.label_counts.values()) == sorted(report.label_counts.values(), reverse=True)
    found = report.by_code("label_imbalance")
    assert [f.message.params["label"] for f in found] == flagged
    for finding in found:
        label = finding.message.params["label"]
        assert finding.severity == "warning" and len(finding.record_ids) == counts[label]


def test_label_spellings_merge_and_a_typo_shows_as_a_rare_label():
    rows = labelled({"Positive": 20, "Negative": 20})
    rows += [sft("x1", "one more", "positive "), sft("x2", "typo", "Positve")]
    report = run_checks(rows, "sft")
    assert report.label_counts == {"Positive": 21, "Negative": 20, "Positve": 1}
    assert [f.record_ids for f in report.by_code("label_imbalance")] == [("x2",)]


@pytest.mark.parametrize("outputs", [
    ["Paris", "Seven days", "Hà Nội", "Blue", "42", "Yes", "No", "Maybe"],                # all distinct: QA
    ["The capital of France is Paris, a large city."] * 10 + ["No idea at all, sorry about that."] * 10,  # long
    [f"label {i}" for i in range(25)] * 4,                                                # too many labels
    ["yes"] * 30,                                                                         # one label only
    [],
])
def test_not_classification_like(outputs):
    assert classification_labels(outputs) is None
    rows = [sft(str(i), f"question {i}", o) for i, o in enumerate(outputs)]
    report = run_checks(rows, "sft")
    assert report.label_counts is None and report.by_code("label_imbalance") == []


def test_labels_for_fewshot_are_only_info():
    report = run_checks(labelled({"spam": 40, "ham": 4}), "sft", purpose="fewshot")
    assert [f.severity for f in report.by_code("label_imbalance")] == ["info"]


# --- too few examples ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("purpose, n, severity, advice_words", [
    ("training", 0, "error", "dozens to hundreds"),
    ("training", 9, "error", "dozens to hundreds"),
    ("training", 10, "warning", "dozens to hundreds"),
    ("training", 49, "warning", "dozens to hundreds"),
    ("training", 50, None, None),
    ("fewshot", 0, "error", "3 to 8"),
    ("fewshot", 1, "info", "3 to 8"),
    ("fewshot", 3, None, "3 to 8"),
    ("fewshot", 12, None, "3 to 8"),
    ("eval", 0, "error", None),
    ("eval", 8, "warning", "at least 20"),
    ("eval", 19, "warning", "at least 20"),
    ("eval", 20, None, None),
])
def test_too_few_examples_per_purpose(purpose, n, severity, advice_words):
    rows = filler(n) + [sft("gone", "rejected one", "x", status="rejected"), sft("bad", " ", "x")]
    report = run_checks(rows, "sft", purpose=purpose)
    found = report.by_code("too_few")
    assert [f.severity for f in found] == ([severity] if severity else [])
    if advice_words:
        assert any(advice_words in a for a in report.advice)
        assert all(isinstance(a, Msg) for a in report.advice)
    else:
        assert report.advice == []
    assert report.usable == n


def test_eval_noise_tells_how_much_one_question_moves_the_score():
    report = run_checks(filler(8), "sft", purpose="eval")
    assert report.by_code("too_few")[0].message.params["step"] == 12.5
    assert "12.5 percentage points" in report.by_code("too_few")[0].message


# --- report shape --------------------------------------------------------------------------------------------

def test_findings_are_sorted_and_deterministic(hash_embedder):
    rows = filler(3) + NEAR_ROWS + [sft("e", " ", "x")] + TRAIN_SET
    first = run_checks(rows, "sft", embed=hash_embedder, eval_records=EVAL_SET, eval_kind="eval")
    again = run_checks(list(rows), "sft", embed=hash_embedder, eval_records=EVAL_SET, eval_kind="eval")
    assert first.findings == again.findings and first.advice == again.advice
    ranks = [(checks.SEVERITIES.index(f.severity), checks.CODES.index(f.code)) for f in first.findings]
    assert ranks == sorted(ranks)
    assert {f.code for f in first.findings} >= {"empty_field", "leakage", "too_few", "exact_duplicate", "near_duplicate"}
    assert all(isinstance(f, Finding) and isinstance(f.message, Msg) and f.code in checks.CODES
               for f in first.findings)
    assert first.ok is False


def test_clean_dataset_is_ok():
    report = run_checks(filler(60), "sft")
    assert report.findings == [] and report.advice == [] and report.ok


@pytest.mark.parametrize("kwargs", [
    {"kind": "tweets"}, {"kind": "sft", "purpose": "fun"}, {"kind": "sft", "eval_kind": "nope", "eval_records": []},
    {"kind": "sft", "near_duplicate_threshold": 0}, {"kind": "sft", "near_duplicate_threshold": 1.5},
])
def test_bad_arguments(kwargs):
    kind = kwargs.pop("kind")
    with pytest.raises(StudioError) as caught:
        run_checks(filler(3), kind, **kwargs)
    assert isinstance(caught.value.args[0], Msg)
