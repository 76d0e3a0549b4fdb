"""Dataset import and export in the common formats: CSV, TSV, JSON Lines, JSON, Excel, Parquet and saved
Hugging Face dataset folders.

Import is three steps, so the UI can show each one: `read_source` parses a file into a `SourceTable`
(columns, raw rows, where each row came from, and what went wrong), `propose_mapping` guesses which column
feeds which field of a kind (`detect_kind` guesses the kind), and `apply_mapping` turns rows into records,
skipping and reporting the rows that cannot be used. `import_file` does all three. `export_records` writes
records back out; every format in `EXPORT_FORMATS[kind]` imports back to the same content (see `export` for
what each format keeps, and `table` for the formula guard on CSV and Excel cells).

Heavy libraries (openpyxl, pyarrow, datasets) are imported only when their format is used.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from core.errors import DataImportError
from core.i18n import Msg

from .binary import read_hf_folder, read_parquet, read_xlsx, unpacks_too_large
from .export import EXPORT_EXTENSIONS, EXPORT_FORMATS, export_folder, export_notes, export_records
from .mapping import MAPPING_FIELDS, ImportResult, apply_mapping, detect_kind, propose_mapping
from .table import (DEFAULT_MAX_BYTES, FORMATS, LAYOUTS, Progress, SourceTable, empty_error, format_for, guard_cell,
                    no_usable_rows_error, size_mb, unguard_cell)
from .textio import read_text_table

__all__ = ["FORMATS", "LAYOUTS", "DEFAULT_MAX_BYTES", "EXPORT_FORMATS", "EXPORT_EXTENSIONS", "MAPPING_FIELDS",
           "SourceTable", "ImportResult", "read_source", "detect_kind", "propose_mapping", "apply_mapping",
           "import_file", "export_records", "export_folder", "export_notes", "guard_cell", "unguard_cell"]


def read_source(data: bytes | Path, filename: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                progress=None) -> SourceTable:
    """Parse a file (bytes, or a path to stream it from disk; a folder is a saved Hugging Face dataset).

    The format comes from the file name's extension. `progress(fraction)` is called while big inputs are read.
    Raises DataImportError, with a message for the user, when nothing usable can be read.
    """
    path = Path(data) if isinstance(data, (str, os.PathLike)) else None
    filename = filename or (path.name if path is not None else "")
    shown = Path(filename).name or filename
    if path is not None and path.is_dir():
        fmt, size = "hf_folder", sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    else:
        fmt = format_for(filename) or (format_for(path.name) if path is not None else None)
        if fmt is None or fmt == "hf_folder":
            raise DataImportError(Msg("{file}: use a .csv, .tsv, .jsonl, .json, .xlsx or .parquet file, or a saved "
                                      "Hugging Face dataset folder.", file=shown))
        if path is not None and not path.is_file():
            raise DataImportError(Msg("{file} was not found.", file=shown))
        size = path.stat().st_size if path is not None else len(data)
    if size > max_bytes:
        raise DataImportError(Msg("{file} is larger than the {limit} MB limit ({size} MB). Split it into smaller "
                                  "files.", file=shown, limit=size_mb(max_bytes).removesuffix(".0"),
                                  size=size_mb(size)))
    if size == 0:
        raise empty_error(shown)
    too_large = None if fmt != "xlsx" else unpacks_too_large(path if path is not None else bytes(data), shown,
                                                             max_bytes)
    if too_large is not None:
        raise DataImportError(too_large)
    ticker = Progress(progress, size)
    if fmt == "hf_folder":
        table = read_hf_folder(path, shown, ticker)
    elif fmt == "xlsx":
        table = read_xlsx(path if path is not None else bytes(data), shown, ticker)
    elif fmt == "parquet":
        table = read_parquet(path if path is not None else bytes(data), shown, ticker)
    else:
        with (path.open("rb") if path is not None else io.BytesIO(data)) as handle:
            table = read_text_table(handle, shown, fmt, ticker)
    ticker.finish()
    return table


def import_file(data: bytes | Path, filename: str, kind: str | None = None, mapping: dict | None = None,
                **kw) -> tuple[str, ImportResult]:
    """Read, guess the kind and the mapping where not given, and convert: (kind, result).
    Raises DataImportError when no row could be used."""
    table = read_source(data, filename, **kw)
    kind = kind or detect_kind(table)
    result = apply_mapping(table, kind, mapping if mapping is not None else propose_mapping(table, kind))
    if not result.records and result.problems:
        raise no_usable_rows_error(Path(filename).name or filename, result.problems)
    if not result.records:
        raise DataImportError(Msg("No usable rows were found in {file}: the chosen columns are empty.",
                                  file=Path(filename).name or filename))
    return kind, result
