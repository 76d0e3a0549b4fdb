"""Memory / time estimates and the method recommendation (core/finetune/estimate.py, recommend.py)."""

from __future__ import annotations

import pytest

from core.finetune.config import TrainConfig
from core.finetune.estimate import (MemoryEstimate, ModelShape, available_memory, estimate_memory, estimate_time,
                                    format_bytes, format_duration, planned_steps, trainable_parameters)
from core.finetune.recommend import recommend

GB = 1024 ** 3
# google/gemma-3-270m: hidden 640, 18 layers, vocab 262144, 4 heads (1 kv head, head_dim 256), MLP 2048, tied.
GEMMA_270M_CONFIG = dict(model_type="gemma3_text", hidden_size=640, num_hidden_layers=18, vocab_size=262144,
                         num_attention_heads=4, num_key_value_heads=1, head_dim=256, intermediate_size=2048,
                         tie_word_embeddings=True)
GEMMA_270M = ModelShape(parameters=268_098_176, hidden_size=640, layers=18, vocab_size=262144, heads=4,
                        intermediate_size=2048)
LLAMA_7B = ModelShape(parameters=6_738_415_616, hidden_size=4096, layers=32, vocab_size=32000, heads=32,
                      intermediate_size=11008)


# --- ModelShape ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi"])
def test_shape_from_config_matches_the_real_parameter_count(arch):
    from conftest import build_tiny_model, build_tokenizer

    model = build_tiny_model(arch, build_tokenizer())
    real = sum(p.numel() for p in model.parameters())
    shape = ModelShape.from_config(model.config)
    assert abs(shape.parameters - real) <= 0.05 * real
    assert (shape.hidden_size, shape.layers, shape.heads, shape.intermediate_size) == (32, 2, 2, 64)
    assert ModelShape.from_model(model).parameters == real


def test_gemma_270m_from_its_config_numbers():
    from transformers import Gemma3Config, Gemma3TextConfig

    text = {k: v for k, v in GEMMA_270M_CONFIG.items() if k != "model_type"}
    assert ModelShape.from_config(Gemma3TextConfig(**text)) == GEMMA_270M
    assert ModelShape.from_config(GEMMA_270M_CONFIG) == GEMMA_270M  # config.json read as a dict
    # A multimodal config is measured by its text part.
    assert ModelShape.from_config(Gemma3Config(text_config=text)).parameters == GEMMA_270M.parameters


