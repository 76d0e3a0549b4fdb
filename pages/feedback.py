"""Feedback: ratings and corrections collected on the Chat page, ready for the labeling queue."""

import pandas as pd
import streamlit as st

from core.feedback import list_feedback
from core.data.pairs import export_jsonl
from studio.ui.state import require_project

project = require_project()
st.title("Feedback")
st.write("Every thumbs up or down from the Chat page lands here with the question, the answer and any correction. "
         "Corrections are the raw material for training pairs.")

entries = list_feedback(project)
if not entries:
    st.info("No feedback yet. Rate a few answers on the Chat page.")
    st.page_link("../pages/chat.py", label="Go to Chat", icon=":material/chat:")
    st.stop()

up = sum(1 for e in entries if e["rating"] > 0)
cols = st.columns(3)
cols[0].metric("Answers rated", len(entries))
cols[1].metric("Thumbs up", f"{up} ({up / len(entries):.0%})")
cols[2].metric("Corrections", sum(1 for e in entries if e.get("correction")))

shown = st.segmented_control("Show", ["All", "Thumbs up", "Thumbs down", "With correction"], default="All", key="feedback.filter")
frame = pd.DataFrame([{"time": pd.to_datetime(e["time"], unit="s").strftime("%Y-%m-%d %H:%M"),
                       "rating": "up" if e["rating"] > 0 else "down", "question": e["question"], "answer": e["answer"],
                       "correction": e.get("correction", ""), "recipe version": e.get("recipe_version")}
                      for e in reversed(entries)])
if shown == "Thumbs up":
    frame = frame[frame["rating"] == "up"]
elif shown == "Thumbs down":
    frame = frame[frame["rating"] == "down"]
elif shown == "With correction":
    frame = frame[frame["correction"] != ""]
st.dataframe(frame, hide_index=True, width="stretch")
corrections = [{"prompt": e["question"], "response": e["correction"]} for e in entries if e.get("correction")]
st.download_button("Download corrections as training pairs (JSONL)", export_jsonl(corrections),
                   file_name="corrections.jsonl", disabled=not corrections, icon=":material/download:")
