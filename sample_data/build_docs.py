"""Render the sample project's PDF manual and DOCX FAQ from their Markdown sources.

    python sample_data/build_docs.py

reads   sample_data/source/product-manual.md  ->  writes sample_data/docs/product-manual.pdf (fpdf2)
        sample_data/source/faq.md             ->  writes sample_data/docs/faq.docx           (python-docx)

The sources use a small Markdown subset: `#`/`##`/`###` headings, paragraphs, `- ` and `1. ` lists, pipe
tables and **bold**. The text stays Latin-1 so the PDF can use a core font (no font file to ship). Output is
byte-for-byte reproducible (fixed dates), so rebuilding unchanged sources changes no committed file.
fpdf2 is a dev dependency: `pip install -e ".[dev]"`.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE, DOCS = HERE / "source", HERE / "docs"
FIXED_DATE = dt.datetime(2026, 1, 15, 9, 0, 0, tzinfo=dt.timezone.utc)
BOLD = re.compile(r"\*\*(.+?)\*\*")


# ---- the Markdown subset ---------------------------------------------------------------------------------------

@dataclass
class Block:
    kind: str  # "heading" | "paragraph" | "bullet" | "number" | "table"
    text: str = ""
    level: int = 0  # heading level (1-3)
    rows: list[list[str]] = field(default_factory=list)  # table rows, the first is the header


def read_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    text.encode("latin-1")  # fails loudly on a character the PDF core font cannot show
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Block("paragraph", " ".join(paragraph)))
            paragraph.clear()

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            flush()
        elif line.startswith("#"):
            flush()
            hashes, _, title = line.partition(" ")
            blocks.append(Block("heading", title.strip(), level=len(hashes)))
        elif line.startswith("- "):
            flush()
            blocks.append(Block("bullet", line[2:].strip()))
        elif re.match(r"\d+\. ", line):
            flush()
            blocks.append(Block("number", line.split(" ", 1)[1].strip()))
        elif line.startswith("|"):
            flush()
            rows = [_cells(line)]
            while i < len(lines) and lines[i].strip().startswith("|"):
                if not re.fullmatch(r"\|[\s:|-]+\|", lines[i].strip()):  # skip the |---|---| rule
                    rows.append(_cells(lines[i]))
                i += 1
            blocks.append(Block("table", rows=rows))
        else:
            paragraph.append(line)
    flush()
    return blocks


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def plain(text: str) -> str:
    return BOLD.sub(r"\1", text)


# ---- PDF -------------------------------------------------------------------------------------------------------

def build_pdf(blocks: list[Block], target: Path, title: str) -> None:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    class Manual(FPDF):
        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(110)
            self.cell(0, 8, f"{title} - page {self.page_no()}", align="C")
            self.set_text_color(0)

    pdf = Manual(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_author("Lumen Bikes")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    width = pdf.epw
    number = 0
    for block in blocks:
        if block.kind == "heading":
            number = 0
            size = {1: 20, 2: 14, 3: 11.5}[block.level]
            if block.level == 2 and pdf.get_y() > pdf.h - 60:  # keep a section heading with its first lines
                pdf.add_page()
            pdf.ln(4 if block.level > 1 else 0)
            pdf.set_font("Helvetica", "B", size)
            pdf.multi_cell(width, size * 0.5, block.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.5)
        elif block.kind == "paragraph":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(width, 5.2, block.text, markdown=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2.5)
        elif block.kind in ("bullet", "number"):
            number = number + 1 if block.kind == "number" else 0
            mark = f"{number}." if block.kind == "number" else "-"
            pdf.set_font("Helvetica", "", 10.5)
            pdf.cell(7, 5.2, mark)
            pdf.multi_cell(width - 7, 5.2, block.text, markdown=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.2)
        elif block.kind == "table":
            pdf.set_font("Helvetica", "", 9.5)
            columns = len(block.rows[0])
            widths = (1.3,) + (1,) * (columns - 1) if columns > 2 else (1, 2.2)
            with pdf.table(col_widths=widths, line_height=5, text_align="LEFT",
                           headings_style=FontFace(emphasis="BOLD", fill_color=(225, 232, 240))) as table:
                for cells in block.rows:
                    row = table.row()
                    for cell in cells:
                        row.cell(plain(cell))
            pdf.ln(4)
    target.write_bytes(bytes(pdf.output()))


# ---- DOCX ------------------------------------------------------------------------------------------------------

def build_docx(blocks: list[Block], target: Path, title: str) -> None:
    import docx

    document = docx.Document()
    properties = document.core_properties
    properties.title, properties.author, properties.last_modified_by = title, "Lumen Bikes", "Lumen Bikes"
    properties.created = properties.modified = FIXED_DATE.replace(tzinfo=None)
    properties.revision = 1
    for block in blocks:
        if block.kind == "heading":
            document.add_heading(block.text, level=0 if block.level == 1 else block.level - 1)
        elif block.kind == "table":
            table = document.add_table(rows=0, cols=len(block.rows[0]))
            table.style = "Table Grid"
            for cells in block.rows:
                for cell, text in zip(table.add_row().cells, cells):
                    cell.text = plain(text)
        else:
            style = {"paragraph": None, "bullet": "List Bullet", "number": "List Number"}[block.kind]
            paragraph = document.add_paragraph(style=style)
            for k, part in enumerate(BOLD.split(block.text)):  # odd parts were between ** **
                if part:
                    paragraph.add_run(part).bold = k % 2 == 1
    buffer = io.BytesIO()
    document.save(buffer)
    target.write_bytes(_fixed_zip_dates(buffer.getvalue()))


def _fixed_zip_dates(data: bytes) -> bytes:
    """The same DOCX with every zip entry dated FIXED_DATE (python-docx stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=FIXED_DATE.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            zipped.writestr(info, source.read(entry.filename))
    return out.getvalue()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    build_pdf(read_blocks(SOURCE / "product-manual.md"), DOCS / "product-manual.pdf", "Lumen Bikes Product Manual")
    build_docx(read_blocks(SOURCE / "faq.md"), DOCS / "faq.docx", "Lumen Bikes FAQ")
    for name in ("product-manual.pdf", "faq.docx"):
        print(f"wrote {DOCS / name} ({(DOCS / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
