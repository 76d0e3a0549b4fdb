"""The parsed-but-not-yet-mapped table (`SourceTable`) and the small helpers every reader shares.

Formula guard (CSV and XLSX): a spreadsheet program runs a cell that starts with ``=``, ``+``, ``-`` or ``@``
as a formula, so a dataset row like ``=HYPERLINK(...)`` could do harm when an exported file is opened. On
export such a text is written with one leading apostrophe (``=1+1`` -> ``'=1+1``), which spreadsheets show as
text. So that round trips stay exact, text that already starts with apostrophes followed by one of those
characters gets one more apostrophe (``'=x`` -> ``''=x``). On import from CSV, TSV and XLSX exactly one
apostrophe is taken off a cell made of one or more apostrophes followed by ``= + - @``; any other apostrophe
is left alone. (So a hand-made CSV cell ``'=x`` imports as ``=x``: the apostrophe is read as the guard.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.errors import DataImportError
from core.i18n import Msg

FORMATS = ("csv", "tsv", "jsonl", "json", "xlsx", "parquet", "hf_folder")
LAYOUTS = ("columns", "openai_messages", "sharegpt", "alpaca", "prompt_completion", "preference", "eval")
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".json": "json", ".xlsx": "xlsx", ".xlsm": "xlsx", ".parquet": "parquet", ".pq": "parquet"}
ROW_FORMATS = ("csv", "tsv", "xlsx", "parquet", "hf_folder")  # problems say "Row n"; JSON formats say "Line n"

_GUARDED = re.compile(r"'*[=+\-@]")
_XML_ESCAPE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_XML_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")
_XML_UNESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


@dataclass
class SourceTable:
    """A parsed file before mapping: raw values per column and where each row came from."""

    format: str
    layout: str
    columns: list[str]
    rows: list[dict]
    line_numbers: list[int]
    problems: list[Msg] = field(default_factory=list)
    encoding: str = "utf-8"


def guard_cell(value):
    """Text as written to a CSV/XLSX cell: one apostrophe in front when a spreadsheet would run it (see above)."""
    return "'" + value if isinstance(value, str) and _GUARDED.match(value) else value


def unguard_cell(value):
    """The inverse of `guard_cell` for cells read from CSV/TSV/XLSX."""
    return value[1:] if isinstance(value, str) and value.startswith("'") and _GUARDED.match(value[1:]) else value


def excel_escape(text: str) -> str:
    """Text for an XLSX cell: a literal _xHHHH_ gets its underscore escaped, then control characters become
    _xHHHH_ (XML cannot hold them, and would turn CR LF into LF)."""
    text = _XML_ESCAPE.sub(r"_x005F_\1", text)
    return _XML_CONTROL.sub(lambda m: "_x{:04X}_".format(ord(m.group())), text)


def excel_unescape(text: str) -> str:
    return _XML_UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def format_for(filename: str) -> str | None:
    name = filename.lower().rstrip("/\\")
    return next((fmt for ext, fmt in EXTENSIONS.items() if name.endswith(ext)), None)


def name_columns(raw: list) -> tuple[list[str], list[Msg]]:
    """Header cells -> unique column names: blanks become 'column N', repeats become 'name (2)' (reported)."""
    names, problems, seen = [], [], set()
    for i, cell in enumerate(raw, start=1):
        name = "" if cell is None else str(cell).strip()
        if not name:
            name = "column {n}".format(n=i)  # an identifier, not a message; blank columns are usually dropped
        base, n = name, 1
        while name in seen:
            n += 1
            name = "{base} ({n})".format(base=base, n=n)
        if name != base and str(cell or "").strip():
            problems.append(Msg("Column '{name}' appears more than once; the copy is called '{new}'.",
                                name=base, new=name))
        seen.add(name)
        names.append(name)
    return names, problems


def drop_blank_columns(columns: list[str], header: list, rows: list[dict]) -> list[str]:
    """Columns with an empty header cell and no values at all (trailing commas, Excel leftovers) are removed."""
    blank = [c for c, h in zip(columns, header) if not str(h or "").strip()
             and all(row.get(c) in (None, "") for row in rows)]
    for row in rows:
        for c in blank:
            row.pop(c, None)
    return [c for c in columns if c not in blank]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().casefold()


def detect_layout(columns: list[str], rows: list[dict]) -> str:
    """Which well-known shape the table has, from its column names (and, for chats, the first values)."""
    names = {_norm(c) for c in columns}
    if "messages" in names and _looks_like_messages(rows, columns, "messages"):
        return "openai_messages"
    if "conversations" in names:
        return "sharegpt"
    if {"chosen", "rejected"} <= names:
        return "preference"
    if {"instruction", "output"} <= names:
        return "alpaca"
    if {"prompt", "completion"} <= names:
        return "prompt_completion"
    if "question" in names and names & {"reference", "gold ids", "expected call", "tools"}:
        return "eval"
    return "columns"


def _looks_like_messages(rows: list[dict], columns: list[str], wanted: str) -> bool:
    column = next(c for c in columns if _norm(c) == wanted)
    for row in rows[:20]:
        value = row.get(column)
        if isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[")):
            return True
    return not rows


class Progress:
    """Calls `callback(fraction)` at most about every 1% (and once at the end); safe to use without a callback."""

    def __init__(self, callback, total: int):
        self.callback, self.total, self.last = callback, max(int(total), 1), -1.0

    def __call__(self, done: int) -> None:
        self.fraction(done / self.total)

    def fraction(self, value: float) -> None:
        value = min(max(value, 0.0), 1.0)
        if self.callback is not None and value - self.last >= 0.01:
            self.last = value
            self.callback(value)

    def finish(self) -> None:
        if self.callback is not None and self.last < 1.0:
            self.last = 1.0
            self.callback(1.0)


def size_mb(size: int) -> str:
    return "{:.1f}".format(size / 2**20)


MAX_LISTED = 200


class Problems(list):
    """A list of problems that stops growing after MAX_LISTED entries and says how many more there were."""

    unlisted = 0

    def add(self, message: Msg) -> None:
        if len(self) < MAX_LISTED:
            self.append(message)
        else:
            self.unlisted += 1

    def done(self) -> list[Msg]:
        more = [Msg("Problems not listed here: {count} more.", count=self.unlisted)] if self.unlisted else []
        return list(self) + more


def empty_error(filename: str) -> DataImportError:
    return DataImportError(Msg("{file} is empty.", file=filename))


def no_rows_error(filename: str, columns: list[str]) -> DataImportError:
    return DataImportError(Msg("{file} has only column names ({columns}) and no data rows.", file=filename,
                               columns=", ".join(columns) or "-"))


def no_usable_rows_error(filename: str, problems: list[Msg]) -> DataImportError:
    if not problems:
        return empty_error(filename)
    return DataImportError(Msg("No usable rows were found. {problems}", problems=problems[:3]))
