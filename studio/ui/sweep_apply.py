"""After a retrieval sweep: make a setting the recipe's retriever settings (a new recipe version), re-index the
knowledge base when the setting cuts documents differently, then re-run the ladder's retriever rungs of the
evaluation so the effect on answers shows on the Evaluation page."""

from __future__ import annotations

import time
from typing import Callable

import streamlit as st

from core.data.store import DatasetStore
from core.errors import StudioError
from core.evaluate import runs, variants
from core.evaluate.sweep import SweepResult, SweepRun, apply_best, reindex_needed, start_reindex
from core.jobs import Job
from core.rag.kb import KnowledgeBase
from core.recipe import RecipeStore
from core.workspace import Project
from studio.ui.i18n import t
from studio.ui.run_panel import job_progress
from studio.ui.state import draft, set_draft, show_error
from studio.ui.sweep_view import chunking_label

RERUN_RUNGS = ("retriever", "adapter_retriever")
RETRIEVER_WIDGETS = ("kb", "enabled", "mode", "k", "min", "no_answer", "reranker", "rewrite")  # pages/retriever.py


def apply_panel(project: Project, run: SweepRun, results: dict[str, SweepResult], keys: list[str], metric: str,
                label: Callable[[str], str], key: str) -> None:
    """Pick a setting (the best first) and save it as the recipe's retriever settings; then what follows."""
    st.markdown("#### " + t("Use the settings"))
    embedder = run.spec["kb"]["embedder"]
    cols = st.columns([3, 1], vertical_alignment="bottom")
    chosen = cols[0].selectbox(t("Setting to use"), keys, key=key + "apply_key", format_func=label)
    config = results[chosen].config
    if cols[1].button(t("Use these settings"), type="primary", icon=":material/check:", key=key + "apply",
                      disabled=config.embedder != embedder):
        try:
            number = apply_best(project, run, config, metric=metric)
            use_saved_settings(project, number)
            st.session_state[key + "applied_now"] = (run.id, number)
            st.rerun()
        except StudioError as exc:
            show_error(exc)
    if config.embedder != embedder:
        st.caption(t("The knowledge base embeds with {current}; a setting with another embedder cannot be applied "
                     "yet.", current=embedder))
    st.caption(t("Saves a new recipe version with retrieval on and these settings; the old version stays."))
    applied = run.applied()
    if applied is None:
        return
    if st.session_state.get(key + "applied_now") == (run.id, applied["version"]):
        st.success(t("Saved as recipe version {number} (the old one stays).", number=applied["version"]))
    else:
        st.caption(t("Applied on {date} as recipe version {number}.", number=applied["version"],
                     date=time.strftime("%Y-%m-%d %H:%M", time.localtime(applied["applied_at"]))))
    ready = reindex_panel(project, run.spec["kb"]["name"], applied.get("reindex"), key)
    rerun_panel(project, run, ready, key)


def use_saved_settings(project: Project, number: int) -> None:
    """The draft takes the saved retriever settings (its other unsaved edits stay) and the Retriever page's
    widgets start again from them."""
    settings = RecipeStore(project).load(number).retriever
    set_draft(project, draft(project).with_changes(retriever=settings))
    for name in RETRIEVER_WIDGETS:
        st.session_state.pop(f"retriever.{project.slug}.{name}", None)


# ---- re-index -----------------------------------------------------------------------------------------------------

def latest_ingest(project: Project, kb: str) -> Job | None:
    """The knowledge base's latest indexing job (the Retriever page's job folder)."""
    folder = project.subdir("runs") / "ingest" / kb
    found = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []
    return Job(found[-1]) if found else None


def reindex_panel(project: Project, kb: str, wanted: dict | None, key: str) -> bool:
    """Offer to re-index `kb` with the applied chunking `wanted` (None: the knowledge base's own) and show the
    job's progress. Returns whether the knowledge base is ready for the new settings."""
    job = latest_ingest(project, kb)
    state = job.status().state if job is not None else None
    if state == "running":
        st.markdown(t("Re-indexing the knowledge base '{kb}'…", kb=kb))
        job_progress(job, key + "cancel_reindex")
        return False
    if not wanted or not reindex_needed(project, kb, wanted):
        if wanted:
            st.caption(t("The knowledge base is cut with the new settings."))
        return True
    st.warning(t("These settings cut the documents differently ({wanted}) from the knowledge base ({current}): "
                 "re-index the knowledge base so they take effect.", wanted=chunking_label(wanted),
                 current=chunking_label(KnowledgeBase(project, kb).chunking().to_dict())))
    if state == "failed":
        st.error(t(job.status().error))
    if st.button(t("Re-index the knowledge base"), icon=":material/refresh:", key=key + "reindex",
                 help=t("Cuts every document again in the background; vectors the sweep computed are reused.")):
        try:
            start_reindex(project, kb, wanted)
            st.rerun()
        except StudioError as exc:
            show_error(exc)
    return False


# ---- re-run the evaluation ----------------------------------------------------------------------------------------

def eval_set_with_references(project: Project) -> str | None:
    """The first evaluation set with reference answers (what the ladder is scored on)."""
    store = DatasetStore(project)
    for info in store.list():
        if info.kind == "eval":
            records, _ = store.load(info.name)
            if any(str(r.get("reference") or "").strip() for r in runs.usable_records(records)):
                return info.name
    return None


def rerun_panel(project: Project, run: SweepRun, ready: bool, key: str) -> None:
    """A button that answers the eval set again with the ladder's rungs that use the documents."""
    st.markdown("#### " + t("See the effect on answers"))
    eval_name = eval_set_with_references(project)
    recipe = RecipeStore(project, run.spec.get("recipe", "assistant")).load()
    rungs = [v for v in variants.ladder(project, recipe) if v.key in RERUN_RUNGS and v.ready]
    if eval_name is None:
        st.caption(t("To see whether better retrieval gives better answers, add an evaluation set with reference "
                     "answers on the Datasets page."))
        st.page_link("../pages/datasets.py", label=t("Go to Datasets"), icon=":material/dataset:")
        return
    if not rungs:
        st.caption(t("The retriever rungs of the ladder are not set up yet."))
        return
    busy = any(r.status().state == "running" for r in runs.list_eval_runs(project))
    st.caption(t("Answers the evaluation set '{name}' again with the rungs that use the documents ({rungs}), with "
                 "the new settings.", name=eval_name, rungs=", ".join(t(variants.RUNG_LABELS[v.key]) for v in rungs)))
    if st.button(t("Re-run the retriever rungs of the evaluation"), icon=":material/leaderboard:", key=key + "rerun",
                 disabled=not ready or busy):
        try:
            started = runs.create_eval_run(project, eval_name, rungs, runs.EvalOptions())
            started.start()
            st.session_state[f"evaluate.{project.slug}.run"] = started.id  # the Evaluation page opens on it
            st.session_state[key + "eval_started"] = (run.id, started.id)
        except StudioError as exc:
            show_error(exc)
    if not ready:
        st.caption(t("Re-index the knowledge base first, so the answers use the new passages."))
    if busy:
        st.caption(t("An evaluation is running; wait for it to finish on the Evaluation page."))
    started = st.session_state.get(key + "eval_started")
    if started and started[0] == run.id:
        st.success(t("The evaluation started."))
        st.page_link("../pages/evaluate.py", label=t("Follow it on the Evaluation page"),
                     icon=":material/leaderboard:")
