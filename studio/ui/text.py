"""Showing text from documents, datasets and models as written: nothing in it is read as Markdown."""

from __future__ import annotations

MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!|<>$~"


def escape_markdown(text: str) -> str:
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in str(text))


def as_written(text: str) -> str:
    """Markdown that shows `text` as is, its line breaks kept."""
    return escape_markdown(text).replace("\n", "  \n")
