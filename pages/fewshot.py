"""Rung 2 · Few-shot: examples in a project dataset, a selection strategy, and the live context budget."""

import pandas as pd
import streamlit as st

from core import assistant
from core.data import pairs
from core.errors import StudioError
from core.fewshot import STRATEGIES, FewShotSettings
from core.models import registry
from studio.ui.budget import budget_bar
from studio.ui.model_panel import ensure_backend, model_ready
from studio.ui.state import discard_draft, draft, require_project, save_draft, saved_recipe, set_draft, show_error
from studio.ui.trial import stream_answer

project = require_project()
slug = project.slug
recipe = draft(project)
saved, version = saved_recipe(project)
settings = recipe.fewshot
K = f"fewshot.{slug}."
STRATEGY_LABELS = {"fixed": "Fixed", "random": "Random", "semantic": "Semantic", "mmr": "MMR"}

st.title("2 · Few-shot")
st.write("Show the model a few questions with the answers you want. The studio picks examples for each "
         "question and makes sure they fit the model's context window.")

enabled = st.toggle("Add examples to the prompt", value=settings.enabled, key=K + "enabled")

# ---- examples dataset -------------------------------------------------------------------------------------------
st.subheader("Examples")
rows = pairs.load_pairs(project, settings.dataset)
base_key = K + "grid_base"
if base_key not in st.session_state:
    st.session_state[base_key] = pd.DataFrame(rows or [], columns=["id", "prompt", "response"])
edited = st.data_editor(
    st.session_state[base_key], num_rows="dynamic", hide_index=True, width="stretch", key=K + "grid",
    column_order=["prompt", "response"],
    column_config={"prompt": st.column_config.TextColumn("Question", width="large"),
                   "response": st.column_config.TextColumn("Ideal answer", width="large")})
edited_rows = [{k: (v if isinstance(v, str) else "") for k, v in r.items()} for r in edited.to_dict("records")]
grid_changed = pairs.clean_rows(edited_rows) != pairs.clean_rows([dict(r) for r in rows]) or \
    len(edited_rows) != len(rows)
save_col, revert_col, download_col = st.columns(3)
if save_col.button("Save examples", type="primary", disabled=not grid_changed, icon=":material/save:"):
    try:
        kept = pairs.save_pairs(project, settings.dataset, edited_rows)
        skipped = len(edited_rows) - len(kept)
        st.toast(f"Saved {len(kept)} examples" + (f"; {skipped} incomplete row(s) left out" if skipped else "") + ".",
                 icon=":material/check:")
        for key in (base_key, K + "grid"):
            st.session_state.pop(key, None)
        st.rerun()
    except StudioError as exc:
        st.error(str(exc))
if revert_col.button("Undo grid edits", disabled=not grid_changed):
    for key in (base_key, K + "grid"):
        st.session_state.pop(key, None)
    st.rerun()
download_col.download_button("Download JSONL", pairs.export_jsonl(rows), file_name=f"{settings.dataset}.jsonl",
                             disabled=not rows, icon=":material/download:")
if grid_changed:
    st.caption("The grid has unsaved edits; the preview below uses the saved examples.")

with st.expander("Import examples from CSV, TSV or JSONL", icon=":material/upload_file:"):
    st.caption("Columns named prompt/question/instruction and response/answer/output; JSONL may also hold "
               "OpenAI chat `messages` or ShareGPT `conversations`.")
    upload = st.file_uploader("File", type=["csv", "tsv", "jsonl", "json", "txt"], key=K + "upload")
    if upload is not None:
        try:
            report = pairs.import_pairs(upload.getvalue(), upload.name)
            if report.columns:
                st.caption(f"Columns used: {report.columns[0]} → question, {report.columns[1]} → answer.")
            for problem in report.problems[:20]:
                st.warning(problem)
            if len(report.problems) > 20:
                st.warning(f"… and {len(report.problems) - 20} more problems.")
            st.dataframe(pd.DataFrame(report.rows)[["prompt", "response"]].head(20), hide_index=True, width="stretch")
            if st.button(f"Add {len(report.rows)} examples", type="primary"):
                pairs.save_pairs(project, settings.dataset, rows + report.rows)
                for key in (base_key, K + "grid", K + "upload"):
                    st.session_state.pop(key, None)
                st.rerun()
        except StudioError as exc:
            st.error(str(exc))

# ---- selection -------------------------------------------------------------------------------------------------
st.subheader("How examples are picked")
left, right = st.columns(2)
strategy = left.radio("Strategy", list(STRATEGIES), index=list(STRATEGIES).index(settings.strategy),
                      format_func=STRATEGY_LABELS.get, captions=list(STRATEGIES.values()), key=K + "strategy")
k = right.slider("Examples per question", 0, 20, settings.k, key=K + "k",
                 help="Fewer are used when they do not fit the context window.")
seed = right.number_input("Seed", 0, 1_000_000, settings.seed, key=K + "seed", disabled=strategy != "random")
balance = right.slider("Similarity vs diversity (MMR)", 0.0, 1.0, settings.mmr_lambda, 0.05, key=K + "mmr",
                       disabled=strategy != "mmr", help="1 = only similarity to the question, 0 = only diversity.")
recipe = recipe.with_changes(fewshot=FewShotSettings(enabled, settings.dataset, strategy, k, int(seed), balance))
set_draft(project, recipe)
changed = recipe.to_dict() != saved.to_dict()
save_col, discard_col = st.columns(2)
if save_col.button("Save as new recipe version", type="primary", disabled=not changed, icon=":material/save:"):
    save_draft(project, recipe, note=f"Few-shot: {strategy}, k={k}" if enabled else "Few-shot off")
    st.rerun()
if discard_col.button("Discard changes", disabled=not changed):
    discard_draft(project, K)
    st.rerun()
st.caption(("Unsaved changes · " if changed else "") + (f"saved version {version}" if version else "not saved yet"))

# ---- budget and preview ------------------------------------------------------------------------------------------
st.subheader("Context budget and prompt preview")
question = st.text_input("Test question", key=K + "question", placeholder="A question your users would ask")
if not model_ready(recipe.model, key=K + "model"):
    st.stop()
if registry.peek_backend(recipe.model) is None:
    st.caption("Token counts need the model's tokenizer.")
    if not st.button("Load the model to measure", icon=":material/memory:"):
        st.stop()
backend = ensure_backend(recipe.model, key=K + "model")
if backend is None:
    st.stop()
try:
    with st.spinner("Picking examples…"):
        prepared = assistant.prepare(recipe, question or "…", backend, assistant.example_pool(project, recipe))
except Exception as exc:
    show_error(exc)
    st.stop()
budget_bar(prepared.budget, key=K + "budget")
if enabled and prepared.examples:
    st.caption("Examples used for this question, most preferred first:")
    st.dataframe(pd.DataFrame([{"question": e["prompt"], "answer": e["response"], "tokens": t}
                               for e, t in zip(prepared.examples, prepared.budget.example_tokens)]),
                 hide_index=True, width="stretch")
elif enabled and not rows:
    st.info("Add examples above to use them.")
with st.expander(f"Final prompt ({prepared.budget.used:,} tokens, {prepared.prompt.format})", expanded=False,
                 icon=":material/visibility:"):
    st.code(prepared.prompt.text, language=None, wrap_lines=True)
if st.button("Try this question", type="primary", disabled=not question.strip(), icon=":material/play_arrow:"):
    stream_answer(project, recipe, question, key=K + "run")
