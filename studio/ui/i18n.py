"""The session's language and `t()`, which every page uses for its text."""

from __future__ import annotations

import streamlit as st

from core.i18n import LANGUAGES, language_from_locale, translate

LANGUAGE_KEY = "language"


def language() -> str:
    """Chosen in the sidebar; at first the browser's language when the studio speaks it, else English."""
    if LANGUAGE_KEY not in st.session_state:
        try:
            locale = st.context.locale
        except Exception:  # no browser behind this session (tests, bare mode)
            locale = None
        st.session_state[LANGUAGE_KEY] = language_from_locale(locale)
    return st.session_state[LANGUAGE_KEY]


def t(text: str, **params) -> str:
    return translate(text, language(), **params)


def language_picker() -> None:
    codes = list(LANGUAGES)
    label = "Language / Ngôn ngữ"  # bilingual on purpose: findable whatever the current language
    chosen = st.selectbox(label, codes, index=codes.index(language()), format_func=LANGUAGES.get)
    if chosen != language():
        st.session_state[LANGUAGE_KEY] = chosen
        st.rerun()
