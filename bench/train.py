"""Training benchmark on the embedded model: the studio's LoRA trainer against a plain transformers.Trainer + PEFT.

Run:  STUDIO_HOME=<home with the converted embedded model> .venv/bin/python bench/train.py [--steps N --batch B]
      (about 2 minutes on 2 CPU cores with the defaults on a quiet machine; no downloads)

What it measures, on one machine in one run:

* Data: the sample bike shop's training pairs (sample_data/train.jsonl, 118 question/answer records), rendered
  and tokenised by `core.finetune.data.prepare_examples` with the sample recipe's prompt (short system prompt,
  completion format, prompt tokens masked). Both sides train on exactly these token ids.
* studio: `core.finetune.trainer.Trainer` as `core.finetune.runs.execute` wires it: `model_for_training`
  (fp32 weights, eager attention on CPU), `apply_method` (LoRA r=16, alpha=32 on all linear layers, the studio's
  default dropout, 0, unless --lora-dropout says otherwise), frozen weights stored in bf16, then the trainer's own
  loop: bf16 autocast where the CPU has avx512_bf16/AMX, the output layer only at labeled positions with a chunked
  cross-entropy, length-grouped batches, loss on the answer tokens.
* baseline: a plain causal-LM setup with default settings: `AutoModelForCausalLM` in fp32, `peft.get_peft_model`
  with the same LoRA config, `transformers.Trainer` with only per_device_train_batch_size, max_steps,
  learning_rate, report_to=[], save_strategy="no", logging off and use_cpu; `DataCollatorForLanguageModeling
  (mlm=False)` (pads to the longest in the batch, labels = input ids): full logits, loss over the whole sequence.
* Both run the same number of optimizer steps at the same batch size, each in its own subprocess (so peak RSS is
  per side and they share no allocator state). The first `--warmup` steps are not timed; each later step is timed
  from the end of the previous one (data collation, forward, backward, clipping, optimizer). Tokens are counted
  the same way for both: the non-padding input tokens of the batches each side actually processed (counted in its
  collator).
* bf16 matmul throughput of this machine, in a third subprocess: `F.linear` forward and the activation-gradient
  product (grad_out @ W) for every linear shape of a block, at the studio's tokens per batch, and the output
  layer (tokens at label positions x 640 @ 640 x 262144, chunked over the vocabulary), weighted as one training
  step of this model uses them. fp32 is measured the same way for reference (the baseline's ceiling).
  The studio's achieved FLOP/s is reported as a fraction of the bf16 figure.

FLOPs counted per training step (useful work only, see `step_flops`): frozen weights need no weight gradients,
so a frozen linear costs 2*N forward + 2*N for the activation gradient = 4*N per non-padding token; the LoRA
matrices train, 6*N_lora per token; the output layer (tied 262144 x 640 embedding) only at positions that carry a
label: 4*d*V per labeled token. Attention's score and value products (about 4*ctx*1024 per token and layer forward,
under 3% at these lengths) are left out, so the achieved figure is slightly understated.

CPU timings are only meaningful on a quiet machine: with as many torch threads as cores, one neighbour busy on a
core made single steps 6-20x slower. Every step is timed on its own, from the end of the previous step; between
steps, outside the timings, a worker waits (at most `--quiet-wait` seconds in all per side) until other processes
leave the CPUs idle, and it records how many CPUs they used during each step. Rates count only the timed steps
during which other processes used at most 0.25 CPUs (`counted_steps`); when there is none they count all timed
steps and `trustworthy` is false. Check `busy_steps` in the JSON before you trust a figure.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.quiet import BUSY_NEIGHBOUR_CORES, Quiet, foreign_cores, snapshot  # noqa: E402

GOAL_RATIO = 5.0           # studio tokens/s over baseline tokens/s
GOAL_MATMUL_FRACTION = 0.4  # studio achieved FLOP/s over this machine's bf16 matmul throughput (model-shaped)
LORA = {"r": 16, "alpha": 32}  # dropout: --lora-dropout, by default the studio's (TrainConfig.lora_dropout)
LEARNING_RATE = 2e-4
SEED = 42
VOCAB_CHUNK = 32768  # output-layer columns per matmul in the reference measurement


# ---- data ----------------------------------------------------------------------------------------------------------

def records() -> list[dict]:
    sample = [json.loads(line) for line in (REPO_ROOT / "sample_data" / "train.jsonl").read_text().splitlines()
              if line.strip()]
    pairs = [(r["prompt"], r["response"]) for r in sample]
    return [{"id": f"r{i:03d}", "prompt": p, "response": a, "status": "accepted"} for i, (p, a) in enumerate(pairs)]


def prepare(folder: Path) -> tuple[list[dict], int]:
    """The records tokenised exactly as a studio run tokenises them (core.finetune.runs.prepare)."""
    from transformers import AutoTokenizer

    from core.finetune import data
    from core.models.base import CompletionLabels
    from core.prompt import PromptSettings

    recipe = json.loads((REPO_ROOT / "sample_data" / "recipe.json").read_text())
    prompt = PromptSettings.from_dict(recipe["prompt"])
    labels = CompletionLabels(prompt.user_label, prompt.assistant_label)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    examples, report = data.prepare_examples(records(), "sft", tokenizer, prompt, labels, max_length=512)
    assert report.used == len(records()), report
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return [{"input_ids": e.input_ids, "labels": e.labels, "id": e.record_id} for e in examples], pad_id


# ---- shared by the workers -----------------------------------------------------------------------------------------

def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def batch_counts(batch: dict) -> dict:
    """What one batch costs: non-padding tokens, padded slots, positions that carry a label (after the shift)."""
    mask, labels = batch["attention_mask"], batch["labels"]
    return {"tokens": int(mask.sum()), "slots": int(mask.numel()), "labeled": int((labels[:, 1:] != -100).sum())}


class StepClock:
    """Times every optimizer step on its own, from the end of the previous one (data collation included). Between
    steps, outside the timings, it waits (within the budget of `quiet`) until other processes leave the CPUs idle,
    and it records how many CPUs they used during each step. The first `warmup` steps are not counted."""

    def __init__(self, warmup: int, total: int, quiet: Quiet):
        self.warmup, self.total, self.quiet = warmup, total, quiet
        self.step_s: list[float] = []
        self.busy: list[float] = []
        self.resumed = snapshot()

    def start(self) -> None:
        self.quiet.wait()
        self.resumed = snapshot()

    def step_end(self) -> None:
        self.step_s.append(time.perf_counter() - self.resumed[0])
        self.busy.append(round(foreign_cores(self.resumed), 2))
        if len(self.step_s) < self.total:
            self.quiet.wait()
        self.resumed = snapshot()

    def figures(self, batches: list[dict], flops=None) -> dict:
        """Rates over the timed steps during which other processes stayed below BUSY_NEIGHBOUR_CORES (all timed
        steps when there is none: then `counted_steps` is 0 and the figures are not to be trusted)."""
        assert len(self.step_s) == self.total and len(batches) >= self.total, (len(self.step_s), len(batches))
        timed = list(zip(batches[self.warmup:self.total], self.step_s[self.warmup:], self.busy[self.warmup:]))
        quiet = [t for t in timed if t[2] <= BUSY_NEIGHBOUR_CORES]
        counted = quiet or timed
        wall, tokens = sum(t[1] for t in counted), sum(t[0]["tokens"] for t in counted)
        figures = {"timed_steps": len(timed), "counted_steps": len(quiet), "counted_s": round(wall, 3),
                   "s_per_step": round(wall / len(counted), 3), "tokens": tokens,
                   "slots": sum(t[0]["slots"] for t in counted), "labeled": sum(t[0]["labeled"] for t in counted),
                   "tokens_per_s": round(tokens / wall, 1),
                   "tokens_per_s_all_steps": round(sum(t[0]["tokens"] for t in timed) / sum(t[1] for t in timed), 1),
                   "step_s": [round(t[1], 3) for t in timed], "step_tokens": [t[0]["tokens"] for t in timed],
                   "warmup_step_s": [round(s, 3) for s in self.step_s[:self.warmup]],
                   "busy_neighbours": [t[2] for t in timed], "busy_steps": len(timed) - len(quiet),
                   "quiet_wait_s": round(self.quiet.waited_s, 1)}
        if flops is not None:
            figures["flops"] = sum(flops(t[0]) for t in counted)
            figures["flops_per_s"] = figures["flops"] / wall
        return figures


def lora_changed(model) -> bool:
    """Training really happened: PEFT starts every lora_B at zero."""
    return any(float(p.detach().abs().sum()) > 0 for n, p in model.named_parameters() if "lora_B" in n)


# ---- workers (each in its own process) -----------------------------------------------------------------------------

def worker_studio(spec: dict) -> dict:
    import torch

    from core.finetune import data as finetune_data
    from core.finetune import methods
    from core.finetune.config import TrainConfig
    from core.finetune.trainer import Trainer, use_bf16

    folder, batch, warmup, total = spec["folder"], spec["batch"], spec["warmup"], spec["warmup"] + spec["steps"]
    examples = [finetune_data.Example(e["input_ids"], e["labels"], e["id"]) for e in spec["examples"]]
    per_epoch = math.ceil(len(examples) / batch)
    config = TrainConfig(method="lora", lora_rank=LORA["r"], lora_alpha=LORA["alpha"],
                         lora_dropout=spec["lora_dropout"], target_preset="all_linear", batch_size=batch,
                         learning_rate=LEARNING_RATE, seed=SEED,
                         max_steps=total, epochs=min(1000, math.ceil(total / per_epoch)), eval_fraction=0.0,
                         eval_every=10 ** 6, save_every=10 ** 6)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    model = methods.model_for_training(folder, config, None, device)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mib()
    shapes = model_shapes(model)

    batches: list[dict] = []
    collate = finetune_data.collate

    def counting_collate(batch_examples, pad_id):  # the trainer calls finetune_data.collate: count what it gets
        out = collate(batch_examples, pad_id)
        batches.append(batch_counts(out))
        return out

    finetune_data.collate = counting_collate
    quiet = Quiet(spec["quiet_wait"], per_call_s=15.0)
    clock = StepClock(warmup, total, quiet)
    losses = []

    def emit(event: dict) -> None:
        if event["type"] == "step":
            clock.step_end()
            losses.append(event["loss"])

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, config, examples, [], spec["pad_id"], Path(run_dir), emit=emit)
        assert trainer.total_steps() == total, trainer.total_steps()
        clock.start()
        trainer.run()
    figures = clock.figures(batches, flops=lambda batch: step_flops(shapes, batch))
    return {"side": "studio", "bf16": use_bf16(config, device), "load_s": round(load_s, 2),
            "rss_after_load_mib": round(rss_loaded), "peak_rss_mib": round(peak_rss_mib()),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4), "lora_changed": lora_changed(model),
            "shapes": shapes, "torch_threads": torch.get_num_threads(), **figures}


def worker_baseline(spec: dict) -> dict:
    import peft
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainerCallback, TrainingArguments)

    folder, batch, warmup, total = spec["folder"], spec["batch"], spec["warmup"], spec["warmup"] + spec["steps"]
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"],
                                                       lora_dropout=spec["lora_dropout"], target_modules="all-linear"))
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mib()

    batches: list[dict] = []
    lm_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)

    def collator(features):
        out = lm_collator(features)
        batches.append(batch_counts(out))
        return out

    quiet = Quiet(spec["quiet_wait"], per_call_s=15.0)
    clock = StepClock(warmup, total, quiet)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.step_end()

    with tempfile.TemporaryDirectory() as out_dir:
        arguments = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=batch, max_steps=total,
                                      learning_rate=LEARNING_RATE, report_to=[], save_strategy="no",
                                      logging_strategy="no", use_cpu=not torch.cuda.is_available(), seed=SEED,
                                      disable_tqdm=True)
        trainer = Trainer(model=model, args=arguments, train_dataset=[{"input_ids": e["input_ids"]}
                                                                      for e in spec["examples"]],
                          data_collator=collator, callbacks=[Clock()])
        clock.start()
        result = trainer.train()
    figures = clock.figures(batches)
    return {"side": "baseline", "bf16": False, "load_s": round(load_s, 2), "rss_after_load_mib": round(rss_loaded),
            "peak_rss_mib": round(peak_rss_mib()), "train_loss": round(result.training_loss, 4),
            "lora_changed": lora_changed(model), "torch_threads": torch.get_num_threads(), **figures}


def worker_matmul(spec: dict) -> dict:
    """This machine's matmul throughput on the shapes of one training step (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    shapes, rows, label_rows = spec["shapes"], spec["rows"], spec["label_rows"]
    budget = spec.get("seconds_per_shape", 0.25)
    quiet, busy = Quiet(spec["quiet_wait"], per_call_s=3.0), []

    def rate(fn) -> float:
        """Seconds per call: two warm-up calls, then repeat for at least `budget` seconds."""
        fn(), fn()
        quiet.wait()
        n, since = 0, snapshot()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - since[0]
            if elapsed >= budget and n >= 3:
                busy.append(foreign_cores(since))
                return elapsed / n

    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        name = str(dtype).replace("torch.", "")
        generator = torch.Generator().manual_seed(0)
        per_shape, flops, seconds = [], 0.0, 0.0
        for (n_in, n_out), count in shapes["linears"]:
            w = torch.randn(n_out, n_in, generator=generator).to(dtype)
            x = torch.randn(rows, n_in, generator=generator).to(dtype)
            g = torch.randn(rows, n_out, generator=generator).to(dtype)
            t_fwd = rate(lambda: F.linear(x, w))        # x @ W.T, as nn.Linear
            t_bwd = rate(lambda: torch.matmul(g, w))    # grad wrt the input: grad_out @ W
            f = 2 * rows * n_in * n_out
            per_shape.append({"shape": f"{rows}x{n_in} @ {n_in}x{n_out}", "count": count,
                              "fwd_gflops": round(f / t_fwd / 1e9, 1), "bwd_gflops": round(f / t_bwd / 1e9, 1)})
            flops += count * 2 * f
            seconds += count * (t_fwd + t_bwd)
        d, vocab = shapes["hidden"], shapes["vocab"]
        emb = torch.randn(vocab, d, generator=generator).to(dtype)
        chunks = [emb[i:i + VOCAB_CHUNK] for i in range(0, vocab, VOCAB_CHUNK)]
        h = torch.randn(label_rows, d, generator=generator).to(dtype)
        grads = [torch.randn(label_rows, c.shape[0], generator=generator).to(dtype) for c in chunks]

        def head_fwd():
            return [F.linear(h, c) for c in chunks]

        def head_bwd():
            acc = torch.matmul(grads[0], chunks[0])
            for gc, c in zip(grads[1:], chunks[1:]):
                acc.add_(torch.matmul(gc, c))
            return acc

        t_fwd, t_bwd = rate(head_fwd), rate(head_bwd)
        f = 2 * label_rows * d * vocab
        per_shape.append({"shape": f"{label_rows}x{d} @ {d}x{vocab} (chunks of {VOCAB_CHUNK})", "count": 1,
                          "fwd_gflops": round(f / t_fwd / 1e9, 1), "bwd_gflops": round(f / t_bwd / 1e9, 1)})
        flops += 2 * f
        seconds += t_fwd + t_bwd
        out[name] = {"gflops": round(flops / seconds / 1e9, 1), "step_matmul_s": round(seconds, 4),
                     "peak_shape_gflops": max(max(s["fwd_gflops"], s["bwd_gflops"]) for s in per_shape),
                     "shapes": per_shape}
    return {"side": "matmul", "rows": rows, "label_rows": label_rows, "torch_threads": torch.get_num_threads(),
            "busy_neighbours_max": round(max(busy), 2), "quiet_wait_s": round(quiet.waited_s, 1), **out}


