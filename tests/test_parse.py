"""Document parsing for the knowledge base (core.rag.parse): every format, with fixtures made in tmp_path."""

from __future__ import annotations

import datetime
import hashlib
import io
from pathlib import Path

import pytest

from core.errors import DocumentError
from core.i18n import Msg
from core.rag.parse import DEFAULT_MAX_BYTES, SUPPORTED, ParsedDocument, Section, parse_document, safe_name

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
VI = "Chính sách đổi trả: hàng được đổi trong vòng 30 ngày. Tiếng Việt: ằ ắ ẳ ẵ ặ ỹ Đ Ư ơ"
VI_DECOMPOSED = "Tiê\u0301ng Viê\u0323t, ha\u0300ng đươ\u0323c đô\u0309i"  # as Windows-1258 files store it


def saved(tmp_path: Path, name: str, write) -> bytes:
    """Write a fixture with `write(path)` and read its bytes back."""
    path = tmp_path / name
    write(path)
    return path.read_bytes()


def outline(doc: ParsedDocument) -> list[tuple]:
    return [(s.headings, s.text, s.is_table_row) for s in doc.sections]


def error_for(data: bytes, filename: str, **kw) -> Msg:
    with pytest.raises(DocumentError) as caught:
        parse_document(data, filename, **kw)
    message = caught.value.args[0]
    assert isinstance(message, Msg), "errors must be Msg objects so the UI can translate them"
    return message


# ---- safe names ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename, expected", [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("/abs/path/a.md", "a.md"),
    ("C:\\x\\y.docx", "y.docx"),
    ("C:y.docx", "y.docx"),
    ("..", "document"),
    ("../..", "document"),
    (".", "document"),
    ("", "document"),
    ("C:", "document"),
    ("folder/", "folder"),
    ("\\\\server\\share\\report.pdf", "report.pdf"),
    ("bad\x00name\n\t.txt", "badname.txt"),
    ("invoice\u202efdp.txt", "invoicefdp.txt"),
    ("  Báo cáo quý 3.pdf  ", "Báo cáo quý 3.pdf"),
    ("Ba\u0301o ca\u0301o.md", "Ba\u0301o ca\u0301o.md"),  # macOS (decomposed) names are kept as they are
    ('Q&A: "pricing"?.md', "Q&A_ _pricing__.md"),  # characters Windows refuses in a file name
    ("report. . ", "report"),
    ("CON.txt", "_CON.txt"),
    ("con", "_con"),
    ("contract.txt", "contract.txt"),
])
def test_safe_name(filename, expected):
    assert safe_name(filename) == expected


@pytest.mark.parametrize("stem", ["x" * 500, "Hợp đồng " * 60])
def test_safe_name_cuts_long_names_to_200_bytes_but_keeps_the_extension(stem):
    name = safe_name(stem + ".pdf")
    assert name.endswith(".pdf") and 190 < len(name.encode("utf-8")) <= 200
    assert (stem + ".pdf").startswith(name[:-4])


def test_the_safe_name_is_the_source_and_is_what_errors_show():
    assert parse_document(b"Hello", "../../etc/passwd.txt").source == "passwd.txt"
    message = error_for(b"", "../../secret/dir/empty.txt")
    assert str(message) == "empty.txt is empty." and "secret" not in str(message)


# ---- refused files --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, filename, options, expected", [
    (b"", "notes.txt", {}, "notes.txt is empty."),
    (b"", "scan.pdf", {}, "scan.pdf is empty."),
    (b"MZ\x90\x00", "tool.exe", {}, "tool.exe: this file type is not supported; use PDF, DOCX, PPTX, HTML, "
                                    "Markdown, TXT, CSV or XLSX."),
    (b"hello", "README", {}, "README: this file type is not supported"),
    (b"hello", "old.doc", {}, "old.doc: this file type is not supported"),
    (b"x" * 3 * 2**20, "big.txt", {"max_bytes": 2**20}, "big.txt is larger than the 1 MB limit (3.0 MB)."),
    (b"x" * 3 * 2**20, "big.exe", {"max_bytes": 2**20}, "big.exe is larger than the 1 MB limit"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "photo.txt", {}, "photo.txt is not a text file"),
    (b"# Title\x00\x00\x00\x01\x02binary", "notes.md", {}, "notes.md is not a text file"),
    (b"a,b\n\x00\x00\x00\x00\x01", "rows.csv", {}, "rows.csv is not a text file"),
    (b"   \r\n\n\t  \n", "blank.txt", {}, "blank.txt contains no text"),
    (b"# Only\n\n## Headings\n", "headings.md", {}, "headings.md contains no text"),
    (b"<html><body><script>var x = 1;</script></body></html>", "page.html", {}, "page.html contains no text"),
    (b"name,price\n", "header.csv", {}, "header.csv has only column names (name, price) and no data rows."),
    (b"This is plain text, not a PDF.", "fake.pdf", {}, "fake.pdf could not be read as a PDF ("),
    (b"PK\x03\x04 not really a zip", "broken.docx", {}, "broken.docx could not be read as a Word document ("),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "locked.docx", {}, "locked.docx is not a DOCX file: it is "
                                                                            "password-protected or an old Word"),
    (b"PK\x03\x04 not really a zip", "broken.xlsx", {}, "broken.xlsx could not be read as an Excel workbook ("),
])
def test_refused_files_get_one_clear_message(data, filename, options, expected):
    assert str(error_for(data, filename, **options)).startswith(expected)


def test_size_is_checked_before_anything_is_parsed(monkeypatch):
    import core.rag.parse as parse

    monkeypatch.setattr(parse, "_read", lambda *a: pytest.fail("a file over the limit must not be parsed"))
    assert "larger than" in error_for(b"%PDF-" + b"0" * 100, "a.pdf", max_bytes=50)
    assert DEFAULT_MAX_BYTES == 100 * 2**20


def test_an_xlsx_file_named_docx_is_refused(tmp_path):
    import openpyxl

    def write(path):
        book = openpyxl.Workbook()
        book.active.append(["a"])
        book.save(path)

    data = saved(tmp_path, "book.xlsx", write)
    assert str(error_for(data, "renamed.docx")).startswith("renamed.docx could not be read as a Word document")


# ---- PDF ------------------------------------------------------------------------------------------------------

def make_pdf(tmp_path: Path, pages: list, font: Path | None = None, name: str = "doc.pdf") -> bytes:
    """One page per item: a string of text, None for a blank page, or a list of rows for a table."""
    from fpdf import FPDF

    pdf = FPDF()
    if font:
        pdf.add_font("Body", fname=str(font))
        pdf.set_font("Body", size=12)
    else:
        pdf.set_font("Helvetica", size=12)
    for content in pages:
        pdf.add_page()
        if isinstance(content, str):
            pdf.multi_cell(0, 8, content)
        elif isinstance(content, list):
            with pdf.table(first_row_as_headings=False) as table:
                for cells in content:
                    row = table.row()
                    for cell in cells:
                        row.cell(cell)
    return saved(tmp_path, name, pdf.output)


def encrypted(data: bytes, **encrypt) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(**encrypt)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_text_keeps_page_numbers_and_reports_pages_without_text(tmp_path):
    data = make_pdf(tmp_path, ["Refund policy: refunds within 30 days.\nKeep the receipt.", None,
                               "Shipping takes two business days.", [["Plan", "Price"], ["Basic", "10"],
                                                                     ["Pro", "25"]]])
    doc = parse_document(data, "policies.pdf")
    assert [s.page for s in doc.sections] == [1, 3, 4, 4]
    assert doc.sections[0].text == "Refund policy: refunds within 30 days.\nKeep the receipt."
    assert doc.sections[1].text == "Shipping takes two business days."
    assert [(s.text, s.is_table_row) for s in doc.sections[2:]] == [("Plan: Basic; Price: 10", True),
                                                                    ("Plan: Pro; Price: 25", True)]
    assert all(s.headings == () for s in doc.sections)
    assert doc.source == "policies.pdf" and doc.content_hash == hashlib.sha256(data).hexdigest()
    assert [str(w) for w in doc.warnings] == ["1 of 4 pages have no text and were left out (scanned images? OCR "
                                              "is not enabled): pages 2."]
    assert doc.warnings[0].params["count"] == 1


PROSE = [
    "Southern California, often abbreviated SoCal, is a geographic and cultural region that generally comprises "
    "California's southernmost ten counties. The region is traditionally described as eight counties, based on "
    "demographics and economic ties, and it is a major economic center for the state and for the whole country.",
    "The megaregion's area is more expansive, extending east into Las Vegas, Nevada, and south across the Mexican "
    "border into Tijuana. It is well-known for its beaches.",
    "Each year the area has about 10,000 earthquakes. Nearly all of them are so small that they are not felt, and "
    "only several hundred are greater than magnitude 3.0.",
]


def test_pdf_wrapped_lines_come_back_as_sentences_and_paragraphs(tmp_path):
    from core.rag.chunking import ChunkingConfig, chunk_sections

    data = make_pdf(tmp_path, ["\n".join(PROSE)])
    raw = __import__("pypdf").PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert raw.count("\n") >= 6 and "\n\n" not in raw  # the text layer: a break at every wrap, none between paragraphs
    text = parse_document(data, "region.pdf").sections[0].text
    assert text.split("\n\n") == PROSE
    chunks = chunk_sections(parse_document(data, "region.pdf").sections,
                            ChunkingConfig(chunk_tokens=60, overlap_tokens=0), lambda piece: len(piece.split()))
    assert [c.text for c in chunks] == PROSE  # a passage per paragraph, none starting inside a sentence


def test_pdf_lines_of_lists_headings_and_short_text_stay_lines():
    from core.rag.parsers.common import text_width
    from core.rag.parsers.pdf import unwrap

    intro = "The plans below are sold in every store of the company and can be changed at any time by the owner"
    page = "\n".join(["Plans", intro, "- Basic: 10 euros a month", "- Pro: 25 euros a month",
                      "1. Ask in a store", "Contact us", "Shipping takes two days."])
    width = len(intro)  # the document's prose, on its other pages, is this wide
    assert text_width(["\n".join([intro] * 9 + ["Plans"]), page]) == width
    assert unwrap(page, width) == "\n".join(["Plans", intro, "- Basic: 10 euros a month", "- Pro: 25 euros a month",
                                             "1. Ask in a store", "Contact us", "Shipping takes two days."])
    short = "Refund policy: refunds within 30 days.\nKeep the receipt."
    assert unwrap(short, text_width([short])) == short  # too narrow to be wrapped prose: left as it is


