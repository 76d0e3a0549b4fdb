"""Rung 2 · Few-shot: examples in a project dataset, a selection strategy, and the live context budget."""

import pandas as pd
import streamlit as st

from core import assistant
from core.data import formats, pairs
from core.data.store import ConflictError, DatasetStore
from core.errors import StudioError
from core.fewshot import STRATEGIES, FewShotSettings
from core.i18n import Msg
from core.models import registry
from studio.ui.budget import budget_bar
from studio.ui.i18n import t
from studio.ui.model_panel import ensure_backend, model_ready
from studio.ui.state import (draft, next_upload_round, recipe_save_bar, require_project, saved_recipe, set_draft,
                             show_error, upload_round, widget_prefix)
from studio.ui.trial import stream_answer

project = require_project()
slug = project.slug
recipe = draft(project)
saved, version = saved_recipe(project)
settings = recipe.fewshot
K = widget_prefix(f"fewshot.{slug}.")
STRATEGY_LABELS = {"fixed": Msg("Fixed"), "random": Msg("Random"), "semantic": Msg("Semantic"), "mmr": Msg("MMR")}

st.title(t("2 · Few-shot"))
st.write(t("Show the model a few questions with the answers you want. The studio picks examples for each "
           "question and makes sure they fit the model's context window."))

enabled = st.toggle(t("Add examples to the prompt"), value=settings.enabled, key=K + "enabled")

# ---- examples dataset -------------------------------------------------------------------------------------------
st.subheader(t("Examples"))
rows = pairs.load_pairs(project, settings.dataset)
base_key = K + "grid_base"
if base_key not in st.session_state:
    st.session_state[base_key] = pd.DataFrame(rows or [], columns=["id", "prompt", "response"])
    store = DatasetStore(project)
    st.session_state[K + "grid_version"] = store.latest_version(settings.dataset) if store.exists(settings.dataset) \
        else None
edited = st.data_editor(
    st.session_state[base_key], num_rows="dynamic", hide_index=True, width="stretch", key=K + "grid",
    column_order=["prompt", "response"],
    column_config={"prompt": st.column_config.TextColumn(t("Question"), width="large"),
                   "response": st.column_config.TextColumn(t("Ideal answer"), width="large")})
edited_rows = [{k: (v if isinstance(v, str) else "") for k, v in r.items()} for r in edited.to_dict("records")]
grid_changed = pairs.clean_rows(edited_rows) != pairs.clean_rows([dict(r) for r in rows]) or \
    len(edited_rows) != len(rows)
save_col, revert_col, download_col = st.columns(3)
if save_col.button(t("Save examples"), type="primary", disabled=not grid_changed, icon=":material/save:"):
    try:
        base = st.session_state.get(K + "grid_version")
        kept = pairs.save_pairs(project, settings.dataset, edited_rows, base_version=-1 if base is None else base)
        skipped = len(edited_rows) - len(kept)
        st.toast(t("Saved {count} examples; {skipped} incomplete row(s) left out.", count=len(kept), skipped=skipped)
                 if skipped else t("Saved {count} examples.", count=len(kept)), icon=":material/check:")
        for key in (base_key, K + "grid"):
            st.session_state.pop(key, None)
        st.rerun()
    except ConflictError:
        st.error(t("Someone else saved these examples while you were editing. Copy your changes, press "
                   "Undo grid edits to load their version, then edit again."))
    except StudioError as exc:
        st.error(t(exc.args[0]))
if revert_col.button(t("Undo grid edits"), disabled=not grid_changed):
    for key in (base_key, K + "grid"):
        st.session_state.pop(key, None)
    st.rerun()
download_col.download_button(t("Download JSONL"), pairs.export_jsonl(rows), file_name=f"{settings.dataset}.jsonl",
                             disabled=not rows, icon=":material/download:")
if grid_changed:
    st.caption(t("The grid has unsaved edits; the preview below uses the saved examples."))
if rows and not (saved.fewshot.enabled and saved.fewshot.dataset == settings.dataset):
    st.info(t("The assistant does not use these examples yet: turn on **Add examples to the prompt** above, then "
              "save the recipe."), icon=":material/info:")

