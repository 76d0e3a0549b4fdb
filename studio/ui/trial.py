"""Running the draft recipe on questions from a page: one streamed answer, or a small table of answers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import assistant, trials
from core.recipe import Recipe
from core.workspace import Project
from studio.ui.i18n import t
from studio.ui.model_panel import recipe_backend
from studio.ui.state import show_error
from studio.ui.text import as_written, where_from


def stats_caption(stats: dict, prepared: assistant.PreparedPrompt | None = None) -> str:
    parts = [t("{count} prompt tokens", count=f"{stats['prompt_tokens']:,}"),
             t("{count} answer tokens", count=f"{stats['output_tokens']:,}"),
             t("first token {seconds} s", seconds=f"{stats['first_token_s']:.2f}"),
             t("{rate} tokens/s", rate=f"{stats['tokens_per_s']:.1f}")]
    if prepared is not None and prepared.examples:
        parts.append(t("{count} example(s)", count=len(prepared.examples)))
    if prepared is not None and prepared.sources:
        parts.append(t("{count} passage(s)", count=len(prepared.sources)))
    if stats.get("stopped_by") == "length":
        parts.append(t("stopped at max new tokens"))
    elif stats.get("stopped_by") == "repetition":
        parts.append(t("stopped: the answer repeated itself"))
    return " · ".join(parts)


def empty_answer_note(answer: str, stats: dict) -> None:
    """Says why an answer is empty when the model only repeated itself ("1000000…" is cut whole)."""
    if not answer.strip() and stats.get("stopped_by") == "repetition":
        st.caption(t("The model gave no usable answer: it repeated itself. Ask again in other words, or add "
                     "examples of the answers you expect (2 · Few-shot)."))


sources_of = assistant.source_dicts  # kept in chat history and feedback


def show_sources(sources: list[dict]) -> None:
    if not sources:
        return
    drawn_from = [f"[{s['number']}]" for s in sources if s.get("supports")]
    title = t("Sources ({count})", count=len(sources))
    if drawn_from:
        title += " · " + t("answer drawn from {numbers}", numbers=", ".join(drawn_from))
    with st.expander(title, icon=":material/menu_book:"):
        for source in sources:
            where = where_from(source["source"], source["page"], source["heading"])
            mark = " ✓ " + t("the answer is drawn from this passage") if source.get("supports") else ""
            st.markdown(f"**[{source['number']}]** {where}{mark}")
            st.caption(source["text"])


def stream_answer(project: Project, recipe: Recipe, question: str, key: str, *, sources: bool = True,
                  stats: bool = True) -> dict | None:
    """Stream one answer into the page; returns {answer, stats, prepared} or None when it could not run.
    `sources` and `stats` show the passages used and the token/timing line (the demo can hide them)."""
    backend = recipe_backend(project, recipe, key=key)
    if backend is None:
        return None
    try:
        prepared, stream = assistant.answer(recipe, question, backend, assistant.example_pool(project, recipe), project)
        with st.chat_message("assistant"):
            st.write_stream(stream)
            empty_answer_note(stream.text, stream.stats())
            if prepared.nothing_found and stats:
                st.caption(t("No passage in the knowledge base was relevant enough, so the model was not asked."))
            if sources:
                show_sources(sources_of(prepared, stream.text))
        result = {"answer": stream.text, "stats": stream.stats(), "prepared": prepared,
                  "sources": sources_of(prepared, stream.text)}
        if stats:
            st.caption(stats_caption(result["stats"], prepared))
        return result
    except Exception as exc:
        show_error(exc)
        return None


def run_table(project: Project, recipe: Recipe, version: int | None, questions: list[str], key: str) -> None:
    """Answer each question, showing progress; rows land in session state as they finish (Stop keeps them)."""
    backend = recipe_backend(project, recipe, key=key)
    if backend is None:
        return
    rows: list[dict] = []
    st.session_state[key] = rows
    pool = assistant.example_pool(project, recipe)
    bar = st.progress(0.0, text=t("Answering…"))
    for i, question in enumerate(questions, start=1):
        try:
            prepared, stream = assistant.answer(recipe, question, backend, pool, project)
            stream.run_to_end()
        except Exception as exc:
            show_error(exc)
            return
        stats = stream.stats()
        rows.append({"question": question, "answer": stream.text, "prompt_tokens": stats["prompt_tokens"],
                     "answer_tokens": stats["output_tokens"], "seconds": stats["total_s"],
                     "examples": len(prepared.examples)})
        bar.progress(i / len(questions), text=t("Answered {done} of {total}", done=i, total=len(questions)))
    trials.save_trial(project, recipe, version, rows)
    st.toast(t("Answers saved with the recipe snapshot in the project's runs."), icon=":material/check:")


def show_table(key: str) -> None:
    rows = st.session_state.get(key)
    if rows:
        frame = pd.DataFrame(rows)
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "question": st.column_config.TextColumn(t("Question")),
            "answer": st.column_config.TextColumn(t("Answer"), width="large"),
            "prompt_tokens": st.column_config.NumberColumn(t("Prompt tokens")),
            "answer_tokens": st.column_config.NumberColumn(t("Answer tokens")),
            "seconds": st.column_config.NumberColumn(t("Seconds"), format="%.1f"),
            "examples": st.column_config.NumberColumn(t("Examples"))})
        st.caption(t("{count} answers · median {seconds} s · {tokens} answer tokens in all",
                     count=len(rows), seconds=f"{frame['seconds'].median():.1f}",
                     tokens=f"{int(frame['answer_tokens'].sum()):,}"))
        chosen = st.selectbox(t("Read an answer in full"), range(len(rows)), key=key + ".in_full",
                              format_func=lambda i: str(rows[i]["question"])[:120])
        with st.container(border=True):
            st.caption(str(rows[chosen]["question"]))
            st.markdown(as_written(str(rows[chosen]["answer"] or "")))
