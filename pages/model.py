"""Model: choose where the recipe's model comes from, see its card, set the context window to use."""

import streamlit as st

from core.errors import StudioError
from core.models import registry
from core.models.card import human_bytes
from core.models.source import SOURCE_KINDS, SOURCE_LABELS, ModelSource
from studio.ui.i18n import t
from studio.ui.engine_panel import engine_section
from studio.ui.model_panel import ensure_backend
from studio.ui.state import draft, require_project, save_draft, saved_recipe, set_draft, show_error

project = require_project()
st.title(t("Model"))
st.write(t("The model every rung of the ladder uses. The embedded Gemma 3 270M runs offline on a laptop; "
           "bring your own model from a folder, a GGUF file, the Hugging Face hub or a local server."))

recipe = draft(project)
saved, _ = saved_recipe(project)
source = recipe.model

with st.container(border=True):
    kind = st.radio(t("Source"), SOURCE_KINDS, index=SOURCE_KINDS.index(source.kind),
                    format_func=lambda k: t(SOURCE_LABELS[k]), key=f"model.kind.{project.slug}")
    same_kind = kind == source.kind
    location = model_name = api_key_env = ""
    if kind == "local":
        location = st.text_input(t("Model folder"), value=source.location if same_kind else "",
                                 placeholder=t("/path/to/model (contains config.json and *.safetensors)"))
    elif kind == "gguf":
        location = st.text_input(t("GGUF file"), value=source.location if same_kind else "",
                                 placeholder="/path/to/model.gguf")
        st.caption(t("Converted once into a cached folder; quantized weights are de-quantized for training."))
    elif kind == "hub":
        location = st.text_input(t("Hub id"), value=source.location if same_kind else "",
                                 placeholder="google/gemma-3-270m-it")
        st.caption(t("Downloads once when online; offline, only models already in the hub cache work."))
    elif kind == "openai":
        location = st.text_input(t("Base URL"), value=source.location if same_kind else "",
                                 placeholder=t("http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:8000/v1 (vLLM)"))
        model_name = st.text_input(t("Model name"), value=source.model_name if same_kind else "",
                                   placeholder="llama3.2")
        api_key_env = st.text_input(t("Environment variable with the API key (optional)"),
                                    value=source.api_key_env if same_kind else "", placeholder="OPENAI_API_KEY")
        st.caption(t("The key itself is never saved; it is read from the environment of the studio server. "
                     "Endpoints serve the prompt, few-shot and retriever rungs; fine-tuning needs a local model."))
    try:
        chosen = ModelSource(kind=kind, location=location.strip(), model_name=model_name.strip(),
                             api_key_env=api_key_env.strip())
    except StudioError as exc:
        chosen = None
        if kind != "embedded":
            st.info(t(exc.args[0]))
    if chosen is not None and chosen != source:
        if st.button(t("Use this model"), type="primary", icon=":material/check:"):
            try:
                if not registry.needs_conversion(chosen):
                    with st.spinner(t("Checking the model…")):
                        registry.get_backend(chosen)
                recipe = recipe.with_changes(model=chosen)
                set_draft(project, recipe)
                save_draft(project, recipe, note=f"Model: {chosen.describe()}")
                st.rerun()
            except StudioError as exc:
                show_error(exc)

engine_section(source)

st.subheader(t("Model card"))
backend = ensure_backend(source, key="model")
if backend is None:
    st.stop()
card = getattr(backend, "card", None)
if card is None:
    st.write(t("**{model}** served by {url}. Token counts are estimated (about 4 characters per token) because "
               "the endpoint's tokenizer is not available here.", model=backend.name, url=source.location))
else:
    prompt_format = t("chat template") if card.has_chat_template else \
        t("base model: plain 'Question: … Answer:' prompts")
    st.markdown(t("**{model}** · architecture `{architecture}` · weights `{dtype}` on `{device}` · {format}",
                  model=card.name, architecture=card.architecture, dtype=card.dtype, device=card.device,
                  format=prompt_format))
    cols = st.columns(4)
    cols[0].metric(t("Parameters"), f"{card.parameters / 1e6:,.0f} M")
    cols[1].metric(t("Context length"), f"{card.context_length:,}", help=t("Tokens the model can read at once."))
    cols[2].metric(t("Weights in memory"), human_bytes(card.weights_bytes))
    cols[3].metric(t("Estimated memory"), human_bytes(card.estimated_memory_bytes),
                   help=t("Weights + a 4k-token KV cache + ~20% for activations."))
    st.caption(t("{layers} layers · hidden size {hidden} · vocabulary {vocab} · KV cache {kv} per 1,000 tokens",
                 layers=card.layers, hidden=card.hidden_size, vocab=f"{card.vocab_size:,}",
                 kv=human_bytes(card.kv_cache_bytes_per_1k_tokens)))

st.subheader(t("Context window"))
maximum = backend.context_length
value = st.number_input(t("Tokens to use per request"), min_value=64, max_value=maximum,
                        value=min(recipe.context_window or maximum, maximum), step=256,
                        help=t("Up to {maximum} for this model. Smaller windows answer faster on a laptop; "
                               "few-shot examples are trimmed to fit.", maximum=f"{maximum:,}")
                        + (" " + t("llama.cpp reserves room for {maximum} tokens; set STUDIO_LLAMACPP_CONTEXT for "
                                   "more.", maximum=f"{maximum:,}") if getattr(backend, "engine", "") == "llama.cpp"
                           else ""))
window = int(value)
if window != recipe.context_window:
    recipe = recipe.with_changes(context_window=window)
    set_draft(project, recipe)
if recipe.to_dict() != saved.to_dict():
    if st.button(t("Save to recipe"), type="primary"):
        save_draft(project, recipe, note="Model settings")
        st.rerun()
