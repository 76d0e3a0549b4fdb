"""Feedback: ratings and corrections collected on the Chat page, ready for the labeling queue."""

import pandas as pd
import streamlit as st

from core.data.pairs import export_jsonl
from core.feedback import list_feedback
from studio.ui.i18n import t
from studio.ui.state import require_project

project = require_project()
st.title(t("Feedback"))
st.write(t("Every thumbs up or down from the Chat page lands here with the question, the answer and any "
           "correction. Corrections are the raw material for training pairs."))

entries = list_feedback(project)
if not entries:
    st.info(t("No feedback yet. Rate a few answers on the Chat page."))
    st.page_link("../pages/chat.py", label=t("Go to Chat"), icon=":material/chat:")
    st.stop()

up = sum(1 for e in entries if e["rating"] > 0)
cols = st.columns(3)
cols[0].metric(t("Answers rated"), len(entries))
cols[1].metric(t("Thumbs up"), f"{up} ({up / len(entries):.0%})")
cols[2].metric(t("Corrections"), sum(1 for e in entries if e.get("correction")))

FILTERS = {"all": t("All"), "up": t("Thumbs up"), "down": t("Thumbs down"), "corrected": t("With correction")}
shown = st.segmented_control(t("Show"), list(FILTERS), format_func=FILTERS.get, default="all",
                             key="feedback.filter") or "all"
kept = [e for e in reversed(entries)
        if shown == "all" or (shown == "up" and e["rating"] > 0) or (shown == "down" and e["rating"] < 0)
        or (shown == "corrected" and e.get("correction"))]
frame = pd.DataFrame([{"time": pd.to_datetime(e["time"], unit="s").strftime("%Y-%m-%d %H:%M"),
                       "rating": t("up") if e["rating"] > 0 else t("down"), "question": e["question"],
                       "answer": e["answer"], "correction": e.get("correction", ""),
                       "version": e.get("recipe_version")} for e in kept],
                     columns=["time", "rating", "question", "answer", "correction", "version"])
st.dataframe(frame, hide_index=True, width="stretch", column_config={
    "time": t("Time"), "rating": t("Rating"), "question": t("Question"), "answer": t("Answer"),
    "correction": t("Correction"), "version": t("Recipe version")})
corrections = [{"prompt": e["question"], "response": e["correction"]} for e in entries if e.get("correction")]
st.download_button(t("Download corrections as training pairs (JSONL)"), export_jsonl(corrections),
                   file_name="corrections.jsonl", disabled=not corrections, icon=":material/download:")