def test_pdf_wrap_after_a_hyphen_joins_the_word_and_keeps_the_hyphen():
    from core.rag.parsers.pdf import unwrap

    line = "The city is home to many companies and the region is famous for its well-"
    assert unwrap(f"{line}\nknown beaches. It is sunny.", len(line)) == line + "known beaches. It is sunny."
    assert unwrap(f"{line[:-6]} 2010 -\nThe end.", len(line)) == line[:-6] + " 2010 - The end."
    typeset = "An example of the rules: the regulation of the port is set by the harbour master and by the exam-"
    assert unwrap(f"{typeset}\nple of others.", len(typeset), frozenset({"example"})) == (
        typeset[:-1] + "ple of others.")  # the document has "example" whole elsewhere: a typesetter's hyphen


def test_pdf_running_headers_footers_and_page_numbers_are_left_out(tmp_path):
    from fpdf import FPDF

    class Report(FPDF):
        def header(self):
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, "Annual report 2025 - Harbour authority", new_x="LMARGIN", new_y="NEXT")

        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, f"Page {self.page_no()} of 4", align="C")

    pdf = Report()
    for number in range(4):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, f"{PROSE[number % 3]}\nSection {number + 1} ends here.")
    data = saved(tmp_path, "report.pdf", pdf.output)
    raw = __import__("pypdf").PdfReader(io.BytesIO(data)).pages[1].extract_text()
    assert "Annual report 2025" in raw and "Page 2 of 4" in raw
    doc = parse_document(data, "report.pdf")
    assert [s.page for s in doc.sections] == [1, 2, 3, 4]
    assert [s.text for s in doc.sections] == [f"{PROSE[n % 3]}\n\nSection {n + 1} ends here." for n in range(4)]


def test_pdf_running_heads_that_carry_the_page_number_are_left_out(tmp_path):
    """A book's running head names its chapter and carries the printed page number, so no one line is shared by
    half the pages; the number running with the page's own tells it apart from text."""
    from fpdf import FPDF

    heads = ["Chapter 1: Arrival 3", "Chapter 1: Arrival 4", "Chapter 2: Departure 5", "Chapter 2: Departure 6"]
    pdf = FPDF()
    for number, head in enumerate(heads):
        pdf.add_page()
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 8, head, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, f"{PROSE[number % 3]}\nSection {number + 1} ends here.")
    doc = parse_document(saved(tmp_path, "book.pdf", pdf.output), "book.pdf")
    assert [s.text for s in doc.sections] == [f"{PROSE[n % 3]}\n\nSection {n + 1} ends here." for n in range(4)]


def test_a_short_bold_pdf_line_before_plain_text_is_a_heading_below_the_larger_ones(tmp_path):
    """Word's "Heading 3" and a manual's "Walk assist" are printed in bold at the body's size; a bold line that
    ends a sentence, or a bold numbered item, stays text."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()

    def write(text: str, size: float = 11, style: str = "") -> None:
        pdf.set_font("Helvetica", style=style, size=size)
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)

    write("4. Riding the Lumen Volt", 15, "B")
    write("Walk assist", style="B")
    write(PROSE[0])
    write("Never ride without lights.", style="B")
    write(PROSE[1])
    write("1. Check the brakes", style="B")
    write(PROSE[2])
    doc = parse_document(saved(tmp_path, "manual.pdf", pdf.output), "manual.pdf")
    [section] = doc.sections
    assert section.headings == ("4. Riding the Lumen Volt", "Walk assist")
    assert section.text.startswith(PROSE[0]) and "Walk assist" not in section.text
    assert "Never ride without lights." in section.text and "1. Check the brakes" in section.text


def test_pdf_headings_that_differ_only_by_their_number_head_their_pages(tmp_path):
    """An itinerary's "Day 1", "Day 2", … at the top of every page are headings, not a running header."""
    from fpdf import FPDF

    pdf = FPDF()
    for day in range(1, 5):
        pdf.add_page()
        pdf.set_font("Helvetica", size=18)
        pdf.cell(0, 10, f"Day {day}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, PROSE[day % 3])
    doc = parse_document(saved(tmp_path, "trip.pdf", pdf.output), "trip.pdf")
    assert [(s.headings, s.text) for s in doc.sections] == [((f"Day {day}",), PROSE[day % 3]) for day in range(1, 5)]


def test_a_large_header_on_every_pdf_page_is_left_out_rather_than_a_heading(tmp_path):
    from fpdf import FPDF

    class Letterhead(FPDF):
        def header(self):
            self.set_font("Helvetica", size=18)
            self.cell(0, 10, "Lumen Harbour Authority", new_x="LMARGIN", new_y="NEXT")

    pdf = Letterhead()
    for number in range(3):
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, PROSE[number])
    doc = parse_document(saved(tmp_path, "letters.pdf", pdf.output), "letters.pdf")
    assert [(s.headings, s.text) for s in doc.sections] == [((), text) for text in PROSE[:3]]


def test_pdf_headings_printed_larger_head_the_passages_after_them(tmp_path):
    """Passages of a PDF had no heading path, so "(manual.pdf)" was all a passage said about where it stood. Lines
    printed larger than the body text now head the passages after them, across pages, the largest level 1; a
    heading wrapped onto two lines is one heading; a title page's names (three large lines in a row) are not
    headings, and a table of contents' lines are left out."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()

    def write(text: str, size: float) -> None:
        pdf.set_font("Helvetica", size=size)
        pdf.multi_cell(0, size * 0.6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)

    write("Harbour rules", 22)
    for name in ("Port authority of Lumen", "Maria Schmidt", "Tran Van Minh"):
        write(name, 15)
    write("1. Arrival . . . . . . . . . . . . . . . . . . . . . . . . 2", 15)
    write(PROSE[0], 11)
    write("1. Arrival", 15)
    write(PROSE[1], 11)
    write("1.1 Pilots and tugs for ships longer than one hundred metres that enter the inner basin at night", 13)
    write(PROSE[2], 11)
    pdf.add_page()
    write(RULES[0], 11)
    write("2. Departure", 15)
    write(RULES[1], 11)
    doc = parse_document(saved(tmp_path, "rules.pdf", pdf.output), "rules.pdf")
    pilots = ("1.1 Pilots and tugs for ships longer than one hundred metres that enter the inner basin at night",)
    assert [(s.page, s.headings, s.text) for s in doc.sections] == [
        (1, ("Harbour rules",), "Port authority of Lumen\nMaria Schmidt\nTran Van Minh\n" + PROSE[0]),
        (1, ("Harbour rules", "1. Arrival"), PROSE[1]),
        (1, ("Harbour rules", "1. Arrival", *pilots), PROSE[2]),
        (2, ("Harbour rules", "1. Arrival", *pilots), RULES[0]),
        (2, ("Harbour rules", "2. Departure"), RULES[1])]


RULES = [f"Rule {i} of the port says that {('ships', 'cargo', 'pilots', 'tugs')[i % 4]} must wait for the signal of "
         f"the harbour master before they move within the inner basin." for i in range(44)]


def test_a_sentence_cut_by_a_page_break_is_finished_on_the_page_it_starts_on(tmp_path):
    from core.rag.chunking import ChunkingConfig, chunk_sections
    from fpdf import FPDF

    class Report(FPDF):
        def footer(self):
            self.set_y(-15)
            self.cell(0, 8, f"Page {self.page_no()}", align="C")

    pdf = Report()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, " ".join(RULES[:22]) + "\n" + " ".join(RULES[22:]))
    data = saved(tmp_path, "rules.pdf", pdf.output)
    first, second = [page.extract_text() for page in __import__("pypdf").PdfReader(io.BytesIO(data)).pages]
    assert not first.replace("Page 1", "").rstrip().endswith(".")  # the text layer: page 1 stops mid-sentence
    doc = parse_document(data, "rules.pdf")
    assert [s.page for s in doc.sections] == [1, 2]
    page_one, page_two = (" ".join(s.text.split()) for s in doc.sections)
    assert page_one.endswith("basin.") and page_two.startswith("Rule ")
    assert f"{page_one} {page_two}" == " ".join(RULES)  # nothing lost, nothing doubled
    chunks = chunk_sections(doc.sections, ChunkingConfig(chunk_tokens=40, overlap_tokens=0), lambda t: len(t.split()))
    assert all(c.text.startswith("Rule ") and c.text.endswith("basin.") for c in chunks)


def test_a_paragraph_whose_last_line_is_full_ends_where_the_page_shows_a_gap(tmp_path):
    """The text layer has no blank line between paragraphs, and a full last line looked like a wrapped one: the
    paragraphs ran together. pypdf's layout mode shows the gap (bench: PDF hybrid hit@1 0.753 -> 0.787)."""
    from fpdf import FPDF

    first = ["The harbour master signals to the ships and to the pilots of the tugs in the inner basin,",
             "and every ship waits for the signal before it moves towards the quay of the outer harbour.",
             "The pilots board the ships at the outer buoy and bring them in at the slowest safe speed."]
    second = ["Cargo is weighed at the gate of the terminal before it is loaded onto a ship or a lorry,",
              "and the weight is written on the papers that travel with the cargo to its destination."]

    def document(gap_after_every_line: bool) -> bytes:
        pdf = FPDF()
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        for paragraph in (first, second):
            for line in paragraph:
                pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
                if gap_after_every_line:
                    pdf.ln(6)
            pdf.ln(6)
        return saved(tmp_path, "harbour.pdf", pdf.output)

    [section] = parse_document(document(False), "harbour.pdf").sections
    assert section.text == " ".join(first) + "\n\n" + " ".join(second)
    [spaced] = parse_document(document(True), "harbour.pdf").sections  # double-spaced: gaps say nothing
    assert "\n\n" not in spaced.text and spaced.text == " ".join(first + second)


MODELS = [("Model", "Price", "Range", "Motor"),
          ("City Cruiser 500", "1,499 EUR", "60 km", "250 W rear hub motor with 40 Nm of torque and a sensor"),
          ("Mountain Pro X", "2,899 EUR", "90 km", "500 W mid-drive motor, 85 Nm"),
          ("Folding Mini", "999 EUR", "35 km", "250 W front hub motor, 30 Nm")]


