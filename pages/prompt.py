"""Rung 1 · Prompt: system prompt and template with {variables}, generation settings, try it, measure a baseline."""

import pandas as pd
import streamlit as st

from core.data.store import DatasetStore
from core.errors import StudioError
from core.models.generation import GenerationSettings
from core.prompt import BUILTIN_VARIABLES, PromptSettings, check_prompt
from core.recipe import RecipeStore
from core.tools import parse_tools_json, tool_names, tools_json
from studio.ui.i18n import t
from studio.ui.model_panel import model_ready
from studio.ui.state import draft, recipe_save_bar, require_project, saved_recipe, set_draft, widget_prefix
from studio.ui.trial import run_table, show_table, stream_answer

project = require_project()
slug = project.slug
recipe = draft(project)
saved, version = saved_recipe(project)
K = widget_prefix(f"prompt.{slug}.")  # widget keys of this page, per project
TOOLS_PLACEHOLDER = ('[{"type": "function", "function": {"name": "check_order", "description": "…",\n'
                     '  "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},\n'
                     '  "required": ["order_id"]}}}]')

st.title(t("1 · Prompt"))
st.write(t("Tell the model who it is and how to answer. Write `{question}` where the user's question goes and "
           "`{your_words}` for values you define below. Try it, then save: every save is a new recipe version."))

edit, trial = st.columns([1, 1], gap="large")
with edit:
    system_prompt = st.text_area(t("System prompt"), value=recipe.prompt.system_prompt, height=140, key=K + "system",
                                 help=t("Instructions the model reads before every question."))
    template = st.text_area(t("Question template"), value=recipe.prompt.template, height=80, key=K + "template",
                            help=t("Must contain {question}. Example: 'Customer question: {question}'."))
    st.markdown("**" + t("Variables") + "**")
    base_key = K + "variables_base"
    if base_key not in st.session_state:  # the editor needs a stable base; edits are kept by the widget
        st.session_state[base_key] = pd.DataFrame(
            [{"variable": k, "value": v} for k, v in recipe.prompt.variables.items()] or [{"variable": "", "value": ""}])
    edited = st.data_editor(st.session_state[base_key], num_rows="dynamic", hide_index=True, width="stretch",
                            key=K + "variables", column_config={
                                "variable": st.column_config.TextColumn(t("Variable"), help=t("Name used as {name}"),
                                                                         width="small", pinned=True),
                                "value": st.column_config.TextColumn(t("Value"), width="medium")})
    variables = {str(r["variable"]).strip(): str(r["value"] if r["value"] is not None else "")
                 for r in edited.to_dict("records") if r.get("variable") and str(r["variable"]).strip()}

    with st.expander(t("Generation settings"), icon=":material/tune:", key=K + "generation_settings_panel"):
        g = recipe.generation
        temperature = st.slider(t("Temperature"), 0.0, 1.5, g.temperature, 0.05, key=K + "temperature",
                                help=t("0 gives the same answer every time; higher is more varied."))
        top_p = st.slider(t("Top-p"), 0.05, 1.0, g.top_p, 0.05, key=K + "top_p", disabled=temperature == 0,
                          help=t("Used only when temperature is above 0."))
        max_new_tokens = st.number_input(t("Max new tokens"), 1, 4096, g.max_new_tokens, 16, key=K + "max_new",
                                         help=t("The longest answer; also reserved in the context window."))
        repetition_penalty = st.slider(t("Repetition penalty"), 1.0, 1.5, g.repetition_penalty, 0.05, key=K + "rep",
                                       help=t("Above 1 avoids loops but also discourages copying facts from the prompt."))
        stop_text = st.text_area(t("Stop sequences (one per line)"), value="\n".join(g.stop), key=K + "stop",
                                 help=t("The answer ends before any of these."))
    with st.expander(t("Base-model format"), icon=":material/description:", key=K + "base_format_panel"):
        st.caption(t("Models without a chat template (like the embedded Gemma 3 270M) read the prompt as "
                     "'Question: … Answer:' blocks. Rename the labels to match your use, e.g. 'Customer' / 'Agent'."))
        user_label = st.text_input(t("Question label"), value=recipe.prompt.user_label, key=K + "user_label")
        assistant_label = st.text_input(t("Answer label"), value=recipe.prompt.assistant_label, key=K + "assistant_label")
        starters = st.toggle(t("Starter examples"), value=recipe.prompt.starter_examples, key=K + "starter_examples",
                             help=t("A base model that has seen no question answered rambles or repeats itself. "
                                    "Until you add examples of your own (Few-shot page) or attach an adapter, two "
                                    "built-in examples ('In what year was the Eiffel Tower completed?' → '1889', "
                                    "'Where does the Mekong rise?' → 'On the Tibetan Plateau.', in Vietnamese for a "
                                    "question in Vietnamese) show it the form of an answer."))
    with st.expander(t("Tools"), icon=":material/build:", key=K + "tools_panel"):
        st.caption(t("Functions the model may call, as an OpenAI-style JSON list of tools. A model whose chat template "
                     "supports tools gets them there; any other model reads them as a short list in the system prompt "
                     "and is asked to answer with a JSON call. Leave empty for no tools."))
        tools_text = st.text_area(t("Tools (JSON)"), value=tools_json(recipe.tools), height=200, key=K + "tools",
                                  placeholder=TOOLS_PLACEHOLDER)
        try:
            tools, tools_problem = parse_tools_json(tools_text), None
        except StudioError as exc:
            tools, tools_problem = recipe.tools, exc.args[0]
        if tools_problem is None:
            names = tool_names(tools)
            st.caption(t("No tools: the model answers in text.") if not names else
                       t("1 tool: {names}", names=names[0]) if len(names) == 1 else
                       t("{count} tools: {names}", count=len(names), names=", ".join(names)))

    prompt_settings = PromptSettings(system_prompt, template, variables, user_label.strip() or "Question",
                                     assistant_label.strip() or "Answer", starters)
    check = check_prompt(prompt_settings)
    for error in check.errors:
        st.error(t(error))
    for warning in check.warnings:
        st.warning(t(warning))
    if tools_problem is not None:
        st.error(t(tools_problem))
    try:
        generation = GenerationSettings(temperature, top_p, int(max_new_tokens), repetition_penalty,
                                        tuple(line for line in stop_text.splitlines() if line))
        recipe = recipe.with_changes(prompt=prompt_settings, generation=generation, tools=tools)
        set_draft(project, recipe)
    except StudioError as exc:
        st.error(t(exc.args[0]))
    st.caption(t("Built-in variables: {names}", names=", ".join(f"{{{v}}}" for v in BUILTIN_VARIABLES)))

    note = st.text_input(t("What changed (optional)"), key=K + "note", placeholder=t("e.g. shorter answers"))
    changed = recipe_save_bar(project, recipe, saved, version, K, note or "Prompt",
                              can_save=check.ok and tools_problem is None)
    versions = RecipeStore(project).versions()
    if versions:
        with st.expander(t("Version history ({count})", count=len(versions)), icon=":material/history:",
                         key=K + "history_panel"):
            st.dataframe(pd.DataFrame([{"version": v.number, "saved": pd.to_datetime(v.saved_at, unit="s"),
                                        "by": v.author, "note": v.note} for v in reversed(versions)]),
                         hide_index=True, width="stretch", column_config={
                             "version": t("Version"), "saved": t("Saved"), "by": t("By"), "note": t("Note")})

