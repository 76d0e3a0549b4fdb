"""Eval metrics on literal examples: Unicode-aware text scores (Vietnamese kept), every tool-call shape a small
model writes, retrieval scores on hand-ranked lists, semantic similarity with a fake embedder, and which
metrics apply to which records."""

from __future__ import annotations

import dataclasses
import math
import unicodedata

import numpy as np
import pytest

from core.evaluate.metrics import (
    METRICS, aggregate, applicable_metrics, contains_reference, exact_match, normalize_answer, parse_tool_calls,
    rouge_l, same_arguments, score_answer, semantic_similarity, token_f1, tool_call_scores, valid_json,
)
from core.rag.metrics import hit_at_k, ndcg_at_k, recall_at_k, reciprocal_rank

SHOP_OPENS = "Cửa hàng mở cửa lúc 9 giờ."


# ---- text ----

@pytest.mark.parametrize("text, expected", [
    ("Hà Nội!", "hà nội"),
    ("HÀ NỘI", "hà nội"),
    ("Đà Nẵng", "đà nẵng"),
    (unicodedata.normalize("NFD", "Hà Nội"), "hà nội"),
    ("«Xin chào» — bạn?", "xin chào bạn"),
    ("The  Price, is: 5€.", "price is 5€"),
    ("An apple a day", "apple day"),
    ("theater another", "theater another"),
    ("1,000", "1000"),
    ("  \n\t ", ""),
    ("", ""),
    (None, ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("prediction, reference, expected", [
    (SHOP_OPENS, "cửa hàng mở cửa lúc 9 giờ", 1.0),
    ("Hà Nội", "Ha Noi", 0.0),
    ("the answer", "Answer!", 1.0),
    ("9 giờ", "10 giờ", 0.0),
    ("", "", 1.0),
    ("", "x", 0.0),
])
def test_exact_match(prediction, reference, expected):
    assert exact_match(prediction, reference) == expected


@pytest.mark.parametrize("prediction, reference, expected", [
    (SHOP_OPENS, "cửa hàng mở cửa lúc 9 giờ", 1.0),
    ("Cửa hàng mở cửa lúc 9 giờ", "Cửa hàng mở cửa lúc 10 giờ", 6 / 7),
    ("Hà Nội", "Hà Nam", 0.5),
    ("Ha Noi", "Hà Nội", 0.0),
    ("giờ mở cửa", "cửa hàng mở cửa lúc 9 giờ", 0.6),  # P = 1, R = 3/7
    ("red red blue", "red green", 0.4),  # a repeated word counts once against one in the reference
    ("The cat", "a cat!", 1.0),
    ("", "", 1.0),
    ("", "abc", 0.0),
    ("abc", "", 0.0),
])
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize("prediction, reference, expected", [
    ("Chúng tôi mở cửa lúc 9 giờ sáng.", "9 giờ", 1.0),
    ("mở cửa lúc 19 giờ", "9 giờ", 0.0),
    ("giờ 9", "9 giờ", 0.0),
    ("The store is in Hà Nội, Việt Nam.", "hà nội", 1.0),
    ("The store is in Ha Noi.", "Hà Nội", 0.0),
    ("anything", "", 0.0),
    ("", "x", 0.0),
])
def test_contains_reference(prediction, reference, expected):
    assert contains_reference(prediction, reference) == expected


@pytest.mark.parametrize("prediction, reference, expected", [
    ("cửa hàng đóng cửa lúc 10 giờ", SHOP_OPENS, 5 / 7),  # LCS: cửa hàng cửa lúc giờ
    ("Hà Nội", "Hà Nam", 0.5),  # rouge-score's own tokenizer would split "Hà Nội" into h/n/i and give 0.4
    ("mèo đen", "mèo trắng đen", 0.8),  # P = 1, R = 2/3
    ("đóng mở", "mở đóng", 0.5),
    ("the cat sat on mat", "The cat is on the mat.", 0.75),
    ("running", "run", 0.0),  # no stemming
    (SHOP_OPENS, SHOP_OPENS.upper(), 1.0),
    ("", "abc", 0.0),
])
def test_rouge_l(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)


# ---- JSON and tool calls ----

@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', 1.0),
    ("[1, 2]", 1.0),
    ('  {"a": 1}  \n', 1.0),
    ('```json\n{"a": 1}\n```', 1.0),
    ('```JSON\n{"tên": "Hà Nội"}\n```', 1.0),
    ("```\n[1]\n```", 1.0),
    ('"text"', 0.0),
    ("42", 0.0),
    ('{"a": 1', 0.0),
    ("{'a': 1}", 0.0),
    ('Here: {"a": 1}', 0.0),
    ('```json\n{"a": 1}\n``` and more', 0.0),
    ("", 0.0),
])
def test_valid_json(text, expected):
    assert valid_json(text) == expected


BIKE = {"name": "get_price", "arguments": {"item": "bike"}}


@pytest.mark.parametrize("text, expected", [
    ('{"name": "get_price", "arguments": {"item": "bike"}}', [BIKE]),
    ('{"name": "get_price", "parameters": {"item": "bike"}}', [BIKE]),
    ('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]',
     [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]),
    ('{"tool_calls": [{"id": "call_1", "type": "function", '
     '"function": {"name": "get_price", "arguments": "{\\"item\\": \\"bike\\"}"}}]}', [BIKE]),
    ('{"tool_calls": [{"function": {"name": "get_price", "arguments": {"item": "bike"}}}]}', [BIKE]),
    ('{"function_call": {"name": "get_price", "arguments": "{\\"item\\": \\"bike\\"}"}}', [BIKE]),
    ('<tool_call>\n{"name": "get_price", "arguments": {"item": "bike"}}\n</tool_call>', [BIKE]),
    ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n<tool_call>{"name": "b", "arguments": {}}</tool_call>',
     [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]),
    ('<tool_call>\n{"name": "get_price", "arguments": {"item": "bike"}}', [BIKE]),  # closing tag never written
    ('Here is the call:\n```json\n{"name": "get_price", "arguments": {"item": "bike"}}\n```', [BIKE]),
    ('I will look it up. {"name": "get_price", "arguments": {"item": "bike {red}"}} Done.',
     [{"name": "get_price", "arguments": {"item": "bike {red}"}}]),
    ('Options {"color": "red"} [1] then {"name": "get_price", "arguments": {"item": "bike"}}', [BIKE]),
    ('{"name": "giá", "arguments": {"món": "xe đạp"}}', [{"name": "giá", "arguments": {"món": "xe đạp"}}]),
    ('{"name": "now", "arguments": null}', [{"name": "now", "arguments": {}}]),
    ('{"name": "now"}', [{"name": "now", "arguments": {}}]),
    ('{"name": "now", "arguments": ""}', [{"name": "now", "arguments": {}}]),
    ('{"name": "f", "arguments": "item=bike"}', [{"name": "f", "arguments": "item=bike"}]),  # kept, will not match
    ("The price is 5 dollars.", []),
    ('{"answer": 42}', []),
    ('{"name": "", "arguments": {}}', []),
    ("[1, 2]", []),
    ("<tool_call>not json</tool_call>", []),
    ("", []),
])
def test_parse_tool_calls(text, expected):
    assert parse_tool_calls(text) == expected


