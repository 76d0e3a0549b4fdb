"""Plain text and Markdown (decoded with the project's encoding detection; binary data is refused).

TXT is one Section with its paragraphs (blank lines) kept. Markdown is cut at ATX headings (`#` … `######`)
into Sections with heading paths; its lines, lists and fenced code (fence lines included) are kept, and a pipe
table becomes one Section per row ("header: value; …"). Setext headings (underlined) stay text. Outside code,
the inline syntax is read as a reader sees it (markdown-it-py, CommonMark): links and images become their text,
emphasis and code marks, HTML tags and comments go, and link reference definitions are left out.
"""

from __future__ import annotations

import re

from .common import Outline, Section, clean_text, decode_text

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TABLE_RULE = re.compile(r" {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_INLINE_SYNTAX = re.compile(r"[][*_`<>&\\!]")  # a line without these reads as written
_HIDDEN_HTML = re.compile(r"\s*<(!--|script|style)", re.IGNORECASE)


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


PIECE_CHARS = 2**19  # Markdown is parsed for its blocks in pieces of about this size, cut at a blank line


def _closes(fence: str, line: str) -> bool:
    """Whether `line` closes the code block `fence` ("```" or "~~~", at least as long) opened."""
    return line.strip().startswith(fence) and not line.strip().strip(fence[0])


def _pieces(lines: list[str]):
    """(first, end) line ranges of about PIECE_CHARS characters, each ending before a blank line outside fenced
    code, so no fence is cut in two."""
    first, size, fence = 0, 0, None
    for number, line in enumerate(lines):
        opening = _FENCE.match(line)
        if fence and _closes(fence, line):
            fence = None
        elif not fence and opening:
            fence = opening.group(1)
        size += len(line) + 1
        if size >= PIECE_CHARS and not fence and not line.strip():
            yield first, number + 1
            first, size = number + 1, 0
    if first < len(lines):
        yield first, len(lines)


class MarkdownInline:
    """Markdown's inline syntax as the text a reader sees, and the lines a reader never sees: link reference
    definitions ("[id]: https://…", which CommonMark reads as no block at all) and HTML comments, scripts and
    styles. Left in, links' addresses and "<!-- YAML … -->" notes fill passages with text nobody reads."""

    def __init__(self, text: str):
        from markdown_it import MarkdownIt

        self.md, self.env, self.hidden, self.code = MarkdownIt("commonmark"), {}, set(), set()
        # the blocks and link definitions only (inline content is parsed paragraph by paragraph in render()),
        # a piece at a time: the tokens of a whole 100 MB document would take gigabytes
        blocks_only = MarkdownIt("commonmark").disable(["inline", "text_join"])
        lines = text.split("\n")
        for first, last in _pieces(lines):
            try:
                blocks = [t for t in blocks_only.parse("\n".join(lines[first:last]), self.env)
                          if t.level == 0 and t.map]
            except Exception:  # a parser failure must not lose the document: this piece is read as written
                continue
            seen = set()
            for block in blocks:
                numbers = range(first + block.map[0], first + block.map[1])
                seen.update(numbers)
                if block.type == "html_block" and _HIDDEN_HTML.match(block.content):
                    self.hidden.update(numbers)
                elif block.type == "code_block":  # indented code reads as written
                    self.code.update(numbers)
            self.hidden.update(n for n in range(first, last) if n not in seen and lines[n].strip())

    def render(self, source: str) -> str:
        """`source` (lines of one paragraph) with links as their text, images as their alt text, no emphasis or
        code marks and no HTML tags (a <br> breaks the line); its line breaks are kept."""
        if not _INLINE_SYNTAX.search(source):
            return source
        try:
            children = self.md.parseInline(source, self.env)[0].children or []
        except Exception:
            return source
        parts = []
        for token in children:
            if token.type in ("softbreak", "hardbreak"):
                parts.append("\n")
            elif token.type == "html_inline":
                parts.append("\n" if re.fullmatch(r"<br\s*/?>", token.content, re.IGNORECASE) else "")
            elif token.type in ("text", "text_special", "code_inline", "image"):
                parts.append(token.content)  # an image's content is its alt text
        return "".join(parts)


def markdown_sections(text: str, root: tuple[str, ...] = ()) -> list[Section]:
    outline = Outline(root)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines, inline, prose = text.split("\n"), MarkdownInline(text), []

    def flush_prose() -> None:  # a paragraph's lines are rendered together: a link may span a line break
        for rendered in inline.render("\n".join(prose)).split("\n") if prose else ():
            outline.text(rendered)
        prose.clear()

    fence, i = None, 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if i - 1 in inline.hidden and not fence:
            flush_prose()  # a comment or a definition ends the paragraph before it
            continue
        if fence:
            outline.text(line)
            if _closes(fence, line):
                fence = None
            continue
        opening = _FENCE.match(line)
        heading = _ATX.fullmatch(line)
        table = "|" in line and i < len(lines) and "|" in lines[i] and _TABLE_RULE.fullmatch(lines[i])
        if opening or heading or table or not line.strip() or i - 1 in inline.code:
            flush_prose()
        if i - 1 in inline.code:
            outline.text(line)
        elif opening:
            fence = opening.group(1)
            outline.text(line)
        elif heading:
            outline.heading(len(heading.group(1)), inline.render(heading.group(2) or ""))
        elif table:
            rows = [table_cells(line)]
            i += 1
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(table_cells(lines[i]))
                i += 1
            if len(rows) == 1:  # a header with no rows is just text
                outline.text(inline.render(line))
            else:
                outline.table([[inline.render(cell) for cell in row] for row in rows])
        elif line.strip():
            prose.append(line)
        else:
            outline.text(line)
    flush_prose()
    return outline.done()
