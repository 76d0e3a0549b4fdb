"""The assistant report (core.report) as a PDF, drawn with fpdf2's cells, tables and rectangles.

Vietnamese needs a Unicode TrueType font; find_font() looks for one where Linux, macOS and Windows keep them. Without
one there is no PDF: the HTML report prints to PDF from any browser. This module only reads the report's fields,
so it never imports core.report (which imports it).
"""

from __future__ import annotations

from pathlib import Path

# (regular, bold) pairs, the first one found wins; a font without its bold face is used for both.
FONT_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf", "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf"),
    ("/usr/share/fonts/noto/NotoSans-Regular.ttf", "/usr/share/fonts/noto/NotoSans-Bold.ttf"),
    ("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
     "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
    ("/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
     "/usr/share/fonts/liberation-sans/LiberationSans-Bold.ttf"),
    ("/Library/Fonts/Arial Unicode.ttf", "/Library/Fonts/Arial Unicode.ttf"),
    ("/System/Library/Fonts/Supplemental/Arial Unicode.ttf", "/System/Library/Fonts/Supplemental/Arial Bold.ttf"),
    ("C:\\Windows\\Fonts\\arial.ttf", "C:\\Windows\\Fonts\\arialbd.ttf"),
)
FAMILY = "report"
INK, MUTED, ACCENT, BEST, LINE = (31, 41, 51), (97, 110, 124), (59, 111, 216), (31, 157, 85), (217, 222, 227)
HEADING_FILL = (243, 245, 247)
WIDTH = 180  # mm of A4 between the margins (15 mm each side)


def find_font() -> tuple[Path, Path] | None:
    """(regular, bold) TrueType files of a font that has Vietnamese letters, or None."""
    for regular, bold in FONT_CANDIDATES:
        regular_path, bold_path = Path(regular), Path(bold)
        if regular_path.is_file():
            return regular_path, bold_path if bold_path.is_file() else regular_path
    return None


def render(report) -> bytes:
    """A core.report.Report as PDF bytes. Raises FileNotFoundError when no Unicode font is found."""
    from fpdf import FPDF

    font = find_font()
    if font is None:
        raise FileNotFoundError("No Unicode TrueType font found for the PDF report.")
    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_font(FAMILY, "", str(font[0]))
    pdf.add_font(FAMILY, "B", str(font[1]))
    pdf.set_title(f"{report.title} · {report.text['report']}")
    pdf.set_creator("LLM Customization Studio")
    pdf.add_page()
    _header(pdf, report)
    _scoreboard(pdf, report)
    _samples(pdf, report)
    _pairs(pdf, report.text["recipe"], report.recipe)
    if report.data:
        _pairs(pdf, report.text["data"], report.data)
    pdf.ln(4)
    _paragraph(pdf, report.text["footnote"], size=8, color=MUTED)
    return bytes(pdf.output())