@pytest.mark.parametrize("config,expected", [
    # r * (in + out) per adapted linear; Gemma 270M's q/k/v/o add up to exactly 8 * r * hidden.
    (dict(method="lora", lora_rank=16, target_preset="all_linear"), 18 * (16 * 5120 + 16 * 3 * (640 + 2048))),
    (dict(method="lora", lora_rank=16, target_preset="attention_mlp"), 18 * (16 * 5120 + 16 * 3 * (640 + 2048))),
    (dict(method="qlora", lora_rank=8, target_preset="attention"), 18 * 8 * 5120),
    (dict(method="lora", lora_rank=8, target_preset="attention", use_dora=True), 18 * (8 * 5120 + 4 * 640)),
    (dict(method="full"), 268_098_176),
    (dict(method="partial", trainable_blocks=2), (268_098_176 - 262144 * 640) * 2 // 18),
    (dict(method="partial", trainable_blocks=99), 268_098_176 - 262144 * 640),
    (dict(method="bitfit"), 640 * 18 * 4),
    (dict(method="prompt_tuning", virtual_tokens=20), 20 * 640),
    (dict(method="prefix_tuning", virtual_tokens=20), 20 * 18 * 2 * 640),
    (dict(method="ia3"), 18 * (2 * 640 + 2048)),
])
def test_trainable_parameters(config, expected):
    assert trainable_parameters(GEMMA_270M, TrainConfig(**config)) == expected


# --- memory --------------------------------------------------------------------------------------------------------

def test_full_fine_tuning_needs_over_12x_the_bf16_weights_and_lora_far_less():
    full = estimate_memory(GEMMA_270M, TrainConfig(method="full", batch_size=4), 512, available=64 * GB)
    lora = estimate_memory(GEMMA_270M, TrainConfig(method="lora", lora_rank=16, batch_size=4), 512,
                           available=64 * GB)
    bf16_weights = 2 * GEMMA_270M.parameters
    assert full.total >= 12 * bf16_weights
    assert (full.weights, full.gradients, full.optimizer) == (4 * 268_098_176, 4 * 268_098_176, 8 * 268_098_176)
    assert full.total == full.weights + full.gradients + full.optimizer + full.activations
    assert lora.gradients + lora.optimizer < 0.02 * (full.gradients + full.optimizer)
    assert lora.total < 0.6 * full.total
    qlora = estimate_memory(GEMMA_270M, TrainConfig(method="qlora"), 512, available=64 * GB)
    assert qlora.weights < lora.weights / 5 and qlora.total < lora.total


@pytest.mark.parametrize("batch,seq,bigger_batch,longer_seq", [(1, 128, 2, 256), (4, 512, 8, 1024)])
def test_activations_grow_with_batch_and_sequence(batch, seq, bigger_batch, longer_seq):
    def activations(b, s):
        return estimate_memory(GEMMA_270M, TrainConfig(batch_size=b), s, available=GB).activations

    base = activations(batch, seq)
    assert activations(bigger_batch, seq) == pytest.approx(2 * base, rel=0.01)
    assert activations(batch, longer_seq) > 2 * base  # attention scores grow with seq squared


def test_fits_and_warning_with_little_memory():
    small = estimate_memory(GEMMA_270M, TrainConfig(method="full"), 512, available=2 * GB)
    assert not small.fits
    warning = small.warning()
    assert warning.template.startswith("This run needs about {need} but only {free} is free")
    assert "2.0 GB" in warning and format_bytes(small.total) in warning and "LoRA" in warning
    roomy = estimate_memory(GEMMA_270M, TrainConfig(method="full"), 512, available=64 * GB)
    assert roomy.fits and roomy.warning() is None
    unknown = MemoryEstimate(weights=1, gradients=1, optimizer=1, activations=1, total=4, available=None,
                             device="mps")
    assert unknown.fits and unknown.warning() is None


def test_available_memory_is_detected_when_not_given():
    assert available_memory("cpu") > 0  # psutil is a dependency
    assert estimate_memory(GEMMA_270M, TrainConfig(), 64).available > 0
    assert available_memory("mps") is None  # unknown: no warning rather than a wrong one


# --- steps and formatting ------------------------------------------------------------------------------------------

def test_updates_within_a_time_limit():
    from core.finetune.estimate import updates_within

    assert updates_within(0, 2.0) is None  # no limit
    assert updates_within(10, 2.0) == 300
    assert updates_within(10, 2.0, eval_s=60.0) == 270  # the eval passes take their share first
    assert updates_within(1, 120.0, eval_s=90.0) == 0


@pytest.mark.parametrize("n_train,changes,expected", [
    (100, dict(batch_size=4, epochs=3), 75),
    (101, dict(batch_size=4, epochs=1), 26),  # a last partial batch still counts
    (100, dict(batch_size=4, grad_accum=4, epochs=3), 21),  # 25 batches -> 7 updates per epoch
    (100, dict(batch_size=4, epochs=3, max_steps=10), 10),
    (100, dict(batch_size=4, epochs=1, max_steps=1000), 25),
    (0, dict(), 0),
])
def test_planned_steps(n_train, changes, expected):
    assert planned_steps(n_train, TrainConfig(**changes)) == expected


@pytest.mark.parametrize("n,text", [
    (0, "0 B"), (512, "512 B"), (2048, "2 KB"), (512 * 1024 ** 2, "512 MB"), (int(1.2 * GB), "1.2 GB"),
    (int(9.5 * GB), "9.5 GB"), (1000 * 1024 ** 2, "1.0 GB"), (3 * 1024 * GB, "3.0 TB"),
])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("seconds,text", [
    (0, "0 s"), (0.3, "1 s"), (45, "45 s"), (720, "12 min"), (4800, "1 h 20 min"), (7200, "2 h"), (3599, "1 h"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_estimate_time():
    assert estimate_time(1.5, 80) == 120.0
    assert format_duration(estimate_time(1.5, planned_steps(100, TrainConfig(batch_size=4, epochs=3)))) == "2 min"


# --- recommendation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,shape,free_gb,cuda,method,changes,mentions", [
    # tiny data: few-shot is likely better; if training anyway the smallest adapter, more epochs
    (20, GEMMA_270M, 16, False, "ia3", {"epochs": 10}, ["20 examples", "few-shot"]),
    # medium data: LoRA, rank 8 on little data, 16 on more
    (120, GEMMA_270M, 23, True, "lora", {"lora_rank": 8, "target_preset": "all_linear"}, ["120 examples", "23.0 GB"]),
    (2000, GEMMA_270M, 23, False, "lora", {"lora_rank": 16}, ["2000 examples"]),
    # large data, lots of memory: full fine-tuning with a lower learning rate
    (20000, GEMMA_270M, 64, True, "full", {"learning_rate": 2e-5}, ["20000 examples", "64.0 GB"]),
    # large data, full does not fit (about 6.6 GB): LoRA with a higher rank
    (20000, GEMMA_270M, 5, False, "lora", {"lora_rank": 32}, ["6.6 GB", "5.0 GB"]),
    (50000, GEMMA_270M, 5, True, "lora", {"lora_rank": 64}, ["50000 examples"]),
    # a 7B model: fp32 LoRA needs ~39 GB; with CUDA QLoRA, without it never QLoRA
    (500, LLAMA_7B, 24, True, "qlora", {}, ["39.4 GB", "24.0 GB", "4 bits"]),
    (500, LLAMA_7B, 12, True, "qlora", {"batch_size": 1, "grad_accum": 4}, ["batch size 1"]),
    (500, LLAMA_7B, 24, False, "lora", {"batch_size": 1}, ["CUDA"]),
    (500, LLAMA_7B, 36, False, "lora", {"batch_size": 1, "grad_accum": 4}, ["CUDA"]),
    (20, LLAMA_7B, 8, False, "lora", {"batch_size": 1}, ["smaller model"]),
])
def test_recommend(n, shape, free_gb, cuda, method, changes, mentions):
    rec = recommend(n, shape, free_gb * GB, cuda)
    assert rec.method == method
    assert changes.items() <= rec.changes.items()
    for text in mentions:
        assert text in rec.reason
    assert rec.reason.template != str(rec.reason)  # a Msg with its numbers as parameters, translatable
    TrainConfig(method=rec.method, **rec.changes)  # the suggestion is a valid config


@pytest.mark.parametrize("free_gb", [None, 1, 4, 16, 64, 512])
@pytest.mark.parametrize("n", [10, 100, 10000])
def test_recommend_never_qlora_without_cuda(n, free_gb):
    for shape in (GEMMA_270M, LLAMA_7B):
        assert recommend(n, shape, None if free_gb is None else free_gb * GB, has_cuda=False).method != "qlora"


def test_recommend_with_unknown_memory_never_assumes_full_fits():
    rec = recommend(20000, GEMMA_270M, None, has_cuda=True)
    assert rec.method == "lora" and rec.changes["lora_rank"] == 32 and "unknown" in rec.reason


def test_a_recipe_that_retrieves_starts_training_with_and_without_its_passages():
    from core.finetune.recommend import PASSAGE_MAX_LENGTH, fit_to_recipe

    plain = TrainConfig()
    assert fit_to_recipe(plain, retrieves=False) == plain
    fitted = fit_to_recipe(plain, retrieves=True)
    assert fitted.retrieval_context == "mixed" and fitted.max_length == PASSAGE_MAX_LENGTH
    assert fit_to_recipe(plain.with_changes(max_length=4096), True).max_length == 4096  # never shortened
    assert fit_to_recipe(plain.with_changes(retrieval_context="always"), True).retrieval_context == "always"
    dpo = TrainConfig(objective="dpo")
    assert fit_to_recipe(dpo, True) == dpo  # preference pairs take no passages


def test_batches_shrink_with_more_accumulation_until_the_estimate_fits_the_free_memory():
    from core.finetune.recommend import fit_batch_to_memory
    from core.sample import SAMPLE_TRAINING

    sample = TrainConfig(**SAMPLE_TRAINING)  # 8 prompts of 1,024 tokens: about 13 GB by the estimate
    assert estimate_memory(GEMMA_270M, sample, 1024).total > 12 * GB
    laptop = fit_batch_to_memory(sample, GEMMA_270M, 1024, 6 * GB)
    assert (laptop.batch_size, laptop.grad_accum) == (2, 4)  # the same 8 examples in every update
    assert estimate_memory(GEMMA_270M, laptop, 1024).total <= 6 * GB
    assert fit_batch_to_memory(sample, GEMMA_270M, 1024, 64 * GB) == sample
    assert fit_batch_to_memory(sample, GEMMA_270M, 1024, None) == sample  # unknown: left as it is
    tiny = fit_batch_to_memory(sample, GEMMA_270M, 1024, GB // 2)  # cannot fit: one example a step at least
    assert (tiny.batch_size, tiny.grad_accum) == (1, 8)
    # a preference pair's two answers go through the model together: half the pairs fit in the same memory
    dpo = sample.with_changes(objective="dpo", retrieval_context="none")
    pairs = fit_batch_to_memory(dpo, GEMMA_270M, 1024, 6 * GB)
    assert (pairs.batch_size, pairs.grad_accum) == (1, 8)
