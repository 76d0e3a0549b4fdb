"""PDF with pypdf: the text of each page, with its 1-based page number, under the headings it follows.

Headings are told by their size, as PDF-to-Markdown tools do: a line or two printed clearly larger than the body
text (the size most characters have) is a heading, the largest size level 1. Three or more such lines in a row are
a lead paragraph or a title page's names, and a table of contents' lines (dot leaders) are not headings. A short
line all in bold at the body's size, standing alone before text that is not bold, is a heading below those
("Walk assist", a Word document's "Heading 3"). Those lines
(and an index's) are left out: they say where a heading's text is, and keyword search would find them for it.

A PDF's text layer breaks every wrapped line and rarely marks where a paragraph ends. Lines as wide as the
document's text are joined with the next, and a shorter line that ends a sentence ends its paragraph, so the
chunker sees sentences and paragraphs as the reader does (lines of lists, tables and headings stay lines). A list
stays one paragraph from the line that introduces it to its last item, even where its items end sentences or the
page spaces them apart.
Typeset ligatures ("ﬁ") become their letters. A sentence that a page break cuts is finished on the page it
starts on.

A table (a block of lines whose cells line up in columns, `pdf_tables`) becomes one section per row,
"header: value; …", as tables in Word documents and web pages do; other tables come through as lines. A PDF
locked with a user password cannot be read (one that only has an owner password, which restricts printing or
copying, opens with the empty password). Pages are never OCR'd: a page with no text layer is left out with a
notice, and a PDF with no text at all is refused.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from dataclasses import dataclass

from core.errors import DocumentError
from core.i18n import Msg

from .common import (CITATION_MARK, MIN_PROSE_WIDTH, Outline, Section, abbreviation_at, clean_text, drop_controls,
                     goes_on_with, introduces_list, list_marker, reason, text_width, wraps_into)
from .pdf_tables import LEADER, ROW_MARK, line_key, replace_tables, row_of

MAX_LISTED_PAGES = 20
_PAGE_NUMBER = re.compile(r"(page\s*)?[-–—]?\s*\d{1,4}\s*[-–—]?(\s*(of|/)\s*\d{1,4})?", re.IGNORECASE)
# a table of contents' or an index's line: where something is, which search would find instead of the thing
_CONTENTS_LINE = re.compile(LEADER.pattern + r"\s*(\d{1,4}|[ivxlc]{1,7})\s*$")
_ROMAN_PAGE_NUMBER = re.compile(r"[ivxlc]{1,7}")  # front matter's pages: "iv"
# a running head's page number: "12 Installing" on a left page, "Installing 13" on a right one
_EDGE_NUMBER = re.compile(r"^(\d{1,4})\s+[^\W\d_]|[^\W\d_][\w.)]*:?\s+(\d{1,4})$")
RUNNING_HEAD_PAGES = 3
_LAST_WORD = re.compile(r"\w*$")
_FIRST_WORD = re.compile(r"\w*")
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
_ENDS_SENTENCE = re.compile(r"[.!?:;…。！？](?:[\"'”’»)\]]|" + CITATION_MARK + r")*$")
_STOP_THEN_SPACE = re.compile(r"[.!?…](?:[\"'”’»)\]]|" + CITATION_MARK + r")*\s+[\"“‘'(\[]?(.)")
MAX_CARRIED_LINES = 8  # a sentence cut by a page break rarely runs on longer than this on the next page
HEADING_MARK = "\ue002"  # starts a heading's line, then its level digit, until the page is cut into sections
HEADING_SCALE = 1.15  # a line printed this much larger than the body text is a heading
MAX_HEADING_LINES = 2  # a heading wraps onto a second line at most
MAX_HEADING_WORDS = 20
MAX_HEADING_LEVEL = 9
MAX_BOLD_HEADING_WORDS = 8
_BOLD_FONT = re.compile(r"bold|black|heavy|demi|semibold", re.IGNORECASE)


def page_list(pages: list[int]) -> str:
    shown = ", ".join(map(str, pages[:MAX_LISTED_PAGES]))
    return shown + (", …" if len(pages) > MAX_LISTED_PAGES else "")


def unreadable(name: str, why: str) -> DocumentError:
    return DocumentError(Msg("{file} could not be read as a PDF ({reason}).", file=name, reason=why))


def open_pdf(data: bytes, name: str):
    import pypdf
    from pypdf.errors import DependencyError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError:
                raise DocumentError(Msg("{file} is encrypted in a way that needs the 'cryptography' package, which "
                                        "is not installed; remove the encryption and upload it again.",
                                        file=name)) from None
            if not opened:
                raise DocumentError(Msg("{file} is password-protected; remove the password and upload it again.",
                                        file=name))
        pages = list(reader.pages)
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many kinds (stream, xref, key, value errors) for a damaged file
        raise unreadable(name, reason(exc)) from None
    if not pages:
        raise unreadable(name, "no pages")
    return pages


def drop_page_furniture(texts: list[str], numbers: list[int] | None = None) -> list[str]:
    """The pages without their running headers and footers: a page number alone ("12", "Page 3 of 9", "- 4 -")
    as a page's first or last line, a first or last line that at least half the pages (three or more) have
    alike, numbers aside, and that does not end a sentence, and a running head that carries the printed page
    number ("Chapter 2: Installing 17"), told by that number running with the page's own (`numbers`, 1-based) on
    three or more pages, however often its words change. The page number is kept with each passage anyway; left
    in, it would join a page's last sentence and stand as a "sentence" of its own under the document's title."""
    numbers = numbers or list(range(1, len(texts) + 1))
    for _ in range(3):  # a header and a footer can both end a page's text: peel off one edge line per round
        cleaned = _drop_edge_lines(texts, numbers)
        if cleaned == texts:
            break
        texts = cleaned
    return texts


def _edge_number(line: str) -> int | None:
    match = _EDGE_NUMBER.search(line.strip())
    return int(match.group(1) or match.group(2)) if match else None


def _drop_edge_lines(texts: list[str], numbers: list[int]) -> list[str]:
    def key(line: str) -> str:  # numbers aside, except in a heading: "Day 1", "Day 2" head pages of their own
        text = " ".join(line.lower().split())
        return text if line.startswith(HEADING_MARK) else re.sub(r"\d+", "#", text)

    def label(line: str) -> bool:  # a running header or footer is a label: "Section 2 ends here." stays
        return not line.startswith(ROW_MARK) and not _ENDS_SENTENCE.search(line.rstrip())

    def numbered_head(line: str) -> bool:  # a heading's own number ("1 Introduction") is no page number
        return label(line) and not line.startswith(HEADING_MARK) and _edge_number(line) is not None

    edges = [_edge_lines(text.splitlines()) for text in texts]
    seen: dict[str, int] = {}
    offsets: Counter = Counter()
    for lines, number in zip(edges, numbers):
        for found in {key(line) for line in lines}:
            seen[found] = seen.get(found, 0) + 1
        offsets.update({_edge_number(line) - number for line in lines if numbered_head(line)})
    repeated = {found for found, pages in seen.items() if pages >= max(3, len(texts) / 2)}
    running = {offset for offset, pages in offsets.items() if pages >= RUNNING_HEAD_PAGES}
    cleaned = []
    for text, lines, number in zip(texts, edges, numbers):
        drop = {line for line in lines if label(line) and (
                key(line) in repeated or _PAGE_NUMBER.fullmatch(line.strip())
                or _ROMAN_PAGE_NUMBER.fullmatch(line.strip())
                or (numbered_head(line) and _edge_number(line) - number in running))}
        kept = text.splitlines()
        while kept and (kept[0] in drop or not kept[0].strip()):
            kept.pop(0)
        while kept and (kept[-1] in drop or not kept[-1].strip()):
            kept.pop()
        cleaned.append("\n".join(kept))
    return cleaned


def _edge_lines(lines: list[str]) -> list[str]:
    """The first and the last non-empty line of a page."""
    filled = [line for line in lines if line.strip()]
    return filled[:1] + filled[-1:] if len(filled) > 1 else filled


def layout_lines(page) -> list[str]:
    """The page as pypdf's layout mode shows it (columns kept by spaces, a blank line where the text has more
    than a line's space), or nothing when the layout cannot be read."""
    try:
        layout = page.extract_text(extraction_mode="layout", layout_mode_space_vertically=True) or ""
    except Exception:  # the plain text is read anyway; the layout only adds paragraph breaks and tables
        return []
    # indents stay: they tell a table's columns apart
    return [drop_controls(line).translate(_LIGATURES).rstrip() for line in layout.splitlines()]


