"""core.finetune.methods on tiny random models: each method trains exactly the weights it should, what it saves
rebuilds the tuned model, and QLoRA is only offered where it can run."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from core.errors import TrainingError  # noqa: E402
from core.finetune import methods  # noqa: E402
from core.finetune.config import TrainConfig  # noqa: E402
from core.models.adapters import apply_saved_weights  # noqa: E402

STEPS = 8
TEXTS = ["The capital of France is Paris. How many days are in a week? Seven days.",
         "Cats and dogs are popular pets. Thủ đô của Việt Nam là Hà Nội."]


def _bias(name):
    return name.endswith("bias")


def _norm(name):
    return "norm" in name and name.endswith("weight")


# What each method may change: a test on the parameter name in the trained (possibly PEFT-wrapped) model.
INTENDED = {
    "lora": lambda name, arch: "lora_" in name,
    "full": lambda name, arch: True,
    "partial": lambda name, arch: ".layers.1." in name,  # 2 blocks, trainable_blocks=1 -> the last one
    "bitfit": lambda name, arch: _bias(name) if arch == "phi" else _norm(name),
    "prompt_tuning": lambda name, arch: "prompt_encoder" in name,
    "prefix_tuning": lambda name, arch: "prompt_encoder" in name,
    "ia3": lambda name, arch: "ia3_l" in name,
}
SMALL = {"bitfit", "prompt_tuning", "prefix_tuning", "ia3"}  # few parameters: a larger step still moves the loss
CASES = [(arch, method, {}) for arch in ("llama", "gemma3", "phi") for method in INTENDED] + [
    ("llama", "lora", {"use_dora": True, "use_rslora": True, "target_preset": "attention_mlp"}),
    ("gemma3", "lora", {"target_preset": "attention"}),
    ("gemma3", "prompt_tuning", {"prompt_init_text": "Answer briefly and accurately."}),
]


def _config(method, **changes):
    base = dict(method=method, trainable_blocks=1, virtual_tokens=4, lora_rank=4, lora_dropout=0.0)
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def tokenizer():
    from conftest import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    encoded = tokenizer(TEXTS, return_tensors="pt", padding=True)
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def _load(folder, config):
    torch.manual_seed(0)
    return methods.load_base_for_training(str(folder), config, "cpu")


def _train(model, batch, lr, steps=STEPS):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def _snapshot(model):
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def _trained(folder, method, batch, tokenizer=None, **changes):
    config = _config(method, **changes)
    model = methods.apply_method(_load(folder, config), config, tokenizer, str(folder))
    _train(model, batch, 5e-2 if method in SMALL else 1e-2)
    return model, config


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("arch,method,changes", CASES,
                         ids=[f"{a}-{m}{'-' + '-'.join(c) if c else ''}" for a, m, c in CASES])
def test_method_trains_only_intended_weights(tiny_model_dir, tokenizer, batch, arch, method, changes):
    folder = tiny_model_dir(arch)
    config = _config(method, **changes)
    model = methods.apply_method(_load(folder, config), config, tokenizer, str(folder))
    before = _snapshot(model)
    intended = {name for name in before if INTENDED[method](name, arch)}
    assert intended, "the method should train something"
    assert {n for n, p in model.named_parameters() if p.requires_grad} == intended

    losses = _train(model, batch, 5e-2 if method in SMALL else 1e-2)

    assert losses[-1] < losses[0], losses
    after = dict(model.named_parameters())
    for name in set(before) - intended:
        assert torch.equal(after[name], before[name]), f"{name} should be frozen"
    changed = {name for name in intended if not torch.equal(after[name], before[name])}
    assert changed
    if method == "bitfit":
        assert all(_bias(n) for n in changed) if arch == "phi" else all(_norm(n) for n in changed)
    info = methods.describe_trainable(model)
    assert 0 < info["trainable"] <= info["total"] and info["share"] == info["trainable"] / info["total"]
    expect_note = method == "bitfit" and arch != "phi"
    assert (info["note"] is not None) == expect_note
    if expect_note:
        assert "normalization" in info["note"]


@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi"])
def test_prefix_tuning_generates_with_its_prefix(tiny_model_dir, tokenizer, batch, arch):
    """Prefix tuning lives in the KV cache, whose classes changed in transformers 5 (Gemma 3's sliding layers):
    generation must use the same prefix as the training forward pass."""
    folder = tiny_model_dir(arch)
    model, _ = _trained(folder, "prefix_tuning", batch, tokenizer)
    prompt = {"input_ids": batch["input_ids"][:1], "attention_mask": batch["attention_mask"][:1]}
    logits = _logits(model, prompt)
    base_logits = _logits(methods.load_base_for_training(str(folder), _config("full"), "cpu"), prompt)
    assert not torch.allclose(logits, base_logits, atol=1e-4)  # the prefix matters
    model.config.use_cache = True
    out = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert out[0, prompt["input_ids"].shape[1]].item() == logits[0, -1].argmax().item()


def test_prefix_tuning_refused_for_stateful_models(tiny_model_dir):
    model = _load(tiny_model_dir("llama"), _config("prefix_tuning"))
    model._is_stateful = True  # what transformers sets on Mamba / hybrid models
    with pytest.raises(TrainingError, match="Prefix tuning does not work"):
        methods.apply_method(model, _config("prefix_tuning"))


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_prompt_tuning_starts_from_text(tiny_model_dir, tokenizer, arch):
    folder = tiny_model_dir(arch)
    text = "Answer briefly."
    ids = tokenizer(text)["input_ids"]
    config = _config("prompt_tuning", virtual_tokens=7, prompt_init_text=text)
    from_folder = methods.apply_method(_load(folder, config), config, tokenizer, str(folder))
    from_tokenizer = methods.apply_method(_load(folder, config), config, tokenizer, None)
    embeddings = from_folder.get_input_embeddings()
    with torch.no_grad():
        expected = embeddings(torch.tensor((ids * 7)[:7]))
    for model in (from_folder, from_tokenizer):
        assert torch.allclose(model.prompt_encoder["default"].embedding.weight, expected)
    with pytest.raises(TrainingError):
        methods.apply_method(_load(folder, config), config, None, None)


TARGETS = {
    "llama": (["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"], ["down_proj"]),
    "gemma3": (["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"], ["down_proj"]),
    "phi": (["q_proj", "k_proj", "v_proj", "dense"], ["fc1", "fc2"], ["fc2"]),
}


@pytest.mark.parametrize("arch", list(TARGETS))
def test_target_module_presets(tiny_model_dir, arch):
    model = _load(tiny_model_dir(arch), _config("lora"))
    attention, mlp, down = TARGETS[arch]
    assert methods.architecture(model) == {"gemma3": "gemma3_text"}.get(arch, arch)
    assert methods.target_modules(model, "attention") == attention
    assert methods.target_modules(model, "attention_mlp") == attention + mlp
    assert methods.target_modules(model, "all_linear") == "all-linear"
    targets, feedforward = methods._ia3_modules(model)
    assert sorted(targets) == sorted(["k_proj", "v_proj"] + down) and feedforward == down


def test_gpt2_style_shared_names_are_qualified():
    """GPT-2 names both its attention output and its MLP output c_proj (Conv1D, not nn.Linear)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert methods.target_modules(model, "attention") == ["c_attn", "attn.c_proj"]
    assert methods.target_modules(model, "attention_mlp") == ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]
    assert methods._ia3_modules(model) == (["c_attn", "mlp.c_proj"], ["mlp.c_proj"])
    wrapped = methods.apply_method(model, _config("lora", target_preset="attention"))
    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in wrapped.named_parameters() if ".lora_A" in n}
    assert lora_modules == {"base_model.model.transformer.h.0.attn.c_attn", "base_model.model.transformer.h.0.attn.c_proj"}


