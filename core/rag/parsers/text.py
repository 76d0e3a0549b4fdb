"""Plain text and Markdown (decoded with the project's encoding detection; binary data is refused).

TXT is one Section with its paragraphs (blank lines) kept. Markdown is cut at ATX headings (`#` … `######`)
into Sections with heading paths; text, lists and fenced code (fence lines included) are kept as written, and
a pipe table becomes one Section per row ("header: value; …"). Setext headings (underlined) stay text.
"""

from __future__ import annotations

import re

from .common import Outline, Section, clean_text, decode_text

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TABLE_RULE = re.compile(r" {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def read_txt(data: bytes, name: str, warnings: list) -> list[Section]:
    text = clean_text(decode_text(data, name, warnings))
    return [Section(text, None, ())] if text else []


def read_markdown(data: bytes, name: str, warnings: list) -> list[Section]:
    return markdown_sections(decode_text(data, name, warnings))


def table_cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(line)]


def markdown_sections(text: str, root: tuple[str, ...] = ()) -> list[Section]:
    outline = Outline(root)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fence, i = None, 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if fence:
            outline.text(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group(1)
            outline.text(line)
            continue
        heading = _ATX.fullmatch(line)
        if heading:
            outline.heading(len(heading.group(1)), heading.group(2) or "")
            continue
        if "|" in line and i < len(lines) and "|" in lines[i] and _TABLE_RULE.fullmatch(lines[i]):
            rows = [table_cells(line)]
            i += 1
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(table_cells(lines[i]))
                i += 1
            if len(rows) == 1:  # a header with no rows is just text
                outline.text(line)
            else:
                outline.table(rows)
            continue
        outline.text(line)
    return outline.done()