def paragraph_ends(layout: list[str]) -> set[str]:
    """The lines of a page's layout that a gap follows: the ends of paragraphs and headings, which the plain text
    does not mark. Empty when the layout spaces every line (double-spaced text says nothing about paragraphs)."""
    lines = [line_key(line) for line in layout]
    written = [line for line in lines if line]
    ends = {line for line, following in zip(lines, lines[1:]) if line and not following}
    return ends if len(ends) <= len(written) // 2 else set()


def _joins(line: str, following: str, width: int) -> bool:
    """`wraps_into`, never across a table row's line nor after a line of contents ("Installing . . . . 4")."""
    return (not line.startswith((ROW_MARK, HEADING_MARK)) and not following.startswith((ROW_MARK, HEADING_MARK))
            and not LEADER.search(line) and wraps_into(line, following, width))


def mark_paragraphs(text: str, ends: set[str]) -> str:
    """A blank line after each line the layout shows a gap after (see `paragraph_ends`), except inside a list
    (`ListTracker`): many documents space a list's items apart."""
    if not ends:
        return text
    lines, marked, in_list = text.splitlines(), [], ListTracker()
    for line, following in zip(lines, lines[1:] + [""]):
        in_list.see(line)
        gap = line_key(line) in ends and not in_list.goes_on(line, following)
        marked.append(line + "\n" if gap else line)
        in_list.paragraph_ended(gap)
    return "\n".join(marked)


