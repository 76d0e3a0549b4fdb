"""What makes a CPU training step fast, kept apart from the loop so each piece can be tested on its own.

* The output layer only at labeled (row, position) pairs: a 262k-token vocabulary makes Gemma's head the largest
  matmul of a small model, and most positions carry no label.
* A cross-entropy that works through the [tokens x vocabulary] logits in small row chunks, computing the loss and
  its gradient in one pass, and never holds an fp32 copy of them.
* Frozen linear weights stored once in bf16 when the trainer autocasts to bf16: autocast would otherwise cast
  every fp32 weight again at every forward.

The trainer imports this module when it starts, so torch is imported at the top here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CE_CHUNK_ROWS = 8  # rows turned into fp32 at once: 8 x 262144 x 4 bytes = 8 MB stays in cache


@dataclass(frozen=True)
class OutputHead:
    """The parts of a causal LM needed to run the decoder, then the head on chosen positions only."""
    decoder: object
    head: object
    softcap: float | None


def output_head(model) -> OutputHead | None:
    """The decoder and output layer of `model` (PEFT-wrapped or not), or None when the model's own forward must run.

    Prompt and prefix tuning change the input inside PEFT's forward, and some architectures scale their logits in
    ways the head alone would miss; those keep the ordinary forward.
    """
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return None
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = getattr(causal_lm, "lm_head", None)
    get_decoder = getattr(causal_lm, "get_decoder", None)
    config = getattr(causal_lm, "config", None)
    if head is None or get_decoder is None or config is None:
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, name, None) not in (None, 1, 1.0) for name in ("logit_scale", "logits_scaling")):
        return None
    decoder = get_decoder()
    if decoder is None or decoder is causal_lm:
        return None
    return OutputHead(decoder, head, getattr(text_config, "final_logit_softcapping", None))


def labeled_logits(parts: OutputHead, batch: dict):
    """(logits at the labeled positions [n, vocab], their targets [n]) for a batch with -100 on unlabeled tokens."""
    hidden = parts.decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    picked = hidden[:, :-1][keep]  # position t predicts token t + 1
    logits = parts.head(picked)
    if parts.softcap:
        logits = torch.tanh(logits / parts.softcap) * parts.softcap
    return logits, targets[keep]


def summed_cross_entropy(logits, targets, chunk_rows: int = CE_CHUNK_ROWS):
    """Summed cross-entropy in fp32, computed chunk by chunk; the gradient keeps the logits' dtype."""
    return _ChunkedCrossEntropy.apply(logits, targets, chunk_rows)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and, in the same pass over each chunk, the gradient (softmax minus one-hot), so
    the 262k-wide rows are read once; backward only scales it."""

    @staticmethod
    def forward(ctx, logits, targets, chunk_rows):
        grad = torch.empty_like(logits)
        loss = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, logits.shape[0], chunk_rows):
            end = start + chunk_rows
            chunk_targets = targets[start:end]
            target_logits = logits[start:end].gather(1, chunk_targets[:, None]).float()
            probs = logits[start:end].to(torch.float32, copy=True)  # fp32 logits must not be changed in place
            peak = probs.amax(-1, keepdim=True)
            probs.sub_(peak).exp_()
            total = probs.sum(-1, keepdim=True)
            loss += (peak + total.log() - target_logits).sum()
            probs.div_(total)
            probs[torch.arange(probs.shape[0], device=probs.device), chunk_targets] -= 1.0
            grad[start:end] = probs
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output.to(grad.dtype)), None, None


def store_frozen_in_bf16(model) -> int:
    """Keep every frozen linear weight (and bias) in bf16; returns how many tensors changed.

    A tied output head shares its weight with the input embedding, which stays fp32 (the embedding feeds the fp32
    residual stream); the head gets its own frozen bf16 copy instead. Trainable tensors are never touched.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    embeddings = causal_lm.get_input_embeddings() if hasattr(causal_lm, "get_input_embeddings") else None
    embedding_weight = getattr(embeddings, "weight", None)
    changed = 0
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        for name in ("weight", "bias"):
            tensor = getattr(module, name, None)
            if tensor is None or tensor.requires_grad or tensor.dtype != torch.float32:
                continue
            if tensor is embedding_weight:  # the tied head: its own copy, the embedding keeps fp32
                setattr(module, name, nn.Parameter(tensor.detach().to(torch.bfloat16), requires_grad=False))
            else:
                tensor.data = tensor.data.to(torch.bfloat16)
            changed += 1
    return changed