@pytest.mark.parametrize("got, want, expected", [
    ({"a": {"b": [1, "X."]}}, {"a": {"b": ["1", "x"]}}, True),
    ("2", 2, True),
    (2.0, 2, True),
    ("2.0", 2, True),
    ("007", "7", False),  # two strings stay strings
    ("two", 2, False),
    ([1, 2], [2, 1], False),
    (True, "true", True),
    (True, 1, False),
    (None, None, True),
    (None, "", False),
    ({"a": 1}, [1], False),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ("Xe Đạp", "xe đạp", True),
    ("xe dap", "xe đạp", False),
])
def test_same_arguments(got, want, expected):
    assert same_arguments(got, want) is expected


PRICE_CALL = {"name": "get_price", "arguments": {"item": "Xe đạp", "quantity": 2}}


@pytest.mark.parametrize("prediction, expected_call, name_score, args_score", [
    ('{"name": "get_price", "arguments": {"item": "Xe đạp", "quantity": 2}}', PRICE_CALL, 1, 1),
    ('{"name": "get_price", "arguments": {"item": "xe đạp.", "quantity": "2"}}', PRICE_CALL, 1, 1),
    ('{"name": "get_price", "arguments": {"quantity": 2.0, "item": "xe đạp"}}', PRICE_CALL, 1, 1),
    ('<tool_call>{"name": "get_price", "parameters": {"item": "xe đạp", "quantity": 2}}</tool_call>',
     PRICE_CALL, 1, 1),
    ('{"tool_calls": [{"function": {"name": "get_price", '
     '"arguments": "{\\"item\\": \\"xe đạp\\", \\"quantity\\": \\"2\\"}"}}]}', PRICE_CALL, 1, 1),
    ('{"name": "get_stock", "arguments": {"item": "Xe đạp", "quantity": 2}}', PRICE_CALL, 0, 0),
    ('{"name": "get_price", "arguments": {"item": "Xe đạp", "quantity": 2, "color": "red"}}', PRICE_CALL, 1, 0),
    ('{"name": "get_price", "arguments": {"item": "Xe đạp"}}', PRICE_CALL, 1, 0),
    ('{"name": "get_price", "arguments": {"item": "Xe đạp", "quantity": 3}}', PRICE_CALL, 1, 0),
    ('{"name": "get_price", "arguments": {"item": "xe dap", "quantity": 2}}', PRICE_CALL, 1, 0),
    ('{"name": "get_price", "arguments": "item=xe đạp"}', PRICE_CALL, 1, 0),
    ('[{"name": "search", "arguments": {}}, {"name": "get_price", "arguments": {"item": "Xe đạp", "quantity": 2}}]',
     PRICE_CALL, 0, 0),
    ("Xin lỗi, tôi không biết.", PRICE_CALL, 0, 0),
    ('{"name": "now"}', {"name": "now"}, 1, 1),
    ('{"name": "now", "arguments": {"tz": "UTC"}}', {"name": "now"}, 1, 0),
])
def test_tool_call_scores(prediction, expected_call, name_score, args_score):
    assert tool_call_scores(prediction, expected_call) == {"tool_name": name_score, "tool_args": args_score}


