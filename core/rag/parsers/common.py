"""What every reader shares: the `Section` record, text clean-up, heading paths, table rows and text decoding.

Text is never Unicode-normalised or ASCII-folded: Vietnamese keeps exactly the code points the file had
(precomposed or combining). Clean-up only unifies line ends, drops control characters other than tab and
new line, trims trailing spaces and squeezes runs of blank lines.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from core.data.formats.table import name_columns
from core.data.formats.textio import SAMPLE_BYTES, encoding_label, encodings_for
from core.data.formats.values import as_text
from core.errors import DataImportError, DocumentError
from core.i18n import Msg

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old Office files, and Office files saved with a password
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Section:
    """A piece of a document the chunker splits further; a table row is kept whole."""

    text: str
    page: int | None  # 1-based page for PDFs, else None
    headings: tuple[str, ...]  # heading path, e.g. ("Sales policies", "Returns")
    is_table_row: bool = False


def drop_controls(text: str) -> str:
    """The text without control characters other than tab and new line, and without a byte-order mark."""
    return _CONTROL.sub("", text).replace("\ufeff", "")


def clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").replace("\v", "\n")
    text = drop_controls(text)
    text = _TRAILING.sub("\n", text + "\n")
    return _BLANK_RUN.sub("\n\n", text).strip()


MIN_PROSE_WIDTH = 40       # characters: text whose lines are shorter is not wrapped prose (slides, tables, lists)
FULL_LINE_FRACTION = 0.8   # a line this close to the text's width was wrapped: the next word did not fit on it
BULLETS = "•▪◦●■‣∙·*–—-"
TABLE_TITLE_CHARS = 80     # a table's first row of one cell this short is its title, a heading of its rows
TABLE_TITLE_LEVEL = 10     # below every heading level (0-9), so a table's title is the last part of its rows' path
TABLE_GROUP_LEVEL = 11     # a group of rows inside a table, under the table's title
# a list item's marker: a bullet, or a number or letter with "." or ")" ("J. Smith" still continues a line)
_MARKER = re.compile(rf"([{BULLETS}])\s|(\()?(\d{{1,3}}|[a-z])([.)])\s")


def text_width(texts: list[str]) -> int:
    """The width of running text in characters: the length most of its longer lines reach."""
    lengths = sorted(len(line.strip()) for text in texts for line in text.splitlines() if line.strip())
    return lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0


def list_marker(line: str) -> tuple[str, int | None] | None:
    """The style and number of the list item `line` starts ("2." -> ("1.", 2), "b)" -> ("a)", 2), "•" -> ("•",
    None)), or None."""
    match = _MARKER.match(line.lstrip())
    if match is None:
        return None
    if match.group(1):
        return match.group(1), None
    value = match.group(3)
    number = int(value) if value.isdigit() else ord(value) - ord("a") + 1
    return ("(" if match.group(2) else "") + ("1" if value.isdigit() else "a") + match.group(4), number


def goes_on_with(marker: tuple[str, int | None] | None, following: str) -> bool:
    """Whether `following` is the next item of the list whose item `marker` started: the same style, the next
    number (a numbered heading, "3. Before your first ride", followed by "1. Check …" is not)."""
    after = list_marker(following)
    return (marker is not None and after is not None and after[0] == marker[0]
            and (marker[1] is None or after[1] == marker[1] + 1))


def introduces_list(line: str, following: str) -> bool:
    """A line ending in a colon followed by a list's first item ("… three modes:" then "- Eco: …")."""
    after = list_marker(following)
    return line.rstrip().endswith(":") and after is not None and after[1] in (None, 1)


def wraps_into(line: str, following: str, width: int) -> bool:
    """Whether `following` continues `line`, which was wrapped at `width` (a PDF's text layer, hard-wrapped text
    or Markdown): the line is nearly as wide as the text and the next one does not start a list item."""
    return (width >= MIN_PROSE_WIDTH and len(line.strip()) >= FULL_LINE_FRACTION * width
            and list_marker(following) is None)


CITATION_MARK = r"\[(?:\d{1,3}|[a-z]|[a-z ]{3,30}\??)\]"  # Wikipedia's "[12]", "[a]", "[citation needed]"

