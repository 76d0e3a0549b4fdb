"""Preference tuning objectives for the studio's training loop: DPO, ORPO and KTO.

Why the studio's own loop and not TRL's DPOTrainer / KTOTrainer / ORPOTrainer: those are transformers Trainers with
their own checkpoints, data position and logging, and they tokenize prompts themselves (plain concatenation, or the
chat template only). The studio's runs must cancel at any step and resume from the run's checkpoint (trainer.py:
trainable tensors, optimizer, data position), write their progress as the same events the Fine-tune page and
`Run.events()` read, keep the CPU speed-ups of speed.py, and render every prompt exactly as inference does,
including the `Question:/Answer:` format of base models (preference_data.py). So the loop stays ours and only the
objective changes. The losses are a few lines each and follow TRL 1.16's trainers formula by formula (cited at
each); tests/test_preference.py checks the DPO loss and ORPO's odds-ratio term against TRL itself.

Reference log-probabilities (DPO, KTO) are those of the model before the first update, computed once when a run
starts and saved in the run folder, so a resumed run compares against the same reference (TRL's
`precompute_ref_log_probs`). Every method offered for preference tuning starts from the base model itself (LoRA's
B = 0, IA3's scales = 1; full, partial and BitFit change nothing before the first step), so no second copy of the
model is kept in memory; soft prompts, which change the model before the first step, are not offered.
"""

from __future__ import annotations

from core import atomic
from core.errors import TrainingError
from core.finetune import data as finetune_data
from core.i18n import Msg

REFERENCE = "reference.json"  # in the run folder: the starting model's log-probabilities of every example


# -- log-probabilities ------------------------------------------------------------------------------------------

def sequence_logps(trainer, examples: list):
    """(summed log-probability of each example's labeled tokens [n], labeled token counts [n], tokens processed).

    The output layer runs only at labeled positions and each sequence's log-probability is minus the studio's
    chunked cross-entropy over its tokens (speed.py): no fp32 copy of the [tokens x vocabulary] logits is kept,
    which matters with Gemma's 262k-token vocabulary."""
    import torch

    from core.finetune import speed

    batch = trainer.to_device(finetune_data.collate(examples, trainer.pad_id))
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    with trainer.autocast():
        if trainer.head is not None:
            logits, picked = speed.labeled_logits(trainer.head, batch)
        else:
            out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            logits, picked = out.logits[:, :-1][keep], targets[keep]
    counts = keep.sum(1)
    sums, start = [], 0
    for count in counts.tolist():  # labeled positions come row by row, so each sequence is one slice
        piece = slice(start, start + count)
        sums.append(-speed.summed_cross_entropy(logits[piece], picked[piece]) if count else logits.new_zeros(()))
        start += count
    return torch.stack(sums).float(), counts.float(), int(batch["attention_mask"].sum())


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2 (as TRL's ORPO computes it)."""
    import torch

    x = x.clamp(max=-1e-6)
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


# -- losses (per example; the loop sums them and averages over the update) -------------------------------------

def dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta: float):
    """DPO (Rafailov et al. 2023, eq. 7; TRL's loss_type="sigmoid"): -log σ(β·[(log π(c) - log π_ref(c)) -
    (log π(r) - log π_ref(r))]). Returns (losses, chosen rewards, rejected rewards), the rewards being
    β·log-ratios."""
    import torch.nn.functional as F

    chosen_rewards, rejected_rewards = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
    return -F.logsigmoid(chosen_rewards - rejected_rewards), chosen_rewards.detach(), rejected_rewards.detach()


def orpo_loss(chosen_mean, rejected_mean, weight: float):
    """ORPO (Hong et al. 2024, eqs. 4-7; TRL's ORPOTrainer): the chosen answer's negative mean token log-likelihood
    plus weight·(-log σ(log odds(c) - log odds(r))), odds(y) = p/(1-p) with p the mean-token probability. Returns
    (losses, chosen rewards, rejected rewards), the rewards being weight·mean log-likelihood as TRL logs them."""
    import torch.nn.functional as F

    log_odds = (chosen_mean - rejected_mean) - (log1mexp(chosen_mean) - log1mexp(rejected_mean))
    losses = -chosen_mean - weight * F.logsigmoid(log_odds)
    return losses, weight * chosen_mean.detach(), weight * rejected_mean.detach()


def kto_loss(logps, ref_logps, desirable, drift, beta: float, desirable_weight: float, undesirable_weight: float):
    """KTO (Ethayarajh et al. 2024, eq. 7; TRL's KTOTrainer): with r = log π(y) - log π_ref(y) and the drift z
    (an estimate of KL(π‖π_ref), clamped at 0 and not differentiated), a good answer costs w_d·(1 - σ(β(r - z))),
    a bad one w_u·(1 - σ(β(z - r))). Returns (losses, rewards β·r)."""
    import torch

    ratios = logps - ref_logps
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratios - drift)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (drift - ratios)))
    return torch.where(desirable, good, bad), beta * ratios.detach()


# -- objectives -------------------------------------------------------------------------------------------------