# ---- retrieval ----

RANKED = ["c1", "c2", "c3", "c4", "c5"]
INV_LOG2_3 = 0.6309297535714575  # 1 / log2(3), the discount at rank 2


@pytest.mark.parametrize("retrieved, gold, k, hit, recall, rr, ndcg", [
    (RANKED, ["c3"], 1, 0.0, 0.0, 1 / 3, 0.0),
    (RANKED, ["c3"], 3, 1.0, 1.0, 1 / 3, 0.5),  # 1/log2(4)
    (RANKED, ["c3"], 5, 1.0, 1.0, 1 / 3, 0.5),
    (RANKED, ["c2", "c4"], 3, 1.0, 0.5, 0.5, INV_LOG2_3 / (1 + INV_LOG2_3)),
    (RANKED, ["c2", "c4"], 5, 1.0, 1.0, 0.5, 0.6509209298071326),  # (1/log2 3 + 1/log2 5) / (1 + 1/log2 3)
    (RANKED, ["c1", "c2", "c3"], 2, 1.0, 2 / 3, 1.0, 1.0),  # ideal DCG over min(3, 2) ranks
    (RANKED, ["x"], 5, 0.0, 0.0, 0.0, 0.0),
    ([], ["c1"], 5, 0.0, 0.0, 0.0, 0.0),
    (RANKED, [], 5, 0.0, 0.0, 0.0, 0.0),
    # Items named by chunk id and document: three chunks of one gold document are one hit, not three.
    ([("c1", "a.pdf"), ("c2", "price-list.csv"), ("c3", "price-list.csv"), ("c4", "price-list.csv")],
     ["price-list.csv"], 5, 1.0, 1.0, 0.5, INV_LOG2_3),
    (["c9", {"c1", "faq.md"}], ["faq.md", "c9"], 2, 1.0, 1.0, 1.0, 1.0),
    ([["c1", "a.pdf"]], ["c1", "a.pdf"], 1, 1.0, 1.0, 1.0, 1.0),
])
def test_retrieval_metrics(retrieved, gold, k, hit, recall, rr, ndcg):
    assert hit_at_k(retrieved, gold, k) == hit
    assert recall_at_k(retrieved, gold, k) == pytest.approx(recall)
    assert reciprocal_rank(retrieved, gold) == pytest.approx(rr)
    assert ndcg_at_k(retrieved, gold, k) == pytest.approx(ndcg)


@pytest.mark.parametrize("metric", [hit_at_k, recall_at_k, ndcg_at_k])
def test_k_must_be_positive(metric):
    with pytest.raises(ValueError):
        metric(RANKED, ["c1"], 0)


# ---- semantic similarity ----

def bag_of_characters(texts: list[str]) -> np.ndarray:
    vectors = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for ch in text.lower():
            if not ch.isspace():
                vectors[row, ord(ch) % 64] += 1
    return vectors


@pytest.mark.parametrize("prediction, reference, expected", [
    ("hà nội", "Hà Nội", 1.0),
    ("ab", "ba", 1.0),
    ("ab", "cd", 0.0),
    ("aab", "ab", 0.9486832980505138),  # 3 / sqrt(10)
    ("", "ab", 0.0),
    ("  ", "ab", 0.0),
    ("ab", "", 0.0),
])
def test_semantic_similarity(prediction, reference, expected):
    assert semantic_similarity([prediction], [reference], bag_of_characters) == [pytest.approx(expected)]


def test_semantic_similarity_embeds_once_and_clips():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.array([{"up": [1.0, 0.0], "down": [-1.0, 0.0], "zero": [0.0, 0.0]}[t] for t in texts])

    scores = semantic_similarity(["up", "", "down", "zero"], ["up", "up", "up", "up"], embed)
    assert scores == [pytest.approx(1.0), 0.0, 0.0, 0.0]
    assert calls == [["up", "down", "zero", "up", "up", "up"]]  # one batch, empty pairs left out
    assert semantic_similarity(["", ""], ["a", "b"], embed) == [0.0, 0.0] and len(calls) == 1
    with pytest.raises(ValueError):
        semantic_similarity(["a"], [], embed)


