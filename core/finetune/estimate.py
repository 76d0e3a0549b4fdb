"""Before a run starts: how many weights train, how much memory it needs, how many updates and how long.

Rough on purpose (within tens of percent): the point is to warn before an out-of-memory crash twenty minutes
in, not to predict the allocator. Needs only the model's config, never its weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

from core.finetune.config import TrainConfig
from core.i18n import Msg

# MLPs with two linears (up, down) instead of the gated three (gate, up, down) most recent models use.
UNGATED_MLP = {"phi", "gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "gpt_bigcode", "starcoder2", "codegen"}
# LayerNorm (weight + bias) rather than RMSNorm (weight only).
LAYERNORM = {"phi", "gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "gpt_bigcode", "starcoder2", "codegen"}
# Gemma 2/3 normalise before and after both attention and MLP, and Gemma 3 / Qwen 3 normalise q and k too.
FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text"}
QK_NORM = {"gemma3", "gemma3_text", "qwen3", "olmo2"}
QKV_BIAS = {"qwen2", "qwen2_moe"}  # biases on q, k, v but not on the output projection

ADAPTER_METHODS = ("lora", "qlora", "prompt_tuning", "prefix_tuning", "ia3")  # add new weights beside the model
QLORA_BYTES_PER_PARAM = 0.55  # 4-bit NF4 (0.5 byte) plus quantisation constants and the few layers kept in 16-bit
ANSWER_SHARE = 0.5  # share of tokens that are answer (label) tokens, where logits are kept for the loss


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model, without loading weights."""

    parameters: int  # total parameter count
    hidden_size: int
    layers: int
    vocab_size: int
    heads: int
    intermediate_size: int

    @classmethod
    def from_folder(cls, folder) -> "ModelShape":
        """From the config.json of a Hugging Face model folder."""
        import json
        from pathlib import Path

        return cls.from_config(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")))

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a transformers PretrainedConfig (or a config.json dict); multimodal configs use their text part."""
        config = _namespace(config)
        text = _namespace(getattr(config, "text_config", None)) or config
        hidden = int(text.hidden_size)
        layers = int(text.num_hidden_layers)
        vocab = int(text.vocab_size)
        heads = int(text.num_attention_heads)
        intermediate = int(getattr(text, "intermediate_size", None) or 4 * hidden)
        kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
        kind = str(getattr(text, "model_type", "") or getattr(config, "model_type", ""))
        layernorm = kind in LAYERNORM
        all_bias = kind in LAYERNORM  # the GPT-style families put biases on every linear
        attention_bias = all_bias or bool(getattr(text, "attention_bias", False))
        mlp_bias = all_bias or bool(getattr(text, "mlp_bias", False))

        q_out, kv_out = heads * head_dim, kv_heads * head_dim
        attention = hidden * (q_out + 2 * kv_out) + q_out * hidden
        if attention_bias:
            attention += q_out + 2 * kv_out + hidden
        elif kind in QKV_BIAS:
            attention += q_out + 2 * kv_out
        if kind in QK_NORM or getattr(text, "qk_layernorm", False):
            attention += 2 * head_dim * (2 if layernorm else 1)
        linears = 2 if kind in UNGATED_MLP else 3
        mlp = linears * hidden * intermediate
        if mlp_bias:
            mlp += (linears - 1) * intermediate + hidden
        mlp *= int(getattr(text, "num_local_experts", None) or 1)  # Mixtral-style experts each have a full MLP
        norm = hidden * (2 if layernorm else 1)
        # Phi runs attention and MLP in parallel after one norm; Gemma 2/3 wrap both in pre- and post-norms.
        norms_per_layer = 1 if kind == "phi" else 4 if kind in FOUR_NORMS else 2
        per_layer = attention + mlp + norms_per_layer * norm

        tied = getattr(text, "tie_word_embeddings", None)
        if tied is None:
            tied = getattr(config, "tie_word_embeddings", True)
        head = 0 if tied else vocab * hidden + (vocab if kind == "phi" else 0)  # Phi's head has a bias
        parameters = vocab * hidden + layers * per_layer + norm + head
        return cls(parameters=parameters, hidden_size=hidden, layers=layers, vocab_size=vocab, heads=heads,
                   intermediate_size=intermediate)

    @classmethod
    def from_model(cls, model) -> "ModelShape":
        """The exact count from a loaded model (shared, tied weights counted once)."""
        shape = cls.from_config(model.config)
        count = sum(p.numel() for p in model.parameters())
        return cls(parameters=int(count), hidden_size=shape.hidden_size, layers=shape.layers,
                   vocab_size=shape.vocab_size, heads=shape.heads, intermediate_size=shape.intermediate_size)


def _namespace(config):
    """config.json read as a dict works like a PretrainedConfig here."""
    if isinstance(config, dict):
        return SimpleNamespace(**config)
    return config


def trainable_parameters(shape: ModelShape, config: TrainConfig) -> int:
    """How many weights the optimizer updates for this method (approximate for the adapter methods)."""
    h, i, n = shape.hidden_size, shape.intermediate_size, shape.layers
    method = config.method
    if method in ("lora", "qlora"):
        r = config.lora_rank
        # Each adapted linear (in -> out) gets A (r x in) and B (out x r). Attention: q, k, v, o ~ hidden x hidden
        # (exact for Gemma 3 270M, close for GQA models); the MLP: gate, up (hidden -> inter), down (inter -> hidden).
        # attention_mlp and all_linear adapt the same linears in these families (the output head is never adapted).
        per_layer, outputs = 4 * r * (h + h), 4 * h
        if config.target_preset != "attention":
            per_layer, outputs = per_layer + 3 * r * (h + i), outputs + 2 * i + h
        if config.use_dora:
            per_layer += outputs  # DoRA adds one magnitude per output feature of each adapted linear
        return n * per_layer
    if method == "full":
        return shape.parameters
    if method == "partial":
        blocks = min(config.trainable_blocks, n)
        return max(shape.parameters - shape.vocab_size * h, 0) * blocks // max(n, 1)
    if method == "bitfit":
        return h * n * 4
    if method == "prompt_tuning":
        return config.virtual_tokens * h
    if method == "prefix_tuning":
        return config.virtual_tokens * n * 2 * h
    if method == "ia3":
        return n * (2 * h + i)  # scales on the key and value outputs and on the MLP's hidden activations
    raise ValueError(f"unknown method {method}")


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int  # bytes
    gradients: int
    optimizer: int
    activations: int
    total: int
    available: int | None  # free RAM (CPU) or free VRAM (CUDA), bytes
    device: str
    method: str = ""

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= self.available

    def warning(self) -> Msg | None:
        if self.fits:
            return None
        need, free = format_bytes(self.total), format_bytes(self.available or 0)
        if self.method in ("full", "partial"):
            return Msg("This run needs about {need} but only {free} is free; lower the batch size or max length, "
                       "or use LoRA.", need=need, free=free)
        if self.method == "lora" and self.device.startswith("cuda"):
            return Msg("This run needs about {need} but only {free} is free; lower the batch size or max length, "
                       "or use QLoRA.", need=need, free=free)
        return Msg("This run needs about {need} but only {free} is free; lower the batch size or max length, "
                   "or pick a smaller model.", need=need, free=free)


def sequences_per_example(objective: str) -> int:
    """A preference pair's two answers go through the model together (DPO, ORPO, reward): twice the sequences."""
    return 2 if objective in ("dpo", "orpo", "reward") else 1


def estimate_memory(shape: ModelShape, config: TrainConfig, seq_len: int, device: str = "cpu",
                    available: int | None = None) -> MemoryEstimate:
    """Peak training memory: weights + gradients + AdamW state + activations of one batch (a preference pair's two
    answers count as two sequences, `sequences_per_example`).

    Full fine-tuning in fp32 with AdamW costs 4 (weights) + 4 (gradients) + 8 (two Adam moments) = 16 bytes per
    parameter: 4x the fp32 weights, or 8x the same model's 16-bit weights (2 bytes/param). The rule of thumb
    "full fine-tuning needs roughly 12-20x the weights' memory" is measured against those 16-bit weights and
    includes activations, which for small models with big vocabularies (Gemma 3 270M: ~13x) weigh as much as
    the optimizer state; LoRA keeps only the weights and activations, a fraction of that.
    If `available` is None, the free memory of `device` is looked up.
    """
    if available is None:
        available = available_memory(device)
    return _estimate(shape, config, seq_len, device, available)


def _estimate(shape: ModelShape, config: TrainConfig, seq_len: int, device: str,
              available: int | None) -> MemoryEstimate:
    trainable = trainable_parameters(shape, config)
    added = trainable if config.method in ADAPTER_METHODS else 0  # other methods train the model's own weights
    if config.method == "qlora":
        weights = int(shape.parameters * QLORA_BYTES_PER_PARAM) + 4 * added
    else:
        weights = 4 * (shape.parameters + added)
    gradients, optimizer = 4 * trainable, 8 * trainable
    activations = activation_bytes(shape, config.batch_size * sequences_per_example(config.objective),
                                   seq_len + (config.virtual_tokens if config.method == "prompt_tuning" else 0))
    total = weights + gradients + optimizer + activations
    return MemoryEstimate(weights=weights, gradients=gradients, optimizer=optimizer, activations=activations,
                          total=total, available=available, device=device, method=config.method)


def activation_bytes(shape: ModelShape, batch: int, seq: int) -> int:
    """Activations kept for the backward pass under bf16 autocast, without gradient checkpointing.

    Per layer s*b*h*(34 + 5*a*s/h) bytes (Korthikanti et al., 2022: 34 for the linears, norms and dropout
    masks, 5*a*s/h for attention scores). Frozen-base methods keep them too, because gradients flow through
    every layer to reach the adapters. The output head keeps logits only at answer positions: bf16 logits plus
    fp32 log-softmax, 6 bytes per vocabulary entry.
    """
    h, a = shape.hidden_size, shape.heads
    per_layer = seq * batch * h * (34 + 5 * a * seq / h)
    head = batch * seq * ANSWER_SHARE * shape.vocab_size * 6
    return int(per_layer * shape.layers + head)


def available_memory(device: str) -> int | None:
    """Free RAM for the CPU, free VRAM for a CUDA device; None when it cannot be known (MPS, no driver)."""
    try:
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                return None
            index = torch.device(device).index
            return int(torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())[0])
        if device == "cpu":
            import psutil

            return int(psutil.virtual_memory().available)
    except Exception:  # an estimate must never stop the page; unknown just means no warning
        return None
    return None


