"""Loading a model at fp32 / bf16 / int8 / nf4 for the quantization comparison, on tiny random models.

Closeness to fp32 is measured on the logits of one prompt: the cosine of each position's logits and the share of
positions whose top-1 token agrees. A model with other weights fails both (checked below), so the check can fail.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from core.errors import ModelLoadError, StudioError, TrainingError
from core.models import quantize, registry
from core.models.generation import GenerationSettings
from core.models.base import CompletionLabels
from core.models.source import ModelSource

ARCHS = ("llama", "gemma3", "phi")
CPU_PRECISIONS = ("fp32", "bf16", "int8")
PROMPT = ("The quick brown fox jumps over the lazy dog. Question: how do I reset my password? Answer: open the "
          "settings page. Xin chào, bạn có khỏe không?")
MIN_COSINE = 0.99      # every position; int8 and bf16 measure >= 0.999 on these models
MIN_TOP1 = 0.85        # share of positions with the same top-1 token; measured >= 0.97
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=6)


def _ids(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))(PROMPT, return_tensors="pt")["input_ids"]


def _logits(model, ids):
    with torch.no_grad():
        return model(ids.to(model.device)).logits.float()[0].cpu()


def closeness(logits, reference) -> tuple[float, float]:
    """(lowest per-position cosine, top-1 agreement) of two [positions, vocab] logit tables."""
    cosine = torch.nn.functional.cosine_similarity(logits, reference, dim=-1).min().item()
    agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    return cosine, agree


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """fp32 logits of PROMPT per architecture, computed once."""
    cache = {}

    def make(arch):
        if arch not in cache:
            folder = tiny_model_dir(arch)
            cache[arch] = _logits(quantize.load_at_precision(folder, "fp32", device="cpu"), _ids(folder))
        return cache[arch]

    return make


@pytest.fixture(scope="module")
def linear_heavy_dir(tmp_path_factory, tiny_model_dir):
    """A tiny llama whose weights are mostly linear layers (wide, 4 blocks, small tied vocabulary)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir("llama")))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(7)
    folder = tmp_path_factory.mktemp("tiny-linear-heavy")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --- what works here -------------------------------------------------------------------------------------------

def test_every_precision_has_a_label_and_help():
    assert quantize.PRECISIONS == ("fp32", "bf16", "int8", "nf4")
    for precision in quantize.PRECISIONS:
        assert quantize.PRECISION_LABELS[precision].strip() and quantize.PRECISION_HELP[precision].strip()
    with pytest.raises(ModelLoadError, match="Unknown precision 'fp8'"):
        quantize.precision_support("fp8")


@pytest.mark.parametrize("flags, fragment", [
    ({"avx2", "avx512_bf16"}, "natively"),
    ({"avx2", "amx_bf16"}, "natively"),
    ({"avx2"}, "emulated (no avx512_bf16 or amx_bf16)"),
    (None, "may be emulated"),
])
def test_bf16_always_works_on_a_cpu_and_says_when_it_is_emulated(monkeypatch, flags, fragment):
    monkeypatch.setattr(quantize, "_cpu_flags", lambda: flags)
    works, message = quantize.precision_support("bf16", "cpu")
    assert works and fragment in message


def test_support_on_this_cpu():
    assert quantize.precision_support("fp32") == (True, "Full precision works everywhere.")
    works, message = quantize.precision_support("int8", "cpu")
    assert works, message
    works, message = quantize.precision_support("nf4", "cpu")
    assert not works and message.startswith("4-bit needs a CUDA GPU")
    if not torch.cuda.is_available():
        assert quantize.precision_support("bf16", "cuda")[0] is False


def test_int8_uses_torch_ao_dynamic_quantization_which_still_works_in_this_torch():
    """torch.ao.quantization is deprecated in favour of torchao; the day a torch release removes it this fails and
    quantize._quantize_dynamic should move to torchao's int8 dynamic-activation / int8-weight config."""
    works, detail = quantize.int8_probe()
    assert works, detail
    assert detail in quantize.INT8_ENGINES


def test_int8_says_why_without_a_quantization_engine(monkeypatch):
    monkeypatch.setattr(quantize, "_int8_engine", lambda: None)
    quantize.int8_probe.cache_clear()
    try:
        works, message = quantize.precision_support("int8", "cpu")
    finally:
        quantize.int8_probe.cache_clear()
    assert not works and "does not work with this PyTorch build" in message and "engine" in message


def test_quantizing_does_not_leak_torch_deprecation_warnings(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("llama")), dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize.quantize_model(model, "int8")
    assert [str(w.message) for w in caught if "quantiz" in str(w.message)] == []