class ListTracker:
    """Follows the items of a list through a page's lines, so that a list stays one paragraph (and one passage
    when it fits) from the line that introduces it to its last item: an item that ends a sentence, or that the page
    spaces apart from the next, does not end the paragraph when the next line is the list's next item."""

    def __init__(self):
        self.item = None

    def see(self, line: str) -> None:
        self.item = list_marker(line) or self.item

    def goes_on(self, line: str, following: str) -> bool:
        return goes_on_with(self.item, following) or introduces_list(line, following)

    def paragraph_ended(self, ended: bool) -> None:
        if ended:
            self.item = None


def unwrap(text: str, width: int, words: frozenset = frozenset()) -> str:
    """Wrapped lines joined; a paragraph's last line (short, ending a sentence) followed by a blank line. Text
    narrower than prose (`text_width` below `MIN_PROSE_WIDTH`) is left as it is. A word hyphenated at a wrap
    loses its hyphen when the document has it whole elsewhere (`words`, lowercase): "exam-" + "ple" is "example"
    there, and "well-" + "known" stays "well-known"."""
    lines = [line.strip() for line in text.splitlines()]
    out, in_list = [], ListTracker()
    for line, following in zip(lines, lines[1:] + [""]):
        out.append(line)
        in_list.paragraph_ended(not line)
        in_list.see(line)
        if not line or not following:
            out.append("\n")
        elif _joins(line, following, width):
            if line.endswith("-") and line[-2:-1].isalpha() and following[:1].islower():
                whole = _LAST_WORD.search(line[:-1]).group() + _FIRST_WORD.match(following).group()
                if whole.lower() in words:
                    out[-1] = line[:-1]
                out.append("")
            else:
                out.append(" ")
        elif width >= MIN_PROSE_WIDTH and _ENDS_SENTENCE.search(line) and not in_list.goes_on(line, following):
            out.append("\n\n")
            in_list.paragraph_ended(True)
        else:
            out.append("\n")
    return clean_text("".join(out))


