"""Which parts of a passage match the words of a query (for highlighting search results)."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)
# Function words match almost every passage; marking them hides the words that explain a hit.
COMMON = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its my of on or our the to was "
    "we what when where which who why will with you your "
    "bạn các có của cho để được gì không là làm lúc mà một này nào những như sao thì trong từ và về với"
    .split())


def match_spans(text: str, query: str, min_length: int = 2) -> list[tuple[int, int]]:
    """(start, end) of every word in `text` equal, ignoring case, to a telling query word. Diacritics count:
    'bán' does not match 'bạn', as in the full-text index."""
    wanted = {w.casefold() for w in WORD.findall(query) if len(w) >= min_length} - COMMON
    return [(m.start(), m.end()) for m in WORD.finditer(text) if m.group().casefold() in wanted]