class PairObjective:
    """DPO or ORPO on preference pairs: one forward over the batch's chosen and rejected answers together."""

    stat_keys = ("pairs", "margin", "correct")

    def __init__(self, name: str, beta: float):
        self.name, self.beta = name, beta

    def length(self, pair) -> int:
        return max(len(pair.chosen.input_ids), len(pair.rejected.input_ids))

    def units(self, pairs: list) -> int:
        return len(pairs)

    def start(self, trainer) -> None:
        if self.name == "dpo":
            attach_reference(trainer, lambda pair: [pair.chosen, pair.rejected])

    def loss(self, trainer, pairs: list):
        n = len(pairs)
        logps, counts, tokens = sequence_logps(trainer, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        if self.name == "dpo":
            ref = reference_of(pairs, logps.device)
            losses, chosen_rewards, rejected_rewards = dpo_loss(logps[:n], logps[n:], ref[:, 0], ref[:, 1],
                                                                self.beta)
        else:
            means = logps / counts.clamp(min=1)
            losses, chosen_rewards, rejected_rewards = orpo_loss(means[:n], means[n:], self.beta)
        margins = chosen_rewards - rejected_rewards
        return losses.sum(), tokens, {"pairs": n, "margin": float(margins.sum()),
                                      "correct": float((margins > 0).sum())}

    def summary(self, sums: dict) -> dict:
        pairs = max(1.0, sums["pairs"])
        return {"reward_margin": sums["margin"] / pairs, "reward_accuracy": sums["correct"] / pairs}


class KTOObjective:
    """KTO on answers marked good or bad. The drift z is the batch mean of log π - log π_ref on the mismatched
    sequences (each prompt with another answer; preference_data.prepare_unpaired), computed without gradient."""

    stat_keys = ("good", "bad", "good_reward", "bad_reward", "drift", "batches")

    def __init__(self, beta: float, desirable_weight: float, undesirable_weight: float):
        self.beta, self.weights = beta, (desirable_weight, undesirable_weight)

    def length(self, item) -> int:
        return len(item.example.input_ids)

    def units(self, items: list) -> int:
        return len(items)

    def start(self, trainer) -> None:
        attach_reference(trainer, lambda item: [item.example, item.mismatched])

    def loss(self, trainer, items: list):
        import torch

        with torch.no_grad():
            mismatched, _, _ = sequence_logps(trainer, [i.mismatched for i in items])
        ref = reference_of(items, mismatched.device)
        drift = (mismatched - ref[:, 1]).mean().clamp(min=0)
        logps, _, tokens = sequence_logps(trainer, [i.example for i in items])
        desirable = torch.tensor([i.desirable for i in items], device=logps.device)
        losses, rewards = kto_loss(logps, ref[:, 0], desirable, drift, self.beta, *self.weights)
        return losses.sum(), tokens, {
            "good": float(desirable.sum()), "bad": float((~desirable).sum()),
            "good_reward": float(rewards[desirable].sum()), "bad_reward": float(rewards[~desirable].sum()),
            "drift": float(drift), "batches": 1.0}

    def summary(self, sums: dict) -> dict:
        good = sums["good_reward"] / sums["good"] if sums["good"] else 0.0
        bad = sums["bad_reward"] / sums["bad"] if sums["bad"] else 0.0
        return {"reward_margin": good - bad, "kl": sums["drift"] / max(1.0, sums["batches"])}


def objective_for(config):
    """The loop's objective for a preference config (the reward model's lives in reward.py)."""
    if config.objective in ("dpo", "orpo"):
        return PairObjective(config.objective, config.beta)
    if config.objective == "kto":
        return KTOObjective(config.beta, config.desirable_weight, config.undesirable_weight)
    from core.finetune.reward import RewardObjective

    return RewardObjective()


# -- the reference model's log-probabilities --------------------------------------------------------------------

def attach_reference(trainer, sequences_of) -> None:
    """Give every train and eval example the log-probabilities of its sequences (`sequences_of(example)`) under
    the model as it was before the first update: read from the run folder when a run resumes, else computed now
    (no gradient, eval mode) and saved there."""
    from dataclasses import replace

    path = trainer.run_dir / REFERENCE
    splits = {"train": trainer.train_examples, "eval": trainer.eval_examples}
    saved = atomic.read_json(path) if path.exists() else {}
    if {k: len(saved.get(k, [])) for k in splits} != {k: len(v) for k, v in splits.items()}:
        if trainer.state.step > 0:
            raise TrainingError(Msg("This run's reference log-probabilities are missing or do not match its data, "
                                    "so it cannot continue; start a new run."))
        trainer.emit({"type": "status", "message": Msg("Scoring the examples with the starting model")})
        saved = {k: _score(trainer, v, sequences_of) for k, v in splits.items()}
        if trainer.workers.is_main:
            atomic.write_json(path, saved)
    trainer.train_examples = [replace(e, reference=tuple(r)) for e, r in zip(splits["train"], saved["train"])]
    trainer.eval_examples = [replace(e, reference=tuple(r)) for e, r in zip(splits["eval"], saved["eval"])]


def _score(trainer, examples: list, sequences_of) -> list[list[float]]:
    import torch

    was_training = trainer.model.training
    trainer.model.eval()
    rows, size = [], trainer.config.batch_size
    with torch.no_grad():
        for start in range(0, len(examples), size):
            parts = [sequences_of(e) for e in examples[start:start + size]]
            values = sequence_logps(trainer, [s for p in parts for s in p])[0].tolist()
            width = len(parts[0])
            rows += [values[i * width:(i + 1) * width] for i in range(len(parts))]
    trainer.model.train(was_training)
    return rows


def reference_of(examples: list, device):
    """The attached reference log-probabilities of `examples`, as an [n, k] tensor."""
    import torch

    if any(not e.reference for e in examples):
        raise TrainingError(Msg("An example has no reference log-probability; start a new run."))
    return torch.tensor([e.reference for e in examples], dtype=torch.float32, device=device)
