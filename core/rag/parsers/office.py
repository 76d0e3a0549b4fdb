"""Word (python-docx) and Excel (openpyxl) files.

DOCX: body paragraphs in order, grouped under their heading path (Title, Heading 1-9, or any style or
paragraph with an outline level); each table row after the first is one Section, "header: value; …", with the
first row as the header. Text boxes, headers, footers, comments and tables nested in cells are not read.

XLSX: every worksheet, one Section per row under the sheet's name, with the project's Excel reader (saved values
only: formulas are never run; a formula with no saved value is reported).
"""

from __future__ import annotations

import io
import re

from core.errors import DataImportError, DocumentError
from core.i18n import Msg

from .common import OLE_MAGIC, Outline, Section, reason, row_text

_HEADING_STYLE = re.compile(r"heading ([1-9])", re.IGNORECASE)


# ---- DOCX -------------------------------------------------------------------------------------------------------

def heading_level(paragraph) -> int | None:
    """0 for Title, 1-9 for headings (by style name, along the style's base styles, or outline level)."""
    from docx.oxml.ns import qn

    level = _outline_level(paragraph._p.pPr, qn)
    if level is not None:
        return level
    style, seen = paragraph.style, 0
    while style is not None and seen < 10:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        found = _HEADING_STYLE.fullmatch(name)
        if found:
            return int(found.group(1))
        level = _outline_level(style.element.pPr, qn)
        if level is not None:
            return level
        style, seen = style.base_style, seen + 1
    return None


def _outline_level(ppr, qn) -> int | None:
    node = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    value = node.get(qn("w:val")) if node is not None else None
    return int(value) + 1 if value is not None and value.isdigit() and int(value) < 9 else None


def _row_cells(row) -> list[str]:
    """The row's cells, a cell merged across columns counted once."""
    cells, seen = [], set()
    for cell in row.cells:
        if id(cell._tc) not in seen:
            seen.add(id(cell._tc))
            cells.append(cell.text)
    return cells


def is_list_item(paragraph) -> bool:
    """A bulleted or numbered paragraph: Word's numbering on the paragraph or its style ("List Bullet")."""
    properties = paragraph._p.pPr
    if properties is not None and properties.numPr is not None:
        return True
    style = paragraph.style
    while style is not None:
        if style.name.lower().startswith("list") or (style.element.pPr is not None
                                                     and style.element.pPr.numPr is not None):
            return True
        style = style.base_style
    return False


def read_docx(data: bytes, name: str, warnings: list) -> list[Section]:
    if data.startswith(OLE_MAGIC):
        raise DocumentError(Msg("{file} is not a DOCX file: it is password-protected or an old Word (.doc) file. "
                                "Save it as .docx without a password and upload it again.", file=name))
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        outline = Outline(joiner="\n\n")
        in_list, introduces = False, False
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                outline.table([_row_cells(row) for row in block.rows])
                in_list = introduces = False
                continue
            level = heading_level(block)
            if level is None:
                item = is_list_item(block)
                # a list is one paragraph with the line that introduces it, as the PDF and web readers keep it
                outline.text(block.text, same_paragraph=item and (in_list or introduces))
                in_list, introduces = item, block.text.rstrip().endswith(":")
            else:
                outline.heading(level, block.text)
                in_list = introduces = False
        return outline.done()
    except Exception as exc:  # zip, XML and package errors for a file that is not a Word document
        raise DocumentError(Msg("{file} could not be read as a Word document ({reason}).", file=name,
                                reason=reason(exc))) from None


# ---- XLSX -------------------------------------------------------------------------------------------------------

def read_xlsx(data: bytes, name: str, warnings: list) -> list[Section]:
    if data.startswith(OLE_MAGIC):
        raise DocumentError(Msg("{file} is not an XLSX file: it is password-protected or an old Excel (.xls) file. "
                                "Save it as .xlsx without a password and upload it again.", file=name))
    import openpyxl

    from core.data.formats.binary import _read_sheet
    from core.data.formats.table import Progress

    books, sections = [], []
    try:
        books.append(openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True))
        books.append(openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False))
        values_book, formula_book = books
        sheets = values_book.worksheets
        for sheet in sheets:
            try:
                table = _read_sheet(sheet, formula_book[sheet.title], name, Progress(None, 1))
            except DataImportError:  # a sheet with a header and no rows
                continue
            if table is None:
                continue
            for problem in table.problems:
                warnings.append(Msg("Sheet '{sheet}': {problem}", sheet=sheet.title, problem=problem)
                                if len(sheets) > 1 else problem)
            for row in table.rows:
                text = row_text(table.columns, [row.get(c) for c in table.columns])
                if text:
                    sections.append(Section(text, None, (sheet.title,), is_table_row=True))
    except Exception as exc:  # openpyxl raises zip, XML and key errors for a file that is not a workbook
        raise DocumentError(Msg("{file} could not be read as an Excel workbook ({reason}).", file=name,
                                reason=reason(exc))) from None
    finally:
        for book in books:
            book.close()
    return sections
