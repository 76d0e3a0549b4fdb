"""Rung 3 · Retriever: company documents in a knowledge base; answers quote numbered passages and cite them."""

import math
from dataclasses import replace

import pandas as pd
import streamlit as st

from core.errors import StudioError
from core.i18n import Msg
from core.jobs import Job, event_message
from core.rag import ingest_job
from core.rag.chunking import STRATEGIES, ChunkingConfig
from core.rag.kb import DEFAULT_KB, KnowledgeBase, failure_reason, list_knowledge_bases, max_document_bytes
from core.rag.parse import SUPPORTED
from core.rag.ranking import RERANKERS
from core.rag.retriever import MODES
from studio.ui.i18n import t
from studio.ui.run_panel import job_progress
from studio.ui.state import (draft, next_upload_round, recipe_save_bar, require_project, saved_recipe, set_draft,
                             show_error, upload_round, widget_prefix)
from studio.ui.text import where_from

project = require_project()
slug = project.slug
K = widget_prefix(f"retriever.{slug}.")
STATUS = {"indexed": Msg("indexed"), "unchanged": Msg("unchanged"), "error": Msg("failed"), "refused": Msg("refused")}
STRATEGY_LABELS = {"recursive": Msg("By structure: headings, paragraphs, sentences"),
                   "fixed": Msg("Fixed token windows")}

st.title(t("3 · Retriever"))
st.write(t("Upload company documents. The studio cuts them into passages, indexes them for meaning and for "
           "keywords, and adds the best passages to the prompt, so answers can quote and cite them [1]."))

recipe = draft(project)
saved, version = saved_recipe(project)
names = list_knowledge_bases(project) or [DEFAULT_KB]
top = st.columns([2, 1], vertical_alignment="bottom")
kb_name = top[0].selectbox(t("Knowledge base"), names, index=names.index(recipe.retriever.knowledge_base)
                           if recipe.retriever.knowledge_base in names else 0, key=K + "kb")
with top[1].popover(t("New knowledge base"), icon=":material/add:"):
    new_kb = st.text_input(t("Name (letters, digits, - and _)"), key=K + "new_kb")
    new_uri = st.text_input(t("Index location (optional)"), key=K + "new_uri", placeholder="s3://bucket/studio",
                            help=t("Empty keeps the index in the project folder. An object-storage URI such as "
                                   "s3://… is passed to LanceDB as is; credentials come from the environment."))
    if st.button(t("Create"), key=K + "create_kb"):
        try:
            KnowledgeBase(project, new_kb).create(new_uri or None)
            st.session_state[K + "kb"] = new_kb
            st.rerun()
        except StudioError as exc:
            show_error(exc)
kb = KnowledgeBase(project, kb_name)


def latest_job() -> Job | None:
    return ingest_job.latest_job(project, kb_name)


def start_ingest(paths, chunking: ChunkingConfig | None) -> None:
    ingest_job.start(project, kb_name, paths, chunking)


# ---- documents ---------------------------------------------------------------------------------------------------
st.subheader(t("Documents"))
job = latest_job()
running = job is not None and job.status().state == "running"
uploads = st.file_uploader(t("Add documents"), accept_multiple_files=True, key=f"{K}upload.{upload_round(K)}",
                           type=sorted(ext.lstrip(".") for ext in SUPPORTED),
                           # the uploader then states the studio's own limit instead of the server's
                           max_upload_size=max(1, math.ceil(max_document_bytes() / 2**20)))
st.caption(t("PDF (text layer), Word, PowerPoint, HTML, Markdown, text, CSV and Excel. Files are kept in the project; "
             "a file that did not change is not indexed twice, and an edited one replaces its old passages."))
folder = st.text_input(t("…or a folder on this machine"), key=K + "folder", placeholder="~/handbook",
                       help=t("Every supported file in the folder and its sub-folders is copied into the project, "
                              "under its path in the folder. Only folders in your home folder or the studio's "
                              "folder can be read (the STUDIO_ALLOWED_FOLDERS setting changes which)."))
if folder.strip() and st.button(t("Add the folder's documents"), disabled=running, icon=":material/folder_open:"):
    try:
        added = kb.add_folder(folder.strip())
        st.toast(t("{count} file(s) added; index them below.", count=len(added)), icon=":material/check:")
        if added.skipped_links:
            st.warning(t("{count} link(s) that lead outside the allowed folders were left out: {names}.",
                         count=len(added.skipped_links), names=", ".join(added.skipped_links)))
    except Exception as exc:
        show_error(exc)
