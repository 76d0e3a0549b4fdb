"""Retrieval test: see which passages a question finds, by meaning, by keywords and both fused."""

import streamlit as st

from core.rag.highlight import match_spans
from core.rag.kb import DEFAULT_KB, KnowledgeBase, list_knowledge_bases
from core.rag.retriever import MODES
from studio.ui.i18n import t
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


def escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>$~" else c for c in text)


def highlighted(text: str) -> str:
    out, last = [], 0
    for start, end in match_spans(text, question):
        out += [escape(text[last:start]), ":orange-background[", escape(text[start:end]), "]"]
        last = end
    return "".join(out + [escape(text[last:])])


where = "source IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in only) + ")" if only else None
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
                where_from = " · ".join(x for x in [hit.source, t("page {page}", page=hit.page) if hit.page else "",
                                                    hit.heading] if x)
                st.caption(f"**{rank}.** {escape(where_from)}")
                st.markdown(highlighted(hit.text))
                st.caption(t("score {score} · similarity {similarity}", score=f"{hit.score:.3f}",
                             similarity=f"{hit.similarity:.2f}" if hit.similarity is not None else "—"))
