"""Getting the recipe's model ready: one-time GGUF conversion as a cancellable job, then a shared loaded copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.errors import StudioError
from core.jobs import Job
from core.models import registry
from core.models.base import ModelBackend
from core.models.source import ModelSource
from core.workspace import studio_home
from studio.ui.i18n import t
from studio.ui.state import show_error


def _jobs_dir(source: ModelSource):
    return studio_home() / "jobs" / "convert" / hashlib.sha1(source.key.encode()).hexdigest()[:12]


def _latest_job(source: ModelSource) -> Job | None:
    folder = _jobs_dir(source)
    if not folder.exists():
        return None
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    return Job(runs[-1]) if runs else None


def model_ready(source: ModelSource, key: str) -> bool:
    """True when the model can be loaded now; otherwise shows the one-time preparation panel."""
    if registry.peek_backend(source) is not None:
        return True
    try:
        needs = registry.needs_conversion(source)
    except StudioError as exc:
        st.error(t(exc.args[0]))
        return False
    if needs:
        _conversion_panel(source, key)
        return False
    return True


def ensure_backend(source: ModelSource, key: str, adapter: Path | None = None) -> ModelBackend | None:
    """The loaded model (loading it on first use), or None after showing why it is not ready. With `adapter`
    (an adapter folder), the base model with that adapter applied."""
    backend = registry.peek_backend(source, adapter)
    if backend is not None:
        return backend
    if not model_ready(source, key):
        return None
    try:
        with st.spinner(t("Loading {model}…", model=source.describe())):
            return registry.get_backend(source, adapter=adapter)
    except Exception as exc:
        show_error(exc)
        return None


def recipe_backend(project, recipe, key: str) -> ModelBackend | None:
    """The recipe's model with its attached adapter, if any (a deleted adapter is reported, not ignored)."""
    from core.assistant import adapter_folder

    try:
        adapter = adapter_folder(project, recipe)
    except StudioError as exc:
        st.error(t(exc.args[0]))
        return None
    return ensure_backend(recipe.model, key, adapter)


def _conversion_panel(source: ModelSource, key: str) -> None:
    job = _latest_job(source)
    status = job.status() if job else None
    if status is None or status.state in ("failed", "cancelled"):
        st.info(t("First use: the model is converted once into a fast local cache (about a minute on a laptop). "
                  "Later starts take seconds."))
        if status is not None and status.state == "failed":
            st.error(t(status.error))
        if st.button(t("Prepare the model"), key=f"{key}.convert", type="primary", icon=":material/download:"):
            Job.start(_jobs_dir(source), registry.conversion_argv(source), label="Convert model")
            st.rerun()
        return
    _conversion_progress(job, key)


@st.fragment(run_every=1.0)
def _conversion_progress(job: Job, key: str) -> None:
    status = job.status()
    if status.state == "done":
        st.rerun()  # the whole page now finds the converted model
    st.progress(min(max(status.progress, 0.0), 1.0), text=t("Preparing the model: {step}…", step=t(status.message)))
    if st.button(t("Cancel"), key=f"{key}.cancel_convert", icon=":material/close:"):
        job.cancel()
        st.rerun()


def model_status_line(source: ModelSource) -> str:
    if registry.peek_backend(source) is not None:
        return t("loaded")
    try:
        return t("needs one-time preparation") if registry.needs_conversion(source) else t("loads on first use")
    except StudioError:
        return t("not available")