# ---- FLOP accounting -----------------------------------------------------------------------------------------------

def model_shapes(model) -> dict:
    """The frozen linear shapes (PEFT's base layers), the LoRA parameter count and the output layer's size."""
    counts: dict[tuple[int, int], int] = {}
    frozen = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if base is not None and hasattr(base, "weight") and hasattr(module, "lora_A"):
            shape = (base.in_features, base.out_features)
            counts[shape] = counts.get(shape, 0) + 1
            frozen += base.weight.numel()
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = model.get_output_embeddings().weight
    return {"linears": [[list(k), v] for k, v in counts.items()], "frozen_linear_params": frozen,
            "lora_params": lora, "vocab": head.shape[0], "hidden": head.shape[1]}


def step_flops(shapes: dict, batch: dict) -> float:
    """Useful training FLOPs of one batch with LoRA on frozen weights:

        per non-padding token:  4 * N_frozen   (forward 2N + activation gradient 2N; no weight gradient)
                              + 6 * N_lora     (forward 2N + activation gradient 2N + weight gradient 2N)
        per labeled position:   4 * d * V      (output layer forward + activation gradient, only where a label is)

    Padding, the extra rows of the output layer at positions labeled in another row of the batch, attention's
    score/value products, norms and activations are not counted."""
    per_token = 4 * shapes["frozen_linear_params"] + 6 * shapes["lora_params"]
    return batch["tokens"] * per_token + batch["labeled"] * 4 * shapes["hidden"] * shapes["vocab"]


