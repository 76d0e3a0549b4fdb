"""Translations: gettext catalogs (core/locales/<lang>/LC_MESSAGES/messages.po) read with Babel.

English text is the message id. Core code never knows the reader's language: it returns `Msg` objects,
which are plain English strings that also remember their template and values, and the UI translates them
with `translate()` for the session's language. `t(...)` in pages and `Msg(...)` in core mark text for
`make i18n`, which extracts it into the catalogs.
"""

from __future__ import annotations

import functools
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
LANGUAGES = {"en": "English", "vi": "Tiếng Việt"}
DEFAULT_LANGUAGE = "en"
DOMAIN = "messages"


class Msg(str):
    """An English message that can be translated later: Msg("Project '{name}' not found", name=x)."""

    template: str
    params: dict

    def __new__(cls, template: str, **params):
        message = super().__new__(cls, template.format(**_joined(params)) if params else template)
        message.template = template
        message.params = params
        return message


@functools.lru_cache(maxsize=None)
def catalog(language: str) -> dict[str, str]:
    """msgid -> translation for one language (empty translations are left out, so English shows)."""
    from babel.messages.pofile import read_po

    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LANGUAGE or not path.exists():
        return {}
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=language)
    return {m.id: m.string for m in parsed if m.id and isinstance(m.id, str) and m.string}


def translate(text: str, language: str, **params) -> str:
    """The text in `language`; values in a Msg, and values that are Msgs themselves, are translated too."""
    if isinstance(text, Msg):
        params = {**text.params, **params}
        text = text.template
    translated = catalog(language).get(text, text)
    if not params:
        return translated
    values = {k: translate(v, language) if isinstance(v, Msg) else
              [translate(x, language) for x in v] if isinstance(v, (list, tuple)) else v for k, v in params.items()}
    return translated.format(**_joined(values))


def _joined(params: dict) -> dict:
    """A list value (several problems, say) reads as sentences one after another."""
    return {k: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in params.items()}


def language_from_locale(locale: str | None) -> str:
    """'vi-VN' -> 'vi'; anything unknown -> English."""
    code = (locale or "").replace("_", "-").split("-")[0].lower()
    return code if code in LANGUAGES else DEFAULT_LANGUAGE
