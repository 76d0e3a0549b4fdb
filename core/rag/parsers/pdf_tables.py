"""Tables in a PDF page, read from pypdf's layout mode, so each row can become one passage ("header: value; …")
as tables in Word and web pages do.

The plain text layer joins a row's cells with single spaces ("Price 649 euros 899 euros") and a row as wide as
the page runs on into the next line. The layout mode keeps the gaps between columns: a block of lines whose
pieces, separated by three or more spaces, start at the same columns is a table. A line with the first column
empty continues the row above (a cell wrapped over two lines); a line holding only a first cell continues the row's
first cell when the text layer has it there ("North" / "America", as browsers and word processors write a table
cell by cell). The table replaces its lines in the plain text only when those lines hold exactly the table's
characters, so text in page columns, whose plain lines do not follow the layout's, is never taken for a table.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .common import BULLETS, header_names, labels_values, name_value, row_text

CELL_GAP = re.compile(r"\S+(?: {1,2}\S+)*")  # a cell: words separated by at most two spaces
ALIGN = 2          # characters: cells of one column start this close to each other
MIN_ROWS = 3       # a header and two rows
MAX_CELL_CHARS = 30  # the median cell is short; page columns of prose are wider
YEAR_LABEL = re.compile(r"(?:[A-Za-z]{1,3}\d?\s?)?(?:19|20)\d\d(?:\s?[A-Za-z]{1,4})?")
LEADER = re.compile(r"(?:\. ?){6,}")  # a table of contents' dot leaders (an ellipsis, ". . .", is shorter)
CODE = re.compile(r"[{}\[(;,=]$|:=|==|->|=>")
BULLET = re.compile(f"[{BULLETS}]")
ROW_MARK = "\ue000"  # starts a table row's line in the page text until the page is cut into sections
CAPTION_MARK = "\ue001"  # ends the table's caption at the start of a row's line
MAX_CAPTION_WORDS = 12
MAX_RETRIED_BLOCK = 50


@dataclass(frozen=True)
class LayoutTable:
    rows: tuple[tuple[str, ...], ...]  # every row's cells, one per column ("" when empty)
    lines: tuple[str, ...]             # the layout lines it was read from
    starts: tuple[int, ...]            # where each column starts in the layout


def cells_of(line: str) -> list[tuple[int, str]]:
    """(start, text) of the pieces of a layout line that gaps of three or more spaces separate."""
    return [(match.start(), " ".join(match.group().split())) for match in CELL_GAP.finditer(line)]


def find_tables(layout_lines: list[str], min_rows: int = MIN_ROWS, plain: str = "") -> list[LayoutTable]:
    """The tables of a page's layout; `plain`, the page's text layer with its white space collapsed, tells a
    wrapped first cell from a line after the table."""
    tables, index = [], 0
    while index < len(layout_lines):
        block, end = _block_from(layout_lines, index)
        table = _table_of(block, min_rows, plain) if block else None
        if table:
            tables.append(table)
        # a long block that is no table is skipped whole: trying every line of it as a start would take a while
        index = end if table or len(block) > MAX_RETRIED_BLOCK else index + 1
    return tables


def _block_from(lines: list[str], index: int) -> tuple[list[str], int]:
    """The lines of a possible table starting at `index` (a line of two or more cells): the lines that follow with
    two or more cells, or with cells that leave the first column empty, single blank lines allowed between."""
    first = cells_of(lines[index])
    if len(first) < 2:
        return [], index
    left = first[0][0]
    block, position, after_gap = [lines[index]], index + 1, False
    while position < len(lines):
        line = lines[position]
        if not line.strip():
            if position + 1 < len(lines) and lines[position + 1].strip():
                position, after_gap = position + 1, True
                continue
            break
        cells = cells_of(line)
        if len(cells) < 2 and cells[0][0] <= left + ALIGN and (
                len(cells[0][1]) > MAX_CELL_CHARS or (after_gap and not _values_follow(lines, position, left))):
            break  # prose or a heading at the table's left edge (a short line right under a row may be its wrap)
        block.append(line)
        after_gap = False
        position += 1
    return block, position


def _values_follow(lines: list[str], position: int, left: int) -> bool:
    """Whether the line after `position` holds cells with the first column empty: the values of a row whose first
    cell, on the line at `position`, is centred over two lines ("North" / values / "America")."""
    following = cells_of(lines[position + 1]) if position + 1 < len(lines) else []
    return len(following) >= 2 and following[0][0] > left + ALIGN


def _wraps_first_cell(row: list[str], line: str, plain: str) -> bool:
    """Whether a line holding only a first cell ends the first cell of `row` ("North" / "America"): the text layer
    has it between that cell and the row's next one, as browsers and word processors write a table cell by cell."""
    following = next((cell for cell in row[1:] if cell), "")
    return bool(plain) and f"{row[0]} {line} {following}" in plain


