"""Fine-tuning methods: which weights train for each method (TrainConfig.method), what is saved to reproduce the
result, and how the base model is loaded for training.

torch, peft and transformers are imported inside functions so `core.finetune` stays light to import.
"""

from __future__ import annotations

import logging

from core.errors import TrainingError
from core.finetune.config import PEFT_METHODS, TrainConfig
from core.i18n import Msg

log = logging.getLogger(__name__)
_NOTE_ATTR = "studio_method_note"  # set on the model by apply_method, read by describe_trainable
EAGER_ATTENTION_MAX_LENGTH = 512
_ATTENTION_WORDS = ("attn", "attention")
_MLP_WORDS = ("mlp", "feed_forward", "ffn")
_SKIP_TOWERS = ("vision", "audio")  # multimodal checkpoints: only the language model gets adapters


def architecture(model) -> str:
    """The model family from its config, e.g. "llama", "gemma3_text", "phi" (works on PEFT-wrapped models too)."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "") or "unknown")


def _linear_layers(model) -> tuple[dict[str, list], dict[str, list]]:
    """Linear leaf name -> modules, split into attention and feed-forward by their parent's name.

    Scanning names rather than keeping a table per architecture lets unknown models work too.
    """
    from torch import nn

    kinds: tuple = (nn.Linear,)
    try:  # GPT-2 style models use transformers' Conv1D instead of nn.Linear
        from transformers.pytorch_utils import Conv1D

        kinds = (nn.Linear, Conv1D)
    except ImportError:  # pragma: no cover - transformers always has it today
        pass
    found: list[tuple[str, str, str, object]] = []  # (group, parent's last name, leaf name, module)
    for path, module in model.named_modules():
        if not isinstance(module, kinds) or any(word in path.lower() for word in _SKIP_TOWERS):
            continue
        parent, _, leaf = path.rpartition(".")
        parent_lower = parent.lower()
        group = ("attention" if any(word in parent_lower for word in _ATTENTION_WORDS) else
                 "mlp" if any(word in parent_lower for word in _MLP_WORDS) else None)
        if group:
            found.append((group, parent.rpartition(".")[2], leaf, module))
    # A leaf name used in both groups (GPT-2's c_proj) is qualified with its parent so PEFT's suffix match
    # picks the intended one ("attn.c_proj").
    shared = {f[2] for f in found if f[0] == "attention"} & {f[2] for f in found if f[0] == "mlp"}
    attention: dict[str, list] = {}
    mlp: dict[str, list] = {}
    for group, parent_name, leaf, module in found:
        name = f"{parent_name}.{leaf}" if leaf in shared else leaf
        (attention if group == "attention" else mlp).setdefault(name, []).append(module)
    return attention, mlp


def target_modules(model, preset: str) -> list[str] | str:
    """Module names for LoRA-style adapters: "attention", "attention_mlp" or "all_linear" (PEFT's "all-linear")."""
    if preset == "all_linear":
        return "all-linear"  # PEFT finds every linear layer itself and leaves out the output head
    attention, mlp = _linear_layers(model)
    if preset == "attention":
        names = list(attention)
    elif preset == "attention_mlp":
        names = list(attention) + list(mlp)
    else:
        raise TrainingError(Msg("Unknown target layers '{preset}'.", preset=preset))
    if not names:
        raise TrainingError(Msg("No {preset} layers were found in this {arch} model; choose all linear layers "
                                "instead.", preset=preset.replace("_", " + "), arch=architecture(model)))
    return names


def _ia3_modules(model) -> tuple[list[str], list[str]]:
    """(target, feedforward) for IA3: the key and value projections plus the feed-forward down projection."""
    attention, mlp = _linear_layers(model)
    leaf = {name: name.rpartition(".")[2].lower() for name in attention}
    kv = [n for n in attention if leaf[n] in ("k_proj", "v_proj", "key", "value", "k", "v", "wk", "wv")]
    if not kv:  # fused projections (c_attn, qkv_proj, query_key_value, Wqkv) carry k and v too
        kv = [n for n in attention if "qkv" in leaf[n] or leaf[n] in ("c_attn", "query_key_value")]
    # The down projection maps the wide hidden layer back to the model width: more inputs than outputs.
    down = [n for n, modules in mlp.items() if _in_out(modules[0])[0] > _in_out(modules[0])[1]]
    if not kv or not down:
        raise TrainingError(Msg("IA3 could not find the key/value and feed-forward layers of this {arch} model; "
                                "use LoRA instead.", arch=architecture(model)))
    return kv + down, down


def _in_out(module) -> tuple[int, int]:
    if hasattr(module, "in_features"):
        return module.in_features, module.out_features
    rows, cols = module.weight.shape  # Conv1D stores (in, out)
    return rows, cols


def _blocks(model):
    """The decoder blocks: the nn.ModuleList holding the most parameters (model.layers, transformer.h, ...)."""
    from torch import nn

    best, best_size = None, -1
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module):
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:  # by size, not length: an MoE expert list can be longer than the block list
                best, best_size = module, size
    if best is None:
        raise TrainingError(Msg("Partial fine-tuning could not find the blocks of this {arch} model; use LoRA "
                                "instead.", arch=architecture(model)))
    return best