def _sentence_end_inside(line: str) -> int | None:
    """Where the first sentence of `line` ends when another starts after it (a capital or a digit follows)."""
    for stop in _STOP_THEN_SPACE.finditer(line):
        if (stop.group(1).isupper() or stop.group(1).isdigit()) and not abbreviation_at(line, stop.start()):
            return stop.start(1) - (1 if line[stop.start(1) - 1] in "\"“‘'([" else 0)
    return None


def finish_cut_sentences(pages: list[tuple[int, str]], width: int) -> list[tuple[int, str]]:
    """Pages whose last sentence runs on over the page break, finished with its words from the next page (up to
    its end), so the chunker, which never joins pages, keeps the sentence whole under the page it starts on. A
    page ends inside a sentence when its last line is as wide as the text and does not end a sentence."""
    pages = list(pages)
    for index in range(len(pages) - 1):
        (number, text), (next_number, next_text) = pages[index], pages[index + 1]
        lines, following = text.splitlines(), next_text.splitlines()
        if next_number != number + 1 or not lines or not following or _ENDS_SENTENCE.search(lines[-1].rstrip()) \
                or not _joins(lines[-1], following[0], width):
            continue
        carried, finished = [], False
        while following and len(carried) < MAX_CARRIED_LINES and not finished:
            line = following.pop(0)
            end = _sentence_end_inside(line)
            if end:
                carried.append(line[:end].rstrip())
                rest = line[end:].strip()
                # the next sentence's start stays, joined to its own continuation when the line wrapped
                wrapped = bool(following) and _joins(line, following[0], width)
                following = [rest + " " + following[0], *following[1:]] if wrapped else [rest, *following]
                finished = True
            else:
                carried.append(line)
                finished = bool(_ENDS_SENTENCE.search(line.rstrip()))
                if not finished and (not following or not _joins(line, following[0], width)):
                    break  # a paragraph, heading or table row that ends without ending a sentence
        if not finished:
            continue  # no sentence end within reach: the pages stay as they are
        pages[index] = (number, "\n".join([*lines, *carried]))
        pages[index + 1] = (next_number, "\n".join(following))
    return [(number, text) for number, text in pages if text.strip()]


def _prose(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith((ROW_MARK, HEADING_MARK)))


def _line_key(line: str) -> str:
    return " ".join(drop_controls(line).translate(_LIGATURES).split())


@dataclass(frozen=True)
class PrintedLine:
    text: str  # white space collapsed
    size: float  # the size most of its characters are printed in (0: unknown)
    bold: bool  # every character in a bold face


def text_and_sizes(page) -> tuple[str, list[PrintedLine]]:
    """The page's plain text, and each of its lines as printed. pypdf hands the visitor the pieces the text is made
    of, in order."""
    pieces: list[tuple[str, float, bool]] = []

    def visit(text, cm, tm, font, size):
        try:
            scale = math.hypot(float(tm[2]), float(tm[3])) * math.hypot(float(cm[2]), float(cm[3]))
            printed = round(float(size) * scale * 2) / 2  # half points: the same style, the same size
            bold = bool(_BOLD_FONT.search(str(font.get("/BaseFont", "")))) if font else False
        except (TypeError, ValueError, IndexError, OverflowError, AttributeError):  # costs the style, not the text
            printed, bold = 0.0, False
        pieces.append((text, printed if math.isfinite(printed) else 0.0, bold))

    text = page.extract_text(visitor_text=visit) or ""
    lines, current, sizes, faces = [], "", Counter(), Counter()
    for piece, size, bold in pieces:
        for index, part in enumerate(piece.split("\n")):
            if index:
                lines.append((current, sizes, faces))
                current, sizes, faces = "", Counter(), Counter()
            current += part
            sizes[size] += len(part.strip())
            faces[bold] += len(part.strip())
    lines.append((current, sizes, faces))
    return text, [PrintedLine(_line_key(line), sizes.most_common(1)[0][0], faces[True] > 0 and not faces[False])
                  for line, sizes, faces in lines if _line_key(line) and sizes]


