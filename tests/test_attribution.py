"""Which passages an answer is drawn from (core.rag.attribution), as chat and the API server show it."""

from __future__ import annotations

from core import assistant
from core.fewshot import Budget
from core.rag.attribution import cited, supporting
from core.rag.store import Hit

PASSAGES = ["Orders ship within two business days from our Lyon warehouse.",
            "The shop is open Monday to Saturday, 9:00 to 18:00.",
            "Returns are accepted within 30 days with the receipt."]


def test_cited_numbers_are_kept_in_order_and_out_of_range_ones_dropped():
    assert cited("Open Monday to Saturday [2], see also [1] and [2].", 3) == [2, 1]
    assert cited("See [7] and [0].", 3) == []
    assert supporting("As [3] says, within 30 days.", PASSAGES) == [3]


def test_an_uncited_answer_is_drawn_from_the_passage_holding_its_words():
    assert supporting("Within two business days.", PASSAGES) == [1]
    assert supporting("monday to saturday", PASSAGES) == [2]  # case and punctuation aside
    assert supporting("We sell electric scooters in Berlin.", PASSAGES) == []
    assert supporting("", PASSAGES) == [] and supporting("Yes.", []) == []


def test_a_passage_must_hold_most_of_the_answer():
    answer = "Orders ship from Paris by express courier overnight."  # 2 of 8 words in passage 1
    assert supporting(answer, PASSAGES) == []


def test_source_dicts_say_which_passage_supports_the_answer():
    hits = [Hit(f"c{i}", f"d{i}", f"doc{i}.md", 0, "", text, 1.0, 0.5) for i, text in enumerate(PASSAGES)]
    budget = Budget(2048, 10, (), 5, 64, 0, False)
    prepared = assistant.PreparedPrompt(prompt=None, examples=[], budget=budget, sources=tuple(hits), searched=True)
    assert all("supports" not in s for s in assistant.source_dicts(prepared))
    marked = assistant.source_dicts(prepared, "Returns are accepted within 30 days.")
    assert [s["supports"] for s in marked] == [False, False, True]
