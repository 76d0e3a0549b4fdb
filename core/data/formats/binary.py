"""Excel workbooks, Parquet files and saved Hugging Face dataset folders.

Formulas in a workbook are never run: cells are read with their saved value (`data_only`), and a formula cell
that has no saved value (a file written by a program that does not compute formulas) is reported by name.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from core.errors import DataImportError
from core.i18n import Msg

from .table import (Problems, Progress, SourceTable, detect_layout, drop_blank_columns, empty_error, excel_unescape,
                    name_columns, no_rows_error, size_mb, unguard_cell)


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


# ---- XLSX -----------------------------------------------------------------------------------------------------

def unpacked_xml_bytes(source: bytes | Path) -> int:
    """How large an Office file's XML is once unpacked (0 when it is not a zip). A few hundred kilobytes can unpack
    to gigabytes (by mistake or on purpose), which would take hours to read; pictures and other media are not read,
    so they do not count. Sizes come from the zip's directory, which `zipfile` also holds each member to when it
    unpacks it."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return 0  # not a zip: the reader says what is wrong with it
    return sum(m.file_size for m in members if m.filename.lower().endswith((".xml", ".rels")))


def unpacks_too_large(source: bytes | Path, shown: str, max_bytes: int) -> Msg | None:
    """The message for an Office file whose XML is larger than the size limit of any file, or None."""
    unpacked = unpacked_xml_bytes(source)
    if unpacked <= max_bytes:
        return None
    return Msg("{file} unpacks to {size} MB of text and markup, more than the {limit} MB limit. Split it into smaller "
               "files.", file=shown, size=size_mb(unpacked), limit=size_mb(max_bytes).removesuffix(".0"))


def read_xlsx(source: bytes | Path, filename: str, ticker: Progress) -> SourceTable:
    import openpyxl

    def load(data_only: bool):
        return openpyxl.load_workbook(io.BytesIO(source) if isinstance(source, bytes) else source,
                                      read_only=True, data_only=data_only)

    books = []
    try:
        books.append(load(True))
        books.append(load(False))
        values_book, formula_book = books
        names = values_book.sheetnames
        order = [values_book.active.title] if values_book.active is not None else []
        order += [n for n in names if n not in order]
        for name in order:
            table = _read_sheet(values_book[name], formula_book[name], filename, ticker)
            if table is not None:
                if len(names) > 1:
                    table.problems.insert(0, Msg("The workbook has {count} sheets; only the sheet '{sheet}' was "
                                                 "read.", count=len(names), sheet=name))
                return table
        raise empty_error(filename)
    except DataImportError:
        raise
    except Exception as exc:  # openpyxl raises many kinds (zip, XML, key errors) for a file that is not a workbook
        raise DataImportError(Msg("{file} could not be read as an Excel workbook ({reason}).", file=filename,
                                  reason=_reason(exc))) from None
    finally:
        for book in books:
            book.close()


def _read_sheet(values_sheet, formula_sheet, filename: str, ticker: Progress) -> SourceTable | None:
    """The sheet as a table (first non-empty row = header), or None when it is empty."""
    from openpyxl.utils import get_column_letter

    total = values_sheet.max_row or 0
    values_sheet.reset_dimensions()  # a wrong <dimension> in the file must not cut rows or columns off
    formula_sheet.reset_dimensions()
    header, columns, rows, lines, problems = None, [], [], [], Problems()
    pairs = zip(values_sheet.iter_rows(values_only=True), formula_sheet.iter_rows(values_only=True))
    for number, (values, formulas) in enumerate(pairs, start=1):
        values = list(values)
        for i, value in enumerate(values):
            if value is None and i < len(formulas) and _is_formula(formulas[i]):
                problems.add(Msg("Cell {cell} holds a formula with no saved value; open the file in Excel, save it "
                                 "and import it again (formulas are never run here).",
                                 cell="{}{}".format(get_column_letter(i + 1), number)))
            elif isinstance(value, str):
                values[i] = unguard_cell(excel_unescape(value))
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        if header is None:
            header = values
            columns, renamed = name_columns(values)
            problems.extend(renamed)
            continue
        if len(values) > len(columns) and any(v not in (None, "") for v in values[len(columns):]):
            problems.add(Msg("Row {row} has more values than the header has columns; the extra values were "
                             "left out.", row=number))
        rows.append(dict(zip(columns, values)))
        lines.append(number)
        if total and number % 500 == 0:
            ticker.fraction(number / total)
    if header is None:
        return None
    columns = drop_blank_columns(columns, header, rows)
    if not rows:
        raise no_rows_error(filename, columns)
    return SourceTable("xlsx", detect_layout(columns, rows), columns, rows, lines, problems.done())


def _is_formula(value) -> bool:
    return (isinstance(value, str) and value.startswith("=")) or type(value).__name__ in ("ArrayFormula",
                                                                                          "DataTableFormula")


# ---- Parquet and Hugging Face folders ------------------------------------------------------------------------

def read_parquet(source: bytes | Path, filename: str, ticker: Progress) -> SourceTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(source) if isinstance(source, bytes) else str(source))
        total = parquet.metadata.num_rows
        batches = (batch for batch in parquet.iter_batches(batch_size=4096))
        return _from_batches(batches, parquet.schema_arrow.names, total, "parquet", filename, ticker)
    except DataImportError:
        raise
    except Exception as exc:
        raise DataImportError(Msg("{file} could not be read as a Parquet file ({reason}).", file=filename,
                                  reason=_reason(exc))) from None


def read_hf_folder(folder: Path, filename: str, ticker: Progress) -> SourceTable:
    import datasets

    try:
        with quiet_datasets():
            loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:
        raise DataImportError(Msg("{file} is not a saved Hugging Face dataset folder ({reason}).", file=filename,
                                  reason=_reason(exc))) from None
    notes = []
    if isinstance(loaded, datasets.DatasetDict):
        if not loaded:
            raise empty_error(filename)
        split = "train" if "train" in loaded else next(iter(loaded))
        if len(loaded) > 1:
            notes.append(Msg("The dataset has the splits {splits}; only '{split}' was read.",
                             splits=", ".join(loaded), split=split))
        loaded = loaded[split]
    batches = (loaded.data.slice(i, 4096) for i in range(0, loaded.num_rows, 4096))
    table = _from_batches(batches, loaded.column_names, loaded.num_rows, "hf_folder", filename, ticker)
    table.problems[:0] = notes
    return table


def _from_batches(batches, names, total, fmt, filename, ticker) -> SourceTable:
    columns, problems = name_columns(names)
    rows = []
    for batch in batches:
        values = [column.to_pylist() for column in batch.columns]
        rows.extend(dict(zip(columns, row)) for row in zip(*values))
        ticker.fraction(len(rows) / max(total, 1))
    if not rows:
        raise no_rows_error(filename, columns)
    # Parquet struct columns give every key to every row; keys that are null only because of that are dropped
    # where message lists are read (see mapping).
    return SourceTable(fmt, detect_layout(columns, rows), columns, rows, list(range(1, len(rows) + 1)), problems)


@contextlib.contextmanager
def quiet_datasets():
    """Hide the `datasets` progress bars for a moment, as they were before afterwards."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
