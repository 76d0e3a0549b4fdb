"""Refuse a browser session whose Host or Origin is not on the allow-list (core.hosts), before any page renders.

The Streamlit servers `studio run` and `studio demo` start already refuse such websockets (--server.allowedHosts);
this check is the second line, for a studio started another way (`streamlit run studio/app.py`).
"""

from __future__ import annotations

import streamlit as st

from core.hosts import allowed_hosts, refusal
from studio.ui.i18n import t


def request_headers() -> tuple[str | None, str | None]:
    """(Host, Origin) of the request that opened this session; None for a header that was not sent (and both
    None without a browser, as in AppTest)."""
    headers = st.context.headers
    return headers.get("host"), headers.get("origin")


def guard_host() -> None:
    """Stop the script with one error when this session came through a host the server does not answer."""
    host, origin = request_headers()
    if host is None and origin is None:
        return
    try:
        bound = st.get_option("server.address")
    except Exception:  # no such option outside a server
        bound = None
    # Without server.address Streamlit listens on every interface: this machine's own names are answered too.
    problem = refusal(host, origin, allowed_hosts(bound or "0.0.0.0"))
    if problem is not None:
        st.error(t(problem), icon=":material/block:")
        st.stop()
