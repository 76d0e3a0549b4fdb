"""The training loop: readable top to bottom, knows nothing about display. Progress leaves through `emit`.

Speed comes from bf16 autocast where the device supports it, the output layer applied only where a label is
(Gemma's 262k-token output layer is the largest cost of a small model; see speed.py) and length-grouped batches
(little padding). Checkpoints hold the trainable tensors, the optimizer and the data position, so a run
resumes exactly where it stopped after a cancel, a crash or `kill -9`.

Across processes (distributed.py) each takes its share of every batch; sharded (FSDP), the trainer shards the model
itself, runs the model's own forward (the fast output-head path would bypass the root's weight gathering) and
gathers full tensors for checkpoints.

What is minimised is an `Objective`: next-token cross-entropy on answers (TokenObjective, supervised fine-tuning)
or a preference loss (preference.py, reward.py). The loop, checkpoints, cancel and events are the same for all.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from core import atomic
from core.finetune import data as finetune_data
from core.finetune import distributed
from core.finetune.config import TrainConfig
from core.finetune.distributed import Workers
from core.i18n import Msg

CHECKPOINT = "checkpoint"
BEST = "best.safetensors"
Emit = Callable[[dict], None]


@dataclass
class TrainState:
    step: int = 0                 # optimizer updates done
    epoch: int = 0                # current epoch (0-based)
    batches_done: int = 0         # batches of the current epoch already consumed
    best_eval: float | None = None
    evals_without_improvement: int = 0
    last_loss: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0          # spent in the training loop, across resumes: what a time limit counts
    stopped_by_time: bool = False


@dataclass
class TrainResult:
    state: TrainState
    finished: bool                # False when stopped by a cancel request
    eval_loss: float | None
    history: list = field(default_factory=list)


def bf16_supported(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    from core.models.quantize import cpu_has_native_bf16

    return cpu_has_native_bf16()


def use_bf16(config: TrainConfig, device: str) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and bf16_supported(device))


def learning_rate(config: TrainConfig, step: int, total: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak; a pure function of the step so resume needs no state.
    Under a time limit `time_fraction` is the share of the time used, and whichever is further along, the updates
    or the time, sets the schedule: a run stopped by its limit has decayed like one that ran all its epochs, rather
    than ending at its peak rate."""
    position = max(float(step), time_fraction * total)
    warmup = int(config.warmup_ratio * total)
    if position < warmup:
        return config.learning_rate * min(1.0, (position + 1) / warmup)
    progress = min(1.0, (position - warmup) / max(1, total - warmup))
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def virtual_token_offset(model) -> int:
    """Prompt tuning puts soft tokens before the input, which shifts every position in the logits."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False) \
            and str(config.peft_type).endswith("PROMPT_TUNING"):
        return config.num_virtual_tokens
    return 0


def batch_loss(model, batch: dict, offset: int, autocast, head=None):
    """Summed cross-entropy over labeled tokens, with logits only where a label is.

    With `head` (see speed.output_head) the decoder runs alone and the output layer sees only the labeled
    (row, position) pairs; otherwise the model's forward keeps the union of labeled positions over the batch.
    """
    import torch.nn.functional as F

    from core.finetune import speed

    if head is not None:
        with autocast():
            logits, picked = speed.labeled_logits(head, batch)
        return speed.summed_cross_entropy(logits, picked), int(picked.numel())
    targets = batch["labels"][:, 1:]
    positions = (targets != -100).any(0).nonzero().squeeze(1)
    with autocast():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    logits_to_keep=positions + offset, use_cache=False)
    logits = out.logits
    picked = targets[:, positions]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, int((picked != -100).sum())


class TokenObjective:
    """Supervised fine-tuning: cross-entropy summed over the labeled tokens, averaged over an update's labeled tokens.

    An objective tells the loop how long an example is (for length-grouped batches), how many units an update's
    loss is averaged over, and the summed loss of a batch; preference objectives (preference.py, reward.py) also
    prepare what they need before the first step and report extra metrics as sums (`stat_keys`, `summary`)."""

    stat_keys: tuple[str, ...] = ()

    def length(self, example) -> int:
        return len(example.input_ids)

    def units(self, examples: list) -> int:
        return sum(sum(1 for label in e.labels[1:] if label != -100) for e in examples)

    def start(self, trainer: "Trainer") -> None:
        """Called once per run() before the first step."""

    def loss(self, trainer: "Trainer", examples: list) -> tuple:
        """(summed loss tensor, tokens processed, {stat: sum}) for one batch of this process's examples."""
        batch = trainer.to_device(finetune_data.collate(examples, trainer.pad_id))
        loss, _ = batch_loss(trainer.model, batch, trainer.offset, trainer.autocast, trainer.head)
        return loss, int(batch["attention_mask"].sum()), {}

    def summary(self, sums: dict) -> dict:
        """Metrics for the step and eval events from the summed stats."""
        return {}


