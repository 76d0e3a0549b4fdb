"""Answers that went into a loop: small models at greedy decoding can repeat a phrase, a list item or one
character until the token limit ("[1] (…) [2] (…) [3] (…)", "1000000000…"). Finding where the loop starts lets
the stream stop there and keep the text before it."""

from __future__ import annotations

import re

TAIL_CHARS = 800            # only the end of the text is searched: a loop shows at the end while it runs
MIN_LOOP_CHARS = 48         # a repeated stretch shorter than this is ordinary text ("ha ha ha", "1, 2, 3")
MIN_REPEATS = 3             # a unit seen this many times in a row is a loop
LONGEST_UNIT = 200
SAME_CHARACTER_RUN = 32     # "0000…" or "!!!!…": longer than any number or rule line
_NUMBER_END = re.compile(r"[-+$€£¥₫]?[\d.,]*$")  # the digits, separators and sign before a run of one digit


def loop_start(text: str) -> int | None:
    """Where the repetition at the end of `text` begins (the text before it keeps one copy of the repeated unit),
    or None when the end of the text is not a loop. Numbers count as equal, so "[1] (a) [2] (a) … [12] (a)" loops."""
    start = max(0, len(text) - TAIL_CHARS)
    raw = text[start:]
    run = re.search(r"(.)\1{%d,}$" % (SAME_CHARACTER_RUN - 1), raw, re.DOTALL)
    if run and run.group(1).isdigit():  # "1000000…" is no number: the whole of it goes ("10" read as an answer)
        return start + _NUMBER_END.search(raw[:run.start()]).start()
    if run:
        return start + run.start() + 1  # keep one of the characters
    tail, where = _numbers_as_one(raw)
    for unit in range(1, min(LONGEST_UNIT, len(tail) // MIN_REPEATS) + 1):
        repeats = 1
        while tail.endswith(tail[-unit:] * (repeats + 1)):
            repeats += 1
        if repeats >= MIN_REPEATS and unit * repeats >= MIN_LOOP_CHARS:
            first = len(tail) - unit * repeats  # where the first whole copy of the unit begins
            return start + where[first + unit]
    return None


def _numbers_as_one(text: str) -> tuple[str, list[int]]:
    """The text with every run of digits written as one "0", and for each of its characters (and its end) the
    position it came from."""
    out, where = [], []
    for match in re.finditer(r"\d+|\D", text):
        out.append("0" if match.group()[0].isdigit() else match.group())
        where.append(match.start())
    where.append(len(text))
    return "".join(out), where


def cut_loop(text: str) -> tuple[str, bool]:
    """(the text without the loop at its end, whether one was cut)."""
    found = loop_start(text)
    return (text[:found].rstrip(), True) if found is not None else (text, False)