@dataclass(frozen=True)
class Heading:
    lines: tuple[str, ...]  # the page's lines it is printed on (white space collapsed)
    level: int

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def find_headings(pages: list[list[PrintedLine]]) -> list[list[Heading]]:
    """Each page's headings, in order (see the module's docstring)."""
    counts, bold_chars = Counter(), 0
    for lines in pages:
        for line in lines:
            counts[line.size] += len(line.text)
            bold_chars += len(line.text) if line.bold else 0
    body = counts.most_common(1)[0][0] if counts else 0.0
    if body <= 0:  # sizes unknown
        return [[] for _ in pages]
    bold_labels = bold_chars * 2 < sum(counts.values())  # in a document set in bold, bold says nothing
    found: list[list[tuple[tuple[str, ...], float]]] = []
    for lines in pages:
        runs: list[tuple[list[str], float]] = []
        for line in lines:
            large = line.size >= body * HEADING_SCALE
            if large and runs and runs[-1][1] == line.size:
                runs[-1][0].append(line.text)
            else:
                runs.append(([line.text], line.size if large else 0.0))
        headings = [(tuple(run), size) for run, size in runs if size and _heading_like(run)]
        if bold_labels:
            labels = {line.text for line, following in zip(lines, lines[1:]) if _bold_label(line, following, body)}
            headings += [((line.text,), BOLD_SIZE) for line in lines if line.text in labels]  # body-sized: never large
            order = {line.text: index for index, line in reversed(list(enumerate(lines)))}
            headings.sort(key=lambda heading: order[heading[0][0]])
        found.append(headings)
    sizes = sorted({size for page in found for _, size in page if size != BOLD_SIZE}, reverse=True)
    level = {size: min(rank + 1, MAX_HEADING_LEVEL) for rank, size in enumerate(sizes)}
    level[BOLD_SIZE] = min(len(sizes) + 1, MAX_HEADING_LEVEL)
    return [[Heading(run, level[size]) for run, size in page] for page in found]


BOLD_SIZE = -1.0  # a bold label's place among the heading sizes: below all of them


def _bold_label(line: PrintedLine, following: PrintedLine, body: float) -> bool:
    """A short line all in bold at about the body's size, before a line that is not bold."""
    return (line.bold and not following.bold and abs(line.size - body) <= body * 0.1
            and len(line.text.split()) <= MAX_BOLD_HEADING_WORDS and not list_marker(line.text)
            and not line.text.endswith((".", ",", ";", ":")) and _heading_like([line.text]))


def _heading_like(run: list[str]) -> bool:
    text = " ".join(run)
    return (len(run) <= MAX_HEADING_LINES and len(text.split()) <= MAX_HEADING_WORDS and not LEADER.search(text)
            and re.search(r"[^\W\d_]", text) is not None and not text.endswith((",", ";")))


def mark_headings(text: str, headings: list[Heading]) -> str:
    """The page text with each heading's line (or lines) replaced by one marked line, `HEADING_MARK` + level +
    text. Headings are looked for in order; one not found (its line went into a table) is skipped."""
    lines, marked, start = text.splitlines(), [], 0
    spots: dict[int, Heading] = {}
    for heading in headings:
        count = len(heading.lines)
        for index in range(start, len(lines) - count + 1):
            if tuple(_line_key(line) for line in lines[index:index + count]) == heading.lines:
                spots[index], start = heading, index + count
                break
    index = 0
    while index < len(lines):
        heading = spots.get(index)
        if heading is None:
            marked.append(lines[index])
            index += 1
        else:
            marked.append(HEADING_MARK + str(heading.level) + heading.text)
            index += len(heading.lines)
    return "\n".join(marked)


