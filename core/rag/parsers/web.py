"""HTML pages: the main content through trafilatura, with headings, paragraphs, lists and table rows.

The page's <title> is the first heading of every Section. trafilatura's XML output is read (not its Markdown,
which escapes characters such as `_` and `*`). When trafilatura finds nothing (or is not installed), the text
of <body> is read with lxml instead, without scripts, styles, navigation, hidden elements, and page-level
headers, footers and asides (those inside <article> or <main> are kept); h1-h6 still give the heading path.

Encoding: a byte-order mark decides, then UTF-8, then the page's declared charset, then the project's
Windows-1258 / Latin-1 fallback with a notice.
"""

from __future__ import annotations

import codecs
import re

from .common import CITATION_MARK, Outline, Section, decode_text, one_line

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
NOISE = ("head", "script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "embed", "button",
         "select")
BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "ul", "ol", "li", "dl", "dt",
          "dd", "blockquote", "figure", "figcaption", "form", "fieldset", "address", "hr", "caption", "details",
          "summary", "body", "html"}


def declared_charset(data: bytes) -> str | None:
    found = _META_CHARSET.search(data[:8192])
    if not found:
        return None
    try:
        return codecs.lookup(found.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None


def read_html(data: bytes, name: str, warnings: list) -> list[Section]:
    text = _XML_DECLARATION.sub("", decode_text(data, name, warnings, declared_charset(data)))
    tree = _parse(text)
    if tree is not None and drop_citation_marks(tree) + drop_wiki_furniture(tree) + drop_picture_rows(tree):
        import lxml.html

        text = lxml.html.tostring(tree, encoding="unicode")
    title = page_title(tree) if tree is not None else ""
    sections = main_content(text, title, headings_before(tree) if tree is not None else {})
    if not sections and tree is not None:
        sections = body_text(tree, title)
    return sections


def page_title(tree) -> str:
    """The page's <title>, or its first <h1> when the title is that heading with the site's name ("Kenya -
    Wikipedia", "Pricing | Acme"): the site's name would otherwise head, and be embedded with, every passage."""
    title = one_line(tree.findtext(".//title") or "")
    heading = tree.find(".//h1")
    heading = one_line(heading.text_content()) if heading is not None else ""
    separator = r"\s*[-–—|·:]\s*"  # "Kenya - Wikipedia", "Acme | Pricing"
    named = heading and re.fullmatch(rf"(?:.+{separator})?{re.escape(heading)}(?:{separator}.+)?", title, re.DOTALL)
    return heading if named else title


def drop_citation_marks(tree) -> int:
    """Leaves out superscript citation marks ("[12]", "[a]", "[citation needed]" as Wikipedia sets them): in a
    passage they read like the studio's own [n] passage numbers and hide where a sentence ends. Superscripts
    that are text ("km²") stay. Returns how many were left out."""
    marks = [sup for sup in tree.iter("sup") if re.fullmatch(f"(?:{CITATION_MARK})+", sup.text_content().strip())]
    for sup in marks:
        sup.drop_tree()  # keeps the text that follows it
    return len(marks)


# MediaWiki's page furniture (Wikipedia and wikis built on it): reference lists, "[edit]" links, navigation boxes,
# category links and what is marked not for print.
WIKI_FURNITURE = frozenset({"reference", "references", "reflist", "mw-references-wrap", "mw-editsection", "navbox",
                            "catlinks", "noprint", "mw-jump-link", "printfooter"})


def drop_wiki_furniture(tree) -> int:
    """Leaves out what a MediaWiki page has around its text; left in, a reference list of a few hundred titles
    becomes passages that keyword search finds. Returns how many elements were left out."""
    furniture = [element for element in tree.iter() if isinstance(element.tag, str)
                 and WIKI_FURNITURE.intersection((element.get("class") or "").split())]
    inside = set(furniture)
    for element in furniture:
        if element.getparent() is not None and not any(a in inside for a in element.iterancestors()):
            element.drop_tree()
    return len(furniture)


MAX_PICTURE_CAPTION_CHARS = 200


def drop_picture_rows(tree) -> int:
    """Leaves out a table's rows that are pictures with their captions (an infobox's portrait, "Tesla, c. 1890";
    a country's flag and coat of arms): the picture cannot be searched, and its caption alone became a short
    passage close to every question about the page, from which the model answered "When was Tesla born?" with
    "1890". Returns how many rows were left out."""
    rows = []
    for row in tree.iter("tr"):
        cells = [cell for cell in row if isinstance(cell.tag, str) and cell.tag in ("td", "th")]
        if cells and all(cell.find(".//img") is not None for cell in cells) \
                and len(one_line(row.text_content())) <= MAX_PICTURE_CAPTION_CHARS:
            rows.append(row)
    for row in rows:
        row.getparent().remove(row)
    return len(rows)


def _parse(text: str):
    import lxml.html

    try:
        return lxml.html.document_fromstring(text)
    except Exception:  # an empty or hopeless document: no text
        return None


# ---- trafilatura ------------------------------------------------------------------------------------------------

_HEADING = re.compile(r"h[1-6]")
_TEXT_BLOCKS = frozenset({"p", "li", "td", "th", "pre", "blockquote", "dd", "dt"})


def block_key(text: str) -> str:
    """The first letters and digits of a block of text, to find it again after extraction."""
    return re.sub(r"\W+", "", text.lower())[:80]


def headings_before(tree) -> dict[str, list[list[tuple[int, str]]]]:
    """The page's headings, by the key (`block_key`) of the first block of text after them. trafilatura leaves
    out a page's headings on some pages (an article after an infobox, for one), and a passage would lose the
    heading it was under."""
    found: dict[str, list[list[tuple[int, str]]]] = {}
    waiting: list[tuple[int, str]] = []
    for element in tree.iter():
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        if _HEADING.fullmatch(tag):
            text = one_line(element.text_content())
            if text:
                waiting.append((int(tag[1]), text))
        elif tag in _TEXT_BLOCKS and waiting:
            key = block_key(element.text_content())
            if key:
                found.setdefault(key, []).append(waiting)
                waiting = []
    return found


def _blocks(parent):
    """trafilatura's blocks, inside any <div> it kept around them."""
    for element in parent:
        if element.tag == "div" and any(child.tag in _XML_BLOCKS + ("table", "div") for child in element):
            yield from _blocks(element)
        else:
            yield element


def _first_text(element) -> str:
    cell = element.find(".//cell") if element.tag == "table" else None
    return _xml_text(cell if cell is not None else element)


def main_content(text: str, title: str, headings: dict | None = None) -> list[Section]:
    """Sections from trafilatura's main-content extraction, with the page's headings (`headings_before`) put back
    before the blocks they were over; [] when it finds nothing."""
    try:
        import trafilatura
        from lxml import etree

        xml = trafilatura.extract(text, output_format="xml", include_tables=True, include_comments=False,
                                  include_images=False, include_links=False, include_formatting=False,
                                  deduplicate=False)
        main = etree.fromstring(xml).find("main") if xml else None
    except Exception:  # not installed, or failed on this page: the lxml reading below takes over
        return []
    if main is None:
        return []
    outline = Outline((title,), joiner="\n\n")
    headings = {key: list(queue) for key, queue in (headings or {}).items()}
    for element in _blocks(main):
        waiting = headings.get(block_key(_first_text(element))) if element.tag != "head" else None
        for level, heading in waiting.pop(0) if waiting else ():
            outline.heading(level, heading)
        if element.tag == "head":
            rend = re.fullmatch(r"h([1-6])", element.get("rend") or "")
            outline.heading(int(rend.group(1)) if rend else 2, _xml_text(element))
        elif element.tag == "table":
            outline.table([[_xml_text(cell) for cell in row.findall("cell")] for row in element.findall("row")])
        else:
            outline.text(_xml_text(element))
    return outline.done()


_XML_BLOCKS = ("item", "list", "p", "head", "row", "quote")


def _xml_text(element) -> str:
    """An element's text as a browser shows it: white space in running text collapses to one space (a page's
    source is often wrapped anywhere, even inside a sentence), while line breaks, list items and nested blocks
    start new lines and code blocks keep their lines."""
    flow = _Flow()
    _xml_flow(element, flow)
    return flow.result()


def _is_code_block(element) -> bool:
    """trafilatura writes <pre> as a <code> of the main content; inline code inside a paragraph is one line."""
    parent = element.getparent()
    return element.tag == "code" and (parent is None or parent.tag == "main"
                                      or "\n" in "".join(element.itertext()).strip())


def _xml_flow(element, flow: "_Flow") -> None:
    if _is_code_block(element):
        flow.line_break()
        flow.verbatim("".join(element.itertext()).strip("\n"))
        flow.line_break()
        return
    flow.text(element.text)
    for child in element:
        if child.tag == "lb":
            flow.line_break()
        elif child.tag in _XML_BLOCKS:
            flow.line_break()
            _xml_flow(child, flow)
            flow.line_break()
        else:
            _xml_flow(child, flow)
        flow.text(child.tail)


class _Flow:
    """Running text with collapsed white space; no spaces are left around a line break, and nested blocks break
    the line once."""

    def __init__(self):
        self.parts: list[str] = []

    def text(self, value: str | None) -> None:
        if value:
            value = re.sub(r"\s+", " ", value)
            if not self.parts or self.parts[-1].endswith("\n"):
                value = value.lstrip()
            if value:
                self.parts.append(value)

    def verbatim(self, value: str) -> None:
        self.parts.append(value)

    def line_break(self) -> None:
        if self.parts and self.parts[-1].endswith("\n"):
            return  # blocks inside a block: one line each
        if self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append("\n")

    def result(self) -> str:
        return "".join(self.parts).strip()


# ---- lxml fallback ----------------------------------------------------------------------------------------------

class _Inline:
    """Inline text gathered until a block ends; HTML whitespace collapses, <br> breaks the line."""

    def __init__(self, outline: Outline):
        self.outline, self.parts = outline, []

    def add(self, text: str | None) -> None:
        if text:
            self.parts.append(re.sub(r"\s+", " ", text))

    def end_block(self) -> None:
        lines = (line.strip() for line in "".join(self.parts).split("\n"))
        self.parts = []
        text = "\n".join(line for line in lines if line)
        if text:
            self.outline.text(text)


def body_text(tree, title: str) -> list[Section]:
    body = tree.find("body")
    body = body if body is not None else tree
    noise = list(body.iter(*NOISE))
    noise += [e for e in body.iter("header", "footer", "aside") if not any(a.tag in ("article", "main")
                                                                          for a in e.iterancestors())]
    noise += [e for e in body.iter() if isinstance(e.tag, str) and e.get("hidden") is not None]
    for element in noise:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows it
    outline = Outline((title,), joiner="\n\n")
    inline = _Inline(outline)
    _walk(body, inline)
    inline.end_block()
    return outline.done()


def _walk(element, inline: _Inline) -> None:
    inline.add(element.text)
    for child in element:
        tag = child.tag.lower() if isinstance(child.tag, str) else ""  # comments and processing instructions: ""
        if tag in HEADINGS:
            inline.end_block()
            inline.outline.heading(HEADINGS[tag], child.text_content())
        elif tag == "br":
            inline.parts.append("\n")
        elif tag == "table":
            inline.end_block()
            inline.outline.table([[cell.text_content() for cell in row if cell.tag in ("td", "th")]
                                  for row in child.iter("tr")])
        elif tag == "pre":
            inline.end_block()
            inline.outline.text(child.text_content())
        elif tag in BLOCKS:
            inline.end_block()
            _walk(child, inline)
            inline.end_block()
        elif tag:
            _walk(child, inline)
        inline.add(child.tail)
