"""Chat: talk to the assistant built from a saved recipe version; rate answers to improve it."""

import streamlit as st

from core.feedback import record_feedback
from core.recipe import Recipe, RecipeStore
from studio.ui.i18n import t
from studio.ui.model_panel import model_ready
from studio.ui.state import require_project, show_error
from studio.ui.trial import show_sources, stats_caption, stream_answer

project = require_project()
slug = project.slug
store = RecipeStore(project)
versions = store.versions()

st.title(t("Chat"))
head, pick, reset = st.columns([3, 2, 1], vertical_alignment="bottom")
head.caption(t("Answers use the saved recipe: model, prompt and examples. Rate answers with thumbs up or down; "
               "a correction becomes a training pair once accepted."))
if versions:
    numbers = [v.number for v in reversed(versions)]
    number = pick.selectbox(t("Recipe version"), numbers, key=f"chat.{slug}.version",
                            format_func=lambda n: t("version {number} (latest)", number=n) if n == numbers[0]
                            else t("version {number}", number=n))
    recipe = store.load(number)
else:
    number, recipe = None, Recipe()
    pick.caption(t("No saved recipe yet: using the default prompt."))
history_key = f"chat.{slug}.history.{number}"
history: list[dict] = st.session_state.setdefault(history_key, [])
if reset.button(t("New chat"), icon=":material/refresh:", disabled=not history):
    st.session_state[history_key] = []
    st.rerun()
st.caption(t("Each question is answered on its own with the recipe's prompt and examples; earlier turns are "
             "shown for reference."))


def feedback_controls(index: int, message: dict) -> None:
    if message.get("rated"):
        st.caption(t("Thanks — feedback saved.") if message["rated"] > 0 else t("Thanks — correction saved for labeling."))
        return
    choice = st.feedback("thumbs", key=f"chat.{slug}.{number}.fb.{index}")
    if choice == 1:
        _save(message, 1, "")
        st.rerun()
    elif choice == 0:
        correction = st.text_area(t("What should the answer have been? (optional)"),
                                  key=f"chat.{slug}.{number}.fix.{index}")
        if st.button(t("Send feedback"), key=f"chat.{slug}.{number}.send.{index}"):
            _save(message, -1, correction)
            st.rerun()


def _save(message: dict, rating: int, correction: str) -> None:
    try:
        record_feedback(project, question=message["question"], answer=message["content"], rating=rating,
                        correction=correction, recipe=recipe.name, recipe_version=number, stats=message.get("stats"))
        message["rated"] = rating
    except Exception as exc:
        show_error(exc)


for index, message in enumerate(history):
    with st.chat_message(message["role"]):
        st.write(message["content"])
        if message["role"] == "assistant":
            show_sources(message.get("sources") or [])
            st.caption(stats_caption(message["stats"]))
            feedback_controls(index, message)

ready = model_ready(recipe.model, key=f"chat.{slug}.model")
question = st.chat_input(t("Ask the assistant"), disabled=not ready)
if question:
    with st.chat_message("user"):
        st.write(question)
    history.append({"role": "user", "content": question})
    result = stream_answer(project, recipe, question, key=f"chat.{slug}.run")
    if result:
        history.append({"role": "assistant", "content": result["answer"], "stats": result["stats"],
                        "question": question, "sources": result["sources"]})
        st.rerun()