def table_pdf(tmp_path, pages: list, name: str = "models.pdf") -> bytes:
    """Pages of (text before, table rows, text after); a cell too long for its column wraps onto a second line."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for before, rows, after in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, before)
        pdf.ln(3)
        with pdf.table(col_widths=(40, 25, 20, 105), first_row_as_headings=False, text_align="LEFT") as table:
            for cells in rows:
                row = table.row()
                for cell in cells:
                    row.cell(cell)
        pdf.ln(3)
        pdf.multi_cell(0, 6, after)
    return saved(tmp_path, name, pdf.output)


PROSE_AFTER = ("Every model ships with a charger, a lock and a bell. Ask the shop about longer warranties for "
               "business fleets and rentals, which are priced separately, and about the trade-in of an old bike. The "
               "prices include the first check-up in the workshop within three months of the purchase.")


def test_a_pdf_table_becomes_one_row_per_section_under_its_caption(tmp_path):
    """The text layer joined a row's cells with spaces, and a row as wide as the page ran on into the next line
    (the sample manual's "Frame … Gears …"); the layout mode shows the columns."""
    doc = parse_document(table_pdf(tmp_path, [("Table 1: Models and prices", MODELS, PROSE_AFTER)]), "models.pdf")
    assert outline(doc) == [
        ((), "Table 1: Models and prices", False),
        (("Table 1: Models and prices",), "Model: City Cruiser 500; Price: 1,499 EUR; Range: 60 km; Motor: 250 W rear "
                                          "hub motor with 40 Nm of torque and a sensor", True),
        (("Table 1: Models and prices",), "Model: Mountain Pro X; Price: 2,899 EUR; Range: 90 km; Motor: 500 W "
                                          "mid-drive motor, 85 Nm", True),
        (("Table 1: Models and prices",), "Model: Folding Mini; Price: 999 EUR; Range: 35 km; Motor: 250 W front hub "
                                          "motor, 30 Nm", True),
        ((), PROSE_AFTER, False)]


def test_a_pdf_table_whose_first_cell_wraps_keeps_it_in_its_row(tmp_path):
    """A narrow first column wraps "North America" over two lines, centred beside the row's values; the text
    layer holds "North", "America", then the values. A short line right under the table is no wrapped cell."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Revenue by region")
    with pdf.table(col_widths=(22, 20, 20, 20, 108), text_align="LEFT") as table:
        for cells in [("Region", "2024", "2025", "Change", "Comment"),
                      ("Europe", "1,204", "1,311", "+8.9%", "Strong fourth quarter"),
                      ("North America", "955", "987", "+3.4%", "Flat hardware sales"),
                      ("Asia", "642", "803", "+25.1%", "Service contracts in Vietnam and Japan")]:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.multi_cell(0, 6, "Board", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "The board met eleven times during the year, and every member attended at least nine of "
                         "the meetings held, as the rules of the company ask of every member of its board.")
    doc = parse_document(saved(tmp_path, "report.pdf", pdf.output), "report.pdf")
    assert [(s.headings, s.text) for s in doc.sections if s.is_table_row] == [
        (("Revenue by region",), "Region: Europe; 2024: 1,204; 2025: 1,311; Change: +8.9%; Comment: Strong fourth "
                                 "quarter"),
        (("Revenue by region",), "Region: North America; 2024: 955; 2025: 987; Change: +3.4%; Comment: Flat "
                                 "hardware sales"),
        (("Revenue by region",), "Region: Asia; 2024: 642; 2025: 803; Change: +25.1%; Comment: Service contracts in "
                                 "Vietnam and Japan")]
    assert doc.sections[-1].text.startswith("Board\n")


def test_a_pdf_table_that_runs_over_a_page_break_keeps_its_header(tmp_path):
    from fpdf import FPDF

    header, *rows = MODELS
    extra = ("Cargo Long", "3,299 EUR", "80 km", "250 W mid-drive motor, 90 Nm")

    def document(repeat_header: bool) -> bytes:
        pdf = FPDF()
        pdf.set_font("Helvetica", size=11)
        for number, page_rows in enumerate([[header, *rows], [header, extra] if repeat_header else [rows[0], extra]]):
            pdf.add_page()
            if number == 0:
                pdf.multi_cell(0, 6, "Our models")
            with pdf.table(col_widths=(40, 25, 20, 105), first_row_as_headings=False, text_align="LEFT") as table:
                for cells in page_rows:
                    row = table.row()
                    for cell in cells:
                        row.cell(cell)
        return saved(tmp_path, f"models-{repeat_header}.pdf", pdf.output)

    for repeat_header in (True, False):
        found = [(s.page, s.headings, s.text) for s in parse_document(document(repeat_header), "m.pdf").sections
                 if s.is_table_row]
        assert found[-1] == (2, ("Our models",), "Model: Cargo Long; Price: 3,299 EUR; Range: 80 km; Motor: 250 W "
                                                 "mid-drive motor, 90 Nm")
        assert len(found) == (4 if repeat_header else 5) and all(text.startswith("Model: ") for _, _, text in found)


@pytest.mark.parametrize("rows, read", [
    ([("-c, --check", "checks the syntax only"), ("-o, --output=FILE", "writes the result to FILE"),
      ("-h, --help", "shows this help and exits")],
     ["-c, --check: checks the syntax only", "-o, --output=FILE: writes the result to FILE",
      "-h, --help: shows this help and exits"]),
    # a first pair that looks like labels is still a pair
    ([("Chair", "Maria Schmidt"), ("Chief executive", "Nguyen Van An"), ("Chief financial officer", "Peter Olsen")],
     ["Chair: Maria Schmidt", "Chief executive: Nguyen Van An", "Chief financial officer: Peter Olsen"]),
    # labels over longer values, or over numbers, head the columns
    ([("Part", "Specification"), ("Motor", "Rear hub motor, 250 W, 36 V"), ("Charger", "Lumen charger, 4 A")],
     ["Part: Motor; Specification: Rear hub motor, 250 W, 36 V", "Part: Charger; Specification: Lumen charger, 4 A"]),
])
def test_pdf_tables_of_two_columns_read_as_names_and_values(tmp_path, rows, read):
    data = make_pdf(tmp_path, [[list(row) for row in rows]])
    assert [(s.text, s.is_table_row) for s in parse_document(data, "usage.pdf").sections] == [
        (text, True) for text in read]


@pytest.mark.parametrize("lines", [
    ["Contents", "1 Introduction . . . . . . . . . . . . .     1", "2 Installing . . . . . . . . . . . . . .     4",
     "3 Using it . . . . . . . . . . . . . . . .     9"],  # dot leaders: a table of contents
    ["OtherStruct := SEQUENCE {", "    x        INTEGER,", "    y        BOOLEAN,", "    z        OCTET STRING }"],
    ["00000000   7f 45 4c 46   02 01 01 00", "00000010   03 00 3e 00   01 00 00 00",
     "00000020   40 00 00 00   00 00 00 00"],  # a grid of values without a header
])
def test_pdf_code_contents_and_headerless_grids_stay_as_lines(tmp_path, lines):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Courier", size=10)
    for line in lines:
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    data = saved(tmp_path, "code.pdf", pdf.output)
    if "Contents" in lines:  # a table of contents is left out with its title: nothing else is there
        assert str(error_for(data, "code.pdf")) == ("code.pdf holds only a table of contents or an index: no text "
                                                    "to search.")
        return
    doc = parse_document(data, "code.pdf")
    assert not any(s.is_table_row for s in doc.sections)
    assert [" ".join(line.split()) for line in doc.sections[0].text.splitlines()] == [
        " ".join(line.split()) for line in lines]


def test_pdf_prose_in_two_page_columns_is_not_a_table(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    with pdf.text_columns(ncols=2, gutter=10) as columns:
        for paragraph in PROSE * 6:
            columns.write(paragraph + "\n\n")
    doc = parse_document(saved(tmp_path, "columns.pdf", pdf.output), "columns.pdf")
    assert not any(s.is_table_row for s in doc.sections)
    assert PROSE[0] in "\n\n".join(s.text for s in doc.sections)


def test_a_pdf_list_stays_one_paragraph_and_a_numbered_heading_stays_apart(tmp_path):
    """Items that end sentences, or that the page spaces apart, ended paragraphs: a list was cut into passages of
    one item each, away from the line that introduces it. A heading numbered "3." before a list numbered from "1."
    is no item of it."""
    from fpdf import FPDF

    steps = ["Check the saddle height: with your heel on the pedal at its lowest point, your leg should be almost "
             "straight. Never raise the seat post above the minimum insertion mark on the post.",
             "Check the tyre pressure.",
             "Check the brakes before you set off. On the Metro and the Volt, the left lever operates the front brake "
             "and the right lever the rear brake."]
    modes = ["Eco: gentle help, the longest range.", "Tour: balanced help for everyday riding.",
             "Boost: the strongest help, for hills."]
    prose = ("The hub gears can be changed while standing still, which makes starting at traffic lights easy. While "
             "riding, stop pedalling for a moment as you change gear, and never change gear under a heavy load. The "
             "derailleur of the Volt is different: keep pedalling lightly while you change gear, never change gear "
             "while standing still, and avoid pedalling hard during the change, or the chain may jump off.")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)

    def line(text: str, gap_after: bool = False) -> None:
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        if gap_after:
            pdf.ln(6)

    line("3. Before your first ride", gap_after=True)
    for number, step in enumerate(steps, start=1):
        line(f"{number}. {step}", gap_after=number == 2)  # one item spaced apart from the next
    pdf.ln(6)
    line(prose, gap_after=True)
    line("Press the plus and minus buttons to change the assistance mode. The Volt has three modes:", gap_after=True)
    for mode in modes:
        line(f"- {mode}", gap_after=True)
    line(prose)
    [section] = parse_document(saved(tmp_path, "manual.pdf", pdf.output), "manual.pdf").sections
    assert section.text.split("\n\n") == [
        "3. Before your first ride",
        "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1)),
        prose,
        "Press the plus and minus buttons to change the assistance mode. The Volt has three modes:\n"
        + "\n".join(f"- {mode}" for mode in modes),
        prose]


def test_page_breaks_that_end_a_sentence_or_run_on_too_long_stay_as_they_are():
    from core.rag.parsers.pdf import finish_cut_sentences

    full = "The harbour master signals to the ships and to the pilots of the tugs in the inner basin and"
    width = len(full)
    ended = [(1, f"{full} waits.\nShort end."), (2, f"{full}\nthe rest.")]
    assert finish_cut_sentences(ended, width) == ended  # page 1 ends a sentence
    assert finish_cut_sentences([(1, full), (3, "the rest. Next one.")], width) == [(1, full),
                                                                                   (3, "the rest. Next one.")]
    table = [(1, f"Part Specification\nBattery {full}"), (2, "Part Specification\nRange 50 km\nCharger 4 A")]
    assert finish_cut_sentences(table, width) == table  # a table row, then a heading: no sentence ends
    endless = [(1, full), (2, "\n".join([full] * 12))]
    assert finish_cut_sentences(endless, width) == endless  # no end within reach
    ends_inside = "the tugs ends here. Then a new sentence of the rules for the harbour starts on this line"
    assert finish_cut_sentences([(1, full), (2, f"{ends_inside}\nand goes on.")], width) == [
        (1, f"{full}\nthe tugs ends here."), (2, "Then a new sentence of the rules for the harbour starts on this "
                                                  "line and goes on.")]
    assert finish_cut_sentences([(1, full), (2, "the end.")], width) == [(1, f"{full}\nthe end.")]


def test_a_short_pdf_keeps_a_first_line_that_only_looks_repeated(tmp_path):
    data = make_pdf(tmp_path, ["Price list\nBasic 10 euros", "Price list\nPro 25 euros"])
    assert [s.text for s in parse_document(data, "prices.pdf").sections] == ["Price list\nBasic 10 euros",
                                                                            "Price list\nPro 25 euros"]


def test_pdf_ligatures_become_letters(tmp_path):
    from fpdf import FPDF

    if not DEJAVU.exists():
        pytest.skip("needs the DejaVu Sans font for a ligature character in a PDF")
    pdf = FPDF()
    pdf.add_font("Body", fname=str(DEJAVU))
    pdf.set_font("Body", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "The \ufb01rst \ufb02oor of the o\ufb03ce.")
    data = saved(tmp_path, "typeset.pdf", pdf.output)
    assert "\ufb01" in __import__("pypdf").PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert parse_document(data, "typeset.pdf").sections[0].text == "The first floor of the office."


@pytest.mark.skipif(not DEJAVU.exists(), reason="needs the DejaVu Sans font for Vietnamese text in a PDF")
def test_pdf_vietnamese_text_comes_through_exactly(tmp_path):
    doc = parse_document(make_pdf(tmp_path, [VI], font=DEJAVU), "chinh-sach.pdf")
    assert " ".join(doc.sections[0].text.split()) == VI  # the line may wrap; every character is kept
    assert doc.warnings == []


def test_pdf_locked_with_a_user_password_is_refused(tmp_path):
    data = encrypted(make_pdf(tmp_path, ["Secret salaries"]), user_password="secret", owner_password="owner")
    assert str(error_for(data, "salaries.pdf")) == ("salaries.pdf is password-protected; remove the password and "
                                                    "upload it again.")


def test_pdf_with_only_an_owner_password_opens_with_the_empty_password(tmp_path):
    pytest.importorskip("cryptography")  # AES needs it (pypdf[crypto])
    data = encrypted(make_pdf(tmp_path, ["Printing is restricted, reading is not."]), user_password="",
                     owner_password="owner", algorithm="AES-256")
    assert [s.text for s in parse_document(data, "restricted.pdf").sections] == [
        "Printing is restricted, reading is not."]


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_pdf_is_refused(tmp_path, cut):
    data = make_pdf(tmp_path, ["Page one text.", "Page two text."])
    assert str(error_for(data[:int(len(data) * cut)], "broken.pdf")).startswith(
        "broken.pdf could not be read as a PDF (")


@pytest.mark.parametrize("kind", ["blank", "image"])
def test_pdf_without_a_text_layer_is_refused(tmp_path, kind):
    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        if kind == "image":  # what a scanner makes: a picture of the page
            pdf.image(Image.new("RGB", (200, 280), (240, 240, 240)), x=10, y=10, w=190)
    data = saved(tmp_path, "scan.pdf", pdf.output)
    assert str(error_for(data, "scan.pdf")) == "scan.pdf has no text layer (scanned images?) — OCR is not enabled."


# ---- DOCX -----------------------------------------------------------------------------------------------------

def make_docx(tmp_path: Path) -> bytes:
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    document.add_heading("Employee handbook", level=0)  # the Title style
    document.add_paragraph("Welcome to ACME.")
    document.add_heading("Sales policies", level=1)
    document.add_paragraph("Prices include VAT.")
    document.add_paragraph("Discounts need a manager's approval.")
    document.add_heading("Returns", level=2)
    document.add_paragraph(VI)
    table = document.add_table(rows=3, cols=3)
    for r, cells in enumerate([["Sản phẩm", "Giá", "Ghi chú"], ["Áo sơ mi", "250.000 ₫", ""],
                               ["Quần tây", "400.000 ₫", "Không đổi size"]]):
        for c, text in enumerate(cells):
            table.cell(r, c).text = text
    document.add_paragraph("After the table.")
    custom = document.styles.add_style("Policy Heading", WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = document.styles["Heading 2"]
    document.add_paragraph("Exchanges", style="Policy Heading")
    document.add_paragraph("Exchanges are free.")
    document.add_heading("Shipping", level=1)
    document.add_paragraph("Orders ship in two days.")
    document.add_paragraph("We ship to:")
    for country in ("Vietnam.", "Thailand.", "Laos."):
        document.add_paragraph(country, style="List Bullet")
    document.add_paragraph("Steps never listed under an introduction:")
    document.add_paragraph("Tracking numbers come by e-mail.")
    for step in ("Pack the item.", "Print the label."):
        document.add_paragraph(step, style="List Number")
    return saved(tmp_path, "handbook.docx", document.save)


def test_docx_groups_paragraphs_under_heading_paths_and_splits_tables_into_rows(tmp_path):
    doc = parse_document(make_docx(tmp_path), "handbook.docx")
    title, sales = ("Employee handbook",), ("Employee handbook", "Sales policies")
    returns = sales + ("Returns",)
    assert outline(doc) == [
        (title, "Welcome to ACME.", False),
        (sales, "Prices include VAT.\n\nDiscounts need a manager's approval.", False),
        (returns, VI, False),
        (returns, "Sản phẩm: Áo sơ mi; Giá: 250.000 ₫", True),
        (returns, "Sản phẩm: Quần tây; Giá: 400.000 ₫; Ghi chú: Không đổi size", True),
        (returns, "After the table.", False),
        (sales + ("Exchanges",), "Exchanges are free.", False),
        (title + ("Shipping",), "Orders ship in two days.\n\nWe ship to:\nVietnam.\nThailand.\nLaos.\n\n"
                                "Steps never listed under an introduction:\n\nTracking numbers come by e-mail.\n\n"
                                "1. Pack the item.\n2. Print the label.", False),
    ]  # a list is one paragraph, with the line ending in ":" that introduces it
    assert all(s.page is None for s in doc.sections) and doc.warnings == []


# ---- PPTX -----------------------------------------------------------------------------------------------------

def make_pptx(tmp_path: Path) -> bytes:
    """A deck as PowerPoint's own layouts write it: a title slide, bullets, two boxes side by side (added right
    box first), a table with a merged title row, a chart, a group, speaker notes and a slide without a title."""
    import pptx
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text = "Sales team, Q3 2026"

    bullets = deck.slides.add_slide(deck.slide_layouts[1])
    bullets.shapes.title.text = "Highlights"
    body = bullets.placeholders[1].text_frame
    body.text = "Revenue grew 12%."
    for text, level in (("Hà Nội store opened in July.", 1), ("", 0), ("Returns fell to 2%.", 0)):
        paragraph = body.add_paragraph()
        paragraph.text, paragraph.level = text, level
    bullets.notes_slide.notes_text_frame.text = "Mention the new loyalty card."

    columns = deck.slides.add_slide(deck.slide_layouts[5])
    columns.shapes.title.text = "Two teams"
    columns.shapes.add_textbox(Inches(5), Inches(2), Inches(4), Inches(1)).text_frame.text = "Right: online team."
    columns.shapes.add_textbox(Inches(0.5), Inches(2), Inches(4), Inches(1)).text_frame.text = "Left: store team."
    group = columns.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(0.5), Inches(5), Inches(4), Inches(1)).text_frame.text = "Grouped footnote."

    prices = deck.slides.add_slide(deck.slide_layouts[5])
    prices.shapes.title.text = "Prices"
    table = prices.shapes.add_table(4, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    table.cell(0, 0).merge(table.cell(0, 1))
    table.cell(0, 0).text = "Price list 2026"
    for row, (product, price) in enumerate((("Product", "Price"), ("City bike", "649 euros"),
                                            ("Cargo bike", "2,690 euros")), 1):
        table.cell(row, 0).text, table.cell(row, 1).text = product, price

    chart_slide = deck.slides.add_slide(deck.slide_layouts[5])
    chart_slide.shapes.title.text = "Revenue"
    data = CategoryChartData()
    data.categories = ["Q1", "Q2"]
    data.add_series("2025", (120, 135.5))
    data.add_series("2026", (140, 151))
    chart = chart_slide.shapes.add_chart(XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(1), Inches(2), Inches(6),
                                         Inches(4), data).chart
    chart.has_title = True
    chart.chart_title.text_frame.text = "Revenue (thousand EUR)"
    chart.category_axis.has_title = True
    chart.category_axis.axis_title.text_frame.text = "Quarter"

    untitled = deck.slides.add_slide(deck.slide_layouts[6])
    untitled.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(1)).text_frame.text = "Questions? Ask Linh."
    deck.slides.add_slide(deck.slide_layouts[6])  # an empty slide
    return saved(tmp_path, "review.pptx", deck.save)


def test_pptx_reads_each_slide_under_its_title_in_reading_order_with_tables_charts_and_notes(tmp_path):
    doc = parse_document(make_pptx(tmp_path), "review.pptx")
    deck = ("Quarterly review",)
    assert outline(doc) == [
        (deck, "Sales team, Q3 2026", False),
        (deck + ("Highlights",), "Revenue grew 12%.\nHà Nội store opened in July.\nReturns fell to 2%.\n\n"
                                 "Mention the new loyalty card.", False),
        (deck + ("Two teams",), "Left: store team.\n\nRight: online team.\n\nGrouped footnote.", False),
        (deck + ("Prices", "Price list 2026"), "Product: City bike; Price: 649 euros", True),
        (deck + ("Prices", "Price list 2026"), "Product: Cargo bike; Price: 2,690 euros", True),
        (deck + ("Revenue", "Revenue (thousand EUR)"), "Quarter: Q1; 2025: 120; 2026: 140", True),
        (deck + ("Revenue", "Revenue (thousand EUR)"), "Quarter: Q2; 2025: 135.5; 2026: 151", True),
        (deck, "Questions? Ask Linh.", False),
    ]
    assert [s.page for s in doc.sections] == [1, 2, 3, 4, 4, 5, 5, 6]  # the slide, shown where a page is


def test_pptx_without_a_title_slide_has_no_deck_heading(tmp_path):
    import pptx

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Opening hours"
    slide.placeholders[1].text_frame.text = "Mon-Fri 9:00-18:00"
    doc = parse_document(saved(tmp_path, "hours.pptx", deck.save), "hours.pptx")
    assert outline(doc) == [(("Opening hours",), "Mon-Fri 9:00-18:00", False)]


SMART_ART_DATA = """<dgm:dataModel xmlns:dgm="http://schemas.openxmlformats.org/drawingml/2006/diagram"
  xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"><dgm:ptLst>