pending = kb.pending()
if uploads or pending:
    label = t("Index {count} file(s)", count=len(uploads) + len(pending)) if uploads else \
        t("Index {count} waiting file(s)", count=len(pending))
    if st.button(label, type="primary", disabled=running, icon=":material/upload:"):
        try:
            paths = kb.add_files([(u.name, u.getvalue()) for u in uploads or []]) + pending
            if paths:  # refused uploads are not copied: they are listed with the failed files below
                start_ingest(list(dict.fromkeys(paths)), None)
            next_upload_round(K)
            st.rerun()
        except Exception as exc:
            show_error(exc)
if running:
    job_progress(job, K + "cancel")
elif job is not None:
    results = [e for e in job.events() if "file" in e]
    if job.status().state == "cancelled":
        st.warning(t("Indexing was cancelled; the files finished before that are indexed."))
    if job.status().state == "failed":
        st.error(t(job.status().error))
    if results:
        with st.expander(t("Last indexing: {count} file(s)", count=len(results)), expanded=any(
                r["status"] == "error" for r in results)):
            for result in results:
                problem = event_message(result, "problem")
                line = f"**{result['file']}** — {t(STATUS[result['status']])}" + \
                    (f" · {t('{count} passages', count=result['chunks'])}" if result.get("chunks") else "")
                (st.error if result["status"] == "error" else st.markdown)(
                    line + (f": {t(problem)}" if problem else ""))

failed = kb.failed()
if failed and not running:
    with st.expander(t("{count} file(s) could not be added or read", count=len(failed)), expanded=True,
                     icon=":material/error:", key=K + "failed_panel"):
        for source, entry in sorted(failed.items()):
            st.error(f"**{source}** — {t(STATUS['refused' if entry.get('refused') else 'error'])}: "
                     f"{t(failure_reason(entry))}")
        st.caption(t("They are not indexed again on their own: fix a file and add it again, or remove them."))
        if st.button(t("Remove failed files"), key=K + "clear_failed", icon=":material/delete_sweep:",
                     help=t("Deletes their copies from the project. A failed file that replaced an indexed document "
                            "of the same name removes that document too.")):
            try:
                kb.clear_failed()
                st.rerun()
            except Exception as exc:
                show_error(exc)

documents = kb.documents()
if documents and not running and kb.indexed_by_earlier_version():
    st.info(t("These documents were indexed by an earlier version. Index them again: a passage is then also found "
              "by the one sentence that answers a question, and PDFs, web pages and hard-wrapped text are cut at "
              "whole sentences and paragraphs."), icon=":material/update:")
    if st.button(t("Index the documents again"), key=K + "reindex_outdated", icon=":material/refresh:"):
        start_ingest([], None)  # the ingest sees the older index and rebuilds it from the stored documents
        st.rerun()
if documents:
    st.dataframe(pd.DataFrame([{"source": s, "chunks": d["chunks"], "pages": str(d.get("pages") or ""),
                                "indexed": pd.to_datetime(d["ingested_at"], unit="s").strftime("%Y-%m-%d %H:%M"),
                                "notes": " ".join(d.get("warnings") or [])} for s, d in documents.items()]),
                 hide_index=True, width="stretch", column_config={
        "source": t("Document"), "chunks": t("Passages"), "pages": t("Pages"), "indexed": t("Indexed"),
        "notes": t("Notes")})
    if not running and not (saved.retriever.enabled and saved.retriever.knowledge_base == kb_name):
        st.info(t("The assistant does not use these documents yet: turn on **Add passages from this knowledge base "
                  "to the prompt** under *Use in the assistant* below, then save the recipe."), icon=":material/info:")
    remove = st.selectbox(t("Remove a document"), [""] + list(documents), format_func=lambda s: s or "—",
                          key=K + "remove")
    if remove and st.button(t("Remove '{name}' from the knowledge base", name=remove), icon=":material/delete:"):
        kb.delete_document(remove)
        st.rerun()
elif not pending and not running and not failed:
    st.info(t("No documents yet. Add some above."))

