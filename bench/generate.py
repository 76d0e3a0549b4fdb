"""Generation benchmark on the embedded model: studio streaming vs raw `model.generate`, and time to first token.

Run:  STUDIO_HOME=<home with the converted embedded model> .venv/bin/python bench/generate.py
      (`make bench` runs it with the default STUDIO_HOME; the first run there converts the model.)

What it measures, in one process on one machine:

1. Streaming throughput. The same prompt, greedy, the same max_new_tokens, no stop strings, through
   (a) studio:     `LocalModel.stream(prompt, settings)` iterated to the end (generate runs in a worker thread,
                   text comes through the batcher's per-row streamer and GenerationStream), and
   (b) raw:        `model.generate(...)` on the calling (main) thread with the same generation arguments and no
                   streamer,
   (c) raw_thread: the same raw generate inside a worker thread (a control: it separates the cost of the
                   streamer from the effect of running generate off the main thread; --no-thread-control
                   drops it).
   Each is timed wall-clock from the call to the last token, prompt tokenisation included. Generated tokens
   are counted from ids: the raw runs from the ids generate returns, the studio run from
   `GenerationStream.output_tokens` (LocalModel counts it from the ids its generate returned); the script checks
   that every run produced exactly max_new_tokens tokens and that studio and raw produced the same text.
   One warm-up of each, then `--repeats` alternating runs; medians are compared (goal: studio/raw >= 0.95).

2. Time to first token on a prompt of exactly `--prompt-tokens` tokens (tokenizer count, BOS included), read
   from `GenerationStream.first_token_s`, median of `--ttft-repeats` runs after a warm-up (goal < 0.5 s on CPU).
   For comparison: the raw prefill (one forward pass over the same ids, logits for the last position only, as
   generate computes them), raw `generate(max_new_tokens=1)`, and how many tokens TextIteratorStreamer needs
   before it releases its first piece of text (it releases text at word boundaries).

3. The llama.cpp engine (when llama-cpp-python is installed): the same throughput prompt streamed by
   `LlamaCppModel.stream` (the embedded model's F16 GGUF, core/models/llamacpp.py), its time to first token for
   200- and 1,000-token prompts next to the transformers stream's, and 8 chats asked at once on each engine
   (first-token p50/p95 and answer tokens per second). Goal: llama.cpp decodes >= 3x the transformers stream.

4. `--ladder`: the sample project's ladder (40 questions x 5 rungs, its LoRA adapter trained first if missing) on
   each engine: the seconds each takes (goal <= 180 s with llama.cpp) and how many greedy answers are identical.

CPU timings are only meaningful on a quiet machine: before each timed run the script waits (within a budget)
until other processes leave the CPUs idle, and it reports how many CPUs other processes used during the runs.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

GOAL_STREAM_RATIO = 0.95
GOAL_TTFT_S = 0.5
GOAL_FAST_SPEEDUP = 3.0
GOAL_LADDER_S = 180.0
CHATS = ["When do you open on Saturday?", "Can I rent a bike for a week?", "How much is a basic service?",
         "Do you repair electric bikes?", "What is your return policy?", "Where is the shop?",
         "Do you sell children's bikes?", "How long does a repair take?"]
BUSY_NEIGHBOUR_CORES = 0.25  # other processes above this many CPUs during a run: the run is flagged

# A prompt the embedded model continues for 128 tokens at greedy decoding without EOS and without the repetition the
# studio's loop guard cuts (core/models/degenerate.py), so every variant writes exactly max_new_tokens.
THROUGHPUT_PROMPT = "Here is a detailed guide to maintaining a city bike through the seasons.\n\n1."

# The time-to-first-token prompt: context trimmed so that context + question is exactly N tokens.
CONTEXT = (
    "The studio keeps every project in its own folder. A project holds datasets of question and answer pairs, "
    "saved recipes that describe the model, the prompt, the few-shot examples and the generation settings, "
    "and the runs of fine-tuning jobs with their adapters and logs. The chat page reads the latest recipe, "
    "renders the prompt, counts its tokens against the context window and streams the answer token by token. "
    "The evaluation page runs the same recipe over a held-out set and scores every answer. "
)
QUESTION = "\n\nQuestion: What does the chat page do?\nAnswer:"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128, help="max_new_tokens of the throughput runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each throughput variant")
    parser.add_argument("--prompt-tokens", type=int, default=200, help="prompt length for time to first token")
    parser.add_argument("--ttft-repeats", type=int, default=5, help="timed time-to-first-token runs")
    parser.add_argument("--no-thread-control", dest="thread_control", action="store_false",
                        help="skip the raw-generate-in-a-worker-thread control (saves about a third of the time)")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds, in all, the script may wait for other processes to leave the CPUs idle")
    parser.add_argument("--chat-tokens", type=int, default=48, help="max_new_tokens of each concurrent chat")
    parser.add_argument("--ladder", action="store_true",
                        help="also time the sample project's 40 x 5 ladder on both engines and compare the answers")
    return parser.parse_args(argv)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


class CpuMonitor:
    """CPU used by *other* processes while we run (Linux /proc/stat), and a bounded wait for a quiet machine.

    With as many intra-op threads as cores, one busy neighbour makes OpenMP parallel regions wait for a
    descheduled thread; such runs can be 2-3x slower and say nothing about the studio.
    """

    def __init__(self, wait_budget_s: float):
        self.available = Path("/proc/stat").is_file() and hasattr(os, "sysconf")
        self.hz = os.sysconf("SC_CLK_TCK") if self.available else 100
        self.wait_budget_s = wait_budget_s
        self.waited_s = 0.0

    def _busy_s(self) -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / self.hz  # all but idle and iowait

    def snapshot(self):
        return time.perf_counter(), time.process_time(), (self._busy_s() if self.available else 0.0)

    def foreign_cores(self, since) -> float:
        """Average number of CPUs that other processes kept busy since `since` (a snapshot)."""
        if not self.available:
            return float("nan")
        wall, cpu, busy = self.snapshot()
        elapsed = wall - since[0]
        return max(0.0, ((busy - since[2]) - (cpu - since[1])) / elapsed) if elapsed > 0 else 0.0

    def wait_for_quiet(self, per_call_s: float = 8.0) -> None:
        if not self.available or self.waited_s >= self.wait_budget_s:
            return
        start = time.perf_counter()
        deadline = start + min(per_call_s, self.wait_budget_s - self.waited_s)
        while True:
            since = self.snapshot()
            time.sleep(0.25)
            if self.foreign_cores(since) < BUSY_NEIGHBOUR_CORES / 2 or time.perf_counter() >= deadline:
                break
        self.waited_s += time.perf_counter() - start


class Bench:
    def __init__(self, backend, monitor: CpuMonitor):
        import torch

        from core.models.generation import GenerationSettings

        self.torch = torch
        self.backend = backend
        self.model = backend.model
        self.tokenizer = backend.tokenizer
        self.monitor = monitor
        # Greedy with the studio's default repetition penalty; no stop strings anywhere.
        self.base_settings = GenerationSettings(temperature=0.0, stop=())

    # ---- prompts -------------------------------------------------------------------------------------------
    @staticmethod
    def rendered(text: str):
        from core.models.base import RenderedPrompt

        # stop=() on purpose: the completion format would otherwise add "\nQuestion:" as a stop string.
        return RenderedPrompt((), text, True, "completion", ())

    def n_tokens(self, text: str) -> int:
        return self.backend.count_tokens(self.rendered(text))  # as the studio tokenises it (BOS included)

    def prompt_of_exactly(self, n_tokens: int) -> str:
        """Context + QUESTION whose tokenisation (BOS included) is exactly n_tokens long."""
        tok = self.tokenizer
        context = CONTEXT
        while len(tok(context, add_special_tokens=False)["input_ids"]) < n_tokens:
            context += CONTEXT
        ids = tok(context, add_special_tokens=False)["input_ids"]
        budget = n_tokens - self.n_tokens(QUESTION)
        for cut in range(budget + 3, max(budget - 30, 1), -1):  # decode/encode may merge pieces at the seam
            text = tok.decode(ids[:cut]).rstrip() + QUESTION
            if self.n_tokens(text) == n_tokens:
                return text
        raise RuntimeError(f"could not build a prompt of exactly {n_tokens} tokens")

    def inputs(self, prompt):
        encoded = self.tokenizer(prompt.text, return_tensors="pt", add_special_tokens=prompt.add_special_tokens)
        return {k: v.to(self.model.device) for k, v in encoded.items()}

    def raw_kwargs(self, settings):
        """Exactly the generation arguments LocalModel.stream passes, minus the streamer and the cancel check."""
        tok = self.tokenizer
        return dict(
            max_new_tokens=settings.max_new_tokens,
            repetition_penalty=settings.repetition_penalty,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            do_sample=False, temperature=None, top_p=None, top_k=None,
        )

    # ---- the runs ------------------------------------------------------------------------------------------
    def studio_run(self, prompt, settings, backend=None) -> dict:
        self.monitor.wait_for_quiet()
        since = self.monitor.snapshot()
        start = time.perf_counter()
        stream = (backend or self.backend).stream(prompt, settings)
        first_seen = None
        for piece in stream:
            if first_seen is None and piece:
                first_seen = time.perf_counter() - start
        wall = time.perf_counter() - start
        return {"wall_s": wall, "cpu_s": time.process_time() - since[1], "tokens": stream.output_tokens,
                "first_token_s": stream.first_token_s, "first_seen_s": first_seen, "text": stream.text,
                "busy_neighbours": self.monitor.foreign_cores(since)}

    def raw_run(self, prompt, settings, in_thread: bool = False, streamer=None) -> dict:
        torch, model = self.torch, self.model

        def go():
            start = time.perf_counter()
            inputs = self.inputs(prompt)
            extra = {"streamer": streamer} if streamer is not None else {}
            with torch.inference_mode():
                ids = model.generate(**inputs, **self.raw_kwargs(settings), **extra)
            return ids, inputs["input_ids"].shape[1], time.perf_counter() - start

        self.monitor.wait_for_quiet()
        since = self.monitor.snapshot()
        if in_thread:
            box: dict = {}
            worker = threading.Thread(target=lambda: box.setdefault("result", go()))
            worker.start()
            worker.join()
            ids, prompt_len, wall = box["result"]
        else:
            ids, prompt_len, wall = go()
        generated = ids[0][prompt_len:]
        return {"wall_s": wall, "cpu_s": time.process_time() - since[1], "tokens": int(generated.shape[0]),
                "text": self.tokenizer.decode(generated, skip_special_tokens=True).strip(),
                "busy_neighbours": self.monitor.foreign_cores(since)}

    def raw_prefill(self, prompt) -> float:
        """One forward pass over the prompt, as generate's first step does it (KV cache, last logits only)."""
        torch, model = self.torch, self.model
        self.monitor.wait_for_quiet()
        start = time.perf_counter()
        inputs = self.inputs(prompt)
        with torch.inference_mode():
            model(**inputs, use_cache=True, logits_to_keep=1)
        return time.perf_counter() - start

    def tokens_before_first_piece(self, prompt, settings) -> int | None:
        """How many generated tokens TextIteratorStreamer needs to emit its first text (it waits for word ends; the
        studio's batcher emits every decodable token, so this is what the studio no longer waits for)."""
        from transformers import TextStreamer

        class Counting(TextStreamer):
            def __init__(self, tokenizer):
                super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
                self.seen, self.first_at = 0, None

            def put(self, value):
                if not self.next_tokens_are_prompt:
                    self.seen += 1
                super().put(value)

            def on_finalized_text(self, text, stream_end=False):
                if text and self.first_at is None:
                    self.first_at = self.seen

        streamer = Counting(self.tokenizer)
        self.raw_run(prompt, settings, streamer=streamer)
        return streamer.first_at