# ---- registry, applicability, aggregation ----

def test_registry():
    assert list(METRICS) == ["exact_match", "token_f1", "rouge_l", "semantic_similarity", "contains_reference",
                             "valid_json", "tool_name", "tool_args", "hit_at_k", "mrr", "answer_in_passages", "judge",
                             "win_rate", "latency_s", "prompt_tokens", "output_tokens", "weights_mb"]
    for name, metric in METRICS.items():
        assert metric.name == name and metric.label and metric.help.endswith(".")
        assert metric.needs in ("reference", "short_reference", "expected_call", "gold_ids", "judge", "win",
                                "nothing")
        assert metric.kind in ("answer", "retrieval", "cost")
        assert metric.higher_is_better is (metric.kind != "cost")
    assert {n for n, m in METRICS.items() if m.kind == "retrieval"} == {"hit_at_k", "mrr", "answer_in_passages"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRICS["mrr"].label = "x"


TEXT_METRICS = {"exact_match", "token_f1", "rouge_l", "contains_reference"}
CALL = {"name": "get_price", "arguments": {"item": "bike"}}


@pytest.mark.parametrize("record, answer, retrieved, expected", [
    ({"question": "q", "reference": "Hà Nội"}, "Hà Nội.", None, dict.fromkeys(TEXT_METRICS, 1.0)),
    ({"question": "q", "reference": "Hà Nội"}, "Ha Noi", None, dict.fromkeys(TEXT_METRICS, 0.0)),
    ({"question": "q", "reference": '{"a": 1}'}, '{"a": 1}', None,
     {**dict.fromkeys(TEXT_METRICS, 1.0), "valid_json": 1.0}),
    ({"question": "q", "expected_call": CALL}, '{"name": "get_price", "arguments": {"item": "Bike"}}', None,
     {"valid_json": 1.0, "tool_name": 1.0, "tool_args": 1.0}),
    ({"question": "q", "expected_call": CALL}, '<tool_call>{"name": "get_price"}</tool_call>', None,
     {"valid_json": 0.0, "tool_name": 1.0, "tool_args": 0.0}),
    ({"question": "q", "reference": "  ", "gold_ids": ["c3"]}, "x", None, {}),
    ({"question": "q", "gold_ids": ["c3"]}, "x", RANKED, {"hit_at_k": 1.0, "mrr": 1 / 3}),
    ({"question": "q", "gold_ids": ["c3"]}, "x", [], {"hit_at_k": 0.0, "mrr": 0.0}),
    ({"question": "q"}, "x", RANKED, {}),
])
def test_score_answer(record, answer, retrieved, expected):
    assert score_answer(record, answer, retrieved) == pytest.approx(expected)


def test_score_answer_uses_k():
    record = {"question": "q", "gold_ids": ["c3"]}
    assert score_answer(record, "x", RANKED, k=2) == {"hit_at_k": 0.0, "mrr": pytest.approx(1 / 3)}


COST = ["latency_s", "prompt_tokens", "output_tokens", "weights_mb"]


@pytest.mark.parametrize("records, expected", [
    ([], []),
    ([{"question": "q"}], COST),
    ([{"question": "q", "reference": "r"}, {"question": "q2", "gold_ids": ["a.pdf"]}],
     ["exact_match", "token_f1", "rouge_l", "semantic_similarity", "contains_reference", "hit_at_k", "mrr",
      "answer_in_passages", *COST]),
    ([{"question": "q", "expected_call": CALL}], ["valid_json", "tool_name", "tool_args", *COST]),
    ([{"question": "q", "reference": "[1, 2]", "gold_ids": []}],
     ["exact_match", "token_f1", "rouge_l", "semantic_similarity", "contains_reference", "valid_json",
      "answer_in_passages", *COST]),
])
def test_applicable_metrics(records, expected):
    assert applicable_metrics(records) == expected


@pytest.mark.parametrize("rows, expected", [
    ([], {}),
    ([{"a": 1.0, "b": 0.0}, {"a": 0.0}, {"b": 1.0, "c": 0.5}], {"a": 0.5, "b": 0.5, "c": 0.5}),
    ([{"a": 1.0}, {"a": None}, {"a": math.nan}, {"a": 0.0}], {"a": 0.5}),
    ([{"latency_s": 2.0}, {"latency_s": 4.0}], {"latency_s": 3.0}),
])
def test_aggregate(rows, expected):
    assert aggregate(rows) == pytest.approx(expected)