def apply_method(model, config: TrainConfig, tokenizer=None, base_folder: str | None = None):
    """The model ready to train for config.method, with requires_grad on exactly the parameters meant to train."""
    method = config.method
    if method in PEFT_METHODS:
        return _apply_peft(model, config, tokenizer, base_folder)
    note = None
    if method == "full":
        for param in model.parameters():
            param.requires_grad_(True)
    elif method == "partial":
        blocks = _blocks(model)
        if config.trainable_blocks > len(blocks):
            raise TrainingError(Msg("This model has {count} blocks, so at most {count} can train; lower the "
                                    "number of trainable blocks.", count=len(blocks)))
        _freeze(model)
        for block in list(blocks)[-config.trainable_blocks:]:
            for param in block.parameters():
                param.requires_grad_(True)
    elif method == "bitfit":
        names = [name for name, _ in model.named_parameters() if name.endswith("bias")]
        if not names:  # Llama and Gemma have no biases: train the normalization scales instead
            names = [name for name, _ in model.named_parameters()
                     if "norm" in name.lower() and name.endswith("weight")]
            note = Msg("This model has no bias terms, so BitFit trains its normalization scales.")
        if not names:
            raise TrainingError(Msg("This model has neither bias terms nor normalization scales for BitFit; use "
                                    "LoRA instead."))
        _freeze(model)
        wanted = set(names)
        for name, param in model.named_parameters():
            if name in wanted:
                param.requires_grad_(True)
    else:  # pragma: no cover - TrainConfig validates the method
        raise TrainingError(Msg("Unknown fine-tuning method '{method}'.", method=method))
    setattr(model, _NOTE_ATTR, note)
    return model


def _freeze(model) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def _apply_peft(model, config: TrainConfig, tokenizer, base_folder):
    import peft

    method = config.method
    if method in ("lora", "qlora"):
        # A reward model's scoring head is new: SEQ_CLS makes PEFT train and save it whole beside the adapters.
        task = "SEQ_CLS" if config.objective == "reward" else "CAUSAL_LM"
        peft_config = peft.LoraConfig(task_type=task, r=config.lora_rank, lora_alpha=config.lora_alpha,
                                      lora_dropout=config.lora_dropout,
                                      target_modules=target_modules(model, config.target_preset),
                                      use_rslora=config.use_rslora, use_dora=config.use_dora)
    elif method == "ia3":
        targets, feedforward = _ia3_modules(model)
        peft_config = peft.IA3Config(task_type="CAUSAL_LM", target_modules=targets, feedforward_modules=feedforward)
    elif method == "prompt_tuning":
        text = config.prompt_init_text.strip()
        if text and base_folder:
            # PEFT loads the tokenizer itself from this path (AutoTokenizer) to turn the text into start vectors.
            peft_config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.virtual_tokens,
                                                  prompt_tuning_init=peft.PromptTuningInit.TEXT,
                                                  prompt_tuning_init_text=text, tokenizer_name_or_path=str(base_folder))
        else:
            if text and tokenizer is None:
                raise TrainingError(Msg("Prompt tuning needs the model's tokenizer to start from a text; leave the "
                                        "start text empty to start at random."))
            peft_config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.virtual_tokens,
                                                  prompt_tuning_init=peft.PromptTuningInit.RANDOM)
    elif method == "prefix_tuning":
        _refuse_stateful_for_prefix(model)
        peft_config = peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.virtual_tokens)
    else:  # pragma: no cover
        raise TrainingError(Msg("Unknown fine-tuning method '{method}'.", method=method))
    try:
        wrapped = peft.get_peft_model(model, peft_config)
    except ValueError as exc:  # e.g. target names that match nothing in this model
        raise TrainingError(Msg("{method} cannot be applied to this {arch} model: {reason}", method=method,
                                arch=architecture(model), reason=str(exc).splitlines()[0])) from exc
    if method == "prompt_tuning" and config.prompt_init_text.strip() and not base_folder:
        _init_prompt_from_text(wrapped, tokenizer, config.prompt_init_text.strip())
    if method == "prefix_tuning":
        from core.models.peft_compat import bridge_prefix_generation

        _check_prefix_is_used(wrapped)
        bridge_prefix_generation(wrapped)
    return wrapped