with trial:
    st.subheader(t("Try it"))
    ready = check.ok and model_ready(recipe.model, key=K + "model")
    question = st.text_area(t("Question"), key=K + "question", height=80,
                            placeholder=t("Ask what your users would ask"))
    if st.button(t("Run"), type="primary", disabled=not ready, icon=":material/play_arrow:"):
        if not question.strip():
            st.error(t("Type a question first."))
        else:
            with st.chat_message("user"):
                st.write(question)
            result = stream_answer(project, recipe, question, key=K + "run")
            if result:
                st.session_state[K + "last"] = {"question": question, "answer": result["answer"]}
    elif K + "last" in st.session_state:
        last = st.session_state[K + "last"]
        st.caption(t("Last answer"))
        with st.chat_message("user"):
            st.write(last["question"])
        with st.chat_message("assistant"):
            st.write(last["answer"])

    st.subheader(t("Try on a few questions"))
    st.caption(t("A quick baseline: the same questions answered by this prompt. Saved in the project's runs."))
    eval_sets = [d.name for d in DatasetStore(project).list() if d.kind == "eval"]
    if eval_sets and st.button(t("Fill with questions from the eval set")):
        eval_records, _ = DatasetStore(project).load(eval_sets[0])
        st.session_state[K + "questions"] = "\n".join(r["question"] for r in eval_records[:10] if r.get("question"))
    questions_text = st.text_area(t("Questions (one per line)"), key=K + "questions", height=120)
    questions = [q.strip() for q in questions_text.splitlines() if q.strip()]
    if st.button(t("Answer {count} question(s)", count=len(questions)) if questions else t("Answer questions"),
                 disabled=not (ready and questions), icon=":material/table_rows:"):
        run_table(project, recipe, version if not changed else None, questions, key=K + "table")
    show_table(K + "table")
