"""Retrieval test: see which passages a question finds, by meaning, by keywords and both fused, and mark the ones
that answer it (labeled questions for the Retrieval optimization page)."""

import hashlib

import streamlit as st

from core.data.store import DatasetStore
from core.errors import StudioError
from core.rag import queries
from core.rag.highlight import highlight_html
from core.rag.kb import DEFAULT_KB, KnowledgeBase, list_knowledge_bases
from core.rag.retriever import MODES
from studio.ui.i18n import t
from studio.ui.text import escape_markdown, where_from
from studio.ui.state import draft, require_project, show_error

project = require_project()
K = f"retrieval_test.{project.slug}."
st.title(t("Retrieval test"))
st.write(t("Type a question your users would ask and compare what each kind of search finds. Good passages "
           "near the top mean good answers later."))

recipe = draft(project)
names = list_knowledge_bases(project) or [DEFAULT_KB]
cols = st.columns([2, 3, 1], vertical_alignment="bottom")
kb_name = cols[0].selectbox(t("Knowledge base"), names, key=K + "kb", index=names.index(recipe.retriever.knowledge_base)
                            if recipe.retriever.knowledge_base in names else 0)
question = cols[1].text_input(t("Question"), key=K + "question", placeholder=t("e.g. How long is the warranty?"))
k = cols[2].number_input(t("Results"), 1, 20, recipe.retriever.k, key=K + "k")
kb = KnowledgeBase(project, kb_name)
sources = list(kb.documents())
only = st.multiselect(t("Only these documents"), sources, key=K + "only")
if not sources:
    st.info(t("This knowledge base has no indexed documents yet."))
    st.page_link("../pages/retriever.py", label=t("Add documents on the Retriever page"), icon=":material/upload:")
    st.stop()
if not question.strip():
    st.stop()


where = "source IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in only) + ")" if only else None
found: dict[str, object] = {}   # chunk id -> hit, over the three searches
ticked: set[str] = set()
asked = hashlib.sha1(question.strip().encode()).hexdigest()[:8]   # a new question starts with nothing ticked
columns = st.columns(3)
for column, mode in zip(columns, MODES):
    with column:
        st.subheader(t(MODES[mode]))
        try:
            with st.spinner(t("Searching…")):
                hits = kb.search(question, mode, int(k), where, recipe.retriever.rrf_k)
        except Exception as exc:
            show_error(exc)
            continue
        if not hits:
            st.caption(t("Nothing found."))
        for rank, hit in enumerate(hits, start=1):
            with st.container(border=True):
                st.caption(f"**{rank}.** {escape_markdown(where_from(hit.source, hit.page, hit.heading))}")
                st.html(highlight_html(hit.text, question))
                st.caption(t("score {score} · similarity {similarity}", score=f"{hit.score:.3f}",
                             similarity=f"{hit.similarity:.2f}" if hit.similarity is not None else "—"))
                found.setdefault(hit.chunk_id, hit)
                if st.checkbox(t("Supports the answer"), key=f"{K}support.{asked}.{mode}.{hit.chunk_id}",
                               help=t("Tick the passages that answer the question, then save them below as a "
                                      "labeled question for the Retrieval optimization page.")):
                    ticked.add(hit.chunk_id)

# ---- mark the supporting passages ----------------------------------------------------------------------------------
marked = [hit for chunk_id, hit in found.items() if chunk_id in ticked]
st.divider()
eval_sets = [d.name for d in DatasetStore(project).list() if d.kind == "eval"]
choices = [queries.DEFAULT_DATASET] + [n for n in eval_sets if n != queries.DEFAULT_DATASET]
cols = st.columns([2, 1], vertical_alignment="bottom")
dataset = cols[0].selectbox(t("Save marked passages to"), choices, key=K + "dataset", accept_new_options=True,
                            help=t("An evaluation set of labeled questions; type a new name to create one."))
if cols[1].button(t("Mark {count} passage(s) as supporting", count=len(marked)), icon=":material/bookmark_add:",
                  disabled=not marked or not dataset, key=K + "mark"):
    try:
        version = queries.mark_supporting(project, dataset, question, marked)
        st.session_state[K + "marked"] = (dataset, len(marked), version, question.strip())
    except StudioError as exc:
        show_error(exc)
done = st.session_state.get(K + "marked")
if done and done[3] == question.strip():
    st.success(t("Saved {count} supporting passage(s) for this question in '{name}' (version {version}).",
                 name=done[0], count=done[1], version=done[2]))
    st.page_link("../pages/retrieval_opt.py", label=t("Try retrieval settings on the Retrieval optimization page"),
                 icon=":material/tune:")
