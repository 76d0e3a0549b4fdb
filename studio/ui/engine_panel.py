"""The Model page's engine section: which engine answers (transformers or llama.cpp) and why, the setting, and
installing llama.cpp as a background job."""

from __future__ import annotations

import importlib

import streamlit as st

from core.models import engine, install_engine, registry
from core.models.source import ModelSource
from studio.ui.i18n import t
from studio.ui.run_panel import job_progress


def engine_section(source: ModelSource) -> None:
    st.subheader(t("Engine"))
    if source.kind == "openai":
        st.caption(t("The endpoint's server runs the model."))
        return
    choice = registry.engine_choice(source)
    st.markdown(t("Answers come from **{engine}**.", engine=choice.engine))
    st.caption(t(choice.reason))
    current = engine.preference()
    picked = st.radio(t("Engine for local models"), engine.ENGINES, index=engine.ENGINES.index(current),
                      format_func=lambda e: t(engine.ENGINE_LABELS[e]), horizontal=True, key="model.engine",
                      help=t("llama.cpp answers several times faster on a CPU, with the same prompts and, for the "
                             "embedded model, the same greedy answers. transformers also runs on a GPU and is "
                             "what training uses. The setting is for this studio, not for one recipe."))
    if picked != current:
        engine.set_preference(picked)
        st.rerun()
    if not engine.llama_cpp_installed():
        install_panel()


def install_panel() -> None:
    job = install_engine.latest_job()
    status = job.status() if job is not None else None
    if status is not None and status.state == "running":
        job_progress(job, "model.install_cancel")
        return
    if status is not None and status.state == "done":
        importlib.invalidate_caches()  # the package appeared after this process started
        if engine.llama_cpp_installed():
            st.rerun()
    if status is not None and status.state == "failed":
        st.error(t(status.error))
    st.info(t("llama.cpp is not installed. Installing it compiles it for this computer (about 5 minutes, needs the "
              "internet once); `make fast` does the same from a terminal."))
    if st.button(t("Install the fast engine"), icon=":material/bolt:", key="model.install_engine"):
        install_engine.start_job()
        st.rerun()