def test_target_modules_none_found():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(TrainingError, match="No attention layers"):
        methods.target_modules(model, "attention")


def test_partial_with_too_many_blocks(tiny_model_dir):
    config = _config("partial", trainable_blocks=3)
    with pytest.raises(TrainingError, match="has 2 blocks"):
        methods.apply_method(_load(tiny_model_dir("llama"), config), config)


@pytest.mark.parametrize("arch,method", [("llama", "full"), ("gemma3", "full"), ("gemma3", "partial"),
                                         ("llama", "bitfit"), ("phi", "bitfit"), ("phi", "partial")])
def test_saved_weights_round_trip(tiny_model_dir, tokenizer, batch, tmp_path, arch, method):
    from safetensors.torch import load_file, save_file

    folder = tiny_model_dir(arch)
    model, config = _trained(folder, method, batch, tokenizer)
    tensors = methods.adapter_tensors(model, config)
    assert set(tensors) == {n for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, tmp_path / "weights.safetensors")  # tied weights (Gemma) must not appear twice
    restored = apply_saved_weights(_load(folder, config), load_file(tmp_path / "weights.safetensors"))
    fresh = _logits(_load(folder, config), batch)
    assert torch.allclose(_logits(restored, batch), _logits(model, batch), atol=1e-6)
    assert not torch.allclose(fresh, _logits(model, batch), atol=1e-4)


def test_saved_weights_must_match_the_model(tiny_model_dir):
    model = _load(tiny_model_dir("llama"), _config("full"))
    with pytest.raises(TrainingError, match="does not match"):
        apply_saved_weights(model, {"model.layers.9.mlp.up_proj.weight": torch.zeros(1)})
    with pytest.raises(TrainingError, match="does not match"):
        apply_saved_weights(model, {"model.norm.weight": torch.zeros(3)})