def page_sections(text: str, number: int, outline: Outline) -> None:
    """A page's text as sections of `outline` (kept from page to page, so headings head the pages after them):
    each table row one of its own under its table's caption, the text between headings and rows another."""
    outline.page = number
    for line in text.splitlines():
        if line.startswith(HEADING_MARK):
            outline.heading(int(line[len(HEADING_MARK)]), line[len(HEADING_MARK) + 1:])
        elif _CONTENTS_LINE.search(line):
            lines = outline.lines
            if len(lines) == 1 and len(lines[0].split()) <= 3 and not _ENDS_SENTENCE.search(lines[0]):
                lines.pop()  # the list's title ("Contents" opening the page), a passage of one word otherwise
        elif line.startswith(ROW_MARK):
            caption, row = row_of(line)
            outline.row(row, caption)
        else:
            outline.text(line)
    outline.flush()  # a passage never crosses a page


def read(data: bytes, name: str, warnings: list) -> list[Section]:
    pages = open_pdf(data, name)
    extracted, blank, failed, first_error = [], [], [], None
    for number, page in enumerate(pages, start=1):
        try:
            text, printed = text_and_sizes(page)
            # typeset ligatures ("ﬁ") as letters: neither keyword search nor the embedder knows the ligature
            text = clean_text(text).translate(_LIGATURES)
        except Exception as exc:  # one damaged page must not lose the others
            failed.append(number)
            first_error = first_error or exc
            continue
        extracted.append((number, page, text, printed))
    headings = find_headings([printed for _, _, _, printed in extracted])
    texts, carried, last = [], None, None
    for (number, page, text, _), page_headings in zip(extracted, headings):
        if number != last:
            carried = None  # a table goes on only on the very next page
        last = number + 1
        if text:  # before pages are joined at a cut sentence, whose lines the layout no longer shows alike
            layout = layout_lines(page)
            text, carried = replace_tables(text, layout, carried)
            text = mark_headings(text, page_headings)
            text = mark_paragraphs(text, paragraph_ends(layout))
        else:
            carried = None
        if text:
            texts.append((number, text))
        else:
            blank.append(number)
    numbers = [number for number, _ in texts]
    cleaned = drop_page_furniture([text for _, text in texts], numbers)
    texts = [(number, text) for number, text in zip(numbers, cleaned) if text]
    width = text_width([_prose(text) for _, text in texts])
    words = frozenset(word.lower() for _, text in texts for word in re.findall(r"\w+", text))
    texts = finish_cut_sentences(texts, width)
    outline = Outline()
    for number, text in texts:
        page_sections(unwrap(text, width, words), number, outline)
    sections = outline.sections
    if not sections:
        if len(failed) == len(pages):
            raise unreadable(name, reason(first_error))
        if texts:  # text there was, all of it lines of contents
            raise DocumentError(Msg("{file} holds only a table of contents or an index: no text to search.",
                                    file=name))
        raise DocumentError(Msg("{file} has no text layer (scanned images?) — OCR is not enabled.", file=name))
    if blank:
        warnings.append(Msg("{count} of {total} pages have no text and were left out (scanned images? OCR is not "
                            "enabled): pages {pages}.", count=len(blank), total=len(pages), pages=page_list(blank)))
    if failed:
        warnings.append(Msg("{count} of {total} pages could not be read and were left out ({reason}): pages "
                            "{pages}.", count=len(failed), total=len(pages), reason=reason(first_error),
                            pages=page_list(failed)))
    return sections
