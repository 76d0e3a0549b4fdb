"""Company documents -> text Sections for the knowledge base: PDF, DOCX, PPTX, HTML, Markdown, TXT, CSV/TSV and
XLSX.

`parse_document(data, filename)` checks the size, the type and emptiness, then reads the file with the
reader for its extension (see `core.rag.parsers`) and returns a `ParsedDocument`: a safe display name, the
SHA-256 of the raw bytes, the Sections in reading order and notices for the user. Anything that makes the file
unusable raises `DocumentError` with one sentence for the user. Text is never normalised (Vietnamese keeps its
exact code points).

Sections carry where their text came from: a 1-based page for PDFs (the slide for PPTX), a heading path for DOCX,
PPTX, HTML and Markdown (the sheet or file name for tables), and `is_table_row` for one record of a table, which the
chunker keeps whole.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

from core.data.formats.table import size_mb
from core.errors import DocumentError
from core.i18n import Msg
from core.workspace import BIDI_CONTROLS

from .parsers.common import Section

__all__ = ["SUPPORTED", "DEFAULT_MAX_BYTES", "Section", "ParsedDocument", "safe_name", "safe_relative_name",
           "check_file", "parse_document"]

SUPPORTED = {".pdf", ".docx", ".pptx", ".html", ".htm", ".md", ".markdown", ".txt", ".csv", ".tsv", ".xlsx"}
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
MAX_NAME_BYTES = 200  # in UTF-8: file systems allow 255 bytes, and Vietnamese letters take 2-3 each
# Characters that can hide or reorder what a name shows: bidirectional controls, separators, the BOM.
_INVISIBLE = set(BIDI_CONTROLS + "\u2028\u2029\ufeff")
_DRIVE = re.compile(r"^[A-Za-z]:")
_NOT_ON_WINDOWS = re.compile(r'[<>:"|?*]')
_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)


@dataclass
class ParsedDocument:
    source: str  # safe display name (see safe_name), or the path inside the documents folder (safe_relative_name)
    content_hash: str  # sha256 of the raw bytes
    sections: list[Section]
    warnings: list[Msg] = field(default_factory=list)  # e.g. encoding fallback, pages without text


def safe_name(filename: str) -> str:
    """The file's base name, safe to show and to store as a file on any system: no folders ('../', '/abs/',
    'C:\\'), no control or bidirectional characters, none that Windows refuses (replaced by '_'), no trailing
    dots, not a Windows device name, at most MAX_NAME_BYTES bytes (the extension kept); never empty. Letters are
    kept exactly (a decomposed macOS name stays decomposed)."""
    name = "".join(ch for ch in str(filename or "") if unicodedata.category(ch) != "Cc" and ch not in _INVISIBLE)
    parts = [part.strip() for part in name.replace("\\", "/").split("/") if part.strip()]
    name = _DRIVE.sub("", parts[-1]) if parts else ""
    name = _NOT_ON_WINDOWS.sub("_", name).strip().rstrip(". ")
    if not name:  # "", ".", "..", "C:"
        return "document"
    if _DEVICE.fullmatch(name):
        name = "_" + name
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if stem and len(ext.encode("utf-8")) <= 16 else ""
        stem = name[:len(name) - len(ext)]
        room = MAX_NAME_BYTES - len(ext.encode("utf-8"))
        name = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip(". ") + ext
    return name


def safe_relative_name(path: str) -> str:
    """A path relative to a chosen folder ('sub1/policy.txt'), kept as a document's name so that files with the
    same name in different sub-folders stay apart: '/'-separated, each part a `safe_name`, no '.', '..' or empty
    parts (so it never leaves the folder it is stored in); never empty."""
    parts = [part for part in str(path or "").replace("\\", "/").split("/") if part.strip() not in ("", ".", "..")]
    return "/".join(safe_name(part) for part in parts) or "document"


def extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return "." + ext.lower() if stem and dot else ""


def check_file(name: str, size: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """What can be told before a file is read or copied: its size and its type. Raises DocumentError."""
    if size > max_bytes:
        raise DocumentError(Msg("{file} is larger than the {limit} MB limit ({size} MB). Split it into smaller "
                                "files.", file=name, limit=size_mb(max_bytes).removesuffix(".0"), size=size_mb(size)))
    if extension(name) not in SUPPORTED:
        raise DocumentError(Msg("{file}: this file type is not supported; use PDF, DOCX, PPTX, HTML, Markdown, TXT, "
                                "CSV or XLSX.", file=name))
    if not size:
        raise DocumentError(Msg("{file} is empty.", file=name))


def parse_document(data: bytes, filename: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                   source: str | None = None) -> ParsedDocument:
    """Read one uploaded document. Raises DocumentError (a message for the user) when it cannot be used.
    `source` names the document (in messages and in the result) when it is not the file's base name: the path of
    a document kept in a sub-folder (see safe_relative_name)."""
    name = source or safe_name(filename)
    check_file(name, len(data), max_bytes)
    ext = extension(name)
    data = bytes(data)
    warnings: list[Msg] = []
    sections = [s for s in _read(ext, data, name, warnings, max_bytes) if s.text.strip()]
    if not sections:
        raise DocumentError(Msg("{file} contains no text to add to the knowledge base.", file=name))
    return ParsedDocument(name, hashlib.sha256(data).hexdigest(), sections, warnings)


def _read(ext: str, data: bytes, name: str, warnings: list, max_bytes: int) -> list[Section]:
    if ext == ".pdf":
        from .parsers import pdf

        return pdf.read(data, name, warnings)
    if ext in (".docx", ".pptx", ".xlsx"):
        from .parsers import office

        office.check_unpacked(data, name, max_bytes)
        reader = {".docx": office.read_docx, ".pptx": office.read_pptx, ".xlsx": office.read_xlsx}[ext]
        return reader(data, name, warnings)
    if ext in (".html", ".htm"):
        from .parsers import web

        return web.read_html(data, name, warnings)
    if ext in (".csv", ".tsv"):
        from .parsers import tables

        return tables.read_delimited(data, name, warnings, max_bytes)
    from .parsers import text

    return (text.read_txt if ext == ".txt" else text.read_markdown)(data, name, warnings)