def _column_starts(block: list[str]) -> list[int]:
    """Where columns start: positions (within ALIGN) where at least half the block's lines of several cells have
    a cell start."""
    wide = [cells_of(line) for line in block if len(cells_of(line)) >= 2]
    counts: Counter = Counter()
    for cells in wide:
        for start, _ in cells:
            counts[start] += 1
    starts: list[list[int]] = []
    for start in sorted(counts):
        if starts and start - starts[-1][-1] <= ALIGN:
            starts[-1].append(start)
        else:
            starts.append([start])
    return [group[0] for group in starts if sum(counts[s] for s in group) >= max(2, len(wide) / 2)]


def _table_of(block: list[str], min_rows: int, plain: str = "") -> LayoutTable | None:
    starts = _column_starts(block)
    if len(starts) < 2:
        return None
    rows: list[list[str]] = []
    for number, line in enumerate(block):
        row = [""] * len(starts)
        for start, text in cells_of(line):
            column = max((i for i, s in enumerate(starts) if s <= start + ALIGN), default=None)
            if column is None or row[column]:
                return None  # a piece outside the columns, or two in one: not a grid
            row[column] = text
        if rows and row[0] and not any(row[1:]):
            if _wraps_first_cell(rows[-1], row[0], plain):
                rows[-1][0] += " " + row[0]
                continue
            if not _values_follow(block, number, starts[0]):
                block = block[:number]  # a heading after the table, or a group's name: the table ends above it
                break
        if row[0] or not rows:
            rows.append(row)
        else:  # the first column empty: the cells wrapped from the row above
            rows[-1] = [f"{above} {below}".strip() for above, below in zip(rows[-1], row)]
    lengths = sorted(len(cell) for row in rows for cell in row if cell)
    if len(rows) < min_rows or lengths[len(lengths) // 2] > MAX_CELL_CHARS:
        return None
    if any(LEADER.search(cell) or CODE.search(cell) for row in rows for cell in row):
        return None  # a table of contents or code: their lines read better as they are
    columns = list(zip(*rows))
    if any(all(BULLET.fullmatch(cell) or not cell for cell in column) for column in columns):
        return None  # a list laid out in columns
    return LayoutTable(tuple(map(tuple, rows)), tuple(block), tuple(starts))


def _characters(lines) -> Counter:
    return Counter(char for line in lines for char in line if not char.isspace())


def line_key(line: str) -> str:
    """A line with its white space collapsed, to find the layout's lines in the plain text."""
    return " ".join(line.split())


def place(table: LayoutTable, plain_lines: list[str]) -> tuple[int, int] | None:
    """The lines [start, end) of the plain text that hold exactly the table's characters, starting with the
    table's first line (cells joined by single spaces), or None."""
    wanted, first = _characters(table.lines), line_key(table.lines[0])
    for start, line in enumerate(plain_lines):
        if line_key(line) != first:
            continue
        have: Counter = Counter()
        for end in range(start, min(len(plain_lines), start + 3 * len(table.lines) + 2)):
            have.update(_characters([plain_lines[end]]))
            if have == wanted:
                return start, end + 1
            if have - wanted:
                break
    return None


def looks_like_header(cells: tuple[str, ...]) -> bool:
    """A first row of labels: at least two, distinct, short, capitalised, none a sentence, none a value (a number
    other than a year or a quarter)."""
    labels = [cell for cell in cells if cell]
    letters = [re.search(r"[^\W\d_]", cell) for cell in labels]
    return (len(labels) >= 2 and len(set(labels)) == len(labels) and any(letters)
            and all(not letter.group().islower() for letter in letters if letter)
            and all(len(cell.split()) <= 6 and not cell.endswith(".")
                    and (YEAR_LABEL.fullmatch(cell) or (letter and not re.search(r"\d", cell)))
                    for cell, letter in zip(labels, letters)))


def caption_of(line: str) -> str:
    """The line before a table when it reads as its title ("Table 2: Prices", "Lumen Volt electric system"): short
    and not the end of a sentence."""
    line = " ".join(line.split())
    if not line or line.startswith(ROW_MARK) or len(line.split()) > MAX_CAPTION_WORDS or line[-1] in ".!?;,":
        return ""
    return line


def row_lines(table: LayoutTable, header: tuple[str, ...] | None, caption: str = "") -> list[str]:
    """Each row as one line, "header: value; …" (or "name: value" for a two-column table without a header), marked
    with ROW_MARK and the caption."""
    if header is not None:
        columns = header_names(list(header))
        texts = [row_text(columns, list(row)) for row in table.rows]
    else:
        texts = [name_value(row[0], row[1]) for row in table.rows]
    return [ROW_MARK + caption + CAPTION_MARK + text for text in texts if text]


def row_of(line: str) -> tuple[str, str]:
    """(caption, row text) of a line made by `row_lines`."""
    caption, _, text = line[len(ROW_MARK):].partition(CAPTION_MARK)
    return caption, text.strip()


@dataclass(frozen=True)
class CarriedHeader:
    """The header of a table that ran to the end of its page, for the rows that continue it on the next page."""

    header: tuple[str, ...] | None
    columns: int
    caption: str


def replace_tables(text: str, layout_lines: list[str],
                   carried: CarriedHeader | None) -> tuple[str, CarriedHeader | None]:
    """The page text with each table's lines replaced by one marked line per row, and the header to carry to the
    next page when a table ends the page. A table that starts the page with as many columns as the one that ended
    the page before continues it: a repeated header is dropped, a missing one is taken from there."""
    plain = text.splitlines()
    carry = None
    for table in find_tables(layout_lines, 2 if carried else MIN_ROWS, " ".join(text.split())):
        spot = place(table, plain)
        if spot is None:
            continue
        start, end = spot
        rows, caption = table.rows, caption_of(plain[start - 1]) if start else ""
        continues = carried is not None and carried.columns == len(table.starts) and start <= 1
        if len(rows) < MIN_ROWS and not continues:
            continue  # two rows make a table only where they go on with the last page's
        if continues:
            header, caption = carried.header, carried.caption
            if header is not None and rows[0] == header:
                rows = rows[1:]
        elif looks_like_header(rows[0]) and (len(table.starts) > 2 or labels_values(rows)):
            header, rows = rows[0], rows[1:]
        elif len(table.starts) == 2 and all(re.search(r"[^\W\d_]", row[0]) for row in rows if row[0]):
            header = None  # names and their values ("Chair", "Maria Schmidt"): each row reads "name: value"
        else:
            continue  # a grid of values with no header (code, a hex dump, a layout): its lines stay as they are
        replacement = row_lines(LayoutTable(rows, table.lines, table.starts), header, caption)
        plain[start:end] = replacement
        ends_page = start + len(replacement) >= len(plain) - 1  # the page's footer may follow
        carry = CarriedHeader(header, len(table.starts), caption) if ends_page else None
    return "\n".join(plain), carry
