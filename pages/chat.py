"""Chat: talk to the assistant built from a saved recipe version; rate answers to improve it."""

from dataclasses import replace

import streamlit as st

from core.rag.kb import KnowledgeBase, indexed_knowledge_bases
from core.recipe import Recipe, RecipeStore
from studio.ui.chat_view import clear_history, conversation, history_key
from studio.ui.i18n import t
from studio.ui.state import draft, require_project, set_draft

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
key = f"chat.{slug}"
if reset.button(t("New chat"), icon=":material/refresh:", disabled=not st.session_state.get(history_key(key, number))):
    clear_history(key, number)
    st.rerun()
st.caption(t("Each question is answered on its own with the recipe's prompt and examples; earlier turns are "
             "shown for reference."))
indexed = [] if recipe.retriever.enabled else indexed_knowledge_bases(project)
if indexed:
    # A newcomer uploads documents on 3 · Retriever and asks here: answers ignored them until the recipe was saved
    # with the retriever on, at the bottom of that page.
    kb_name = recipe.retriever.knowledge_base if recipe.retriever.knowledge_base in indexed else indexed[0]
    with st.container(border=True):
        st.markdown(t("**Your documents are not used.** The knowledge base '{name}' holds {count} document(s), but "
                      "this recipe does not add passages from it to the prompt.", name=kb_name,
                      count=len(KnowledgeBase(project, kb_name).documents())))
        if st.button(t("Answer from the documents"), type="primary", icon=":material/library_books:",
                     help=t("Saves the recipe as a new version that adds the best passages of '{name}' to the "
                            "prompt (3 · Retriever changes how).", name=kb_name)):
            retriever = replace(recipe.retriever, enabled=True, knowledge_base=kb_name)
            RecipeStore(project).save(recipe.with_changes(retriever=retriever), note=f"Retriever: {kb_name}")
            edited = draft(project)
            set_draft(project, edited.with_changes(retriever=replace(edited.retriever, enabled=True,
                                                                     knowledge_base=kb_name)))
            st.session_state.pop(f"chat.{slug}.version", None)  # show the new version
            st.rerun()
if recipe.model.kind == "embedded" and not recipe.fewshot.enabled and not recipe.adapter:
    # A base model copies the form of its examples; with none it rambles (bench/README.md: F1 0.19 against 0.31).
    with st.container(border=True):
        if recipe.prompt.starter_examples:
            st.markdown(t("The embedded model is a small base model: it answers in the form its examples show. "
                          "Until you add your own, two built-in starter examples show it short, factual answers "
                          "(1 · Prompt, Base-model format). Add a few questions with the answers you expect as "
                          "few-shot examples so its answers take your form."))
        else:
            st.markdown(t("The embedded model is a small base model: it answers in the form its examples show, and "
                          "without any it tends to ramble. Add a few questions with the answers you expect as "
                          "few-shot examples (on public articles with passages, word overlap with the right answers "
                          "went from 0.19 without examples to 0.31 with three)."))
        st.page_link("../pages/fewshot.py", label=t("Go to 2 · Few-shot"), icon=":material/format_list_numbered:")
conversation(project, recipe, number, key)