def trainable_state(model) -> dict:
    return {name: p.detach().cpu().contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, tensors: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device))


class Trainer:
    def __init__(self, model, config: TrainConfig, train: list, eval_: list, pad_id: int, run_dir: Path,
                 emit: Emit = lambda event: None, should_stop: Callable[[], bool] = lambda: False,
                 workers: Workers = Workers(), objective=None):
        import torch

        from core.finetune import speed

        self.model, self.config, self.train_examples, self.eval_examples = model, config, train, eval_
        self.pad_id, self.run_dir, self.should_stop, self.workers = pad_id, Path(run_dir), should_stop, workers
        self.emit = emit if workers.is_main else (lambda event: None)  # one voice for the whole run
        self.device = str(next(model.parameters()).device)
        self.bf16 = use_bf16(config, self.device)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        self.autocast = lambda: torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16)
        self.offset = virtual_token_offset(model)
        if workers.sharded:
            distributed.shard(model, workers)  # before the optimizer: sharding replaces the parameters
        self.head = None if workers.sharded else speed.output_head(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           foreach=True)
        self.objective = objective or TokenObjective()
        self.lengths = [self.objective.length(e) for e in train]
        self.state = TrainState()
        self.history: list[dict] = []
        self.loop_started: float | None = None  # set by run(); the time limit counts from there
        self.seconds_before = 0.0  # the time a resumed run had used before

    # -- plan ------------------------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[list[int]]:
        return finetune_data.batch_order(self.lengths, self.config.batch_size, self.config.seed, epoch,
                                         self.config.group_by_length)

    def updates_per_epoch(self) -> int:
        return math.ceil(len(self.batches(0)) / self.config.grad_accum)

    def total_steps(self) -> int:
        total = self.updates_per_epoch() * self.config.epochs
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def eval_interval(self) -> int:
        return self.config.eval_every or self.updates_per_epoch()

    def save_interval(self) -> int:
        return self.config.save_every or self.eval_interval()

    # -- checkpoints -----------------------------------------------------------------------------------------
    def trainable_tensors(self) -> dict:
        """The trainable tensors by name, on the CPU of the main process ({} on the others). Sharded, every process
        must call this (the shards are gathered); otherwise every process holds the same tensors."""
        if self.workers.sharded:
            return distributed.gather_trainable(self.model)
        return trainable_state(self.model) if self.workers.is_main else {}

    def optimizer_state(self) -> dict:
        """`optimizer.state_dict()` on the main process ({} on the others); sharded, gathered like the tensors."""
        if self.workers.sharded:
            return distributed.gather_optimizer(self.model, self.optimizer)
        return self.optimizer.state_dict() if self.workers.is_main else {}

    def load_trainable(self, path: Path) -> None:
        """Trainable tensors from a safetensors file; sharded, the main process reads it and sends each process its
        shards (one copy in memory, not one per process)."""
        from safetensors.torch import load_file

        if not self.workers.sharded:
            load_trainable_state(self.model, load_file(str(path)))
        else:
            distributed.load_trainable(self.model, load_file(str(path)) if self.workers.is_main else {})

    def load_optimizer(self, path: Path) -> None:
        import torch

        if not self.workers.sharded:
            self.optimizer.load_state_dict(torch.load(path, weights_only=True))
        else:
            saved = torch.load(path, weights_only=True) if self.workers.is_main else {}
            distributed.load_optimizer(self.model, self.optimizer, saved)

    def save_checkpoint(self) -> None:
        import torch
        from safetensors.torch import save_file

        tensors, optimizer = self.trainable_tensors(), self.optimizer_state()
        if not self.workers.is_main:
            return
        final = self.run_dir / CHECKPOINT
        staging = self.run_dir / f"{CHECKPOINT}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_file(tensors, str(staging / "trainable.safetensors"))
        torch.save(optimizer, staging / "optimizer.pt")
        atomic.write_json(staging / "state.json", {"state": asdict(self.state), "history": self.history})
        old = self.run_dir / f"{CHECKPOINT}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)  # a kill between the renames leaves .old, which resume() also reads
        shutil.rmtree(old, ignore_errors=True)
        self.emit({"type": "checkpoint", "step": self.state.step})

    def resume(self) -> bool:
        folder = next((f for f in (self.run_dir / CHECKPOINT, self.run_dir / f"{CHECKPOINT}.old")
                       if (f / "state.json").exists()), None)
        if folder is None:
            return False
        self.load_trainable(folder / "trainable.safetensors")
        self.load_optimizer(folder / "optimizer.pt")
        saved = json.loads((folder / "state.json").read_text())
        self.state = TrainState(**saved["state"])
        self.history = saved["history"]
        self.state.stopped_early = False
        return True

    # -- loop ------------------------------------------------------------------------------------------------
    def evaluate(self) -> tuple[float | None, dict]:
        """(eval loss, the objective's eval metrics); (None, {}) without an eval set."""
        import torch

        if not self.eval_examples:
            return None, {}
        was_training = self.model.training
        self.model.eval()
        keys = self.objective.stat_keys
        total, units, stats = 0.0, 0, [0.0] * len(keys)
        size = self.config.batch_size
        with torch.no_grad():  # not inference_mode: bitsandbytes' CPU 4-bit kernels repack weights under it
            for start in range(0, len(self.eval_examples), size):
                rows = self.eval_examples[start:start + size]
                mine, weight = self._my_rows(rows)
                if not mine:
                    continue
                loss, _, sums = self.objective.loss(self, mine)
                total, units = total + weight * float(loss), units + weight * self.objective.units(mine)
                stats = [s + weight * sums[k] for s, k in zip(stats, keys)]
        total, units, *stats = self.workers.sum_numbers([total, units, *stats], self.device)
        self.model.train(was_training)
        return total / max(1, units), self.objective.summary(dict(zip(keys, stats)))

    def _my_rows(self, rows: list) -> tuple[list, int]:
        """(this process's rows of a batch, 1), or (one stand-in row, 0) when its share is empty but the model is
        sharded: FSDP's weight gathers need every process in every forward and backward pass."""
        mine = self.workers.share(rows)
        if not mine and self.workers.sharded:
            return rows[:1], 0
        return mine, 1

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def _after_eval(self, result: tuple[float, dict], candidate: bool = True) -> None:
        """Record an eval pass; with `candidate`, keep the weights when they are the best so far. The pass before
        training is no candidate: its weights are the untouched model (a LoRA adapter that changes nothing), and a
        run stopped and kept before its first eval would have "kept" them."""
        eval_loss, metrics = result
        if candidate:
            self._track_best(eval_loss)
        record = {"type": "eval", "step": self.state.step, "eval_loss": eval_loss, "best_eval": self.state.best_eval,
                  **{f"eval_{name}": value for name, value in metrics.items()}}
        self.history.append(record)
        self.emit(record)

    def _track_best(self, eval_loss: float) -> None:
        """Save the weights of a new lowest eval loss; count evals without improvement for early stopping."""
        from safetensors.torch import save_file

        state = self.state
        if state.best_eval is None or eval_loss < state.best_eval - 1e-4:
            state.best_eval, state.evals_without_improvement = eval_loss, 0
            tensors = self.trainable_tensors()
            if self.workers.is_main:
                save_file(tensors, str(self.run_dir / f"{BEST}.tmp"))
                (self.run_dir / f"{BEST}.tmp").replace(self.run_dir / BEST)
        else:
            state.evals_without_improvement += 1
            patience = self.config.early_stopping_patience
            state.stopped_early = bool(patience and state.evals_without_improvement >= patience)

    # -- time limit -------------------------------------------------------------------------------------------
    def time_fraction(self) -> float:
        """The share of the time limit used so far (0 without a limit), by the main process's clock on every
        process, so they agree on the learning rate and on when to stop."""
        if not self.config.max_minutes:
            return 0.0
        self.state.seconds = self.workers.broadcast(self._seconds_used())
        return self.state.seconds / (60 * self.config.max_minutes)

    def _seconds_used(self) -> float:
        """Seconds in the training loop so far, those of earlier sessions of a resumed run included."""
        return self.seconds_before + time.perf_counter() - self.loop_started

    def _finish_on_time(self) -> None:
        """The time limit is reached: score the weights of the last update (the best adapter may be them) and keep a
        checkpoint, as the end of the last epoch would."""
        state = self.state
        state.stopped_by_time = True
        if self.eval_examples and not any(e["type"] == "eval" and e["step"] == state.step for e in self.history):
            self._after_eval(self.evaluate())
        self.save_checkpoint()
        self.emit({"type": "time_limit", "step": state.step, "minutes": self.config.max_minutes,
                   "message": Msg("The {minutes}-minute time limit is reached at step {step}; keeping what was "
                                  "learned.", minutes=f"{self.config.max_minutes:g}", step=state.step)})

    def run(self) -> TrainResult:
        config, state = self.config, self.state
        total = self.total_steps()
        self.model.train()
        self.tokens_seen, self.started, self.steps_at_start = 0, time.perf_counter(), state.step
        self.loop_started, self.seconds_before = self.started, state.seconds
        self.objective.start(self)
        if state.step == 0 and self.eval_examples and not self.history:
            self.emit({"message": Msg("Measuring the eval loss before training ({count} examples)",
                                      count=len(self.eval_examples))})
            self._after_eval(self.evaluate(), candidate=False)  # the starting point of the eval curve
        while state.epoch < config.epochs and state.step < total and not state.stopped_early:
            groups = self._groups(state.epoch)
            for group in groups[state.batches_done // config.grad_accum:]:
                if self.workers.any(self.should_stop(), self.device):
                    self.save_checkpoint()
                    return TrainResult(state, False, state.best_eval, self.history)
                time_used = self.time_fraction()
                if time_used >= 1.0:
                    self._finish_on_time()
                    return TrainResult(state, True, state.best_eval, self.history)
                self._update(group, total, time_used)
                if state.step >= total or state.stopped_early:
                    break
            if state.batches_done >= sum(len(g) for g in groups):
                state.epoch, state.batches_done = state.epoch + 1, 0
        if state.stopped_early:
            self.emit({"type": "early_stop", "step": state.step, "best_eval": state.best_eval})
        return TrainResult(state, True, state.best_eval, self.history)

    def time_batches(self, batches: list[list[int]], total: int) -> list[float]:
        """Seconds each batch takes as one update, for the time estimate (the weights change: use a throw-away
        model)."""
        self.model.train()
        self.tokens_seen, self.started, self.steps_at_start = 0, time.perf_counter(), self.state.step
        self.objective.start(self)
        seconds = []
        for batch in batches:
            started = time.perf_counter()
            self._update([batch], total)
            seconds.append(time.perf_counter() - started)
        return seconds

    def _groups(self, epoch: int) -> list[list[list[int]]]:
        """The epoch's batches, cut into groups whose gradients add up to one update."""
        order, accum = self.batches(epoch), self.config.grad_accum
        return [order[i:i + accum] for i in range(0, len(order), accum)]

    def _update(self, group: list[list[int]], total: int, time_used: float = 0.0) -> None:
        import torch

        config, state = self.config, self.state
        torch.manual_seed(config.seed * 100_003 + state.step)  # dropout repeats on resume
        examples = [[self.train_examples[i] for i in batch] for batch in group]
        group_units = self.objective.units([e for b in examples for e in b])
        lr = learning_rate(config, state.step, total, time_used)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        keys = self.objective.stat_keys
        loss_sum, tokens, stats = 0.0, 0, [0.0] * len(keys)
        for batch_examples in examples:
            mine, weight = self._my_rows(batch_examples)
            if not mine:
                continue
            loss, batch_tokens, sums = self.objective.loss(self, mine)
            (loss * weight / max(1, group_units)).backward()  # mean over the update's units, however it is split
            loss_sum += weight * float(loss.detach())
            tokens += weight * batch_tokens
            stats = [s + weight * sums[k] for s, k in zip(stats, keys)]
        loss_sum, tokens, *stats = self.workers.sum_gradients(self.params, [loss_sum, tokens, *stats])
        self.tokens_seen += int(tokens)
        norm = torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)  # sharded: DTensors, global norm
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batches_done += len(group)
        state.last_loss = loss_sum / max(1, group_units)
        elapsed = time.perf_counter() - self.started
        per_step = elapsed / (state.step - self.steps_at_start)
        eta, progress = per_step * (total - state.step), state.step / total
        if config.max_minutes and self.loop_started is not None:  # the limit ends the run first when it comes sooner
            limit = 60 * config.max_minutes
            used = self._seconds_used()
            eta, progress = min(eta, max(0.0, limit - used)), max(progress, used / limit)
        record = {"type": "step", "step": state.step, "total_steps": total, "epoch": state.epoch + 1,
                  "loss": state.last_loss, "lr": lr, "grad_norm": float(getattr(norm, "full_tensor", lambda: norm)()),
                  "tokens_per_s": self.tokens_seen / elapsed, "eta_s": eta, "progress": min(1.0, progress),
                  **self.objective.summary(dict(zip(keys, stats)))}
        self.history.append(record)
        self.emit(record)
        if self.eval_examples and (state.step % self.eval_interval() == 0 or state.step == total):
            self._after_eval(self.evaluate())
        if state.step % self.save_interval() == 0 or state.step == total or state.stopped_early:
            self.save_checkpoint()

    def load_best(self) -> None:
        """The tensors of the lowest eval loss seen (like load_best_model_at_end); no-op without an eval set."""
        if self.workers.broadcast((self.run_dir / BEST).exists()):  # sharded: every process loads, or none
            self.load_trainable(self.run_dir / BEST)