# ---- driver --------------------------------------------------------------------------------------------------------

WORKERS = {"studio": worker_studio, "baseline": worker_baseline, "matmul": worker_matmul}


def run_worker(name: str, spec: dict, scratch: Path) -> dict:
    path = scratch / f"{name}.json"
    path.write_text(json.dumps(spec))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", str(path)],
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        sys.stdout.write(done.stdout)
        raise SystemExit(f"the {name} worker failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 1)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps of each side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them (at least 1)")
    parser.add_argument("--batch", type=int, default=8, help="examples per step, both sides")
    parser.add_argument("--lora-dropout", type=float, default=None,
                        help="LoRA dropout of both sides (default: the studio's default, TrainConfig.lora_dropout)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds, in all, each side may wait (between steps) for other processes to leave the "
                             "CPUs idle")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from core.finetune.config import TrainConfig
    from core.models.convert import ensure_embedded

    folder = ensure_embedded()
    examples, pad_id = prepare(folder)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    labeled = [sum(t != -100 for t in e["labels"][1:]) for e in examples]
    print(f"{len(examples)} examples: {lengths[0]}-{lengths[-1]} tokens (median {lengths[len(lengths) // 2]}), "
          f"{sum(labeled) / sum(lengths):.0%} of them answer tokens; batch {args.batch}, {args.warmup} warm-up + "
          f"{args.steps} timed steps per side", flush=True)
    dropout = TrainConfig().lora_dropout if args.lora_dropout is None else args.lora_dropout
    spec = {"folder": str(folder), "examples": examples, "pad_id": pad_id, "batch": args.batch,
            "lora_dropout": dropout, "steps": args.steps, "warmup": args.warmup, "quiet_wait": args.quiet_wait}
    with tempfile.TemporaryDirectory() as scratch:
        studio = run_worker("studio", spec, Path(scratch))
        print(f"studio:   {studio['tokens_per_s']:8.1f} tok/s  {studio['s_per_step']:.2f} s/step  "
              f"peak RSS {studio['peak_rss_mib']} MiB  bf16={studio['bf16']}  ({studio['busy_steps']} busy steps)",
              flush=True)
        baseline = run_worker("baseline", spec, Path(scratch))
        print(f"baseline: {baseline['tokens_per_s']:8.1f} tok/s  "
              f"{baseline['s_per_step']:.2f} s/step  peak RSS {baseline['peak_rss_mib']} MiB  "
              f"({baseline['busy_steps']} busy steps)", flush=True)
        counted = studio["counted_steps"] or studio["timed_steps"]
        rows = round(studio["slots"] / counted)  # the studio's padded tokens per batch
        label_rows = max(1, round(studio["labeled"] / counted))
        matmul = run_worker("matmul", {"shapes": studio["shapes"], "rows": rows, "label_rows": label_rows,
                                       "quiet_wait": args.quiet_wait / 2}, Path(scratch))
    bf16_gflops, fp32_gflops = matmul["bfloat16"]["gflops"], matmul["float32"]["gflops"]
    studio_gflops = studio["flops_per_s"] / 1e9
    ratio = studio["tokens_per_s"] / baseline["tokens_per_s"]
    fraction = studio_gflops / bf16_gflops
    print(f"matmul reference ({rows} rows, output layer at {label_rows} rows): bf16 {bf16_gflops} GFLOP/s, "
          f"fp32 {fp32_gflops} GFLOP/s", flush=True)
    print(f"ratio studio/baseline {ratio:.2f}x (goal >= {GOAL_RATIO}); studio achieves {studio_gflops:.1f} GFLOP/s = "
          f"{fraction:.0%} of bf16 matmul throughput (goal >= {GOAL_MATMUL_FRACTION:.0%})", flush=True)
    for side in (studio, baseline):
        side.pop("shapes", None)
    result = {
        "bench": "train",
        "examples": len(examples), "batch": args.batch, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "lora": {**LORA, "dropout": dropout, "targets": "all-linear"},
        "studio_tokens_per_s": studio["tokens_per_s"], "baseline_tokens_per_s": baseline["tokens_per_s"],
        "ratio": round(ratio, 2), "goal_ratio": GOAL_RATIO,
        "studio_s_per_step": studio["s_per_step"], "baseline_s_per_step": baseline["s_per_step"],
        "studio_gflops": round(studio_gflops, 1), "bf16_matmul_gflops": bf16_gflops, "fp32_matmul_gflops": fp32_gflops,
        "matmul_fraction": round(fraction, 3), "goal_matmul_fraction": GOAL_MATMUL_FRACTION,
        "studio_peak_rss_mib": studio["peak_rss_mib"], "baseline_peak_rss_mib": baseline["peak_rss_mib"],
        "studio_padding": round(1 - studio["tokens"] / studio["slots"], 3),
        "baseline_padding": round(1 - baseline["tokens"] / baseline["slots"], 3),
        "busy_steps": studio["busy_steps"] + baseline["busy_steps"],
        "trustworthy": bool(studio["counted_steps"] and baseline["counted_steps"]),
        "studio": studio, "baseline": baseline, "matmul": matmul,
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    result["meets_goal"] = ratio >= GOAL_RATIO
    result["meets_goal_matmul"] = fraction >= GOAL_MATMUL_FRACTION
    return result


if __name__ == "__main__":
    if "--worker" in sys.argv:
        arguments = parse_args()
        print(json.dumps(WORKERS[arguments.worker](json.loads(Path(arguments.spec).read_text()))), flush=True)
        sys.exit(0)
    started = time.perf_counter()
    figures = main()
    figures["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, ensure_ascii=False))