<dgm:pt modelId="0" type="doc"><dgm:t><a:p><a:r><a:t>not shown</a:t></a:r></a:p></dgm:t></dgm:pt>
<dgm:pt modelId="1"><dgm:t><a:p><a:r><a:t>Order</a:t></a:r></a:p></dgm:t></dgm:pt>
<dgm:pt modelId="2" type="parTrans"><dgm:t><a:p><a:r><a:t>arrow</a:t></a:r></a:p></dgm:t></dgm:pt>
<dgm:pt modelId="3" type="node"><dgm:t><a:p><a:r><a:t>Pack within </a:t></a:r><a:r><a:t>24 hours</a:t></a:r></a:p>
</dgm:t></dgm:pt><dgm:pt modelId="4" type="pres"/></dgm:ptLst></dgm:dataModel>"""
SMART_ART_FRAME = """<p:graphicFrame xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"
  xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"
  xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><p:nvGraphicFramePr>
<p:cNvPr id="{id}" name="Diagram {id}"/><p:cNvGraphicFramePr/><p:nvPr/></p:nvGraphicFramePr>
<p:xfrm><a:off x="{top}" y="{top}"/><a:ext cx="100" cy="100"/></p:xfrm><a:graphic>
<a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/diagram">
<dgm:relIds xmlns:dgm="http://schemas.openxmlformats.org/drawingml/2006/diagram" r:dm="{rid}" r:lo="" r:qs=""
  r:cs=""/></a:graphicData></a:graphic></p:graphicFrame>"""


def test_pptx_smart_art_is_read_and_a_shape_that_cannot_be_read_is_reported(tmp_path):
    """SmartArt (a process, an org chart) keeps its text in a part of its own, which python-pptx does not read."""
    import pptx
    from lxml import etree
    from pptx.opc.constants import CONTENT_TYPE, RELATIONSHIP_TYPE
    from pptx.opc.package import Part
    from pptx.opc.packuri import PackURI

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Shipping process"
    data = Part(PackURI("/ppt/diagrams/data1.xml"), CONTENT_TYPE.DML_DIAGRAM_DATA, deck.part.package,
                SMART_ART_DATA.encode())
    for number, rid in ((10, slide.part.relate_to(data, RELATIONSHIP_TYPE.DIAGRAM_DATA)), (11, "rIdMissing")):
        slide.shapes._spTree.append(etree.fromstring(SMART_ART_FRAME.format(id=number, rid=rid, top=number * 1000)))
    doc = parse_document(saved(tmp_path, "process.pptx", deck.save), "process.pptx")
    assert outline(doc) == [(("Shipping process",), "Order\nPack within 24 hours", False)]
    assert [str(w) for w in doc.warnings] == [
        "process.pptx: some charts or graphics could not be read and were left out (1)."]


def test_a_pptx_of_pictures_only_and_broken_pptx_files_get_clear_messages(tmp_path):
    import pptx

    deck = pptx.Presentation()
    deck.slides.add_slide(deck.slide_layouts[6])
    assert str(error_for(saved(tmp_path, "blank.pptx", deck.save), "blank.pptx")) == (
        "blank.pptx contains no text to add to the knowledge base.")
    assert str(error_for(make_docx(tmp_path), "renamed.pptx")).startswith(
        "renamed.pptx could not be read as a PowerPoint presentation (")
    assert str(error_for(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old.pptx")).startswith(
        "old.pptx is not a PPTX file: it is password-protected or an old PowerPoint (.ppt) file.")


# ---- HTML -----------------------------------------------------------------------------------------------------

NOISY_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ACME – Chính sách</title>
<style>body { color: red } /* STYLENOISE */</style>
<script>var tracking = "SCRIPTNOISE";</script></head>
<body>
<nav><ul><li><a href="/">Home NAVNOISE</a></li><li><a href="/about">About us</a></li></ul></nav>
<header><div class="banner">Sign up for our newsletter BANNERNOISE</div></header>
<main><article>
<h1>Sales policies</h1>
<p>Our company ships orders within two business days to every address in Vietnam. Orders over 500,000 VND
ship free of charge, snake_case and *stars* stay as written.</p>
<h2>Returns</h2>
<p>Hàng được đổi trả trong vòng 30 ngày kể từ ngày mua, với hóa đơn gốc và bao bì còn nguyên vẹn.</p>
<p>Refunds are processed within five business days after we receive the returned item.</p>
<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Basic</td><td>10</td></tr><tr><td>Pro</td><td>25</td></tr></table>
<h2>Shipping</h2>
<p>We ship with trusted carriers and every parcel is tracked from our warehouse to your door.</p>
</article></main>
<aside>Related posts ASIDENOISE</aside>
<footer>Copyright 2024 ACME FOOTERNOISE</footer>
<script>console.log("SCRIPTNOISE2")</script>
</body></html>"""
TITLE = "ACME – Chính sách"


