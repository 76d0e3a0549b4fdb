"""The conversation the Chat page and the demo share: history, streamed answers, sources and thumbs feedback.

Each browser session keeps its own history in its session state; the model behind it is the one shared copy.
"""

from __future__ import annotations

import streamlit as st

from core.feedback import record_feedback
from core.recipe import Recipe
from core.workspace import Project
from studio.ui.i18n import t
from studio.ui.model_panel import model_ready
from studio.ui.state import show_error
from studio.ui.trial import empty_answer_note, show_sources, stats_caption, stream_answer


def history_key(key: str, number: int | None) -> str:
    return f"{key}.history.{number}"


def clear_history(key: str, number: int | None) -> None:
    st.session_state[history_key(key, number)] = []


def conversation(project: Project, recipe: Recipe, number: int | None, key: str, *, user: str = "",
                 sources: bool = True, stats: bool = True, sample_questions: tuple[str, ...] = ()) -> None:
    """Show the history, then answer the typed (or clicked sample) question with the recipe."""
    history: list[dict] = st.session_state.setdefault(history_key(key, number), [])
    for index, message in enumerate(history):
        with st.chat_message(message["role"]):
            st.write(message["content"])
            if message["role"] == "assistant":
                empty_answer_note(message["content"], message.get("stats") or {})
                if sources:
                    show_sources(message.get("sources") or [])
                if stats:
                    st.caption(stats_caption(message["stats"]))
                _feedback(project, recipe, number, key, index, message, user)

    clicked = None
    if sample_questions and not history:
        st.caption(t("Try one of these:"))
        columns = st.columns(min(3, len(sample_questions)))
        for i, sample in enumerate(sample_questions):
            if columns[i % len(columns)].button(sample, key=f"{key}.sample.{i}", width="stretch"):
                clicked = sample
    ready = model_ready(recipe.model, key=f"{key}.model")
    question = st.chat_input(t("Ask the assistant"), disabled=not ready) or (clicked if ready else None)
    if question:
        with st.chat_message("user"):
            st.write(question)
        history.append({"role": "user", "content": question})
        result = stream_answer(project, recipe, question, key=f"{key}.run", sources=sources, stats=stats)
        if result:
            history.append({"role": "assistant", "content": result["answer"], "stats": result["stats"],
                            "question": question, "sources": result["sources"]})
            st.rerun()


def _feedback(project: Project, recipe: Recipe, number: int | None, key: str, index: int, message: dict,
              user: str) -> None:
    if message.get("rated"):
        st.caption(t("Thanks — feedback saved.") if message["rated"] > 0 else t("Thanks — correction saved for labeling."))
        return
    choice = st.feedback("thumbs", key=f"{key}.{number}.fb.{index}")
    if choice == 1:
        _save(project, recipe, number, message, 1, "", user)
        st.rerun()
    elif choice == 0:
        correction = st.text_area(t("What should the answer have been? (optional)"), key=f"{key}.{number}.fix.{index}")
        if st.button(t("Send feedback"), key=f"{key}.{number}.send.{index}"):
            _save(project, recipe, number, message, -1, correction, user)
            st.rerun()


def _save(project: Project, recipe: Recipe, number: int | None, message: dict, rating: int, correction: str,
          user: str) -> None:
    try:
        record_feedback(project, question=message["question"], answer=message["content"], rating=rating,
                        correction=correction, recipe=recipe.name, recipe_version=number, user=user,
                        stats=message.get("stats"))
        message["rated"] = rating
    except Exception as exc:
        show_error(exc)