def _paragraph(pdf, text: str, size: float = 10, bold: bool = False, color=INK, height: float | None = None) -> None:
    pdf.set_font(FAMILY, "B" if bold else "", size)
    pdf.set_text_color(*color)
    pdf.multi_cell(0, height or size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")


def _heading(pdf, text: str) -> None:
    if pdf.will_page_break(20):
        pdf.add_page()
    pdf.ln(4)
    _paragraph(pdf, text, size=13, bold=True)
    pdf.set_draw_color(*LINE)
    pdf.line(pdf.l_margin, pdf.get_y() + 0.5, pdf.l_margin + WIDTH, pdf.get_y() + 0.5)
    pdf.ln(2.5)


def _header(pdf, report) -> None:
    _paragraph(pdf, report.text["report"].upper(), size=9, bold=True, color=ACCENT)
    _paragraph(pdf, report.title, size=20, bold=True, height=9)
    _paragraph(pdf, report.subtitle, size=10, color=MUTED)
    pdf.set_draw_color(*ACCENT)
    pdf.set_line_width(0.8)
    pdf.line(pdf.l_margin, pdf.get_y() + 1.5, pdf.l_margin + WIDTH, pdf.get_y() + 1.5)
    pdf.set_line_width(0.2)
    pdf.ln(3)


def _scoreboard(pdf, report) -> None:
    _heading(pdf, report.text["scoreboard"])
    if not report.rows:
        _paragraph(pdf, report.text["no_answers" if report.run_id else "no_run"])
        return
    _paragraph(pdf, report.run_caption, size=9, color=MUTED)
    pdf.ln(1.5)
    columns = len(report.headers)
    label_width = 44 if columns > 2 else WIDTH / 2
    other = (WIDTH - label_width) / max(1, columns - 1)
    pdf.set_font(FAMILY, "", 7.5 if columns > 7 else 8.5)
    pdf.set_text_color(*INK)
    pdf.set_draw_color(*LINE)
    with pdf.table(col_widths=(label_width, *([other] * (columns - 1))), width=WIDTH, line_height=4, padding=1,
                   text_align=("LEFT", *["RIGHT"] * (columns - 1)), headings_style=_bold_style(HEADING_FILL),
                   borders_layout="HORIZONTAL_LINES") as table:
        table.row(list(report.headers))
        for row in report.rows:
            cells = table.row()
            cells.cell(row.label + (f"\n{row.note}" if row.note else ""), style=_bold_style() if row.best else None)
            for value in row.cells:
                cells.cell(value)
    if report.bars:
        _chart(pdf, report)
    if report.text.get("best"):
        pdf.ln(1)
        _paragraph(pdf, report.text["best"], size=10, bold=True)


def _bold_style(fill=None):
    from fpdf.fonts import FontFace

    return FontFace(family=FAMILY, emphasis="BOLD", fill_color=fill)


def _chart(pdf, report) -> None:
    """Horizontal bars of the main metric, 0 to 1: label, bar, value."""
    bars, label, span, row = report.bars, 50, 110, 6
    if pdf.will_page_break(row * len(bars) + 12):
        pdf.add_page()
    pdf.ln(3)
    top, left = pdf.get_y(), pdf.l_margin
    pdf.set_fill_color(247, 248, 250)
    pdf.rect(left + label, top, span, row * len(bars), style="F")
    pdf.set_font(FAMILY, "", 8)
    for index, bar in enumerate(bars):
        y = top + index * row
        pdf.set_text_color(*INK)
        pdf.set_xy(left, y)
        pdf.cell(label - 2, row, _fit(pdf, bar.label, label - 3), align="R")
        pdf.set_fill_color(*(BEST if bar.best else ACCENT))
        if bar.main > 0:
            pdf.rect(left + label, y + 1, span * bar.main, row - 2, style="F")
        pdf.set_xy(left + label + span * bar.main + 1.5, y)
        pdf.cell(20, row, f"{bar.main:.2f}")
    pdf.set_fill_color(255, 255, 255)  # tables after the chart fill with the current colour
    pdf.set_xy(left, top + row * len(bars) + 1)
    _paragraph(pdf, report.text.get("chart", ""), size=8, color=MUTED)


def _fit(pdf, text: str, width: float) -> str:
    """`text` cut with an ellipsis to fit `width` mm in the current font."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _samples(pdf, report) -> None:
    if not report.samples:
        return
    _heading(pdf, report.text["samples"])
    for sample in report.samples:
        if pdf.will_page_break(30):
            pdf.add_page()
        items = [(report.text["question"], sample.question)]
        if sample.reference:
            items.append((report.text["reference"], sample.reference))
        items.append((report.text["answer"], sample.answer + (f" ({sample.score})" if sample.score else "")))
        items.append((report.text["sources"], "\n".join(f"{i}. {s}" for i, s in enumerate(sample.sources, 1))
                      or report.text["no_sources"]))
        _table(pdf, items, size=9)
        pdf.ln(3)


def _pairs(pdf, title: str, items) -> None:
    _heading(pdf, title)
    _table(pdf, items, size=9)


def _table(pdf, items, size: float) -> None:
    """Two columns: a bold label, then its wrapped text."""
    pdf.set_font(FAMILY, "", size)
    pdf.set_text_color(*INK)
    pdf.set_draw_color(*LINE)
    with pdf.table(col_widths=(40, WIDTH - 40), first_row_as_headings=False, line_height=size * 0.5, padding=1,
                   borders_layout="HORIZONTAL_LINES", text_align="LEFT", width=WIDTH) as table:
        for label, value in items:
            row = table.row()
            row.cell(label, style=_bold_style())
            row.cell(value or "–")
