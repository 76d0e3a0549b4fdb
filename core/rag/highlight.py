"""Which parts of a passage match the words of a query (for highlighting search results)."""

from __future__ import annotations

import html
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


MARK_STYLE = "background-color: rgba(255, 164, 33, 0.3); border-radius: 0.2em; padding: 0 0.1em"


def highlight_html(text: str, query: str) -> str:
    """The passage as plain HTML, query words in <mark>. Nothing in it is read as markup (a link, `code`, an
    indented line or a tag in the document shows as written), and line breaks are kept."""
    out, last = [], 0
    for start, end in match_spans(text, query):
        out += [html.escape(text[last:start]), f'<mark style="{MARK_STYLE}">', html.escape(text[start:end]), "</mark>"]
        last = end
    body = "".join(out + [html.escape(text[last:])])
    # A line break inside a paragraph is the document's own wrapping (Markdown, text files): read it as a space;
    # blank lines part paragraphs, and list items keep their own lines.
    body = re.sub(r"(?<!\n)\n(?!\n|\s*(?:[-*•]|\d+[.)])\s)", " ", body)
    body = re.sub(r"\n{2,}", "<br><br>", body).replace("\n", "<br>")
    return f'<div style="overflow-wrap: anywhere">{body}</div>'
