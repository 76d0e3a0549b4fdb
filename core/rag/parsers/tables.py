"""CSV and TSV with the project's table reader (encoding and delimiter detection, column naming, notices):
one Section per row, "column: value; column: value", under the file's name."""

from __future__ import annotations

from core.errors import DataImportError, DocumentError

from .common import Section, check_text, row_text


def read_delimited(data: bytes, name: str, warnings: list, max_bytes: int) -> list[Section]:
    from core.data.formats import read_source

    check_text(data, name)  # binary data gets the same message as for other text files
    try:
        table = read_source(data, name, max_bytes=max_bytes)
    except DataImportError as exc:
        raise DocumentError(*exc.args) from None
    warnings.extend(table.problems)
    sections = []
    for row in table.rows:
        text = row_text(table.columns, [row.get(c) for c in table.columns])
        if text:
            sections.append(Section(text, None, (name,), is_table_row=True))
    return sections
