"""Word (python-docx), PowerPoint (python-pptx) and Excel (openpyxl) files.

DOCX: body paragraphs in order, grouped under their heading path (Title, Heading 1-9, or any style or
paragraph with an outline level); each table row after the first is one Section, "header: value; …", with the
first row as the header. Numbered paragraphs and headings keep the numbers Word shows ("2.", "b)", "1.2"), which
python-docx leaves out: `Numbering` counts them from the numbering part. Text boxes and footnotes follow the paragraph
they belong to; headers, footers, comments and tables nested in cells are not read.

PPTX: one Section per slide, under the slide's title (and the deck's title, from a first slide laid out as a title
slide); its text boxes in reading order (top to bottom, left to right), a box's bullets one paragraph; tables and
charts' data as rows; the speaker notes after the slide's text. Footers, dates and slide numbers are left out.

XLSX: every worksheet, one Section per row under the sheet's name, with the project's Excel reader (saved values
only: formulas are never run; a formula with no saved value is reported).
"""

from __future__ import annotations

import io
import re

from core.data.formats.binary import unpacks_too_large
from core.errors import DataImportError, DocumentError
from core.i18n import Msg

from .common import OLE_MAGIC, Outline, Section, one_line, reason, row_text

_HEADING_STYLE = re.compile(r"heading ([1-9])", re.IGNORECASE)


def check_unpacked(data: bytes, name: str, max_bytes: int) -> None:
    """A Word or Excel file's XML must fit the size limit of any file (see unpacked_xml_bytes)."""
    too_large = unpacks_too_large(data, name, max_bytes)
    if too_large is not None:
        raise DocumentError(too_large)


# ---- DOCX -------------------------------------------------------------------------------------------------------

MAX_STYLE_DEPTH = 10  # base styles followed at most: a file may name styles based on each other in a loop


def style_chain(paragraph):
    """The paragraph's style, then the styles it is based on."""
    style, seen = paragraph.style, 0
    while style is not None and seen < MAX_STYLE_DEPTH:
        yield style
        style, seen = style.base_style, seen + 1


def heading_level(paragraph) -> int | None:
    """0 for Title, 1-9 for headings (by style name, along the style's base styles, or outline level)."""
    from docx.oxml.ns import qn

    level = _outline_level(paragraph._p.pPr, qn)
    if level is not None:
        return level
    for style in style_chain(paragraph):
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        found = _HEADING_STYLE.fullmatch(name)
        if found:
            return int(found.group(1))
        level = _outline_level(style.element.pPr, qn)
        if level is not None:
            return level
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
            cells.append(cell_text(cell._tc))
    return cells


_SHOWN = {"t": None, "tab": "\t", "ptab": "\t", "br": "\n", "cr": "\n", "noBreakHyphen": "-"}
# what is not the paragraph's own text: its properties, deleted text, and drawings or text boxes (read on their own)
_NOT_SHOWN = ("pPr", "rPr", "del", "moveFrom", "drawing", "pict", "txbxContent")
_MARKUP_COMPATIBILITY = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_ALTERNATE, _FALLBACK = _MARKUP_COMPATIBILITY + "AlternateContent", _MARKUP_COMPATIBILITY + "Fallback"


def _inside(node, top, tags: set) -> bool:
    """Whether an element with one of `tags` lies between `node` (itself included) and its ancestor `top`."""
    while node is not None and node is not top:
        if node.tag in tags:
            return True
        node = node.getparent()
    return False


def paragraph_text(p_element) -> str:
    """The text Word shows for a paragraph, with the runs inside content controls, tracked insertions and simple
    fields, which python-docx's `Paragraph.text` leaves out (a form's filled-in "Customer: Harbour Logistics" read
    "Customer: ")."""
    from docx.oxml.ns import qn

    hidden = {qn("w:" + tag) for tag in _NOT_SHOWN} | {_ALTERNATE}
    parts = []
    for node in p_element.iter(*(qn("w:" + tag) for tag in _SHOWN)):
        if _inside(node, p_element, hidden):
            continue
        tag = node.tag.rsplit("}", 1)[-1]
        if tag == "t":
            parts.append(node.text or "")
        elif tag == "br" and node.get(qn("w:type")) not in (None, "textWrapping"):
            continue  # a page or column break shows no text
        else:
            parts.append(_SHOWN[tag])
    return "".join(parts)


