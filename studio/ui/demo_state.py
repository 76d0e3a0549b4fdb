"""Which demo, if any, this browser session shows: the one `studio demo` serves, or the presenter's own tab."""

from __future__ import annotations

import streamlit as st

from core.demo import server_demo

PRESENT_KEY = "demo.present"


def active_demo() -> dict | None:
    """{"project", "recipe"?, "version"?, "password_hash"?, "server": bool}, or None for the full studio."""
    served = server_demo()
    if served is not None:
        return {**served, "server": True}
    presenting = st.session_state.get(PRESENT_KEY)
    return {**presenting, "server": False} if presenting else None


def start_presenting(project_slug: str) -> None:
    st.session_state[PRESENT_KEY] = {"project": project_slug}


RETURN_KEY = "demo.return"


def stop_presenting() -> None:
    st.session_state.pop(PRESENT_KEY, None)
    st.session_state[RETURN_KEY] = True  # the studio reopens on the Demo & share page


def returning_from_demo() -> bool:
    return bool(st.session_state.pop(RETURN_KEY, False))
