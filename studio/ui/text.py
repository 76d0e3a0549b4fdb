"""Showing text from documents, datasets and models as written: nothing in it is read as Markdown."""

from __future__ import annotations

from studio.ui.i18n import t

MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!|<>$~"


def escape_markdown(text: str) -> str:
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in str(text))


def as_written(text: str) -> str:
    """Markdown that shows `text` as is, its line breaks kept."""
    return escape_markdown(text).replace("\n", "  \n")


def where_from(source: str, page: int | None, heading: str) -> str:
    """Where a passage comes from: "manual.pdf · page 8 · Brakes" ("slide 3" in a PowerPoint deck)."""
    place = ""
    if page:
        place = t("slide {page}", page=page) if str(source).lower().endswith(".pptx") else t("page {page}", page=page)
    return " · ".join(str(x) for x in (source, place, heading) if x)
