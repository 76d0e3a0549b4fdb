"""Model: choose where the recipe's model comes from, see its card, set the context window to use."""

import streamlit as st

from core.errors import StudioError
from core.models import registry
from core.models.card import human_bytes
from core.models.source import SOURCE_KINDS, SOURCE_LABELS, ModelSource
from studio.ui.model_panel import ensure_backend
from studio.ui.state import draft, require_project, save_draft, saved_recipe, set_draft

project = require_project()
st.title("Model")
st.write("The model every rung of the ladder uses. The embedded Gemma 3 270M runs offline on a laptop; "
         "bring your own model from a folder, a GGUF file, the Hugging Face hub or a local server.")

recipe = draft(project)
saved, _ = saved_recipe(project)
source = recipe.model

with st.container(border=True):
    kind = st.radio("Source", SOURCE_KINDS, index=SOURCE_KINDS.index(source.kind), format_func=SOURCE_LABELS.get,
                    key=f"model.kind.{project.slug}")
    same_kind = kind == source.kind
    location = model_name = api_key_env = ""
    if kind == "local":
        location = st.text_input("Model folder", value=source.location if same_kind else "",
                                 placeholder="/path/to/model (contains config.json and *.safetensors)")
    elif kind == "gguf":
        location = st.text_input("GGUF file", value=source.location if same_kind else "",
                                 placeholder="/path/to/model.gguf")
        st.caption("Converted once into a cached folder; quantized weights are de-quantized for training.")
    elif kind == "hub":
        location = st.text_input("Hub id", value=source.location if same_kind else "",
                                 placeholder="google/gemma-3-270m-it")
        st.caption("Downloads once when online; offline, only models already in the hub cache work.")
    elif kind == "openai":
        location = st.text_input("Base URL", value=source.location if same_kind else "",
                                 placeholder="http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:8000/v1 (vLLM)")
        model_name = st.text_input("Model name", value=source.model_name if same_kind else "", placeholder="llama3.2")
        api_key_env = st.text_input("Environment variable with the API key (optional)",
                                    value=source.api_key_env if same_kind else "", placeholder="OPENAI_API_KEY")
        st.caption("The key itself is never saved; it is read from the environment of the studio server. "
                   "Endpoints serve the prompt, few-shot and retriever rungs; fine-tuning needs a local model.")
    try:
        chosen = ModelSource(kind=kind, location=location.strip(), model_name=model_name.strip(),
                             api_key_env=api_key_env.strip())
    except StudioError as exc:
        chosen = None
        if kind != "embedded":
            st.info(str(exc))
    if chosen is not None and chosen != source:
        if st.button("Use this model", type="primary", icon=":material/check:"):
            try:
                if not registry.needs_conversion(chosen):
                    with st.spinner("Checking the model…"):
                        registry.get_backend(chosen)
                recipe = recipe.with_changes(model=chosen)
                set_draft(project, recipe)
                save_draft(project, recipe, note=f"Model: {chosen.describe()}")
                st.rerun()
            except StudioError as exc:
                st.error(str(exc))

st.subheader("Model card")
backend = ensure_backend(source, key="model")
if backend is None:
    st.stop()
card = getattr(backend, "card", None)
if card is None:
    st.write(f"**{backend.name}** served by {source.location}. Token counts are estimated (about 4 characters "
             "per token) because the endpoint's tokenizer is not available here.")
else:
    st.markdown(f"**{card.name}** · architecture `{card.architecture}` · weights `{card.dtype}` on `{card.device}` · "
                + ("chat template" if card.has_chat_template else "base model: plain 'Question: … Answer:' prompts"))
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{card.parameters / 1e6:,.0f} M")
    cols[1].metric("Context length", f"{card.context_length:,}", help="Tokens the model can read at once.")
    cols[2].metric("Weights in memory", human_bytes(card.weights_bytes))
    cols[3].metric("Estimated memory", human_bytes(card.estimated_memory_bytes),
                   help="Weights + a 4k-token KV cache + ~20% for activations.")
    st.caption(f"{card.layers} layers · hidden size {card.hidden_size} · vocabulary {card.vocab_size:,} · "
               f"KV cache {human_bytes(card.kv_cache_bytes_per_1k_tokens)} per 1,000 tokens")

st.subheader("Context window")
maximum = backend.context_length
value = st.number_input("Tokens to use per request", min_value=64, max_value=maximum,
                        value=min(recipe.context_window or maximum, maximum), step=256,
                        help=f"Up to {maximum:,} for this model. Smaller windows answer faster on a laptop; "
                             "few-shot examples are trimmed to fit.")
window = int(value)
if window != recipe.context_window:
    recipe = recipe.with_changes(context_window=window)
    set_draft(project, recipe)
if recipe.to_dict() != saved.to_dict():
    if st.button("Save to recipe", type="primary"):
        save_draft(project, recipe, note="Model settings")
        st.rerun()