@pytest.mark.parametrize("arch,method", [("llama", "lora"), ("gemma3", "lora"), ("phi", "lora"),
                                         ("gemma3", "ia3"), ("gemma3", "prompt_tuning"),
                                         ("gemma3", "prefix_tuning")])
def test_peft_adapter_round_trip(tiny_model_dir, tokenizer, batch, tmp_path, arch, method):
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = tiny_model_dir(arch)
    model, config = _trained(folder, method, batch, tokenizer)
    tensors = methods.adapter_tensors(model, config)
    model.save_pretrained(tmp_path / "adapter")
    assert set(load_file(tmp_path / "adapter" / "adapter_model.safetensors")) == set(tensors)
    expected = _logits(model, batch)
    loaded = PeftModel.from_pretrained(_load(folder, config), tmp_path / "adapter")
    loaded.eval()
    assert torch.allclose(_logits(loaded, batch), expected, atol=1e-6)
    if method in ("lora", "ia3"):
        merged = loaded.merge_and_unload()
        assert torch.allclose(_logits(merged, batch), expected, atol=1e-4)


def test_load_base_for_training(tiny_model_dir):
    model = methods.load_base_for_training(str(tiny_model_dir("gemma3")), _config("full"), "cpu")
    assert model.config.use_cache is False
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_qlora_support_without_cuda(monkeypatch, tiny_model_dir):
    import sys

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, message = methods.qlora_support()
    assert not ok and "CUDA" in message and "LoRA" in message
    with pytest.raises(TrainingError, match="CUDA"):
        methods.load_base_for_training(str(tiny_model_dir("llama")), _config("qlora"), "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails
    ok, message = methods.qlora_support()
    assert not ok and "bitsandbytes" in message


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_qlora_on_cpu(tiny_model_dir, tokenizer, batch):
    """Records what 4-bit LoRA does on a CPU. With bitsandbytes 0.50 it loads and trains there (slow kernels);
    whatever happens, a machine without CUDA is never offered QLoRA."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = _config("qlora")
    trained = False
    try:
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("llama")), quantization_config=quantization,
                                                     device_map={"": "cpu"})
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
    except Exception:  # bitsandbytes builds without a CPU backend cannot even load
        model = None
    if model is not None:
        torch.manual_seed(0)
        model = methods.apply_method(model, config, tokenizer)
        before = _snapshot(model)
        losses = _train(model, batch, 1e-2, steps=4)
        after = dict(model.named_parameters())
        lora = [n for n in before if "lora_" in n]
        trained = (losses[-1] < losses[0] and all(not torch.equal(after[n], before[n]) for n in lora))
        assert all(torch.equal(after[n], before[n]) for n in before if "lora_" not in n)  # 4-bit base stays put
    if not torch.cuda.is_available():
        # Whether or not the CPU run trained (it does with bitsandbytes 0.50), QLoRA is offered only with CUDA.
        assert methods.qlora_support()[0] is False, f"trained on CPU: {trained}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_on_cuda(tiny_model_dir, tokenizer, batch):
    ok, message = methods.qlora_support()
    assert ok, message
    folder = tiny_model_dir("llama")
    config = _config("qlora")
    model = methods.load_base_for_training(str(folder), config, "cuda")
    assert getattr(model, "is_loaded_in_4bit", False)
    torch.manual_seed(0)
    model = methods.apply_method(model, config, tokenizer, str(folder))
    before = _snapshot(model)
    losses = _train(model, {k: v.to("cuda") for k, v in batch.items()}, 1e-2)
    after = dict(model.named_parameters())
    assert losses[-1] < losses[0], losses
    assert all(not torch.equal(after[n], before[n]) for n in before if "lora_" in n)
    assert all(torch.equal(after[n], before[n]) for n in before if "lora_" not in n)
    assert methods.describe_trainable(model)["share"] < 0.5


@pytest.mark.parametrize("max_length, expected", [(256, "eager"), (2048, "sdpa")])
def test_cpu_attention_follows_the_example_length(tiny_model_dir, max_length, expected):
    model = methods.load_base_for_training(str(tiny_model_dir("llama")), _config("lora", max_length=max_length), "cpu")
    assert model.config._attn_implementation == expected


def test_prefix_tuning_refused_when_the_forward_ignores_the_cache(tiny_model_dir, monkeypatch):
    """A model whose forward drops the cache PEFT passes (e.g. an argument renamed upstream) would train nothing:
    the behavioural check refuses it before training starts."""
    model = _load(tiny_model_dir("llama"), _config("prefix_tuning"))
    original = type(model).forward

    def forward_without_cache(self, *args, past_key_values=None, **kwargs):
        kwargs.pop("cache", None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", forward_without_cache)
    with pytest.raises(TrainingError, match="Prefix tuning does not work"):
        methods.apply_method(model, _config("prefix_tuning"))
