"""Which passages an answer comes from. Small models rarely write the [1] they are asked for, so the studio
attributes after the fact: the passages the answer cites, else those that hold most of its words."""

from __future__ import annotations

import re
import unicodedata

CITATION = re.compile(r"\[(\d{1,2})\]")
MIN_COVERAGE = 0.6  # share of the answer's words a passage must hold to count as its source


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", (text or "").casefold())
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return text.split()


def cited(answer: str, count: int) -> list[int]:
    """The passage numbers (1-based, at most `count`) the answer cites as [n], in the order first cited."""
    found: list[int] = []
    for match in CITATION.finditer(answer or ""):
        number = int(match.group(1))
        if 1 <= number <= count and number not in found:
            found.append(number)
    return found


def supporting(answer: str, passages: list[str]) -> list[int]:
    """Numbers of the passages the answer is drawn from: the ones it cites when it cites any, else the passage(s)
    holding the largest share of the answer's words when that share is at least MIN_COVERAGE. Empty when the
    answer is not drawn from any of them."""
    numbers = cited(answer, len(passages))
    if numbers:
        return numbers
    words = set(_words(CITATION.sub(" ", answer or "")))
    if not words:
        return []
    coverage = [len(words & set(_words(text))) / len(words) for text in passages]
    best = max(coverage, default=0.0)
    if best < MIN_COVERAGE:
        return []
    return [number for number, share in enumerate(coverage, start=1) if share == best]
