"""Text files (CSV, TSV, JSON Lines, JSON): encoding detection and streamed reading.

Encodings: a byte-order mark decides (UTF-8, UTF-16 LE/BE); UTF-16 without a mark is recognised by its zero
bytes; otherwise UTF-8, then Windows-1258 (Vietnamese), then Latin-1, with a notice when it is not UTF-8. The
text is decoded as it is read, never normalised, so Vietnamese text keeps exactly the code points it had. If a
bad byte turns up after the sample, reading starts again with the next encoding.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re

from core.errors import DataImportError
from core.i18n import Msg

from .table import (Problems, Progress, SourceTable, detect_layout, drop_blank_columns, empty_error, name_columns,
                    no_rows_error, no_usable_rows_error, unguard_cell)

SAMPLE_BYTES = 64 * 1024
DELIMITERS = {",": Msg("comma"), ";": Msg("semicolon"), "\t": Msg("tab"), "|": Msg("vertical bar")}
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


def not_text_error(filename: str, head: bytes) -> DataImportError:
    if head.startswith(b"PK\x03\x04"):
        return DataImportError(Msg("{file} is not a text file: it looks like an Excel workbook or a zip archive. "
                                   "Give it the .xlsx extension, or save it as CSV.", file=filename))
    if head.startswith(b"PAR1"):
        return DataImportError(Msg("{file} is not a text file: it looks like a Parquet file. Give it the .parquet "
                                   "extension.", file=filename))
    return DataImportError(Msg("{file} is not a text file. Save it as CSV (UTF-8) or JSON Lines and try again.",
                               file=filename))


def encodings_for(head: bytes, filename: str) -> list[str]:
    """Encodings to try, best first, from the first bytes of the file."""
    if head.startswith(codecs.BOM_UTF8):
        return ["utf-8-sig"]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ["utf-16"]
    half = max(len(head) // 2, 1)
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd > 0.2 * half and even < 0.05 * half:
        return ["utf-16-le"]
    if even > 0.2 * half and odd < 0.05 * half:
        return ["utf-16-be"]
    controls = sum(head.count(b) for b in _CONTROL)
    if b"\x00" in head or head.startswith((b"PK\x03\x04", b"PAR1")) or controls > 0.05 * len(head):
        raise not_text_error(filename, head)
    return ["utf-8", "cp1258", "latin-1"]


def encoding_label(encoding: str) -> str:
    return {"utf-8-sig": "utf-8", "utf-16-le": "utf-16", "utf-16-be": "utf-16"}.get(encoding, encoding)


def read_text_table(handle, filename: str, fmt: str, ticker: Progress) -> SourceTable:
    """CSV/TSV/JSONL/JSON from a binary handle, trying encodings in turn (a bad byte late in the file restarts)."""
    head = handle.read(SAMPLE_BYTES)
    if not head.strip():
        raise empty_error(filename)
    for encoding in encodings_for(head, filename):
        handle.seek(0)
        text = io.TextIOWrapper(handle, encoding=encoding, newline="")
        try:
            if fmt in ("csv", "tsv"):
                table = _read_delimited(text, handle, filename, fmt, ticker)
            elif fmt == "jsonl":
                table = _read_jsonl(text, handle, filename, ticker)
            else:
                table = _read_json(text.read(), filename)
        except UnicodeError:
            continue
        finally:
            text.detach()
        table.encoding = encoding_label(encoding)
        if table.encoding not in ("utf-8", "utf-16"):
            table.problems.insert(0, Msg("The file is not UTF-8; it was read as {encoding}. Check accents in the "
                                         "preview.", encoding=table.encoding))
        return table
    raise not_text_error(filename, head)


# ---- CSV / TSV ----------------------------------------------------------------------------------------------

def choose_delimiter(sample: str, preferred: str) -> str:
    """The delimiter whose header has 2+ columns and whose rows agree best with it; `preferred` wins ties."""
    cut = sample.rfind("\n")
    sample = sample[:cut + 1] if cut > 0 else sample
    best, best_score = preferred, 0.0
    for delimiter in dict.fromkeys([preferred, *DELIMITERS]):
        try:
            rows = [r for r in itertools.islice(csv.reader(io.StringIO(sample), delimiter=delimiter), 200) if r]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        body = rows[1:] or rows
        score = sum(len(r) == len(rows[0]) for r in body) / len(body)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_delimited(text, handle, filename, fmt, ticker) -> SourceTable:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    expected = "\t" if fmt == "tsv" else ","
    start = text.read(SAMPLE_BYTES // 2).lstrip("\ufeff")
    hint = re.match(r"sep=([,;\t|])\r?\n", start)  # Excel's "sep=;" first line, which Excel does not show
    delimiter = hint.group(1) if hint else choose_delimiter(start, expected)
    problems = Problems()
    if delimiter != expected and not hint:
        problems.add(Msg("The columns are separated by a {delimiter}; the file was read that way.",
                         delimiter=DELIMITERS[delimiter]))
    text.seek(0)
    reader = csv.reader(text, delimiter=delimiter)
    header, columns, rows, lines, number = None, [], [], [], 0
    if hint:
        next(reader)
    try:
        for number, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = cells
                columns, renamed = name_columns(cells)
                problems.extend(renamed)
                continue
            if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
                problems.add(Msg("Row {row} has more values than the header has columns; the extra values were "
                                 "left out.", row=number))
            rows.append({c: unguard_cell(v) for c, v in zip(columns, cells)})
            lines.append(number)
            if number % 2000 == 0:
                ticker(handle.tell())
    except csv.Error as exc:
        raise DataImportError(Msg("Row {row}: the file could not be read as CSV ({reason}).", row=number + 1,
                                  reason=str(exc))) from None
    if header is None:
        raise empty_error(filename)
    columns = drop_blank_columns(columns, header, rows)
    if not rows:
        raise no_rows_error(filename, columns)
    return SourceTable(fmt, detect_layout(columns, rows), columns, rows, lines, problems.done())


# ---- JSON Lines / JSON --------------------------------------------------------------------------------------

def _read_jsonl(text, handle, filename, ticker) -> SourceTable:
    rows, lines, columns, problems = [], [], {}, Problems()
    # Only \n ends a line: a JSON string may hold U+2028 or other characters str.splitlines() would split on.
    for number, line in enumerate(text, start=1):
        _add_json_row(line, number, rows, lines, columns, problems)
        if number % 2000 == 0:
            ticker(handle.tell())
    if not rows:
        raise no_usable_rows_error(filename, problems.done())
    return SourceTable("jsonl", detect_layout(list(columns), rows), list(columns), rows, lines, problems.done())


def _add_json_row(line, number, rows, lines, columns, problems) -> None:
    line = line.strip().lstrip("\ufeff")
    if not line:
        return
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        problems.add(Msg("Line {line}: not valid JSON ({reason}); skipped.", line=number, reason=exc.msg))
        return
    _add_object(obj, number, rows, lines, columns, problems)


def _add_object(obj, number, rows, lines, columns, problems) -> None:
    """A parsed JSON value becomes a row when it is an object; its keys join the columns in first-seen order."""
    if not isinstance(obj, dict):
        problems.add(Msg("Line {line}: not a JSON object; skipped.", line=number))
        return
    for key in obj:
        columns.setdefault(key, None)
    rows.append(obj)
    lines.append(number)


_WRAPPER_SKIP = {"messages", "conversations", "chosen", "rejected", "tools", "gold_ids", "gold_passages", "prompt",
                 "completion"}


def _read_json(text: str, filename: str) -> SourceTable:
    """A JSON array of objects, an object wrapping one ({"data": [...]}), one object, or JSON Lines named .json."""
    text = text.lstrip("\ufeff")
    stripped = text.strip()
    if not stripped:
        raise empty_error(filename)
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        if stripped.startswith("{"):
            try:
                table = _read_jsonl(io.StringIO(text), io.BytesIO(), filename, Progress(None, 1))
            except DataImportError:
                table = None
            if table is not None and len(table.rows) > len(table.problems):
                return table  # JSON Lines saved as .json
        raise DataImportError(Msg("{file} is not valid JSON (line {line}, column {column}: {reason}).",
                                  file=filename, line=exc.lineno, column=exc.colno, reason=exc.msg)) from None
    start = 0
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1 and not (_WRAPPER_SKIP & set(data)):
            found = re.search(re.escape(json.dumps(lists[0], ensure_ascii=False)) + r"\s*:\s*\[", text)
            start = found.end() - 1 if found else -2
            data = data[lists[0]]
        else:
            data = [data]
            start = -1
    if not isinstance(data, list):
        raise DataImportError(Msg("{file} holds no JSON objects; use a list of objects or JSON Lines.", file=filename))
    if start == -1:  # one object
        numbers = [text.count("\n", 0, text.find("{")) + 1]
    else:
        numbers = _item_lines(text, start, len(data)) if start >= 0 else list(range(1, len(data) + 1))
    rows, lines, columns, problems = [], [], {}, Problems()
    for obj, number in zip(data, numbers):
        _add_object(obj, number, rows, lines, columns, problems)
    if not rows:
        if problems:
            raise no_usable_rows_error(filename, problems.done())
        raise DataImportError(Msg("{file} holds an empty list.", file=filename))
    return SourceTable("json", detect_layout(list(columns), rows), list(columns), rows, lines, problems.done())


def _item_lines(text: str, start: int, count: int) -> list[int]:
    """The line each item of the JSON array that opens at text[start] starts on (the text is known to be valid)."""
    decoder, lines = json.JSONDecoder(), []
    start = text.index("[", start)
    pos, line, counted = start + 1, 1 + text.count("\n", 0, start), start
    space = re.compile(r"[\s,]*")
    for _ in range(count):
        pos = space.match(text, pos).end()
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
    return lines