with st.expander(t("Import examples from a file"), icon=":material/upload_file:", key=K + "import_panel"):
    st.caption(t("CSV, TSV, Excel, JSONL or Parquet with a question column (prompt, question, instruction…) and "
                 "an answer column (response, answer, output…); JSONL may also hold OpenAI chat `messages` or "
                 "ShareGPT `conversations`. To choose the columns yourself, import on the Datasets page."))
    upload = st.file_uploader(t("File"), type=["csv", "tsv", "txt", "jsonl", "json", "xlsx", "parquet"],
                              key=f"{K}upload.{upload_round(K)}")
    if upload is not None:
        try:
            _, report = formats.import_file(upload.getvalue(), upload.name, "sft")
            imported = [r for r in report.records if r.get("response")]
            for problem in report.problems[:20]:
                st.warning(t(problem))
            if len(report.problems) > 20:
                st.warning(t("… and {count} more problems.", count=len(report.problems) - 20))
            st.dataframe(pd.DataFrame(imported, columns=["prompt", "response"]).head(20), hide_index=True,
                         width="stretch")
            if st.button(t("Add {count} examples", count=len(imported)), type="primary", disabled=not imported):
                pairs.save_pairs(project, settings.dataset, rows + imported)
                for key in (base_key, K + "grid"):
                    st.session_state.pop(key, None)
                next_upload_round(K)
                st.rerun()
        except StudioError as exc:
            st.error(t(exc.args[0]))

# ---- selection -------------------------------------------------------------------------------------------------
st.subheader(t("How examples are picked"))
left, right = st.columns(2)
strategy = left.radio(t("Strategy"), list(STRATEGIES), index=list(STRATEGIES).index(settings.strategy),
                      format_func=lambda s: t(STRATEGY_LABELS[s]), captions=[t(c) for c in STRATEGIES.values()],
                      key=K + "strategy")
k = right.slider(t("Examples per question"), 0, 20, settings.k, key=K + "k",
                 help=t("Fewer are used when they do not fit the context window."))
seed = right.number_input(t("Seed"), 0, 1_000_000, settings.seed, key=K + "seed", disabled=strategy != "random")
balance = right.slider(t("Similarity vs diversity (MMR)"), 0.0, 1.0, settings.mmr_lambda, 0.05, key=K + "mmr",
                       disabled=strategy != "mmr", help=t("1 = only similarity to the question, 0 = only diversity."))
recipe = recipe.with_changes(fewshot=FewShotSettings(enabled, settings.dataset, strategy, k, int(seed), balance))
set_draft(project, recipe)
recipe_save_bar(project, recipe, saved, version, K, f"Few-shot: {strategy}, k={k}" if enabled else "Few-shot off")

# ---- budget and preview ------------------------------------------------------------------------------------------
st.subheader(t("Context budget and prompt preview"))
question = st.text_input(t("Test question"), key=K + "question", placeholder=t("A question your users would ask"))
if not model_ready(recipe.model, key=K + "model"):
    st.stop()
if registry.peek_backend(recipe.model) is None:
    st.caption(t("Token counts need the model's tokenizer."))
    if not st.button(t("Load the model to measure"), icon=":material/memory:"):
        st.stop()
backend = ensure_backend(recipe.model, key=K + "model")
if backend is None:
    st.stop()
try:
    with st.spinner(t("Picking examples…")):
        prepared = assistant.prepare(recipe, question or "…", backend, assistant.example_pool(project, recipe),
                                     project if question else None)
except Exception as exc:
    show_error(exc)
    st.stop()
budget_bar(prepared.budget, key=K + "budget")
if prepared.examples and all(e.get("starter") for e in prepared.examples):
    st.info(t("No examples of yours in the prompt yet, so the model reads the two built-in starter examples "
              "(1 · Prompt, Base-model format). Your own examples replace them."))
elif enabled and prepared.examples:
    st.caption(t("Examples used for this question, most preferred first:"))
    st.dataframe(pd.DataFrame([{"question": e["prompt"], "answer": e["response"], "tokens": tokens}
                               for e, tokens in zip(prepared.examples, prepared.budget.example_tokens)]),
                 hide_index=True, width="stretch",
                 column_config={"question": t("Question"), "answer": t("Answer"), "tokens": t("Tokens")})
elif enabled and not rows:
    st.info(t("Add examples above to use them."))
with st.expander(t("Final prompt ({tokens} tokens, {format})", tokens=f"{prepared.budget.used:,}",
                   format=t(prepared.prompt.format)), expanded=False, icon=":material/visibility:",
                 key=K + "final_prompt_panel"):
    st.code(prepared.prompt.text, language=None, wrap_lines=True)
if st.button(t("Try this question"), type="primary", disabled=not question.strip(), icon=":material/play_arrow:"):
    stream_answer(project, recipe, question, key=K + "run")
