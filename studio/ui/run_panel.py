"""Progress panels for background jobs: a plain job (indexing, re-indexing) and a resumable run (an evaluation,
a retrieval sweep) with Cancel and Continue."""

from __future__ import annotations

import streamlit as st

from core.errors import StudioError
from studio.ui.i18n import t
from studio.ui.state import show_error


@st.fragment(run_every=1.0)
def job_progress(job, cancel_key: str) -> None:
    """Progress and Cancel of a running job; the page reruns once it ends."""
    status = job.status()
    if status.state != "running":
        st.rerun()
    st.progress(min(status.progress, 1.0), text=t(status.message))
    if st.button(t("Cancel"), key=cancel_key, icon=":material/close:"):
        job.cancel()
        st.rerun()


def background_run_panel(run, key: str, state: str, done: int, total: int, progress_text: str, status_text: str,
                         cancel_help: str, continue_help: str, busy: bool) -> None:
    """Call inside an `st.fragment` that reruns while `state` is "running". `run` offers jobs(), cancel() and
    start(); `busy` disables Continue while another run of the same kind works."""
    jobs = run.jobs()
    job = jobs[-1].status() if jobs else None  # its message and error are still translatable Msgs
    if state == "running":
        st.session_state[key + "was_running"] = run.id
        share = max(job.progress if job else 0.0, done / total if total else 0.0)
        st.progress(min(1.0, share), text=progress_text)
        if job is not None and job.message:
            st.caption(t(job.message))
        if st.button(t("Cancel"), key=key + "cancel", icon=":material/stop:", help=cancel_help):
            run.cancel()
            st.rerun()
        return
    if st.session_state.get(key + "was_running") == run.id:
        st.session_state.pop(key + "was_running")
        st.rerun()  # the run ended: draw the page with every result
    st.caption(status_text)
    if state == "failed":
        st.error(t(job.error) if job is not None and job.error else t("Something went wrong."))
    if state in ("failed", "cancelled", "new"):
        if st.button(t("Continue"), icon=":material/play_arrow:", key=key + "resume", disabled=busy,
                     help=continue_help):
            try:
                run.start()
                st.session_state[key + "was_running"] = run.id
                st.rerun()
            except StudioError as exc:
                show_error(exc)


def start_button(label: str, key: str, disabled: bool, create, remember_key: str) -> None:
    """A primary Start button for one background run: `create()` makes the run, which starts, is remembered under
    `remember_key` for the page's run panel, and the page reruns to show it. `label` is already translated."""
    if st.button(label, type="primary", icon=":material/play_arrow:", key=key, disabled=disabled):
        try:
            run = create()
            run.start()
            st.session_state[remember_key] = run.id
            st.rerun()
        except StudioError as exc:
            show_error(exc)