def _init_prompt_from_text(model, tokenizer, text: str) -> None:
    """Same as PEFT's TEXT init, from a tokenizer object instead of a folder: repeat/cut the text's token vectors."""
    import torch

    ids = tokenizer(text)["input_ids"] or [tokenizer.unk_token_id or 0]
    encoder = model.prompt_encoder[model.active_adapter]
    count = encoder.embedding.weight.shape[0]
    ids = (ids * (count // len(ids) + 1))[:count]
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        vectors = embeddings(torch.tensor(ids, device=embeddings.weight.device))
        encoder.embedding.weight.copy_(vectors.to(encoder.embedding.weight.dtype))


def _prefix_refusal(model) -> TrainingError:
    return TrainingError(Msg("Prefix tuning does not work with this {arch} model because it has no standard "
                             "attention cache; use prompt tuning or LoRA instead.", arch=architecture(model)))


def _refuse_stateful_for_prefix(model) -> None:
    """Prefix tuning writes its vectors into the key/value cache: recurrent and hybrid models (Mamba, Jamba,
    Qwen3-Next: transformers marks them stateful) and encoder-decoders have none to write into."""
    if getattr(model, "_is_stateful", False) or getattr(model.config, "is_encoder_decoder", False):
        raise _prefix_refusal(model)


def _check_prefix_is_used(wrapped) -> None:
    """A one-token forward with and without the (randomly started) prefix must differ; otherwise this model's
    forward ignores the cache PEFT hands it and training would silently learn nothing. Checked by behaviour, not by
    reading `forward`'s signature, whose argument names change between transformers releases."""
    import torch

    device = next(wrapped.parameters()).device
    token = torch.ones((1, 1), dtype=torch.long, device=device)
    try:
        with torch.no_grad():
            prefixed = wrapped(input_ids=token, attention_mask=torch.ones_like(token)).logits
            with wrapped.disable_adapter():
                plain = wrapped(input_ids=token, attention_mask=torch.ones_like(token)).logits
    except Exception as exc:  # any failure of the cache path means the method cannot train here
        log.info("prefix tuning forward failed: %s", exc)
        raise _prefix_refusal(wrapped.get_base_model()) from exc
    if torch.allclose(prefixed.float(), plain.float(), atol=1e-6):
        raise _prefix_refusal(wrapped.get_base_model())


def describe_trainable(model) -> dict:
    """How many parameters train, of how many, and a note on what the method chose (e.g. BitFit on norms)."""
    trainable = total = 0
    for param in model.parameters():
        count = param.numel()
        if hasattr(param, "quant_state"):  # 4-bit weights pack two values per byte
            count *= 2
        total += count
        trainable += count if param.requires_grad else 0
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0,
            "note": getattr(model, _NOTE_ATTR, None)}


def adapter_tensors(model, config: TrainConfig) -> dict:
    """What must be saved to rebuild the tuned model on top of its base (core.models.adapters loads it back).

    PEFT methods: the adapter's state dict. full / partial / bitfit: the trained parameters under their names in
    the plain model (detached live tensors: save them right away).
    """
    if config.method in PEFT_METHODS:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}


def qlora_support() -> tuple[bool, Msg]:
    """Whether QLoRA can run here: it needs a CUDA GPU and bitsandbytes. bitsandbytes 0.50.2 also runs 4-bit layers
    on a CPU (0.50.0 failed in eval mode), but a 4-bit base on a CPU is slower than LoRA on bf16 weights and is not
    verified end to end here, so the studio offers QLoRA with CUDA only."""
    import torch

    if not torch.cuda.is_available():
        return False, Msg("QLoRA needs a CUDA GPU, and none was found; use LoRA instead (same adapters, "
                          "full-precision base).")
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # a broken install raises more than ImportError
        return False, Msg("QLoRA needs the bitsandbytes package, which is missing; install it with 'pip install "
                          "bitsandbytes' or use LoRA instead.")
    return True, Msg("QLoRA is available on this GPU.")


def load_base_for_training(folder: str, config: TrainConfig, device: str):
    """The base model to fine-tune: 4-bit NF4 for QLoRA, otherwise fp32 weights on `device` (the trainer autocasts)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = str(folder)
    if config.method == "qlora":
        ok, message = qlora_support()
        if not ok:
            raise TrainingError(message)
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        target = device if str(device).startswith("cuda") else "cuda"
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization,
                                                     device_map={"": target})
        # Non-reentrant checkpointing: the reentrant default warns in torch 2.9+ and drops grads of frozen inputs.
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        # Eager attention on CPU beats SDPA's CPU kernels up to ~512 tokens (bench/README.md), but it keeps every
        # [heads x length x length] score matrix for backward; longer examples (passages in the prompt) use SDPA.
        attention = "eager" if str(device) == "cpu" and config.max_length <= EAGER_ATTENTION_MAX_LENGTH else None
        if config.objective == "reward":  # the base with a new scoring head, seeded like the adapters
            from core.finetune.reward import load_base

            torch.manual_seed(config.seed)
            model = load_base(folder, torch.float32, attention)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attention)
        model = model.to(device)
    model.config.use_cache = False  # the cache only costs memory while training
    return model


def model_for_training(folder: str, config: TrainConfig, tokenizer, device: str):
    """The base model loaded for `config.method`, with the method applied, ready for the trainer."""
    from core.finetune.speed import store_frozen_in_bf16
    from core.finetune.trainer import use_bf16

    import torch

    model = load_base_for_training(folder, config, device)
    torch.manual_seed(config.seed)  # the adapter's random start: the same config trains the same adapter
    model = apply_method(model, config, tokenizer, folder)
    if use_bf16(config, device) and config.method != "qlora":
        store_frozen_in_bf16(model)  # the caller owns this model: autocast need not re-cast frozen weights each step
    return model