def cell_text(tc_element) -> str:
    """A table cell's paragraphs, one per line (content controls and text boxes included, as in `paragraph_text`;
    the copy of a text box Word keeps for older readers, `mc:Fallback`, is not read twice)."""
    from docx.oxml.ns import qn

    return "\n".join(paragraph_text(p) for p in tc_element.iter(qn("w:p")) if not _inside(p, tc_element, {_FALLBACK}))


def is_list_item(paragraph) -> bool:
    """A bulleted or numbered paragraph: Word's numbering on the paragraph or its style ("List Bullet")."""
    properties = paragraph._p.pPr
    if properties is not None and properties.numPr is not None:
        return True
    return any((style.name or "").lower().startswith("list") or (style.element.pPr is not None
                                                                  and style.element.pPr.numPr is not None)
               for style in style_chain(paragraph))


_ROMAN = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"), (40, "xl"),
          (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))


def _roman(number: int) -> str:
    out = ""
    for value, letters in _ROMAN:
        count, number = divmod(number, value)
        out += letters * count
    return out


def _letters(number: int) -> str:
    """Word's letter numbering: a … z, then aa … zz."""
    return chr(ord("a") + (number - 1) % 26) * ((number - 1) // 26 + 1)


NUMBER_FORMATS = {
    "decimal": str, "decimalZero": lambda n: f"{n:02d}", "lowerLetter": _letters,
    "upperLetter": lambda n: _letters(n).upper(), "lowerRoman": _roman, "upperRoman": lambda n: _roman(n).upper(),
}


class Numbering:
    """The numbers Word shows before numbered paragraphs ("1.", "2.1", "b)"), which python-docx does not give.

    Counts level by level as Word does: a level restarts after a higher one; lists that share a definition
    (abstractNum) count on together unless one restarts with a start override. Bullets and formats not in
    NUMBER_FORMATS get no label."""

    def __init__(self, document):
        from docx.oxml.ns import qn

        self._qn = qn
        self.levels: dict[str, dict[int, tuple[str, str, int]]] = {}  # numId -> ilvl -> (format, text, start)
        self.counted_as: dict[str, str] = {}  # numId -> whose counters it uses
        self.style_levels: dict[str, int] = {}  # a list level tied to a paragraph style (w:pStyle)
        self.counters: dict[str, dict[int, int]] = {}
        try:
            root = document.part.numbering_part.element
        except Exception:  # no numbering part: nothing is numbered
            return
        abstract = {node.get(qn("w:abstractNumId")): self._read_levels(node)
                    for node in root.findall(qn("w:abstractNum"))}
        for num in root.findall(qn("w:num")):
            ref = num.find(qn("w:abstractNumId"))
            abstract_id = ref.get(qn("w:val")) if ref is not None else None
            levels = dict(abstract.get(abstract_id, {}))
            num_id = num.get(qn("w:numId"))
            self.counted_as[num_id] = f"abstract {abstract_id}"
            for override in num.findall(qn("w:lvlOverride")):
                ilvl, start = self._int(override.get(qn("w:ilvl"))), override.find(qn("w:startOverride"))
                if ilvl in levels and start is not None:
                    fmt, text, _ = levels[ilvl]
                    levels[ilvl] = (fmt, text, self._int(start.get(qn("w:val")), 1))
                    self.counted_as[num_id] = num_id
            self.levels[num_id] = levels

    def _int(self, value, default: int = 0) -> int:
        return int(value) if value is not None and value.isdigit() else default

    def _read_levels(self, abstract) -> dict[int, tuple[str, str, int]]:
        qn, levels = self._qn, {}
        for lvl in abstract.findall(qn("w:lvl")):
            ilvl = self._int(lvl.get(qn("w:ilvl")))
            fmt, text, start, style = (lvl.find(qn(tag)) for tag in ("w:numFmt", "w:lvlText", "w:start", "w:pStyle"))
            levels[ilvl] = (fmt.get(qn("w:val")) if fmt is not None else "decimal",
                            text.get(qn("w:val")) or "" if text is not None else "",
                            self._int(start.get(qn("w:val")), 1) if start is not None else 1)
            if style is not None:
                self.style_levels[style.get(qn("w:val"))] = ilvl
        return levels

    def _list_of(self, paragraph) -> tuple[str, int] | None:
        qn = self._qn
        properties = paragraph._p.pPr
        num_pr = properties.numPr if properties is not None else None
        if num_pr is not None and num_pr.numId is not None:
            ilvl = num_pr.ilvl.val if num_pr.ilvl is not None else 0
            return str(num_pr.numId.val), ilvl
        for style in style_chain(paragraph):
            ppr = style.element.pPr
            if ppr is not None and ppr.numPr is not None and ppr.numPr.numId is not None:
                ilvl = ppr.numPr.ilvl.val if ppr.numPr.ilvl is not None else self.style_levels.get(style.style_id, 0)
                return str(ppr.numPr.numId.val), ilvl
        return None

    def label(self, paragraph) -> str:
        """The paragraph's number as Word shows it ("3.", "1.2", "(b)"), counting it; "" when it has none."""
        try:
            return self._label(paragraph)
        except (ValueError, KeyError, TypeError, AttributeError):  # odd numbering never costs the text
            return ""

    def _label(self, paragraph) -> str:
        found = self._list_of(paragraph)
        levels = self.levels.get(found[0]) if found else None
        if not levels or found[1] not in levels:
            return ""  # numId 0 (numbering removed) or an unknown list
        num_id, ilvl = found
        counters = self.counters.setdefault(self.counted_as[num_id], {})
        counters[ilvl] = counters.get(ilvl, levels[ilvl][2] - 1) + 1
        for deeper in [level for level in counters if level > ilvl]:
            del counters[deeper]  # a sub-list starts again under the next item

        def shown(match: re.Match) -> str:
            level = int(match.group(1)) - 1
            fmt, _, start = levels.get(level, ("decimal", "", 1))
            number = counters.get(level, start)
            return NUMBER_FORMATS[fmt](number) if fmt in NUMBER_FORMATS else ""

        fmt, text, _ = levels[ilvl]
        if fmt not in NUMBER_FORMATS:
            return ""  # bullets, pictures, or a format this reader does not write
        return re.sub(r"%([1-9])", shown, text).strip()


def numbered(label: str, text: str) -> str:
    return f"{label} {text}" if label and text.strip() else text


_TOC_STYLE = re.compile(r"toc( \d| heading)?", re.IGNORECASE)  # Word's "TOC 1" … "TOC 9" and "TOC Heading"


def text_boxes(p_element):
    """The text boxes anchored in a paragraph (their <w:txbxContent>), not those inside another box (read with
    it); the copy Word keeps for older readers (mc:Fallback) is not read twice."""
    from docx.oxml.ns import qn

    box_tag = qn("w:txbxContent")
    for box in p_element.iter(box_tag):
        if not _inside(box.getparent(), p_element, {box_tag, _FALLBACK}):
            yield box


_NOTE_KINDS = ("footnote", "endnote")


def notes_of(document) -> dict[tuple[str, str], list]:
    """The document's footnotes and endnotes, their paragraphs by (kind, id); the separator lines Word keeps as
    notes of their own are left out."""
    from docx.opc.constants import RELATIONSHIP_TYPE
    from docx.oxml import parse_xml
    from docx.oxml.ns import qn

    notes = {}
    for kind in _NOTE_KINDS:
        try:
            part = document.part.part_related_by(getattr(RELATIONSHIP_TYPE, kind.upper() + "S"))
        except KeyError:
            continue
        root = part.element if hasattr(part, "element") else parse_xml(part.blob)
        for note in root.iterchildren(qn("w:" + kind)):
            if note.get(qn("w:type")) in (None, "normal"):
                notes[(kind, note.get(qn("w:id")))] = list(note.iter(qn("w:p")))
    return notes


def is_note(paragraph) -> bool:
    from docx.oxml.ns import qn

    return paragraph._p.getparent().tag in {qn("w:" + kind) for kind in _NOTE_KINDS}


def body_blocks(document):
    """The body's paragraphs and tables in reading order, also those inside content controls (<w:sdt>), which
    python-docx's `iter_inner_content` skips: a template's filled-in fields or a section kept in a rich-text
    control lost all its text. A text box's paragraphs follow the paragraph it is anchored in. A table of contents
    (a control of Word's "Table of Contents" gallery, or paragraphs in its TOC styles) is left out: its lines say
    where the headings are, and keyword search found them for each. The footnotes and endnotes a paragraph refers
    to follow it too, as they explain it."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    body = document._body
    notes = notes_of(document)
    references = {qn(f"w:{kind}Reference"): kind for kind in _NOTE_KINDS}

    def blocks(element):
        for child in element.iterchildren():
            if child.tag == qn("w:p"):
                paragraph = Paragraph(child, body)
                if not any(_TOC_STYLE.fullmatch((style.name or "").strip()) for style in style_chain(paragraph)):
                    yield paragraph
                for box in text_boxes(child):
                    yield from blocks(box)
                for reference in child.iter(*references):
                    if not _inside(reference, child, {_FALLBACK}):
                        for note in notes.pop((references[reference.tag], reference.get(qn("w:id"))), []):
                            yield Paragraph(note, body)
            elif child.tag == qn("w:tbl"):
                yield Table(child, body)
            elif child.tag == qn("w:sdt"):
                gallery = child.find(f"{qn('w:sdtPr')}/{qn('w:docPartObj')}/{qn('w:docPartGallery')}")
                content = child.find(qn("w:sdtContent"))
                if content is not None and (gallery is None or gallery.get(qn("w:val")) != "Table of Contents"):
                    yield from blocks(content)

    yield from blocks(body._element)


def read_docx(data: bytes, name: str, warnings: list) -> list[Section]:
    if data.startswith(OLE_MAGIC):
        raise DocumentError(Msg("{file} is not a DOCX file: it is password-protected or an old Word (.doc) file. "
                                "Save it as .docx without a password and upload it again.", file=name))
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        numbering = Numbering(document)
        outline = Outline(joiner="\n\n")
        in_list, introduces = False, False
        for block in body_blocks(document):
            if isinstance(block, Table):
                outline.table([_row_cells(row) for row in block.rows])
                in_list = introduces = False
                continue
            level, text = heading_level(block), paragraph_text(block._p)
            if is_note(block):
                level, text = None, text.strip()  # a note starts with its mark, then a space
            if level is None:
                item = is_list_item(block)
                # a list is one paragraph with the line that introduces it, as the PDF and web readers keep it
                outline.text(numbered(numbering.label(block), text), same_paragraph=item and (in_list or introduces))
                in_list, introduces = item, text.rstrip().endswith(":")
            else:
                outline.heading(level, numbered(numbering.label(block), text))
                in_list = introduces = False
        return outline.done()
    except Exception as exc:  # zip, XML and package errors for a file that is not a Word document
        raise DocumentError(Msg("{file} could not be read as a Word document ({reason}).", file=name,
                                reason=reason(exc))) from None


# ---- PPTX -------------------------------------------------------------------------------------------------------

# Placeholders that repeat on every slide, not its content.
_SLIDE_FURNITURE = {"FOOTER", "DATE", "SLIDE_NUMBER", "HEADER"}


def _placeholder_kind(shape) -> str | None:
    if not shape.is_placeholder:
        return None
    try:
        return shape.placeholder_format.type.name
    except (AttributeError, ValueError):  # a placeholder type python-pptx does not know
        return None


def _reading_order(shapes) -> list:
    """Shapes top to bottom, then left to right (their order in the file is the drawing order)."""
    return sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))


def _category_axis_title(chart) -> str:
    try:
        axis = chart.category_axis
        return axis.axis_title.text_frame.text if axis.has_title else ""
    except (ValueError, AttributeError):  # a pie chart has no axes
        return ""


def _chart_rows(chart) -> list[list]:
    """A chart's data as a table: its title, a header of series names, a row per category."""
    plot = chart.plots[0]
    series = list(plot.series)
    rows = [[chart.chart_title.text_frame.text]] if chart.has_title and chart.chart_title.has_text_frame else []
    rows.append([_category_axis_title(chart), *(s.name or "" for s in series)])
    values = [list(s.values) for s in series]
    for index, category in enumerate(plot.categories):
        rows.append([category, *(v[index] if index < len(v) else None for v in values)])
    return rows


_DIAGRAM = "{http://schemas.openxmlformats.org/drawingml/2006/diagram}"
_DRAWING = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_RELATIONSHIP = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def _diagram_lines(shape, slide_part) -> list[str]:
    """A SmartArt graphic's text, a line per box: its data part's points of type "node" (the others are
    connectors and layout), which python-pptx does not read."""
    from lxml import etree

    lines = []
    for ids in shape._element.iter(_DIAGRAM + "relIds"):
        data = etree.fromstring(slide_part.related_part(ids.get(_RELATIONSHIP + "dm")).blob)
        for point in data.iter(_DIAGRAM + "pt"):
            if point.get("type", "node") == "node":
                text = "\n".join("".join(t.text or "" for t in paragraph.iter(_DRAWING + "t"))
                                 for paragraph in point.iter(_DRAWING + "p"))
                if text.strip():
                    lines.append(text)
    return lines


def _slide_shapes(shapes, outline: Outline, slide_part) -> int:
    """Reads the shapes' text into `outline`; returns how many could not be read (left out)."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    unread = 0
    for shape in _reading_order(shapes):
        kind = _placeholder_kind(shape)
        if kind in _SLIDE_FURNITURE or kind in ("TITLE", "CENTER_TITLE", "VERTICAL_TITLE"):
            continue
        lines: list[str] = []
        try:
            if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
                unread += _slide_shapes(shape.shapes, outline, slide_part)
            elif shape.has_text_frame:
                lines = [p.text for p in shape.text_frame.paragraphs if p.text.strip()]
            elif getattr(shape, "has_table", False) and shape.has_table:
                outline.table([[cell.text for cell in row.cells if not cell.is_spanned] for row in shape.table.rows])
            elif getattr(shape, "has_chart", False) and shape.has_chart:
                outline.table(_chart_rows(shape.chart))
            else:
                lines = _diagram_lines(shape, slide_part)
        except Exception:  # one odd shape (a chart kind without categories, a broken part) never costs the deck
            unread += 1
        if lines:
            outline.text("\n".join(lines))
    return unread


def read_pptx(data: bytes, name: str, warnings: list) -> list[Section]:
    if data.startswith(OLE_MAGIC):
        raise DocumentError(Msg("{file} is not a PPTX file: it is password-protected or an old PowerPoint (.ppt) "
                                "file. Save it as .pptx without a password and upload it again.", file=name))
    import pptx

    try:
        deck = pptx.Presentation(io.BytesIO(data))
        outline, unread = Outline(joiner="\n\n"), 0
        for number, slide in enumerate(deck.slides, 1):
            outline.flush()
            outline.page = number
            title_shape = slide.shapes.title
            title = one_line(title_shape.text_frame.text) if title_shape is not None else ""
            if number == 1 and title and _placeholder_kind(title_shape) == "CENTER_TITLE":
                outline.heading(0, title)  # a title slide: the deck's name heads every slide
            else:
                outline.stack = outline.stack[:1] if outline.stack and outline.stack[0][0] == 0 else []
                if title:
                    outline.heading(1, title)
            unread += _slide_shapes(slide.shapes, outline, slide.part)
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text
                if notes.strip():
                    outline.text(notes)
        sections = outline.done()
    except Exception as exc:  # zip, XML and package errors for a file that is not a presentation
        raise DocumentError(Msg("{file} could not be read as a PowerPoint presentation ({reason}).", file=name,
                                reason=reason(exc))) from None
    if unread:
        warnings.append(Msg("{file}: some charts or graphics could not be read and were left out ({count}).",
                            file=name, count=unread))
    return sections


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