def html_checks(doc: ParsedDocument) -> None:
    everything = " ".join(" ".join((*s.headings, s.text)) for s in doc.sections)
    for noise in ("STYLENOISE", "SCRIPTNOISE", "NAVNOISE", "BANNERNOISE", "ASIDENOISE", "FOOTERNOISE", "tracking"):
        assert noise not in everything
    sales, returns = (TITLE, "Sales policies"), (TITLE, "Sales policies", "Returns")
    assert outline(doc) == [
        (sales, "Our company ships orders within two business days to every address in Vietnam. Orders over "
                "500,000 VND ship free of charge, snake_case and *stars* stay as written.", False),
        (returns, "Hàng được đổi trả trong vòng 30 ngày kể từ ngày mua, với hóa đơn gốc và bao bì còn nguyên vẹn.\n\n"
                  "Refunds are processed within five business days after we receive the returned item.", False),
        (returns, "Plan: Basic; Price: 10", True),
        (returns, "Plan: Pro; Price: 25", True),
        ((TITLE, "Sales policies", "Shipping"), "We ship with trusted carriers and every parcel is tracked from our "
                                                "warehouse to your door.", False),
    ]


def test_html_main_content_with_title_and_heading_paths(tmp_path, monkeypatch):
    import core.rag.parsers.web as web

    monkeypatch.setattr(web, "body_text", lambda *a: pytest.fail("trafilatura should have found the article"))
    data = saved(tmp_path, "policies.html", lambda p: p.write_text(NOISY_PAGE, encoding="utf-8"))
    html_checks(parse_document(data, "policies.html"))


DOCS_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Tool guide</title></head><body>
<nav><ol><li><a href="/">Guide</a></li><li><a href="/install">Install</a></li></ol></nav>
<main><h1>What the tool does</h1>
<p>The standard distribution ships with a tool called <code>mkdocs</code>. Its job is
to build documentation for projects. It
takes a folder of Markdown files and produces
HTML, CSS and JavaScript.</p>
<p>Call it from a shell:</p>
<pre><code>$ mkdocs build
    --strict
