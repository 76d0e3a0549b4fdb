"""Looping answers are cut where the loop starts; ordinary text, numbers and lists are left alone."""

from __future__ import annotations

import time

import pytest

from core.models.degenerate import cut_loop, loop_start
from core.models.generation import GenerationStream


@pytest.mark.parametrize("text, kept", [
    ("The answer is 1" + "0" * 60, "The answer is"),  # a runaway number goes whole: "10" would read as an answer
    ("It costs $2,5" + "5" * 40, "It costs"),
    ("1" + "0" * 60, ""),
    ("Sources: " + "".join(f"[{n}] (users-and-groups.html — Users) " for n in range(1, 12)),
     "Sources: [1] (users-and-groups.html — Users)"),
    ("We are open. " + "It opens at nine. " * 7, "We are open. It opens at nine."),
    ("Yes!" + "!" * 40, "Yes!"),
])
def test_a_loop_at_the_end_is_cut_keeping_one_copy(text, kept):
    cut, found = cut_loop(text)
    assert found and cut == kept.rstrip()


@pytest.mark.parametrize("text", [
    "The shop opens at nine and closes at six, Monday to Saturday.",
    "Call 1 800 000 0000 or write to us.",
    "1. Remove the wheel.\n2. Check the tyre.\n3. Refit the wheel.",
    "ha ha ha",
    "A table:\n|---|---|\n| a | b |",
    "The population grew from 1,000,000 in 1900 to 3,500,000 in 2000.",
])
def test_ordinary_text_is_not_a_loop(text):
    assert loop_start(text) is None


def test_a_streamed_answer_stops_at_a_loop():
    pieces = ["We open at nine."] + [" [1] (hours.md — Opening hours)"] * 40
    emitted = {"count": 0}

    def produce(emit, cancel):
        for piece in pieces:
            if cancel.is_set():
                break
            emit(piece)
            emitted["count"] += 1
            time.sleep(0.01)  # as a model takes time per token
        return 10, len(pieces)

    stream = GenerationStream(produce, (), 200)
    stream.run_to_end()
    assert stream.stopped_by == "repetition"
    assert stream.text == "We open at nine. [1] (hours.md — Opening hours)"
    assert emitted["count"] < len(pieces)  # the model was stopped, not left to run to its limit