def format_bytes(n: int) -> str:
    """512 MB, 1.2 GB (binary units, as task managers show them)."""
    n = max(int(n), 0)
    for unit, size in (("TB", 1024 ** 4), ("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= size * 1000 / 1024:  # 1000 MB reads better as "1.0 GB" than "1000 MB"
            return f"{n / size:.1f} {unit}" if size >= 1024 ** 3 else f"{n / size:.0f} {unit}"
    return f"{n} B"


def estimate_time(seconds_per_step: float, steps: int) -> float:
    return max(seconds_per_step, 0.0) * max(steps, 0)


def planned_steps(n_train: int, config: TrainConfig) -> int:
    """Optimizer updates for the whole run (the Trainer's count: a last partial accumulation still updates)."""
    if n_train <= 0:
        return 0
    batches = math.ceil(n_train / config.batch_size)
    steps = math.ceil(batches / config.grad_accum) * config.epochs
    return min(steps, config.max_steps) if config.max_steps > 0 else steps


def updates_within(max_minutes: float, seconds_per_step: float, eval_s: float = 0.0) -> int | None:
    """About how many updates a time limit leaves room for (None without a limit): the eval passes take their
    share of the time first."""
    if not max_minutes or seconds_per_step <= 0:
        return None
    return max(0, int((60 * max_minutes - eval_s) / seconds_per_step))


def format_duration(seconds: float) -> str:
    """45 s, 12 min, 1 h 20 min."""
    seconds = max(float(seconds), 0.0)
    if seconds < 59.5:
        return f"{max(round(seconds), 1)} s" if seconds > 0 else "0 s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
