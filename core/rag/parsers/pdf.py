"""PDF with pypdf: the text of each page, with its 1-based page number. Headings are not known.

Simple tables come through as lines of text. A PDF locked with a user password cannot be read (one that only
has an owner password, which restricts printing or copying, opens with the empty password). Pages are never
OCR'd: a page with no text layer is left out with a notice, and a PDF with no text at all is refused.
"""

from __future__ import annotations

import io

from core.errors import DocumentError
from core.i18n import Msg

from .common import Section, clean_text, reason

MAX_LISTED_PAGES = 20


def page_list(pages: list[int]) -> str:
    shown = ", ".join(map(str, pages[:MAX_LISTED_PAGES]))
    return shown + (", …" if len(pages) > MAX_LISTED_PAGES else "")


def unreadable(name: str, why: str) -> DocumentError:
    return DocumentError(Msg("{file} could not be read as a PDF ({reason}).", file=name, reason=why))


def open_pdf(data: bytes, name: str):
    import pypdf
    from pypdf.errors import DependencyError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError:
                raise DocumentError(Msg("{file} is encrypted in a way that needs the 'cryptography' package, which "
                                        "is not installed; remove the encryption and upload it again.",
                                        file=name)) from None
            if not opened:
                raise DocumentError(Msg("{file} is password-protected; remove the password and upload it again.",
                                        file=name))
        pages = list(reader.pages)
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many kinds (stream, xref, key, value errors) for a damaged file
        raise unreadable(name, reason(exc)) from None
    if not pages:
        raise unreadable(name, "no pages")
    return pages


def read(data: bytes, name: str, warnings: list) -> list[Section]:
    pages = open_pdf(data, name)
    sections, blank, failed, first_error = [], [], [], None
    for number, page in enumerate(pages, start=1):
        try:
            text = clean_text(page.extract_text() or "")
        except Exception as exc:  # one damaged page must not lose the others
            failed.append(number)
            first_error = first_error or exc
            continue
        if text:
            sections.append(Section(text, number, ()))
        else:
            blank.append(number)
    if not sections:
        if len(failed) == len(pages):
            raise unreadable(name, reason(first_error))
        raise DocumentError(Msg("{file} has no text layer (scanned images?) — OCR is not enabled.", file=name))
    if blank:
        warnings.append(Msg("{count} of {total} pages have no text and were left out (scanned images? OCR is not "
                            "enabled): pages {pages}.", count=len(blank), total=len(pages), pages=page_list(blank)))
    if failed:
        warnings.append(Msg("{count} of {total} pages could not be read and were left out ({reason}): pages "
                            "{pages}.", count=len(failed), total=len(pages), reason=reason(first_error),
                            pages=page_list(failed)))
    return sections