# --- loading, generating and staying close to fp32 ---------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("precision", CPU_PRECISIONS)
def test_each_precision_loads_generates_and_stays_close_to_fp32(arch, precision, tiny_model_dir, reference):
    folder = tiny_model_dir(arch)
    model = quantize.load_at_precision(folder, precision)
    assert quantize.precision_of(model) == precision
    assert not model.training
    ids = _ids(folder)
    generated = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert generated.shape[1] > ids.shape[1]
    cosine, agree = closeness(_logits(model, ids), reference(arch))
    assert cosine > MIN_COSINE and agree >= MIN_TOP1, (cosine, agree)


def test_the_closeness_check_fails_for_a_different_model(tiny_model_dir, reference):
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("llama")), dtype=torch.float32)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(torch.randn_like(param) * param.std().clamp(min=0.02))  # another model of the same shape
    cosine, agree = closeness(_logits(other, _ids(tiny_model_dir("llama"))), reference("llama"))
    assert cosine < MIN_COSINE and agree < MIN_TOP1, (cosine, agree)


def test_int8_keeps_the_output_head_in_float(tiny_model_dir):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    model = quantize.load_at_precision(tiny_model_dir("phi"), "int8")
    quantized = {name for name, module in model.named_modules() if isinstance(module, DynamicLinear)}
    plain = {name for name, module in model.named_modules() if type(module) is torch.nn.Linear}
    assert plain == {"lm_head"}
    assert quantized and all(".layers." in name for name in quantized)


def test_nf4_on_a_cpu_is_refused_with_the_reason(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="4-bit needs a CUDA GPU"):
        quantize.load_at_precision(tiny_model_dir("llama"), "nf4", device="cpu")
    with pytest.raises(ModelLoadError, match="load_at_precision"):
        quantize.quantize_model(torch.nn.Linear(2, 2), "nf4")


# --- memory ---------------------------------------------------------------------------------------------------

def _linear_weights(model) -> list[torch.nn.Linear]:
    """The nn.Linear layers int8 quantizes (all but the output head)."""
    head = model.get_output_embeddings()
    return [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]


def expected_bytes(fp32_model) -> dict[str, tuple[int, int]]:
    """(low, high) bytes per precision, from the fp32 model's shapes: every weight counted once (tied ones too);
    int8 linear weights take 1 byte each plus at most 16 bytes per output row (a float64 scale and an int64 zero
    point per channel); their biases stay fp32."""
    params = {id(p): p for p in fp32_model.parameters()}
    buffers = {id(b): b for b in fp32_model.buffers()}
    fp32 = sum(p.numel() * 4 for p in params.values()) + sum(b.numel() * b.element_size() for b in buffers.values())
    linear = _linear_weights(fp32_model)
    weight_elements = sum(m.weight.numel() for m in linear)
    int8 = fp32 - 3 * weight_elements
    rows = sum(m.out_features for m in linear)
    float_buffers = sum(b.numel() * b.element_size() for b in buffers.values() if b.is_floating_point())
    bf16 = fp32 // 2
    return {"fp32": (fp32, fp32), "bf16": (bf16 - float_buffers, bf16 + float_buffers),
            "int8": (int8, int8 + 16 * (rows + len(linear)))}


def _measure(folder) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    measured = {p: quantize.model_memory_bytes(quantize.load_at_precision(folder, p)) for p in CPU_PRECISIONS}
    return measured, expected_bytes(quantize.load_at_precision(folder, "fp32"))


@pytest.mark.parametrize("arch", ARCHS)
def test_memory_matches_what_the_shapes_say(arch, tiny_model_dir):
    measured, expected = _measure(tiny_model_dir(arch))
    for precision, (low, high) in expected.items():
        assert low <= measured[precision] <= high, (precision, measured, expected)
    # These tiny models are mostly embeddings (600-token vocabulary x 32), which int8 leaves in fp32.
    assert measured["fp32"] > measured["int8"] and measured["fp32"] > measured["bf16"]


def test_memory_order_on_a_linear_heavy_model(linear_heavy_dir):
    measured, expected = _measure(linear_heavy_dir)
    assert measured["fp32"] > measured["bf16"] > measured["int8"]
    assert measured["int8"] <= 0.40 * measured["fp32"], measured
    assert expected["int8"][0] <= measured["int8"] <= expected["int8"][1]