# Words a full stop follows without ending the sentence ("Dr. Martin", "St. Louis", "Runyon v. McCrary"); single
# capitals ("John F. Kennedy") and dotted acronyms ("U.S. Army") are such words too.
_ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Dr Prof St Mt Ft Jr Sr Sen Rep Gov Gen Col Lt Capt Sgt Rev Hon No Nos Vol Fig Figs pp approx Inc "
    "Ltd Co Corp Bros vs v al cf Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec".split())
_WORD_BEFORE = re.compile(r"(?:^|[^\w.])((?:[A-Za-z]\.)*[A-Za-z]+)$")


def abbreviation_at(text: str, stop: int) -> bool:
    """Whether the full stop at `text[stop]` ends an abbreviation rather than a sentence."""
    if text[stop:stop + 1] != ".":
        return False
    word = _WORD_BEFORE.search(text[max(0, stop - 24):stop])
    if word is None:
        return False
    word = word.group(1)
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isupper()) or "." in word


def one_line(text: str) -> str:
    """A heading or a cell: whitespace runs (new lines too) become one space."""
    return " ".join(clean_text(text).split())


def reason(exc: BaseException) -> str:
    """A library's error as a short phrase for a message."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def cell_text(value) -> str:
    """A cell value as text: numbers in their shortest form, a date at midnight as a plain date."""
    if isinstance(value, datetime.datetime) and value.time() == datetime.time(0):
        value = value.date()
    return clean_text(as_text(value) or "")


def header_names(cells: list) -> list[str]:
    """Header cells as unique column names ('column N' for blanks, 'name (2)' for repeats)."""
    return name_columns([cell_text(c) for c in cells])[0]


def row_text(columns: list[str], values: list) -> str:
    """'column: value; column: value' for the non-empty values (extra values get 'column N' names)."""
    parts = []
    for i, value in enumerate(values):
        text = cell_text(value)
        if text:
            column = columns[i] if i < len(columns) else "column {n}".format(n=i + 1)
            parts.append("{}: {}".format(column, text))
    return "; ".join(parts)


def name_value(name: str, value: str) -> str:
    """A row of two cells as 'name: value' (a name that ends in a colon keeps its own)."""
    if not (name and value):
        return name or value
    return f"{name} {value}" if name.endswith(":") else f"{name}: {value}"


def labels_values(rows) -> bool:
    """Whether a two-column table's first row labels the columns ("Part", "Specification") rather than being the
    first name and value ("Chair", "Maria Schmidt"): no digits, and values below it that are numbers, or at least
    twice as long."""
    label, values = rows[0][1], [row[1] for row in rows[1:] if row[1]]
    if not label or not values or any(re.search(r"\d", cell) for cell in rows[0]):
        return False
    numbers = sum(bool(re.search(r"\d", value)) for value in values)
    return numbers > len(values) / 2 or sum(len(v.split()) for v in values) / len(values) >= 2 * len(label.split())


class Outline:
    """Collects text under the current heading path and cuts a Section at every heading and table row."""

    def __init__(self, root: tuple[str, ...] = (), joiner: str = "\n"):
        self.root, self.joiner = tuple(h for h in root if h), joiner
        self.stack: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.sections: list[Section] = []
        self.page: int | None = None  # the page the text now collected is on (PDFs)

    def path(self, *more: str) -> tuple[str, ...]:
        """The heading path, then `more` (a table row's caption); a name that repeats the one before it (an <h1>
        that repeats the page title, a caption that repeats the heading) is not said twice."""
        path: list[str] = []
        for heading in [*self.root, *(text for _, text in self.stack), *more]:
            if heading and (not path or path[-1] != heading):
                path.append(heading)
        return tuple(path)

    def heading(self, level: int, text: str) -> None:
        text = one_line(text)
        if not text:
            return
        self.flush()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))

    def text(self, text: str, same_paragraph: bool = False) -> None:
        """A paragraph, or with `same_paragraph` a line of the paragraph before it (a list's next item)."""
        if same_paragraph and self.lines:
            self.lines[-1] += "\n" + text
        else:
            self.lines.append(text)

    def row(self, text: str, caption: str = "") -> None:
        self.flush()
        text = clean_text(text)
        if text:
            self.sections.append(Section(text, self.page, self.path(caption), is_table_row=True))

    def table(self, rows: list[list]) -> None:
        """Rows of cells, one Section per row: 'header: value; …' under the first row, or 'name: value' for two
        columns whose first row is a first pair rather than labels (`labels_values`). A short first row of one cell
        across the table (an infobox's name, a table's title) heads its rows as a caption does, instead of being a
        passage of its own that says nothing; other rows of one cell before the rest (a picture's caption) are rows
        of their own."""
        self.flush()  # the text before the table keeps its own headings
        rows = [[cell_text(c) for c in r] for r in rows]
        rows = [r for r in rows if any(r)]
        depth = len(self.stack)
        try:
            while len(rows) > 1 and sum(bool(c) for c in rows[0]) == 1:
                cell = next(c for c in rows[0] if c)
                rows = rows[1:]
                if len(self.stack) == depth and len(one_line(cell)) <= TABLE_TITLE_CHARS:
                    self.stack.append((TABLE_TITLE_LEVEL, one_line(cell)))
                else:
                    self.row(cell)
            self._rows(rows)
        finally:
            del self.stack[depth:]

    def _rows(self, rows: list[list[str]]) -> None:
        """The rows after the title. A short row of one cell across a wider table ("Scientific career" in an
        infobox, "Europe" above its countries) heads the rows under it, up to the next such row; one with no row
        under it (a source line at the bottom) stays a row."""
        if len(rows) == 1:
            self.row("; ".join(t for t in rows[0] if t))
            return
        if not rows:
            return
        pairs = all(len(r) <= 2 for r in rows) and not labels_values([tuple(r + [""] * (2 - len(r))) for r in rows])
        columns = None if pairs else header_names(rows[0])
        width = max(len(r) for r in rows)

        def names_a_group(cells: list[str]) -> bool:
            # one cell across the row; or, where a reader pads a spanning cell (trafilatura), only the first of
            # three or more filled: in two columns that is as likely a name whose value is a picture
            return (0 < len(one_line(cells[0])) <= TABLE_TITLE_CHARS
                    and (len(cells) == 1 < width or (width >= 3 and not any(cells[1:]))))

        depth, group = len(self.stack), None
        try:
            for cells in rows if pairs else rows[1:]:
                if names_a_group(cells):
                    if group is not None:  # a group with no rows: its name is text of its own
                        del self.stack[depth:]
                        self.row(group)
                    group = one_line(cells[0])
                    continue
                if group is not None:
                    del self.stack[depth:]
                    self.stack.append((TABLE_GROUP_LEVEL, group))
                    group = None
                self.row(name_value(*(cells + [""])[:2]) if pairs else row_text(columns, cells))
            if group is not None:
                del self.stack[depth:]
                self.row(group)
        finally:
            del self.stack[depth:]

    def flush(self) -> None:
        text = clean_text(self.joiner.join(self.lines))
        self.lines = []
        if text:
            self.sections.append(Section(text, self.page, self.path()))

    def done(self) -> list[Section]:
        self.flush()
        return self.sections


def not_text_error(name: str) -> DocumentError:
    return DocumentError(Msg("{file} is not a text file (it holds binary data); save it as plain text and upload "
                             "it again.", file=name))


def check_text(data: bytes, name: str) -> list[str]:
    """The encodings to try for a text file, best first; DocumentError when it holds binary data."""
    try:
        return encodings_for(data[:SAMPLE_BYTES], name)
    except DataImportError:
        raise not_text_error(name) from None


def decode_text(data: bytes, name: str, warnings: list, declared: str | None = None) -> str:
    """Bytes -> text with the project's detection (BOM, UTF-16 by its zero bytes, UTF-8, then Windows-1258 and
    Latin-1 with a notice). `declared` (an HTML page's charset) is tried before the fallbacks, without notice."""
    encodings = check_text(data, name)
    if declared and encodings[0] == "utf-8":
        encodings.insert(1, declared)
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except (UnicodeError, LookupError):
            continue
        label = encoding_label(encoding)
        if label not in ("utf-8", "utf-16") and encoding != declared:
            warnings.append(Msg("{file} is not UTF-8; it was read as {encoding}. Check that accented letters look "
                                "right.", file=name, encoding=label))
        return text.lstrip("\ufeff")
    raise not_text_error(name)