# ---- chunking ---------------------------------------------------------------------------------------------------
# keyed: the indexing results appearing above it must not close it as the user opens it
with st.expander(t("How documents are cut into passages"), icon=":material/content_cut:", key=K + "cutting"):
    current = kb.chunking()
    cols = st.columns(3)
    strategy = cols[0].radio(t("Strategy"), STRATEGIES, index=STRATEGIES.index(current.strategy),
                             format_func=lambda s: t(STRATEGY_LABELS[s]), key=K + "strategy")
    size = cols[1].number_input(t("Passage size (tokens)"), 32, 256, current.chunk_tokens, 16, key=K + "size",
                                help=t("The embedder reads at most 256 tokens of a passage."))
    overlap = cols[2].number_input(t("Overlap (tokens)"), 0, 128, min(current.overlap_tokens, 128), 8,
                                   key=K + "overlap")
    try:
        chosen = ChunkingConfig(strategy, int(size), int(overlap))
    except StudioError as exc:
        show_error(exc)
        chosen = current
    sources = kb.stored()
    preview_of = st.selectbox(t("Preview a document"), [""] + sources, format_func=lambda s: s or "—",
                              key=K + "preview")
    if preview_of:
        try:
            from core.rag.chunking import chunk_sections, embedder_token_counter
            from core.rag.parse import parse_document

            parsed = parse_document(kb.path_of(preview_of).read_bytes(), preview_of, source=preview_of)
            chunks = chunk_sections(parsed.sections, chosen, embedder_token_counter())
            st.caption(t("{count} passages", count=len(chunks)))
            for chunk in chunks[:8]:
                with st.container(border=True):
                    st.caption(where_from(preview_of, chunk.page, chunk.heading))
                    st.text(chunk.text)
        except Exception as exc:
            show_error(exc)
    if chosen != current and documents:
        st.warning(t("Changing how documents are cut re-indexes all {count} documents.", count=len(documents)))
        if st.button(t("Re-index with these settings"), disabled=running):
            start_ingest([kb.path_of(s) for s in documents], chosen)
            st.rerun()
    elif chosen != current:
        kb.set_chunking(chosen)

# ---- recipe ------------------------------------------------------------------------------------------------------
st.subheader(t("Use in the assistant"))
settings = recipe.retriever
enabled = st.toggle(t("Add passages from this knowledge base to the prompt"), value=settings.enabled,
                    key=K + "enabled")
cols = st.columns(3)
mode = cols[0].radio(t("Search by"), list(MODES), index=list(MODES).index(settings.mode),
                     format_func=lambda m: t(MODES[m]), key=K + "mode")
k = cols[1].slider(t("Passages per question"), 1, max(10, settings.k), settings.k, key=K + "k")
threshold = cols[2].slider(t("Minimum similarity"), 0.0, 0.9, settings.min_similarity, 0.05, key=K + "min",
                           help=t("Passages less similar to the question are left out. With none left, the "
                                  "assistant says so instead of inventing an answer."))
cols = st.columns([1, 1, 2], vertical_alignment="bottom")
rerankers = list(RERANKERS)
reranker = cols[0].selectbox(t("Order of the passages"), rerankers, index=rerankers.index(settings.reranker),
                             format_func=lambda r: t(RERANKERS[r]), key=K + "reranker",
                             help=t("How the passages are ordered: in hybrid search, reciprocal rank fusion or a "
                                    "weighted sum of both scores; or the recipe's local model reads the first 10 "
                                    "passages and puts first those the question most likely asks about (slower: "
                                    "about two seconds more per question on a laptop CPU)."))
query_rewrite = cols[1].toggle(t("Rewrite the question"), value=settings.query_rewrite, key=K + "rewrite",
                               help=t("The recipe's model first turns the question into search keywords for the "
                                      "keyword search (one more short generation per question)."))
if reranker == "llm" and recipe.model.kind == "openai":
    cols[2].caption(t("A model behind an endpoint cannot score passages: the search's own order is kept."))
cols[2].page_link("../pages/retrieval_opt.py", label=t("Find the best settings on the Retrieval optimization page"),
                  icon=":material/tune:")
no_answer = st.text_input(t("When nothing relevant is found, answer"), value=settings.no_answer, key=K + "no_answer")
try:
    # replace() keeps every setting this page does not show (the fusion constant, …)
    recipe = recipe.with_changes(retriever=replace(settings, enabled=enabled, knowledge_base=kb_name, mode=mode, k=k,
                                                   min_similarity=threshold, reranker=reranker,
                                                   query_rewrite=query_rewrite,
                                                   no_answer=no_answer.strip() or settings.no_answer))
    set_draft(project, recipe)
except StudioError as exc:
    show_error(exc)
recipe_save_bar(project, recipe, saved, version, K, f"Retriever: {kb_name}, {mode}, k={k}, {reranker}"
                + (", rewrite" if query_rewrite else "") if enabled else "Retriever off")
st.page_link("../pages/retrieval_test.py", label=t("Try searches on the Retrieval test page"),
             icon=":material/search:")