def test_int8_linear_layers_take_about_a_quarter_of_their_fp32_memory(linear_heavy_dir):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    fp32 = quantize.load_at_precision(linear_heavy_dir, "fp32")
    int8 = quantize.load_at_precision(linear_heavy_dir, "int8")
    before = sum(quantize.model_memory_bytes(m) for m in _linear_weights(fp32))
    layers = [m for m in int8.modules() if isinstance(m, DynamicLinear)]
    after = sum(quantize.model_memory_bytes(m) for m in layers)
    assert len(layers) == len(_linear_weights(fp32))
    assert 0.25 <= after / before < 0.27, after / before  # 1 byte per weight + per-row scale and zero point


def test_memory_counts_tied_weights_once(tiny_model_dir):
    model = quantize.load_at_precision(tiny_model_dir("gemma3"), "fp32")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    unique = {id(p): p for p in model.parameters()}.values()
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert quantize.model_memory_bytes(model) == sum(p.numel() * 4 for p in unique) + buffers


def test_parameter_count_sees_the_quantized_weights(tiny_model_dir):
    fp32 = quantize.load_at_precision(tiny_model_dir("llama"), "fp32")
    int8 = quantize.load_at_precision(tiny_model_dir("llama"), "int8")
    assert sum(p.numel() for p in int8.parameters()) < quantize.parameter_count(int8)
    assert quantize.parameter_count(int8) == quantize.parameter_count(fp32) == sum(p.numel() for p in fp32.parameters())


# --- adapters -------------------------------------------------------------------------------------------------

