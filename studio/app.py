"""Entrypoint: page config, the shared sidebar (project + model), and navigation. Pages live in ../pages."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run studio/app.py` puts only studio/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from studio.ui.demo_state import active_demo, returning_from_demo  # noqa: E402
from studio.ui.host_guard import guard_host  # noqa: E402
from studio.ui.i18n import t  # noqa: E402
from studio.ui.sidebar import render_sidebar  # noqa: E402

guard_host()  # before anything renders: a page reached through another host name (DNS rebinding) gets nothing

if active_demo() is not None:
    # Demo mode: the chat alone; no build pages, no sidebar, no settings.
    st.set_page_config(page_title=t("Assistant"), page_icon=":material/chat:", layout="centered")
    st.navigation([st.Page("../pages/demo_chat.py", title=t("Assistant"), icon=":material/chat:", url_path="demo",
                           default=True)], position="hidden").run()
    st.stop()

st.set_page_config(page_title="LLM Customization Studio", page_icon=":material/science:", layout="wide")

PAGES = {
    t("Start"): [
        st.Page("../pages/projects.py", title=t("Projects"), icon=":material/folder_open:", url_path="projects",
                default=True),
    ],
    t("Ladder"): [
        st.Page("../pages/model.py", title=t("Model"), icon=":material/memory:", url_path="model"),
        st.Page("../pages/prompt.py", title=t("1 · Prompt"), icon=":material/edit_note:", url_path="prompt"),
        st.Page("../pages/fewshot.py", title=t("2 · Few-shot"), icon=":material/format_list_numbered:",
                url_path="few-shot"),
        st.Page("../pages/retriever.py", title=t("3 · Retriever"), icon=":material/library_books:",
                url_path="retriever"),
        st.Page("../pages/retrieval_test.py", title=t("Retrieval test"), icon=":material/search:",
                url_path="retrieval-test"),
        st.Page("../pages/finetune.py", title=t("4 · Fine-tune"), icon=":material/model_training:",
                url_path="fine-tune"),
        st.Page("../pages/retrieval_opt.py", title=t("5 · Retrieval optimization"), icon=":material/tune:",
                url_path="retrieval-optimization"),
    ],
    t("Data"): [
        st.Page("../pages/datasets.py", title=t("Datasets"), icon=":material/dataset:", url_path="datasets"),
        st.Page("../pages/labeling.py", title=t("Labeling"), icon=":material/checklist:", url_path="labeling"),
        st.Page("../pages/feedback.py", title=t("Feedback"), icon=":material/thumbs_up_down:", url_path="feedback"),
    ],
    t("Results"): [
        st.Page("../pages/evaluate.py", title=t("Evaluation"), icon=":material/leaderboard:", url_path="evaluate"),
        st.Page("../pages/chat.py", title=t("Chat"), icon=":material/chat:", url_path="chat"),
        SHARE_PAGE := st.Page("../pages/share.py", title=t("Demo & share"), icon=":material/co_present:",
                              url_path="share"),
    ],
}

page = st.navigation(PAGES, expanded=True)  # every rung in view: a newcomer should not hunt for "View more"
if returning_from_demo():
    st.switch_page(SHARE_PAGE)
render_sidebar()
page.run()
