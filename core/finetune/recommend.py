"""Which fine-tuning method to start with, from the amount of data and the free memory.

A few explainable rules in the spirit of practitioner guides (LLaMA-Factory, Unsloth): little data -> few
parameters (or no fine-tuning at all), medium data -> LoRA, lots of data and memory -> full fine-tuning,
too little memory -> QLoRA on a CUDA GPU. The reason names the numbers that decided, for a non-ML reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.finetune.config import TrainConfig
from core.finetune.estimate import ModelShape, _estimate, estimate_memory, format_bytes
from core.i18n import Msg

FEW_EXAMPLES = 50  # below this a few-shot prompt usually matches fine-tuning, and adapters overfit quickly
MANY_EXAMPLES = 5000  # above this full fine-tuning (or a high-rank LoRA) has enough data to use its capacity
SMALL_BATCH = {"batch_size": 1, "grad_accum": 4}  # same effective batch as the default 4, a quarter of activations


def fit_batch_to_memory(config: TrainConfig, shape: ModelShape, seq_len: int, available_bytes: int | None,
                        device: str = "cpu") -> TrainConfig:
    """The config with half the batch and twice the gradient accumulation, as often as it takes for the estimate
    to fit the free memory: an update still averages as many examples, while activations, most of the memory at
    long prompts, shrink with the batch. Unchanged when the free memory is unknown or it already fits. A
    preference pair counts as its two sequences (the estimate counts them)."""
    def needs(candidate: TrainConfig) -> int:
        return estimate_memory(shape, candidate, seq_len, device, available_bytes).total

    while available_bytes is not None and config.batch_size > 1 and needs(config) > available_bytes:
        config = config.with_changes(batch_size=config.batch_size // 2, grad_accum=config.grad_accum * 2)
    return config


@dataclass(frozen=True)
class Recommendation:
    method: str
    reason: Msg
    changes: dict = field(default_factory=dict)  # suggested TrainConfig field changes besides the method


def recommend(n_examples: int, shape: ModelShape, available_bytes: int | None, has_cuda: bool,
              seq_len: int = 512) -> Recommendation:
    """The method to try first. available_bytes None = unknown free memory (then nothing is ruled out by it)."""
    device = "cuda" if has_cuda else "cpu"
    free = format_bytes(available_bytes) if available_bytes is not None else ""

    def estimate(method: str, **changes):
        # No detection here: the caller says how much is free, so the advice is repeatable (and testable).
        return _estimate(shape, TrainConfig(method=method, **changes), seq_len, device, available_bytes)

    lora = estimate("lora")
    if not lora.fits:
        return _too_big(lora, estimate, has_cuda, free)

    if n_examples < FEW_EXAMPLES:
        return Recommendation("ia3", Msg(
            "You have only {n} examples: a prompt that shows a few of them (few-shot) will likely work as well as "
            "fine-tuning. If you fine-tune anyway, IA3 trains the fewest weights, so it overfits least, and more "
            "epochs make up for the small data.", n=n_examples), {"epochs": 10, "learning_rate": 3e-3})

    if n_examples <= MANY_EXAMPLES:
        rank = 8 if n_examples < 1000 else 16
        need = format_bytes(estimate("lora", lora_rank=rank).total)
        changes = {"lora_rank": rank, "lora_alpha": 2 * rank, "target_preset": "all_linear",
                   "epochs": 5 if n_examples < 500 else 3}
        if free:
            reason = Msg("You have {n} examples and {free} free: LoRA (rank {rank}) on all linear layers learns a "
                         "task well from this much data, trains fast and needs about {need}.",
                         n=n_examples, free=free, rank=rank, need=need)
        else:
            reason = Msg("You have {n} examples: LoRA (rank {rank}) on all linear layers learns a task well from "
                         "this much data, trains fast and needs about {need}.", n=n_examples, rank=rank, need=need)
        return Recommendation("lora", reason, changes)

    full = estimate("full")
    if available_bytes is not None and full.fits:
        # Full fine-tuning moves every weight, so it needs a learning rate ~10x below LoRA's default.
        return Recommendation("full", Msg(
            "You have {n} examples and {free} free, enough for full fine-tuning (about {need}): with this much "
            "data, updating every weight gives the best quality. It uses a lower learning rate than LoRA.",
            n=n_examples, free=free, need=format_bytes(full.total)), {"learning_rate": 2e-5})
    rank = 32 if n_examples <= 20000 else 64
    need = format_bytes(estimate("lora", lora_rank=rank).total)
    changes = {"lora_rank": rank, "lora_alpha": 2 * rank, "target_preset": "all_linear"}
    if free:
        reason = Msg("You have {n} examples, but full fine-tuning needs about {full} and only {free} is free: LoRA "
                     "with a higher rank ({rank}) gives more capacity for this much data in about {need}.",
                     n=n_examples, full=format_bytes(full.total), free=free, rank=rank, need=need)
    else:
        reason = Msg("You have {n} examples: LoRA with a higher rank ({rank}) gives more capacity for this much "
                     "data in about {need}; full fine-tuning would need about {full}, and the free memory is "
                     "unknown.", n=n_examples, rank=rank, need=need, full=format_bytes(full.total))
    return Recommendation("lora", reason, changes)


def _too_big(lora, estimate, has_cuda: bool, free: str) -> Recommendation:
    """Even LoRA on fp32 weights does not fit: QLoRA on CUDA, else a smaller batch (bitsandbytes needs CUDA)."""
    need = format_bytes(lora.total)
    if has_cuda:
        qlora = estimate("qlora")
        if qlora.fits:
            return Recommendation("qlora", Msg(
                "With LoRA this model needs about {need} but only {free} is free on the GPU: QLoRA loads it in "
                "4 bits, so it fits in about {qneed}.", need=need, free=free, qneed=format_bytes(qlora.total)), {})
        small = estimate("qlora", **SMALL_BATCH)
        if small.fits:
            return Recommendation("qlora", Msg(
                "With LoRA this model needs about {need} but only {free} is free on the GPU: QLoRA loads it in "
                "4 bits, and with batch size 1 (4 accumulation steps) it fits in about {qneed}.",
                need=need, free=free, qneed=format_bytes(small.total)), dict(SMALL_BATCH))
        return Recommendation("qlora", Msg(
            "With LoRA this model needs about {need} but only {free} is free on the GPU, and even QLoRA with batch "
            "size 1 needs about {qneed}: pick a smaller model or a shorter max length.",
            need=need, free=free, qneed=format_bytes(small.total)), dict(SMALL_BATCH))
    small = estimate("lora", **SMALL_BATCH)
    if small.fits:
        return Recommendation("lora", Msg(
            "With LoRA this model needs about {need} but only {free} is free, and QLoRA needs a CUDA GPU: batch "
            "size 1 with 4 accumulation steps brings it to about {small}.",
            need=need, free=free, small=format_bytes(small.total)), dict(SMALL_BATCH))
    return Recommendation("lora", Msg(
        "This model needs about {small} to fine-tune even with LoRA and batch size 1, but only {free} is free, "
        "and QLoRA needs a CUDA GPU: pick a smaller model or a shorter max length.",
        small=format_bytes(small.total), free=free), dict(SMALL_BATCH))


PASSAGE_MAX_LENGTH = 1024  # three passages of about 200 tokens, the question, the answer and the prompt's own text


def fit_to_recipe(config: TrainConfig, retrieves: bool) -> TrainConfig:
    """Starting settings for a recipe whose retriever is on: each pair with and without the passages it finds, and a
    max length that holds them, so the adapter learns the prompts the assistant will send it. An adapter trained
    without passages and asked with them scored below the retriever alone on public articles (bench/README.md)."""
    if not retrieves or config.objective != "sft" or config.retrieval_context != "none":
        return config
    return config.with_changes(retrieval_context="mixed", max_length=max(config.max_length, PASSAGE_MAX_LENGTH))