def make_lora_adapter(base_folder, destination, name="tiny lora"):
    """A registered-looking LoRA adapter folder with non-zero weights (so it changes the output)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.models.adapters import folder_fingerprint

    model = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    torch.manual_seed(3)
    tuned = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for param_name, param in tuned.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.5)
    tuned.save_pretrained(str(destination))
    (destination / "adapter.json").write_text(json.dumps({
        "id": destination.name, "name": name, "format": "peft", "config": {"method": "lora"},
        "base_model": {"kind": "local", "location": str(base_folder)},
        "base_fingerprint": folder_fingerprint(base_folder)}))
    return destination


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dir, tmp_path_factory):
    return make_lora_adapter(tiny_model_dir("llama"), tmp_path_factory.mktemp("adapters") / "lora-1")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_an_adapter_is_merged_before_quantizing(precision, tiny_model_dir, lora_dir, reference):
    folder = tiny_model_dir("llama")
    ids = _ids(folder)
    tuned_fp32 = _logits(quantize.load_at_precision(folder, "fp32", lora_dir), ids)
    tuned = _logits(quantize.load_at_precision(folder, precision, lora_dir), ids)
    assert closeness(tuned_fp32, reference("llama"))[0] < MIN_COSINE  # the adapter changes the model
    cosine, agree = closeness(tuned, tuned_fp32)
    assert cosine > MIN_COSINE and agree >= MIN_TOP1, (cosine, agree)


def test_an_adapter_for_another_base_is_refused(tiny_model_dir, lora_dir):
    with pytest.raises(TrainingError, match="different base model"):
        quantize.load_at_precision(tiny_model_dir("phi"), "int8", lora_dir)


# --- the registry ---------------------------------------------------------------------------------------------

@pytest.fixture
def local_source(tiny_model_dir):
    source = ModelSource(kind="local", location=str(tiny_model_dir("gemma3")))
    registry.forget_backend(source)
    yield source
    registry.forget_backend(source)


def test_the_registry_keeps_precisions_apart(local_source):
    base = registry.get_backend(local_source)
    int8 = registry.get_backend(local_source, precision="int8")
    assert int8 is not base and base.precision == "fp32" and int8.precision == "int8"
    assert registry.get_backend(local_source, precision="int8") is int8  # loaded once
    assert registry.peek_backend(local_source, precision="int8") is int8
    assert registry.get_backend(local_source, precision="fp32") is base  # the default precision is the default copy
    assert int8.card.dtype == "int8" and int8.card.weights_bytes == quantize.model_memory_bytes(int8.model)
    assert int8.card.parameters == base.card.parameters
    assert int8.name.endswith("(int8)")


def test_the_registry_keeps_one_precision_variant_besides_the_default(local_source):
    base = registry.get_backend(local_source)
    int8 = registry.get_backend(local_source, precision="int8")
    bf16 = registry.get_backend(local_source, precision="bf16")
    assert registry.peek_backend(local_source, precision="int8") is None  # evicted by the newer variant
    assert registry.peek_backend(local_source, precision="bf16") is bf16
    assert registry.peek_backend(local_source) is base  # the default copy stays
    assert int8 is not bf16
    registry.forget_backend(local_source)
    assert registry.peek_backend(local_source, precision="bf16") is None


def test_a_quantized_backend_renders_counts_and_streams_like_the_default(local_source):
    base = registry.get_backend(local_source)
    int8 = registry.get_backend(local_source, precision="int8")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = int8.render(messages, CompletionLabels())
    assert prompt == base.render(messages, CompletionLabels())
    assert int8.count_tokens(prompt) == base.count_tokens(prompt) > 0
    stream = int8.stream(prompt, GREEDY)
    text = "".join(stream)
    assert stream.error is None and stream.text == text.strip()
    assert stream.prompt_tokens == base.count_tokens(prompt) and 0 < stream.output_tokens <= GREEDY.max_new_tokens


def test_the_registry_applies_an_adapter_at_a_precision(tiny_model_dir, lora_dir):
    source = ModelSource(kind="local", location=str(tiny_model_dir("llama")))
    registry.forget_backend(source)
    try:
        tuned = registry.get_backend(source, adapter=lora_dir, precision="int8")
        assert tuned.precision == "int8" and "tiny lora" in tuned.name
        assert registry.peek_backend(source, adapter=lora_dir, precision="int8") is tuned
        assert registry.peek_backend(source, precision="int8") is None  # the base at int8 is another copy
        assert registry.peek_backend(source, adapter=lora_dir) is None  # and so is the fp32 tuned one
    finally:
        registry.forget_backend(source)


def test_the_registry_refuses_nf4_on_a_cpu(local_source):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="4-bit needs a CUDA GPU"):
        registry.get_backend(local_source, precision="nf4")
    assert registry.peek_backend(local_source, precision="nf4") is None


def test_an_endpoint_precision_is_set_by_its_server():
    source = ModelSource(kind="openai", location="http://127.0.0.1:9/v1", model_name="m")
    for precision in ("bf16", "int8", "nf4"):
        with pytest.raises(StudioError, match="set by its server"):
            registry.get_backend(source, precision=precision)
        assert registry.peek_backend(source, precision=precision) is None
    assert registry.peek_backend(source, precision="fp32") is None  # not loaded; no network needed to say so


# --- 4-bit on a GPU -------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nf4_on_cuda(linear_heavy_dir, tiny_model_dir, lora_dir):
    works, message = quantize.precision_support("nf4", "cuda")
    assert works, message
    ids = _ids(linear_heavy_dir)
    fp32 = quantize.load_at_precision(linear_heavy_dir, "fp32", device="cuda")
    bf16 = quantize.load_at_precision(linear_heavy_dir, "bf16", device="cuda")
    nf4 = quantize.load_at_precision(linear_heavy_dir, "nf4", device="cuda")
    assert quantize.precision_of(nf4) == "nf4"
    assert type(nf4.get_output_embeddings()).__name__ == "Linear"  # the head stays in float
    memory = {name: quantize.model_memory_bytes(m) for name, m in (("fp32", fp32), ("bf16", bf16), ("nf4", nf4))}
    assert memory["fp32"] > memory["bf16"] > memory["nf4"], memory
    assert quantize.parameter_count(nf4) == quantize.parameter_count(fp32)
    generated = nf4.generate(ids.to("cuda"), max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert generated.shape[1] > ids.shape[1]
    cosine, _ = closeness(_logits(nf4, ids), _logits(fp32, ids))
    assert cosine > 0.9, cosine
    # An adapter is merged in full precision, then the merged weights are quantized.
    folder = tiny_model_dir("llama")
    tuned_fp32 = _logits(quantize.load_at_precision(folder, "fp32", lora_dir, device="cuda"), _ids(folder))
    tuned_nf4 = _logits(quantize.load_at_precision(folder, "nf4", lora_dir, device="cuda"), _ids(folder))
    base_nf4 = _logits(quantize.load_at_precision(folder, "nf4", device="cuda"), _ids(folder))
    assert closeness(tuned_nf4, tuned_fp32)[0] > closeness(base_nf4, tuned_fp32)[0]


def test_cpu_features_come_from_torch_not_from_proc(monkeypatch):
    """macOS has no /proc/cpuinfo: features are read from PyTorch's own detection."""
    import platform

    from core.finetune.trainer import bf16_supported

    real_read_text = Path.read_text

    def no_proc(self, *args, **kwargs):
        if str(self).startswith("/proc"):
            raise OSError("no /proc here")
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc)
    flags = quantize._cpu_flags()
    assert flags is not None
    if platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in flags
    capabilities = torch.cpu.get_capabilities()
    native = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    assert quantize.cpu_has_native_bf16() is native
    assert bf16_supported("cpu") is native
