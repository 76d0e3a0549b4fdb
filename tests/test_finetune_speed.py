"""core.finetune.speed: the fast loss gives the same loss and gradients as the model's own forward, the chunked
cross-entropy matches torch's, and frozen weights stored in bf16 leave training intact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from core.finetune import methods, speed  # noqa: E402
from core.finetune.config import TrainConfig  # noqa: E402
from core.finetune.trainer import Trainer, batch_loss  # noqa: E402

TEXTS = ["The capital of France is Paris. How many days are in a week? Seven days.",
         "Thủ đô của Việt Nam là Hà Nội.", "Cats and dogs."]
NO_AUTOCAST = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
BF16_AUTOCAST = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731


@pytest.fixture(scope="module")
def tokenizer():
    from conftest import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    encoded = tokenizer(TEXTS, return_tensors="pt", padding=True)
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    labels[:, :4] = -100  # a prompt part without labels, as completion-only data has
    labels[2, :] = -100   # and a row whose answer was cut away entirely
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def _model(folder, tokenizer, method, **changes):
    config = TrainConfig(method=method, lora_rank=4, virtual_tokens=4, trainable_blocks=1, **changes)
    torch.manual_seed(0)
    model = methods.apply_method(methods.load_base_for_training(str(folder), config, "cpu"), config, tokenizer,
                                 str(folder))
    if method == "lora":  # PEFT starts lora_B at zero; give the adapter a real effect on the output
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.1)
    return model, config


def _loss_and_grads(model, batch, head, autocast=NO_AUTOCAST):
    model.zero_grad(set_to_none=True)
    loss, tokens = batch_loss(model, batch, 0, autocast, head)
    loss.backward()
    return float(loss.detach()), tokens, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi"])
@pytest.mark.parametrize("method", ["lora", "ia3", "bitfit", "full"])
def test_labeled_head_gives_the_forward_pass_loss_and_gradients(tiny_model_dir, tokenizer, batch, arch, method):
    model, _ = _model(tiny_model_dir(arch), tokenizer, method)
    head = speed.output_head(model)
    assert head is not None
    slow_loss, slow_tokens, slow_grads = _loss_and_grads(model, batch, None)
    fast_loss, fast_tokens, fast_grads = _loss_and_grads(model, batch, head)
    assert fast_tokens == slow_tokens == int((batch["labels"][:, 1:] != -100).sum())
    assert fast_loss == pytest.approx(slow_loss, rel=1e-5)
    assert fast_grads.keys() == slow_grads.keys() and fast_grads
    for name, grad in slow_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_logit_softcapping_is_applied_like_the_model_does(tiny_model_dir, tokenizer, batch):
    model, _ = _model(tiny_model_dir("gemma3"), tokenizer, "lora")
    model.get_base_model().config.final_logit_softcapping = 0.02  # tiny logits: only a tiny cap bends them
    head = speed.output_head(model)
    assert head.softcap == 0.02
    slow, _, _ = _loss_and_grads(model, batch, None)
    fast, _, _ = _loss_and_grads(model, batch, head)
    assert fast == pytest.approx(slow, rel=1e-5)
    model.get_base_model().config.final_logit_softcapping = None
    assert _loss_and_grads(model, batch, speed.output_head(model))[0] != pytest.approx(fast, rel=1e-5)


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
def test_soft_prompt_methods_keep_the_model_forward(tiny_model_dir, tokenizer, method):
    model, _ = _model(tiny_model_dir("llama"), tokenizer, method)
    assert speed.output_head(model) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_matches_torch(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(11, 50) * 3).to(dtype).requires_grad_()
    targets = torch.randint(0, 50, (11,))
    reference_logits = logits.detach().float().requires_grad_()
    expected = torch.nn.functional.cross_entropy(reference_logits, targets, reduction="sum")
    (expected * 0.5).backward()
    before = logits.detach().clone()
    loss = speed.summed_cross_entropy(logits, targets, chunk_rows=4)  # 4 + 4 + 3 rows
    assert torch.equal(logits.detach(), before)  # fp32 logits are not worked on in place
    (loss * 0.5).backward()
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert logits.grad.dtype == dtype
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(logits.grad.float(), reference_logits.grad, rtol=tolerance, atol=tolerance)


def test_frozen_weights_in_bf16_keep_the_embedding_and_trainable_tensors_in_fp32(tiny_model_dir, tokenizer, batch):
    model, _ = _model(tiny_model_dir("gemma3"), tokenizer, "lora")
    causal_lm = model.get_base_model()
    assert causal_lm.lm_head.weight is causal_lm.get_input_embeddings().weight  # tied, as Gemma ships
    with torch.no_grad():
        reference = float(batch_loss(model, batch, 0, BF16_AUTOCAST, speed.output_head(model))[0])
    embedding_before = causal_lm.get_input_embeddings().weight.detach().clone()

    changed = speed.store_frozen_in_bf16(model)

    frozen_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    assert changed >= len(frozen_linear) and all(m.weight.dtype == torch.bfloat16 for m in frozen_linear)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    embedding = causal_lm.get_input_embeddings().weight
    assert embedding.dtype == torch.float32 and torch.equal(embedding, embedding_before)
    assert causal_lm.lm_head.weight is not embedding
    torch.testing.assert_close(causal_lm.lm_head.weight.float(), embedding, rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        stored = float(batch_loss(model, batch, 0, BF16_AUTOCAST, speed.output_head(model))[0])
    assert stored == pytest.approx(reference, rel=1e-2)  # autocast computed in bf16 already


def _train_bf16(folder, tokenizer, run_dir, store_in_bf16: bool):
    from core.finetune.data import Example

    model, config = _model(folder, tokenizer, "lora")
    config = config.with_changes(precision="bf16", batch_size=2, epochs=20, learning_rate=1e-1, eval_every=10 ** 6)
    if store_in_bf16:
        speed.store_frozen_in_bf16(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    ids = [tokenizer(text)["input_ids"] for text in TEXTS[:2]] * 2
    examples = [Example(i, [-100] * 3 + i[3:], str(n)) for n, i in enumerate(ids)]
    losses = []
    trainer = Trainer(model, config, examples, [], tokenizer.pad_token_id, run_dir,
                      emit=lambda e: losses.append(e["loss"]) if e.get("type") == "step" else None)
    assert trainer.bf16 and trainer.head is not None
    trainer.run()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in frozen.items())
    return losses


def test_training_with_bf16_storage_follows_autocast_training(tiny_model_dir, tokenizer, tmp_path):
    folder = tiny_model_dir("gemma3")
    autocast_only = _train_bf16(folder, tokenizer, tmp_path / "a", store_in_bf16=False)
    stored = _train_bf16(folder, tokenizer, tmp_path / "b", store_in_bf16=True)
    assert stored[-1] < stored[0] - 0.05, stored
    assert stored == pytest.approx(autocast_only, rel=1e-3)