def concurrent_chats(backend, prompts, settings, monitor: CpuMonitor) -> dict:
    """Every prompt asked at once from its own thread, as eight browser sessions would: first-token times and the
    answer tokens per second of the whole burst."""
    monitor.wait_for_quiet()
    since = monitor.snapshot()
    results: list = [None] * len(prompts)
    gate = threading.Barrier(len(prompts) + 1)

    def chat(i: int) -> None:
        gate.wait()
        asked = time.perf_counter()
        stream = backend.stream(prompts[i], settings)
        first = None
        for piece in stream:
            if first is None and piece:
                first = time.perf_counter() - asked
        results[i] = (first if first is not None else time.perf_counter() - asked, stream.output_tokens)

    threads = [threading.Thread(target=chat, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    firsts = sorted(r[0] for r in results)
    return {"first_token_p50_s": round(statistics.median(firsts), 3),
            "first_token_p95_s": round(firsts[min(len(firsts) - 1, int(round(0.95 * (len(firsts) - 1))))], 3),
            "answer_tokens_per_s": round(sum(r[1] for r in results) / wall, 2), "wall_s": round(wall, 2),
            "busy_neighbours": round(monitor.foreign_cores(since), 2)}


def fast_engine_section(bench: "Bench", args, settings, prompt, ttft_prompts) -> dict | None:
    """[3] the llama.cpp engine next to the transformers stream, in the same process."""
    from core.models import engine
    from core.models.registry import get_backend
    from core.models.source import ModelSource

    if not engine.llama_cpp_installed():
        print("\n[3] llama.cpp: not installed (make fast); skipped", flush=True)
        return None
    os.environ["STUDIO_ENGINE"] = "llama.cpp"
    fast = get_backend(ModelSource())
    os.environ["STUDIO_ENGINE"] = "transformers"
    print(f"\n[3] llama.cpp: {fast.name}, {fast.card.dtype}, context {fast.context_length}", flush=True)
    bench.studio_run(prompt, settings, fast)  # warm-up
    runs = {"transformers": [], "llama.cpp": []}
    for rep in range(args.repeats):
        for name, backend in (("transformers", bench.backend), ("llama.cpp", fast))[::1 if rep % 2 == 0 else -1]:
            result = bench.studio_run(prompt, settings, backend)
            runs[name].append(result)
            print(f"  run {rep + 1} {name:12s} {result['tokens']:4d} tokens  {result['wall_s']:6.2f} s  "
                  f"{result['tokens'] / result['wall_s']:6.2f} tok/s  other processes "
                  f"{result['busy_neighbours']:.2f} CPUs", flush=True)
    tps = {name: median([r["tokens"] / r["wall_s"] for r in rs]) for name, rs in runs.items()}
    same_text = len({r["text"] for rs in runs.values() for r in rs}) == 1
    ttft = {}
    for n_tokens, ttft_prompt in ttft_prompts.items():
        first = replace(settings, max_new_tokens=8)
        for name, backend in (("transformers", bench.backend), ("llama.cpp", fast)):
            bench.studio_run(ttft_prompt, first, backend)  # warm-up
            ttft[f"{name}_{n_tokens}"] = median([bench.studio_run(ttft_prompt, first, backend)["first_token_s"]
                                                 for _ in range(args.ttft_repeats)])
    chat_settings = replace(settings, max_new_tokens=args.chat_tokens)
    chats = [bench.rendered(f"Question: {question}\nAnswer:") for question in CHATS]
    burst = {name: concurrent_chats(backend, chats, chat_settings, bench.monitor)
             for name, backend in (("transformers", bench.backend), ("llama.cpp", fast))}
    for name, found in burst.items():
        print(f"  8 chats at once, {name:12s}: first token p50 {found['first_token_p50_s']:.2f} s, p95 "
              f"{found['first_token_p95_s']:.2f} s, {found['answer_tokens_per_s']:.1f} answer tok/s", flush=True)
    busy = [r["busy_neighbours"] for rs in runs.values() for r in rs] + [b["busy_neighbours"] for b in burst.values()]
    return {"fast_tokens_per_s": round(tps["llama.cpp"], 2), "transformers_stream_tokens_per_s": round(
        tps["transformers"], 2), "fast_speedup": round(tps["llama.cpp"] / tps["transformers"], 2),
        "fast_same_text": same_text, "ttft_s": {k: round(v, 3) for k, v in ttft.items()}, "concurrent_8": burst,
        "fast_weights": fast.card.dtype, "fast_busy_runs": sum(b > BUSY_NEIGHBOUR_CORES for b in busy)}


def ladder_section() -> dict:
    """[4] the sample project's 40 x 5 ladder on each engine: seconds and identical greedy answers."""
    from core.evaluate import runs, variants
    from core.recipe import RecipeStore
    from core.sample import ladder_ready_project

    os.environ["STUDIO_ENGINE"] = "transformers"
    project = ladder_ready_project(lambda **event: print(f"  {event.get('message', '')}", flush=True))
    rungs = variants.ladder(project, RecipeStore(project).load())
    found: dict = {}
    answers: dict = {}
    for name in ("transformers", "llama.cpp"):
        os.environ["STUDIO_ENGINE"] = name
        (project.subdir("cache") / runs.CACHE_FILE).unlink(missing_ok=True)  # answered afresh, not from the cache
        evaluation = runs.create_eval_run(project, "eval", rungs, runs.EvalOptions(semantic=False))
        started = time.perf_counter()
        runs.execute(project, evaluation.id, lambda **event: None)
        found[f"{name}_s"] = round(time.perf_counter() - started, 1)
        answers[name] = {(row["variant"], row["record_id"]): row["answer"] for row in evaluation.results()}
        print(f"  ladder on {name}: {found[f'{name}_s']} s for {len(answers[name])} answers", flush=True)
    os.environ["STUDIO_ENGINE"] = "transformers"
    same: dict = {}
    for (rung, record), text in answers["transformers"].items():
        same.setdefault(rung, [0, 0])
        same[rung][0] += text == answers["llama.cpp"].get((rung, record))
        same[rung][1] += 1
    found["identical_answers"] = {rung: f"{n}/{total}" for rung, (n, total) in same.items()}
    found["answers"] = len(answers["transformers"])
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    t_total = time.perf_counter()

    import torch

    from core.models.registry import get_backend
    from core.models.source import ModelSource

    os.environ["STUDIO_ENGINE"] = "transformers"  # [1] and [2] measure the transformers path; [3] adds llama.cpp
    t0 = time.perf_counter()
    backend = get_backend(ModelSource())
    load_s = time.perf_counter() - t0
    device = str(backend.model.device)
    monitor = CpuMonitor(args.quiet_wait)
    bench = Bench(backend, monitor)
    print(f"model: {backend.name}  device: {device}  dtype: {backend.model.dtype}  "
          f"torch threads: {torch.get_num_threads()}  cpus: {os.cpu_count()}  load: {load_s:.1f} s", flush=True)

    # ---- 1. throughput ------------------------------------------------------------------------------------
    settings = replace(bench.base_settings, max_new_tokens=args.new_tokens)
    prompt = bench.rendered(THROUGHPUT_PROMPT)
    prompt_len = backend.count_tokens(prompt)
    variants = [("studio", lambda: bench.studio_run(prompt, settings)),
                ("raw", lambda: bench.raw_run(prompt, settings))]
    if args.thread_control:
        variants.append(("raw_thread", lambda: bench.raw_run(prompt, settings, in_thread=True)))

    print(f"\n[1] throughput: prompt {prompt_len} tokens, max_new_tokens {args.new_tokens}, greedy, no stops; "
          f"warm-up + {args.repeats} alternating runs of {', '.join(n for n, _ in variants)}", flush=True)
    warm = {name: fn() for name, fn in variants}  # the first generate calls pay one-off costs
    same_text = len({r["text"] for r in warm.values()}) == 1
    if not same_text:
        print("  WARNING: the variants produced different text (greedy decoding should make them identical)")
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    for rep in range(args.repeats):
        for name, fn in (variants if rep % 2 == 0 else variants[::-1]):
            result = fn()
            runs[name].append(result)
            flag = "  <- busy machine" if result["busy_neighbours"] > BUSY_NEIGHBOUR_CORES else ""
            print(f"  run {rep + 1} {name:10s} {result['tokens']:4d} tokens  {result['wall_s']:6.2f} s  "
                  f"{result['tokens'] / result['wall_s']:6.2f} tok/s  cpu {result['cpu_s']:6.2f} s  "
                  f"other processes {result['busy_neighbours']:.2f} CPUs{flag}", flush=True)

    counts = {name: sorted({r["tokens"] for r in rs}) for name, rs in runs.items()}
    counts_match = all(c == [args.new_tokens] for c in counts.values())
    if not counts_match:
        print(f"  WARNING: token counts differ from max_new_tokens={args.new_tokens}: {counts}; "
              "tokens/s uses each run's own exact count")
    tps = {name: median([r["tokens"] / r["wall_s"] for r in rs]) for name, rs in runs.items()}
    wall = {name: median([r["wall_s"] for r in rs]) for name, rs in runs.items()}
    cpu = {name: median([r["cpu_s"] for r in rs]) for name, rs in runs.items()}
    ratio = tps["studio"] / tps["raw"]
    ratio_thread = tps["studio"] / tps["raw_thread"] if "raw_thread" in tps else None

    # ---- 2. time to first token ---------------------------------------------------------------------------
    ttft_prompt = bench.rendered(bench.prompt_of_exactly(args.prompt_tokens))
    ttft_len = backend.count_tokens(ttft_prompt)
    # A few new tokens: enough for TextIteratorStreamer to release its first word, few enough to be cheap.
    ttft_settings = replace(settings, max_new_tokens=8)
    one_token = replace(settings, max_new_tokens=1)
    print(f"\n[2] time to first token: prompt {ttft_len} tokens; warm-up + {args.ttft_repeats} runs each", flush=True)
    bench.studio_run(ttft_prompt, ttft_settings)
    bench.raw_prefill(ttft_prompt)
    bench.raw_run(ttft_prompt, one_token)
    first_piece_after = bench.tokens_before_first_piece(ttft_prompt, ttft_settings)
    ttft, seen, prefill, gen1, ttft_busy = [], [], [], [], []
    for _ in range(args.ttft_repeats):
        result = bench.studio_run(ttft_prompt, ttft_settings)
        ttft.append(result["first_token_s"])
        seen.append(result["first_seen_s"])
        ttft_busy.append(result["busy_neighbours"])
        prefill.append(bench.raw_prefill(ttft_prompt))
        gen1.append(bench.raw_run(ttft_prompt, one_token)["wall_s"])
    print("  studio first_token_s: " + "  ".join(f"{v:.3f}" for v in ttft)
          + "   raw prefill: " + "  ".join(f"{v:.3f}" for v in prefill), flush=True)
    ttft_s, prefill_s, gen1_s = median(ttft), median(prefill), median(gen1)

    ttft_prompts = {args.prompt_tokens: ttft_prompt,
                    1000: bench.rendered(bench.prompt_of_exactly(1000))}
    fast = fast_engine_section(bench, args, settings, prompt, ttft_prompts)
    ladder = ladder_section() if args.ladder else None

    # ---- report -------------------------------------------------------------------------------------------
    all_busy = [r["busy_neighbours"] for rs in runs.values() for r in rs] + ttft_busy
    busy_runs = sum(b > BUSY_NEIGHBOUR_CORES for b in all_busy)
    total_s = time.perf_counter() - t_total
    rows = [
        ("studio stream tokens/s (median)", f"{tps['studio']:.2f}", "", ""),
        ("raw generate tokens/s (median)", f"{tps['raw']:.2f}", "", ""),
        ("stream ratio studio/raw", f"{ratio:.3f}", f">= {GOAL_STREAM_RATIO}",
         "yes" if ratio >= GOAL_STREAM_RATIO else "NO"),
    ]
    if ratio_thread is not None:
        rows += [("raw generate in a worker thread tokens/s", f"{tps['raw_thread']:.2f}", "", ""),
                 ("  ratio studio/raw_thread (streamer cost only)", f"{ratio_thread:.3f}", "", "")]
    if fast is not None:
        rows += [
            ("llama.cpp stream tokens/s (median)", f"{fast['fast_tokens_per_s']:.2f}", "", ""),
            ("  speed-up over the transformers stream", f"{fast['fast_speedup']:.2f}x", f">= {GOAL_FAST_SPEEDUP:g}x",
             "yes" if fast["fast_speedup"] >= GOAL_FAST_SPEEDUP else "NO"),
            ("  same text as transformers (greedy)", str(fast["fast_same_text"]), "True", ""),
        ]
        for key, value in fast["ttft_s"].items():
            engine_name, n_tokens = key.rsplit("_", 1)
            rows.append((f"TTFT {engine_name}, {n_tokens}-token prompt (s)", f"{value:.3f}",
                         f"< {GOAL_TTFT_S}" if n_tokens == str(args.prompt_tokens) else "", ""))
        for name, found in fast["concurrent_8"].items():
            rows.append((f"8 chats at once, {name}: p95 first token / tok/s",
                         f"{found['first_token_p95_s']:.2f} / {found['answer_tokens_per_s']:.1f}", "", ""))
    if ladder is not None:
        rows += [("ladder 40 x 5, transformers (s)", f"{ladder['transformers_s']:.0f}", "", ""),
                 ("ladder 40 x 5, llama.cpp (s)", f"{ladder['llama.cpp_s']:.0f}", f"<= {GOAL_LADDER_S:.0f}",
                  "yes" if ladder["llama.cpp_s"] <= GOAL_LADDER_S else "NO")]
    rows += [
        ("wall per run studio / raw (s, median)", f"{wall['studio']:.2f} / {wall['raw']:.2f}", "", ""),
        ("process CPU per run studio / raw (s, median)", f"{cpu['studio']:.2f} / {cpu['raw']:.2f}", "", ""),
        (f"TTFT studio, {ttft_len}-token prompt (s, median)", f"{ttft_s:.3f}", f"< {GOAL_TTFT_S}",
         "yes" if ttft_s < GOAL_TTFT_S else "NO"),
        ("  first piece seen by the reader (s, median)", f"{median(seen):.3f}", "", ""),
        ("  tokens generated before the first piece", f"{first_piece_after}", "", ""),
        ("raw prefill, one forward pass (s, median)", f"{prefill_s:.3f}", "", ""),
        ("raw generate, max_new_tokens=1 (s, median)", f"{gen1_s:.3f}", "", ""),
        ("runs with busy neighbours / all timed runs", f"{busy_runs} / {len(all_busy)}", "0", ""),
        ("waited for a quiet machine (s)", f"{monitor.waited_s:.1f}", "", ""),
        ("total runtime (s, model load included)", f"{total_s:.1f}", "", ""),
    ]
    print("\n" + "-" * 80)
    print(f"{'measure':46s} {'value':>13s}  {'goal':>9s}  ok")
    print("-" * 80)
    for name, value, goal, ok in rows:
        print(f"{name:46s} {value:>13s}  {goal:>9s}  {ok}")
    print("-" * 80)
    if busy_runs:
        print(f"note: other processes used more than {BUSY_NEIGHBOUR_CORES} CPUs during {busy_runs} timed runs; "
              "CPU figures are unreliable, rerun on an idle machine.")

    figures = {
        "studio_tokens_per_s": round(tps["studio"], 3),
        "raw_tokens_per_s": round(tps["raw"], 3),
        "stream_ratio": round(ratio, 4),
        "ttft_s_200_tokens": round(ttft_s, 4),
        "raw_prefill_s_200_tokens": round(prefill_s, 4),
        "goal_stream_ratio": GOAL_STREAM_RATIO,
        "goal_ttft_s": GOAL_TTFT_S,
        "meets_stream_ratio": bool(ratio >= GOAL_STREAM_RATIO),
        "meets_ttft": bool(ttft_s < GOAL_TTFT_S),
        "prompt_tokens": ttft_len,
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "device": device,
        "raw_thread_tokens_per_s": round(tps["raw_thread"], 3) if "raw_thread" in tps else None,
        "stream_ratio_vs_raw_thread": round(ratio_thread, 4) if ratio_thread is not None else None,
        "ttft_first_piece_seen_s": round(median(seen), 4),
        "tokens_before_first_piece": first_piece_after,
        "raw_generate_1_token_s": round(gen1_s, 4),
        "throughput_prompt_tokens": prompt_len,
        "token_counts_match": counts_match,
        "same_text": same_text,
        "repeats": args.repeats,
        "ttft_repeats": args.ttft_repeats,
        "cpus": os.cpu_count(),
        "busy_runs": busy_runs,
        "timed_runs": len(all_busy),
        "max_other_process_cpus": round(max(all_busy), 2) if all_busy else None,
        "waited_for_quiet_s": round(monitor.waited_s, 1),
        "total_runtime_s": round(total_s, 1),
        "llama_cpp": fast,
        "ladder": ladder,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
