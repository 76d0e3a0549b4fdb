"""The Labeling page's "Draft training pairs from documents": settings, the background job, its result."""

from __future__ import annotations

import streamlit as st

from core.rag import drafting
from core.errors import StudioError
from core.models.source import ModelSource
from core.rag.kb import indexed_knowledge_bases
from core.workspace import Project
from studio.ui.i18n import t
from studio.ui.run_panel import job_progress
from studio.ui.state import saved_recipe, show_error


def draft_panel(project: Project, key: str, expanded: bool) -> None:
    with st.expander(t("Draft training pairs from documents"), icon=":material/auto_awesome:", expanded=expanded):
        st.caption(t("A model reads passages of your documents and writes a question for an answer each passage "
                     "states. The pairs land in a dataset as suggestions: review them in the queue below and only "
                     "accepted ones train. Drafts too close to a question of an evaluation set are rejected at once."))
        job = drafting.latest_job(project)
        status = job.status() if job is not None else None
        if status is not None and status.state == "running":
            job_progress(job, key + "draft_cancel")
            return
        if status is not None:
            result_line(job, status)
        bases = indexed_knowledge_bases(project)
        if not bases:
            st.info(t("No indexed documents yet: add some on the Retriever page first."))
            st.page_link("../pages/retriever.py", label=t("Go to Retriever"), icon=":material/description:")
            return
        cols = st.columns(3)
        base = cols[0].selectbox(t("Knowledge base"), bases, key=key + "draft_kb")
        count = cols[1].number_input(t("Pairs to draft"), min_value=1, max_value=5000, value=50, step=10,
                                     key=key + "draft_count")
        dataset = cols[2].text_input(t("Into dataset"), value=drafting.DEFAULT_DATASET, key=key + "draft_dataset",
                                     help=t("A dataset of training pairs; created if missing, else a new version."))
        choice, writer = writer_source(project, key)
        if st.button(t("Draft pairs"), type="primary", icon=":material/auto_awesome:", key=key + "draft_start",
                     disabled=writer is None or not dataset.strip()):
            try:
                drafting.start_job(project, drafting.DraftSettings(
                    knowledge_base=base, count=int(count), writer="cloze" if choice == "cloze" else "model"),
                    dataset.strip(), writer)
                st.rerun()
            except StudioError as exc:
                show_error(exc)


def writer_source(project: Project, key: str) -> tuple[str, ModelSource | None]:
    """Who writes the questions, and the model source the job is given: the recipe's model, an OpenAI-compatible
    endpoint (a larger model writes better questions), or no model at all (fill-in-the-blank questions)."""
    recipe, _ = saved_recipe(project)
    labels = {"recipe": t("the recipe's model"), "endpoint": t("an OpenAI-compatible endpoint"),
              "cloze": t("fill in the blank (no model)")}
    choice = st.radio(t("Questions written by"), list(labels), horizontal=True, key=key + "draft_writer",
                      format_func=labels.get)
    if choice == "recipe":
        st.caption(t("A small model writes weak questions: the embedded 270M model kept about 1 draft in 16 after "
                     "the round-trip check on public articles. For real drafting, use a larger model behind an "
                     "endpoint (Ollama, LM Studio, vLLM), or fill in the blank."))
        return choice, recipe.model
    if choice == "cloze":
        st.caption(t("Each question is the sentence that states an answer, with the answer replaced by what, when or "
                     "how many (\"The warranty lasts how long?\"). Drafted in seconds without a model and always "
                     "answered by its passage, but stilted: edit them into the questions your users would ask. "
                     "Trained on 400 unedited ones, an adapter answered public articles no better than the passages "
                     "alone (F1 0.36 against 0.35)."))
        return choice, recipe.model
    cols = st.columns(3)
    url = cols[0].text_input(t("Base URL"), placeholder="http://127.0.0.1:11434/v1", key=key + "draft_url")
    model = cols[1].text_input(t("Model name"), placeholder="llama3.2", key=key + "draft_model")
    key_env = cols[2].text_input(t("Environment variable with the API key (optional)"), key=key + "draft_key")
    try:
        return choice, ModelSource(kind="openai", location=url.strip(), model_name=model.strip(),
                                   api_key_env=key_env.strip())
    except StudioError as exc:
        st.caption(t(exc.args[0]))
        return choice, None


def result_line(job, status) -> None:
    if status.state == "failed":
        st.error(t(status.error))
        return
    done = next((e for e in reversed(job.events()) if "drafted" in e), None)
    if status.state == "done" and done is not None:
        st.success(t("Drafted {count} pairs into '{name}' (version {version}); {rejected} rejected as too close to an "
                     "evaluation question. Pick the dataset below to review them.", count=done["drafted"],
                     name=done["dataset"], version=done["version"], rejected=done["rejected"]))
    elif status.state == "cancelled":
        st.caption(t("Drafting was stopped; the pairs drafted until then were saved."))