</code></pre>
<p>It reads <code>mkdocs.yml</code>, then writes the site.<br>Nothing else is changed.</p>
<ul><li>Fast builds of
large sites.</li><li>Themes.</li></ul>
<p>Every page of the site is checked for broken links before it is written, and the build stops at the first one.</p>
</main><footer>Footer text</footer></body></html>"""


def test_html_source_line_breaks_inside_running_text_are_spaces(tmp_path, monkeypatch):
    import core.rag.parsers.web as web

    monkeypatch.setattr(web, "body_text", lambda *a: pytest.fail("trafilatura should have found the article"))
    text = parse_document(DOCS_PAGE.encode(), "guide.html").sections[0].text
    assert text.split("\n\n")[:2] == [
        "The standard distribution ships with a tool called mkdocs. Its job is to build documentation for projects. "
        "It takes a folder of Markdown files and produces HTML, CSS and JavaScript.",
        "Call it from a shell:"]
    assert "$ mkdocs build\n    --strict" in text  # a code block keeps its lines and indentation
    assert "It reads mkdocs.yml, then writes the site.\nNothing else is changed." in text  # <br> breaks the line
    assert "Fast builds of large sites.\nThemes." in text


WIKI_PAGE = """<html><head><title>Nikola Tesla - Wikipedia</title></head><body><h1>Nikola Tesla</h1>
<div id="mw-content-text"><table class="infobox biography vcard"><tbody>
<tr><th colspan="2" class="infobox-above">Nikola Tesla</th></tr>
<tr><td colspan="2" class="infobox-image"><img src="Tesla.jpg" alt="Tesla"><div>Tesla, c. 1890</div></td></tr>
<tr><th scope="row">Born</th><td>10 July 1856<br>Smiljan, Austrian Empire</td></tr>
<tr><td><img src="flag.png" alt=""><br>Flag</td><td><img src="arms.png" alt=""><br>Coat of arms</td></tr>
<tr><th scope="row">Died</th><td>7 January 1943 (aged 86)</td></tr>
<tr><th scope="row">Known for</th><td>Alternating current, induction motor</td></tr>
</tbody></table>
<p>Nikola Tesla was a Serbian-American inventor, electrical engineer, mechanical engineer, and futurist. He is best
known for his contributions to the design of the modern alternating current electricity supply system.</p>
<h2>Early years</h2><p>Tesla was born into an ethnic Serb family in the village of Smiljan, within the Military
Frontier, in the Austrian Empire. His father was an Orthodox priest.</p>
<table class="wikitable"><tr><th>Year</th><th>Patent</th></tr><tr><td>1888</td><td>Electrical transmission of
power</td></tr><tr><td>1891</td><td>Tesla coil</td></tr></table>
<h2>Later years</h2><p>In 1900 Tesla began work on the Wardenclyffe Tower facility on Long Island. He spent his
last years in New York hotels.</p>
</div></body></html>"""


def test_html_headings_that_trafilatura_leaves_out_are_put_back_and_an_infobox_reads_as_names_and_values():
    """After an infobox trafilatura kept no heading of the article: every passage lost its section. The infobox's
    title row was taken for the header of its name/value rows ("Nikola Tesla: Born; column 2: …"). Its picture
    rows are left out: "Tesla, c. 1890" alone was a passage close to every question about Tesla."""
    doc = parse_document(WIKI_PAGE.encode(), "Nikola_Tesla.html")
    title, early, later = ("Nikola Tesla",), ("Nikola Tesla", "Early years"), ("Nikola Tesla", "Later years")
    assert [(s.headings, s.text.split(". ")[0], s.is_table_row) for s in doc.sections] == [
        (title, "Born: 10 July 1856\nSmiljan, Austrian Empire", True),  # its title row is the page's title
        (title, "Died: 7 January 1943 (aged 86)", True),
        (title, "Known for: Alternating current, induction motor", True),
        (title, "Nikola Tesla was a Serbian-American inventor, electrical engineer, mechanical engineer, and futurist",
         False),
        (early, "Tesla was born into an ethnic Serb family in the village of Smiljan, within the Military Frontier, in "
                "the Austrian Empire", False),
        (early, "Year: 1888; Patent: Electrical transmission of power", True),
        (early, "Year: 1891; Patent: Tesla coil", True),
        (later, "In 1900 Tesla began work on the Wardenclyffe Tower facility on Long Island", False)]


@pytest.mark.parametrize("rows, read", [
    ([["Author", "Thomas Leonard"], ["Editor", "David Faure"], ["Reviewer", "Alex Larsson"]],
     ["Author: Thomas Leonard", "Editor: David Faure", "Reviewer: Alex Larsson"]),  # no header row: pairs
    ([["ctxt:", "an XSLT processing context"], ["node:", "the current node"], ["inst:", "the instruction"]],
     ["ctxt: an XSLT processing context", "node: the current node", "inst: the instruction"]),
    ([["Plan", "Price"], ["Basic", "10"], ["Pro", "25"]], ["Plan: Basic; Price: 10", "Plan: Pro; Price: 25"]),
])
def test_two_column_tables_of_web_pages_and_word_files_read_as_names_and_values(rows, read):
    from core.rag.parsers.common import Outline

    outline = Outline(("Page",))
    outline.table(rows)
    assert [(s.text, s.is_table_row) for s in outline.done()] == [(text, True) for text in read]


def test_a_tables_title_row_heads_its_rows_instead_of_being_a_passage_of_its_own():
    from core.rag.parsers.common import Outline

    long_note = "All prices include VAT and delivery to any address in the country, and they may change every month."
    outline = Outline(("Page",))
    outline.heading(1, "Prices")
    outline.table([["Price list 2025", ""], ["Plan", "Price"], ["Basic", "10"], ["Pro", "25"]])
    outline.table([["Opening hours"], ["Photo: the shop in 2024"], ["Monday", "9-17"], ["Sunday", "closed"]])
    outline.table([[long_note], ["Plan", "Price"], ["Basic", "10"]])
    outline.text("After the tables.")
    prices, hours = ("Page", "Prices", "Price list 2025"), ("Page", "Prices", "Opening hours")
    assert [(s.headings, s.text) for s in outline.done()] == [
        (prices, "Plan: Basic; Price: 10"), (prices, "Plan: Pro; Price: 25"),
        (hours, "Photo: the shop in 2024"),  # a picture's caption after the title stays a row
        (hours, "Monday: 9-17"), (hours, "Sunday: closed"),
        (("Page", "Prices"), long_note),  # too long for a title: a row, as before
        (("Page", "Prices"), "Plan: Basic; Price: 10"),
        (("Page", "Prices"), "After the tables."),  # the title heads its table only
    ]


def test_a_row_of_one_cell_across_a_table_heads_the_rows_under_it():
    from core.rag.parsers.common import Outline

    outline = Outline(("Report",))
    outline.text("Revenue grew in every region.")
    outline.table([["Revenue by region"], ["Region", "2024", "2025"], ["Europe"], ["Germany", "10", "12"],
                   ["France", "8", "9"], ["Asia", "", ""], ["Japan", "5", "6"], ["Source: company data"]])
    outline.table([["Nikola Tesla"], ["Born", "10 July 1856"], ["Scientific career"], ["Fields", "Physics"],
                   ["Institutions", "Edison Machine Works"], ["Signature", ""]])
    table, tesla = ("Report", "Revenue by region"), ("Report", "Nikola Tesla")
    assert [(s.headings, s.text) for s in outline.done()] == [
        (("Report",), "Revenue grew in every region."),  # the text before keeps its headings
        (table + ("Europe",), "Region: Germany; 2024: 10; 2025: 12"),
        (table + ("Europe",), "Region: France; 2024: 8; 2025: 9"),
        (table + ("Asia",), "Region: Japan; 2024: 5; 2025: 6"),
        (table, "Source: company data"),  # nothing under it: a row of its own, outside the last group
        (tesla, "Born: 10 July 1856"),
        (tesla + ("Scientific career",), "Fields: Physics"),
        (tesla + ("Scientific career",), "Institutions: Edison Machine Works"),
        (tesla + ("Scientific career",), "Signature"),  # two columns, the value empty (a picture): a name
    ]  # "Asia" padded with empty cells, as trafilatura gives a spanning cell, names a group too
    untitled = Outline(("Report",))
    untitled.text("Revenue grew.")
    untitled.table([["Region", "2024", "2025"], ["Europe"], ["Germany", "10", "12"]])
    assert [(s.headings, s.text) for s in untitled.done()] == [
        (("Report",), "Revenue grew."), (("Report", "Europe"), "Region: Germany; 2024: 10; 2025: 12")]


def read_by_both_html_readers(page: str, monkeypatch) -> list[ParsedDocument]:
    """The page read through trafilatura, then by the lxml fallback."""
    import core.rag.parsers.web as web

    found = parse_document(page.encode(), "page.html")
    monkeypatch.setattr(web, "main_content", lambda *a: [])
    return [found, parse_document(page.encode(), "page.html")]


def test_html_citation_marks_are_left_out_and_superscript_text_stays(monkeypatch):
    page = ("<html><head><title>Amazon rainforest</title></head><body><main><h1>Amazon rainforest</h1><p>The forest "
            "covers most of the Amazon basin of South America.<sup class='reference'><a href='#c1'>[1]</a></sup> "
            "The basin encompasses 7,000,000 km<sup>2</sup>,<sup><a href='#c2'>[2]</a></sup><sup>[<i>citation "
            "needed</i>]</sup> of which most is rainforest.<sup>[a]</sup></p></main></body></html>")
    for doc in read_by_both_html_readers(page, monkeypatch):
        assert doc.sections[0].text == ("The forest covers most of the Amazon basin of South America. The basin "
                                        "encompasses 7,000,000 km2, of which most is rainforest.")


def test_mediawiki_page_furniture_is_left_out(monkeypatch):
    first, second = PROSE[0], " ".join(PROSE[1:])
    page = ("<html><head><title>Harbour - Wiki</title></head><body><div id='content'><h1>Harbour</h1>"
            "<div class='mw-parser-output'><h2>History<span class='mw-editsection'>[<a>edit</a>]</span></h2>"
            f"<p>{first}</p><p>{second}</p><h2>References</h2>"
            "<div class='reflist'><ol class='references'><li>Smith, J. Harbours of the coast. 1999.</li></ol></div>"
            "<table class='navbox'><tr><td>Ports of the coast: North, South, East</td></tr></table></div>"
            "<div class='catlinks'>Categories: Ports</div></div></body></html>")
    for doc in read_by_both_html_readers(page, monkeypatch):
        assert [(s.headings, s.text) for s in doc.sections] == [
            (("Harbour", "History"), f"{first}\n\n{second}")]  # the title less the site's name: the <h1>


@pytest.mark.parametrize("title, heading, expected", [
    ("Kenya - Wikipedia", "Kenya", "Kenya"), ("Acme | Pricing", "Pricing", "Pricing"),
    ("What is rustdoc? - The rustdoc book", "What is rustdoc?", "What is rustdoc?"),
    ("Homepage of ACME", "Home", "Homepage of ACME"), ("ACME – Chính sách", "Sales policies", "ACME – Chính sách"),
])
def test_a_title_that_is_the_heading_and_the_sites_name_becomes_the_heading(title, heading, expected):
    import lxml.html

    from core.rag.parsers.web import page_title

    page = f"<html><head><title>{title}</title></head><body><h1>{heading}</h1><p>Text.</p></body></html>"
    assert page_title(lxml.html.document_fromstring(page)) == expected


def test_html_picture_rows_of_a_table_are_left_out_when_trafilatura_finds_nothing_too(monkeypatch):
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *a, **k: None)
    texts = [s.text for s in parse_document(WIKI_PAGE.encode(), "Nikola_Tesla.html").sections]
    assert [text.split(":")[0] for text in texts[:3]] == ["Born", "Died", "Known for"]
    assert not any("1890" in text or "Coat of arms" in text for text in texts)


def test_html_falls_back_to_the_body_text_when_trafilatura_finds_nothing(tmp_path, monkeypatch):
    import trafilatura

    calls = []
    monkeypatch.setattr(trafilatura, "extract", lambda *a, **k: calls.append(1))
    data = saved(tmp_path, "policies.htm", lambda p: p.write_text(NOISY_PAGE, encoding="utf-8"))
    html_checks(parse_document(data, "policies.htm"))
    assert calls == [1]


def test_html_in_a_declared_legacy_charset_is_read_without_a_notice():
    page = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252"></head>' \
           '<body><p>Café menu: crème brûlée.</p></body></html>'
    doc = parse_document(page.encode("cp1252"), "menu.html")
    assert [s.text for s in doc.sections] == ["Café menu: crème brûlée."] and doc.warnings == []


# ---- Markdown and text ----------------------------------------------------------------------------------------

MARKDOWN = """Intro before any heading.

# Handbook

Welcome.

## Sales

Prices include VAT.

Second paragraph.

### Returns ###

Hàng được đổi trả trong vòng 30 ngày.

| Plan | Price |
|:-----|------:|
| Basic | 10 |
| Pro \\| Plus | 25 |

## Tools

```python
# not a heading
print("hi")
```

#hashtag is text
# Contact
Email us.
"""


def test_markdown_splits_on_atx_headings_with_paths():
    doc = parse_document(MARKDOWN.encode("utf-8"), "handbook.markdown")
    returns = ("Handbook", "Sales", "Returns")
    assert outline(doc) == [
        ((), "Intro before any heading.", False),
        (("Handbook",), "Welcome.", False),
        (("Handbook", "Sales"), "Prices include VAT.\n\nSecond paragraph.", False),
        (returns, "Hàng được đổi trả trong vòng 30 ngày.", False),
        (returns, "Plan: Basic; Price: 10", True),
        (returns, "Plan: Pro | Plus; Price: 25", True),
        (("Handbook", "Tools"), '```python\n# not a heading\nprint("hi")\n```\n\n#hashtag is text', False),
        (("Contact",), "Email us.", False),
    ]


LINKED_MARKDOWN = """# The `process` object

