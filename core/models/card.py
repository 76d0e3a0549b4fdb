"""A model card for the UI: what the model is and how much memory it needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

BYTES_PER_DTYPE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@dataclass(frozen=True)
class ModelCard:
    name: str
    architecture: str
    model_type: str
    parameters: int
    context_length: int
    dtype: str
    device: str
    layers: int
    hidden_size: int
    vocab_size: int
    has_chat_template: bool
    weights_bytes: int
    kv_cache_bytes_per_1k_tokens: int

    @property
    def estimated_memory_bytes(self) -> int:
        """Weights plus a 4k-token KV cache plus ~20% for activations and the runtime."""
        return int(self.weights_bytes * 1.2 + 4 * self.kv_cache_bytes_per_1k_tokens)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["estimated_memory_bytes"] = self.estimated_memory_bytes
        return data


QUANTIZED_COMPUTE_BYTES = {"int8": 4, "nf4": 2}  # activations (and so the KV cache): fp32 for int8, bf16 for nf4


def card_from_model(name: str, model, tokenizer, context_length: int, precision: str | None = None) -> ModelCard:
    config = model.config
    text_config = getattr(config, "text_config", None) or config
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    parameters = sum(p.numel() for p in model.parameters())
    weights_bytes = None
    if precision in QUANTIZED_COMPUTE_BYTES:  # quantized weights hide from parameters() or are packed
        from core.models.quantize import model_memory_bytes, parameter_count

        dtype, parameters, weights_bytes = precision, parameter_count(model), model_memory_bytes(model)
    layers = getattr(text_config, "num_hidden_layers", 0) or 0
    heads = getattr(text_config, "num_attention_heads", 1) or 1
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    hidden = getattr(text_config, "hidden_size", 0) or 0
    head_dim = getattr(text_config, "head_dim", None) or (hidden // heads if heads else 0)
    width = QUANTIZED_COMPUTE_BYTES.get(dtype) or BYTES_PER_DTYPE.get(dtype, 4)
    return ModelCard(
        name=name,
        architecture=(getattr(config, "architectures", None) or [type(model).__name__])[0],
        model_type=getattr(config, "model_type", "unknown"),
        parameters=parameters,
        context_length=context_length,
        dtype=dtype,
        device=str(next(model.parameters()).device),
        layers=layers,
        hidden_size=hidden,
        vocab_size=getattr(text_config, "vocab_size", 0) or 0,
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        weights_bytes=parameters * width if weights_bytes is None else weights_bytes,
        kv_cache_bytes_per_1k_tokens=2 * layers * kv_heads * head_dim * width * 1000,
    )


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