<!-- introduced_in=v0.10.0 -->

The `process` object is an instance of [`EventEmitter`][] and **controls** the
current process; see [the
manual](https://example.org/manual_(v2) "Manual") or ![the logo](logo.png). A snake_case_name stays,
and \\*stars\\* that are escaped stay too.<br>A new line.

<!-- YAML
added: v0.11.12
-->

    indented_code(*args)

```js
const total = a * b * c; // _not_ emphasis [x][]
```

| Option | Meaning |
|---|---|
| [`--trace`][] | prints a *stack* trace |

<script>track("SCRIPTNOISE")</script>

[`EventEmitter`]: events.md#class-eventemitter
[`--trace`]: cli.md#trace
"""


def test_markdown_is_read_as_its_text_without_links_marks_comments_or_definitions():
    doc = parse_document(LINKED_MARKDOWN.encode(), "process.md")
    assert outline(doc) == [
        (("The process object",),
         "The process object is an instance of EventEmitter and controls the\ncurrent process; see the\n"
         "manual or the logo. A snake_case_name stays,\nand *stars* that are escaped stay too.\nA new line.\n\n"
         "    indented_code(*args)\n\n```js\nconst total = a * b * c; // _not_ emphasis [x][]\n```", False),
        (("The process object",), "Option: --trace; Meaning: prints a stack trace", True),
    ]


def test_long_markdown_is_parsed_in_pieces_that_keep_fences_and_definitions(monkeypatch):
    import core.rag.parsers.text as text_reader

    monkeypatch.setattr(text_reader, "PIECE_CHARS", 40)  # a piece ends at nearly every blank line
    source = ("See [the guide][guide] first.\n\n```\nfirst_line\n\n*kept* [x][guide]\n```\n\n"
              + "Filler paragraph number one.\n\n" * 3 + "[guide]: https://example.org/guide\n")
    pieces = list(text_reader._pieces(source.split("\n")))
    assert len(pieces) >= 3 and pieces[0][0] == 0 and pieces[-1][1] == len(source.split("\n"))
    assert not {end for _, end in pieces} & set(range(3, 7))  # never inside the fence (lines 2 to 6)
    text = parse_document(source.encode(), "guide.md").sections[0].text
    assert text == ("See the guide first.\n\n```\nfirst_line\n\n*kept* [x][guide]\n```\n\n"
                    + "\n\n".join(["Filler paragraph number one."] * 3))


@pytest.mark.parametrize("encoding, notice", [
    ("utf-8", None), ("utf-8-sig", None), ("utf-16", None), ("utf-16-le", None), ("utf-16-be", None),
    ("cp1258", "cp1258"),
])
def test_txt_encodings_keep_vietnamese_exactly(encoding, notice):
    text = "Do\u0300ng mô\u0323t: " + VI_DECOMPOSED + ".\r\n\r\nĐoa\u0323n hai.\r\n\r\n\r\n\r\nĐoa\u0323n ba."
    if encoding != "cp1258":
        text = VI + "\r\n" + text
    doc = parse_document(text.encode(encoding), "ghi-chu.txt")
    expected = text.replace("\r\n", "\n").replace("\n\n\n\n", "\n\n")
    assert outline(doc) == [((), expected, False)]
    assert "\u0301" in doc.sections[0].text  # combining marks are not composed: no normalisation
    assert [w.params.get("encoding") for w in doc.warnings] == ([notice] if notice else [])
    if notice:
        assert str(doc.warnings[0]) == ("ghi-chu.txt is not UTF-8; it was read as cp1258. Check that accented "
                                        "letters look right.")


# ---- tables ---------------------------------------------------------------------------------------------------

def test_csv_rows_become_table_row_sections(tmp_path):
    rows = "Sản phẩm,Giá,Ghi chú\r\nÁo sơ mi,250000,\r\nQuần tây,400000,\"Không đổi, không trả\"\r\n,,\r\n"
    data = saved(tmp_path, "bang-gia.csv", lambda p: p.write_bytes(rows.encode("utf-8")))
    doc = parse_document(data, "bang-gia.csv")
    assert outline(doc) == [
        (("bang-gia.csv",), "Sản phẩm: Áo sơ mi; Giá: 250000", True),
        (("bang-gia.csv",), "Sản phẩm: Quần tây; Giá: 400000; Ghi chú: Không đổi, không trả", True),
    ]


def test_tsv_and_a_legacy_encoding_notice():
    doc = parse_document("Tên\tGhi chú\nAn\tcafé\n".encode("cp1258"), "people.tsv")
    assert [s.text for s in doc.sections] == ["Tên: An; Ghi chú: café"]
    assert [w.params.get("encoding") for w in doc.warnings] == ["cp1258"]


def test_xlsx_reads_every_sheet_one_section_per_row(tmp_path):
    import openpyxl

    def write(path):
        book = openpyxl.Workbook()
        prices = book.active
        prices.title = "Bảng giá"
        prices.append(["Sản phẩm", "Giá", "Từ ngày"])
        prices.append(["Áo sơ mi", 250000.0, datetime.datetime(2024, 5, 1)])
        prices.append(["Quần tây", 399.5, None])
        stores = book.create_sheet("Stores")
        stores.append(["City", "Open"])
        stores.append(["Hà Nội", "8:00"])
        stores.append(["Đà Nẵng", "=1+1"])  # a formula with no saved value is never run, and is reported
        book.create_sheet("Empty")
        book.save(path)

    doc = parse_document(saved(tmp_path, "prices.xlsx", write), "prices.xlsx")
    assert outline(doc) == [
        (("Bảng giá",), "Sản phẩm: Áo sơ mi; Giá: 250000; Từ ngày: 2024-05-01", True),
        (("Bảng giá",), "Sản phẩm: Quần tây; Giá: 399.5", True),
        (("Stores",), "City: Hà Nội; Open: 8:00", True),
        (("Stores",), "City: Đà Nẵng", True),
    ]
    assert [str(w) for w in doc.warnings] == ["Sheet 'Stores': Cell B3 holds a formula with no saved value; open the "
                                              "file in Excel, save it and import it again (formulas are never run "
                                              "here)."]


# ---- the API --------------------------------------------------------------------------------------------------

def test_every_supported_extension_has_a_reader(tmp_path, monkeypatch):
    samples = {".txt": b"Hello there.", ".md": b"# H\nHello there.", ".markdown": b"Hello there.",
               ".html": b"<p>Hello there.</p>", ".htm": b"<p>Hello there.</p>", ".csv": b"greeting\nHello there.",
               ".tsv": b"greeting\nHello there.", ".pdf": make_pdf(tmp_path, ["Hello there."]),
               ".docx": make_docx(tmp_path), ".pptx": make_pptx(tmp_path)}
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["greeting"])
    book.active.append(["Hello there."])
    samples[".xlsx"] = saved(tmp_path, "s.xlsx", book.save)
    assert set(samples) == SUPPORTED
    for ext, data in samples.items():
        doc = parse_document(data, "sample" + ext.upper())
        assert doc.sections and all(isinstance(s, Section) for s in doc.sections), ext
        assert any("Hello there." in s.text or "Welcome" in s.text or "Revenue" in s.text for s in doc.sections), ext


def test_sections_are_frozen():
    section = parse_document(b"Hello", "a.txt").sections[0]
    with pytest.raises(Exception):
        section.text = "changed"


def numbered_docx(tmp_path: Path) -> bytes:
    """A procedure numbered as Word writes it: "1." / "a)" / "i." levels, a restarted copy of the list, headings
    numbered "%1" and "%1.%2", a bulleted line, numbering removed with numId 0, and a second list of the same
    definition that counts on."""
    import docx
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    def level(ilvl, fmt, text):
        return (f'<w:lvl w:ilvl="{ilvl}"><w:start w:val="1"/><w:numFmt w:val="{fmt}"/>'
                f'<w:lvlText w:val="{text}"/></w:lvl>')

    document = docx.Document()
    numbering = document.part.numbering_part.element
    for position, (abstract_id, levels) in enumerate([
            (90, level(0, "decimal", "%1.") + level(1, "lowerLetter", "%2)") + level(2, "lowerRoman", "%3.")),
            (91, level(0, "decimal", "%1") + level(1, "decimal", "%1.%2")),
            (92, level(0, "bullet", "\uf0b7"))]):
        numbering.insert(position, parse_xml(
            f'<w:abstractNum {nsdecls("w")} w:abstractNumId="{abstract_id}">{levels}</w:abstractNum>'))
    for num_id, abstract_id, override in [(90, 90, ""), (93, 91, ""), (94, 92, ""), (95, 90, ""), (91, 90, (
            '<w:lvlOverride w:ilvl="0"><w:startOverride w:val="7"/></w:lvlOverride>'))]:
        numbering.append(parse_xml(f'<w:num {nsdecls("w")} w:numId="{num_id}">'
                                   f'<w:abstractNumId w:val="{abstract_id}"/>{override}</w:num>'))

    def add(text, num_id, ilvl=0, style=None):
        paragraph = document.add_paragraph(text, style=style)
        paragraph._p.get_or_add_pPr().insert(0, parse_xml(
            f'<w:numPr {nsdecls("w")}><w:ilvl w:val="{ilvl}"/><w:numId w:val="{num_id}"/></w:numPr>'))

    add("Setting up", 93, 0, style="Heading 1")
    document.add_paragraph("Before the first ride:")
    add("Unpack the bike.", 90)
    add("Check the tyres.", 90)
    add("Front tyre.", 90, 1)
    add("Valve cap.", 90, 2)
    add("Rear tyre.", 90, 1)
    add("Charge the battery.", 90)
    add("Not numbered any more.", 0)
    document.add_paragraph("Later:")
    add("Book a service.", 91)
    add("Wash the bike.", 91)
    add("Store it dry.", 95)  # another list of the same definition, not restarted: it counts on from "3."
    add("Brakes", 93, 1, style="Heading 2")
    document.add_paragraph("Pull both levers.")
    add("Bulleted, no number.", 94)
    return saved(tmp_path, "numbered.docx", document.save)


def test_docx_keeps_the_numbers_word_shows_before_list_items_and_headings(tmp_path):
    doc = parse_document(numbered_docx(tmp_path), "numbered.docx")
    assert outline(doc) == [
        (("1 Setting up",), "Before the first ride:\n1. Unpack the bike.\n2. Check the tyres.\na) Front tyre.\n"
                            "i. Valve cap.\nb) Rear tyre.\n3. Charge the battery.\nNot numbered any more.\n\n"
                            "Later:\n7. Book a service.\n8. Wash the bike.\n4. Store it dry.", False),
        (("1 Setting up", "1.1 Brakes"), "Pull both levers.\n\nBulleted, no number.", False),
    ]


@pytest.mark.timeout(60)
def test_a_word_file_whose_styles_are_based_on_each_other_in_a_loop_is_read(tmp_path):
    """A style "based on" a style based on it: following base styles never ended, and ingest hung on the file."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    first = document.styles.add_style("Loop A", WD_STYLE_TYPE.PARAGRAPH)
    second = document.styles.add_style("Loop B", WD_STYLE_TYPE.PARAGRAPH)
    first.base_style, second.base_style = second, first
    document.add_paragraph("Text in a looping style.", style="Loop A")
    document.add_paragraph("More text.", style="Loop B")
    doc = parse_document(saved(tmp_path, "loop.docx", document.save), "loop.docx")
    assert [s.text for s in doc.sections] == ["Text in a looping style.\n\nMore text."]


def test_a_word_style_without_a_name_does_not_fail_the_file(tmp_path):
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.oxml.ns import qn

    document = docx.Document()
    style = document.styles.add_style("Nameless", WD_STYLE_TYPE.PARAGRAPH)
    document.add_paragraph("Text in a style without a name.", style="Nameless")
    style.element.remove(style.element.find(qn("w:name")))
    doc = parse_document(saved(tmp_path, "nameless.docx", document.save), "nameless.docx")
    assert [s.text for s in doc.sections] == ["Text in a style without a name."]


def _content_control(children, gallery: str | None = None):
    """A Word content control (<w:sdt>) holding `children`, of a building-block gallery ("Table of Contents")."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    control, properties, content = OxmlElement("w:sdt"), OxmlElement("w:sdtPr"), OxmlElement("w:sdtContent")
    if gallery:
        part, kind = OxmlElement("w:docPartObj"), OxmlElement("w:docPartGallery")
        kind.set(qn("w:val"), gallery)
        part.append(kind)
        properties.append(part)
    for child in children:
        content.append(child)
    control.append(properties)
    control.append(content)
    return control


def test_word_text_inside_content_controls_is_read_and_a_table_of_contents_left_out(tmp_path):
    """python-docx skips content controls: a template's section kept in a rich-text control lost all its text, and a
    form's filled-in field read "Customer: ". Word's table of contents (a control of its gallery, or paragraphs in
    its TOC styles) is left out: its lines only say where the headings are."""
    import docx
    from docx.oxml import OxmlElement

    document = docx.Document()
    document.add_heading("Travel policy", 1)
    contents = [document.add_paragraph(line)._p for line in ("1 Booking a trip\t2", "2 Hotels\t3")]
    intro = document.add_paragraph("This policy applies to every employee who travels for work.")
    document.add_paragraph("Contents", style="TOC Heading")
    heading = document.add_heading("1 Booking a trip", 2)
    kept = [document.add_paragraph(text)._p for text in ("Book every trip through the travel desk.",
                                                          "Travel by train when the journey takes under five hours.")]
    field = document.add_paragraph("Approved by: ")
    run = OxmlElement("w:r")
    run.append(OxmlElement("w:t"))
    run[0].text = "Maria Schmidt"
    field._p.append(_content_control([run]))
    field.add_run(" (travel desk)")
    for element in contents + kept:
        element.getparent().remove(element)
    intro._p.addprevious(_content_control(contents, "Table of Contents"))
    heading._p.addnext(_content_control(kept))
    doc = parse_document(saved(tmp_path, "policy.docx", document.save), "policy.docx")
    assert [(s.headings, s.text) for s in doc.sections] == [
        (("Travel policy",), "This policy applies to every employee who travels for work."),
        (("Travel policy", "1 Booking a trip"), "Book every trip through the travel desk.\n\nTravel by train when "
                                                "the journey takes under five hours.\n\nApproved by: Maria Schmidt "
                                                "(travel desk)")]


TEXT_BOX_RUN = """<w:r {w} xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"
  xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"
  xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"
  xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:v="urn:schemas-microsoft-com:vml">
<mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wp:anchor><a:graphic><a:graphicData><wps:wsp><wps:txbx>
<w:txbxContent>{box}</w:txbxContent></wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing>
</mc:Choice><mc:Fallback><w:pict><v:shape><v:textbox><w:txbxContent>{box}</w:txbxContent></v:textbox></v:shape>
</w:pict></mc:Fallback></mc:AlternateContent></w:r>"""


def test_word_text_boxes_are_read_once_after_the_paragraph_they_are_anchored_in(tmp_path):
    """A newsletter's or a cover page's text boxes were left out; Word also keeps a copy of each box for older
    readers, which must not be read twice."""
    import docx
    from docx.oxml.ns import nsdecls
    from lxml import etree

    box = "".join(f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>" for text in ("Opening party on 4 April at 18:00.",
                                                                          "Free coffee for every visitor."))
    document = docx.Document()
    document.add_heading("Spring newsletter", 1)
    anchor = document.add_paragraph("Our shop moves to a new address in April.")
    anchor._p.append(etree.fromstring(TEXT_BOX_RUN.format(w=nsdecls("w"), box=box)))
    document.add_paragraph("The new shop is at Harbour Street 12.")
    cell = document.add_table(rows=1, cols=2).rows[0].cells
    cell[0].text, cell[1].text = "Open on", "Sundays"
    cell[1].paragraphs[0]._p.append(etree.fromstring(TEXT_BOX_RUN.format(w=nsdecls("w"), box=box)))
    doc = parse_document(saved(tmp_path, "news.docx", document.save), "news.docx")
    assert [s.text for s in doc.sections] == [
        "Our shop moves to a new address in April.\n\nOpening party on 4 April at 18:00.\n\nFree coffee for every "
        "visitor.\n\nThe new shop is at Harbour Street 12.",
        "Open on; Sundays\nOpening party on 4 April at 18:00.\nFree coffee for every visitor."]


FOOTNOTES = """<w:{kind}s {w}>
<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>
<w:{kind} w:id="1"><w:p><w:r><w:{kind}Ref/></w:r><w:r><w:t xml:space="preserve"> Measured on 140 bikes.</w:t>
</w:r></w:p></w:{kind}>
<w:{kind} w:id="2"><w:p><w:r><w:{kind}Ref/></w:r><w:r><w:t xml:space="preserve"> Ghi chú: pin 500 Wh.</w:t></w:r>
</w:p></w:{kind}></w:{kind}s>"""


def with_notes(data: bytes, kind: str) -> bytes:
    """A Word file with a part of footnotes or endnotes (python-docx cannot write them), as Word stores it."""
    import zipfile

    from docx.oxml.ns import nsdecls

    original, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    content_type = f"application/vnd.openxmlformats-officedocument.wordprocessingml.{kind}s+xml"
    relation = f"http://schemas.openxmlformats.org/officeDocument/2006/relationships/{kind}s"
    with zipfile.ZipFile(out, "w") as package:
        for item in original.infolist():
            part = original.read(item.filename)
            if item.filename == "[Content_Types].xml":
                part = part.replace(b"</Types>", f'<Override PartName="/word/{kind}s.xml" ContentType='
                                                 f'"{content_type}"/></Types>'.encode())
            elif item.filename == "word/_rels/document.xml.rels":
                part = part.replace(b"</Relationships>", f'<Relationship Id="rIdNotes" Type="{relation}" '
                                                         f'Target="{kind}s.xml"/></Relationships>'.encode())
            elif item.filename == "word/document.xml":
                for number in (1, 2):
                    part = part.replace(f"MARK{number}".encode(), f'</w:t></w:r><w:r><w:{kind}Reference w:id='
                                                                  f'"{number}"/></w:r><w:r><w:t>'.encode())
            package.writestr(item, part)
        package.writestr(f"word/{kind}s.xml", FOOTNOTES.format(kind=kind, w=nsdecls("w")))
    return out.getvalue()


@pytest.mark.parametrize("kind", ["footnote", "endnote"])
def test_word_footnotes_and_endnotes_follow_the_paragraph_that_refers_to_them(tmp_path, kind):
    """python-docx does not read notes: a figure's source or a condition kept in a footnote was lost."""
    import docx

    document = docx.Document()
    document.add_heading("Battery", 1)
    document.add_paragraph("A charge lasts about 80 km.MARK1 Charge it indoors.")
    document.add_paragraph("The battery holds 500 Wh.MARK2")
    document.add_paragraph("Store it half full.")
    data = with_notes(saved(tmp_path, "manual.docx", document.save), kind)
    doc = parse_document(data, "manual.docx")
    assert outline(doc) == [(("Battery",), "A charge lasts about 80 km. Charge it indoors.\n\nMeasured on 140 "
                                           "bikes.\n\nThe battery holds 500 Wh.\n\nGhi chú: pin "
                                           "500 Wh.\n\nStore it half full.", False)]


def packed(tmp_path, name: str, save, member: str, grow: bytes) -> bytes:
    """A saved Office file with `grow` repeated into one of its XML parts: small on disk, large unpacked."""
    import zipfile

    original = zipfile.ZipFile(io.BytesIO(saved(tmp_path, name, save)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == member:
                data = data.replace(b"<w:body>", b"<w:body>" + grow) if name.endswith(".docx") else data + grow
            bomb.writestr(item, data)
    return out.getvalue()


def test_an_office_file_that_unpacks_beyond_the_size_limit_is_refused_at_once(tmp_path):
    """400 KB on disk, 150 MB of XML: reading it took 160 s and its text would have taken hours to embed."""
    import docx
    import openpyxl

    document = docx.Document()
    document.add_paragraph("Hello.")
    paragraph = b"<w:p><w:r><w:t>" + b"A" * 1000 + b"</w:t></w:r></w:p>"
    big_docx = packed(tmp_path, "big.docx", document.save, "word/document.xml", paragraph * 2_000)
    workbook = openpyxl.Workbook()
    workbook.active["A1"] = "Hello"
    big_xlsx = packed(tmp_path, "big.xlsx", workbook.save, "docProps/app.xml", b"<!--" + b"A" * 2_100_000 + b"-->")
    for data, name in ((big_docx, "big.docx"), (big_xlsx, "big.xlsx")):
        assert len(data) < 100_000
        with pytest.raises(DocumentError, match=rf"^{name} unpacks to 2\.\d MB of text and markup, more than the "
                                                 r"2 MB limit\. Split it into smaller files\.$"):
            parse_document(data, name, max_bytes=2 * 1024 * 1024)
    assert parse_document(big_docx, "big.docx").sections  # within the default limit it is read
