"""Demo load test: N visitors chat at once with one `studio demo` server, in real browser sessions, on loopback.

Run:  .venv/bin/python bench/demo_load.py [--sessions 8] [--seconds 60] [--no-baseline]
      (uses the embedded model converted under .studio-home, as the browser tests do)

What it does, on one machine:
1. Creates a throw-away project whose saved recipe is the embedded Gemma 3 270M (no retrieval, greedy,
   `--max-new-tokens`), and starts `studio demo` for it on a free loopback port.
2. Opens N headless Chromium sessions (one browser, N contexts: N separate Streamlit sessions). One warm-up
   question loads the model; then every session asks questions from a list, one after the other, until
   `--seconds` have passed (a question started before the deadline is awaited).
3. Per answer: time to first token as a visitor sees it (Enter pressed → first text of the answer in the page)
   and the answer's tokens (the embedded tokenizer on the text shown). Errors: an exception box, an error
   message, or an answer that never came.
4. One model in memory: the server's resident memory may grow by less than the model's weights during the load
   (a second copy would add at least that much).
5. Baseline (unless --no-baseline): the same load with STUDIO_MAX_BATCH=1, i.e. chats queued one at a time on
   the same shared model. Ratios: batched vs queued throughput and p95 time to first token.
6. The engine alone (unless --no-baseline): in this process, N chats asked at once on the loaded model, batched
   vs one at a time, without browser or Streamlit: what batching itself buys.

Chromium shares the CPUs with the server, so absolute times are pessimistic on a small machine; both runs pay it.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bench  # noqa: E402,F401  (offline, quiet environment)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTIONS = [
    "What are your opening hours on Saturday?", "How much does a basic bike service cost?",
    "Can I return a helmet I bought last week?", "Do you repair electric bikes?",
    "How long does a wheel truing take?", "Do you offer student discounts?",
    "Can I rent a bike for a weekend?", "What should I check before a long ride?",
    "Bạn có sửa xe đạp điện không?", "Where can I park my bike while it is being repaired?",
]
MESSAGES = '[data-testid="stChatMessage"]'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="How long the sessions keep asking.")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--no-baseline", action="store_true", help="Skip the one-at-a-time comparison run.")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_home(max_new_tokens: int) -> tuple[Path, str]:
    """A temporary STUDIO_HOME sharing the converted embedded model, with one project and a saved recipe."""
    models = REPO_ROOT / ".studio-home"
    subprocess.run([sys.executable, "-m", "core.models.convert", "embedded"], cwd=REPO_ROOT, check=True,
                   env={**os.environ, "STUDIO_HOME": str(models)}, stdout=subprocess.DEVNULL)
    home = Path(tempfile.mkdtemp(prefix="demo-load-"))
    (home / "models").symlink_to(models / "models")
    code = ("from core.workspace import Workspace; from core.recipe import Recipe, RecipeStore; "
            "from core.models.generation import GenerationSettings; "
            "p = Workspace().create('Demo load'); "
            f"RecipeStore(p).save(Recipe(generation=GenerationSettings(max_new_tokens={max_new_tokens})), note='load');"
            "print(p.slug)")
    slug = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True, text=True,
                          env={**os.environ, "STUDIO_HOME": str(home)}).stdout.strip()
    return home, slug


def start_demo(home: Path, slug: str, max_batch: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "STUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if max_batch is not None:
        env["STUDIO_MAX_BATCH"] = str(max_batch)
    log = open(home / f"demo-{port}.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "core.cli", "demo", slug, "--port", str(port)], cwd=REPO_ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the demo server did not start: " + (home / f"demo-{port}.log").read_text()[-2000:])


def streamlit_pid(server: subprocess.Popen) -> int:
    """`studio demo` starts Streamlit as its child; that child holds the model."""
    import psutil

    children = psutil.Process(server.pid).children(recursive=True)
    return children[-1].pid if children else server.pid


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2 ** 20


async def ask(page, question: str, timeout_s: float = 300) -> dict:
    """Type a question, press Enter; time the first answer text and wait until the answer is complete."""
    before = await page.locator(MESSAGES).count()
    box = page.get_by_placeholder("Ask the assistant")
    await box.fill(question)
    started = time.perf_counter()
    await box.press("Enter")
    answer_index = before + 1
    await page.wait_for_function(
        "i => { const m = document.querySelectorAll('[data-testid=stChatMessage]');"
        " if (m.length <= i) return false; const t = m[i].querySelector('[data-testid=stMarkdownContainer]');"
        " return t !== null && t.innerText.trim().length > 0 }", arg=answer_index, timeout=timeout_s * 1000,
        polling=50)
    first = time.perf_counter() - started
    # Complete: the page re-ran after the answer, which adds the thumbs under it.
    await page.wait_for_function(
        "i => { const m = document.querySelectorAll('[data-testid=stChatMessage]');"
        " return m.length > i && m[i].querySelector('button') !== null }",
        arg=answer_index, timeout=timeout_s * 1000, polling=100)
    total = time.perf_counter() - started
    text = (await page.locator(MESSAGES).nth(answer_index).locator('[data-testid="stMarkdownContainer"]').first
            .inner_text()).strip()
    problems = await page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count()
    return {"ttft_s": first, "total_s": total, "text": text, "error": problems > 0}


async def run_sessions(url: str, sessions: int, seconds: float, pid: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        pages = []
        for _ in range(sessions):
            context = await browser.new_context(viewport={"width": 1000, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(120_000)
            await page.goto(url)
            await page.get_by_placeholder("Ask the assistant").wait_for()
            pages.append(page)
        warm = await ask(pages[0], "Hello!")  # loads the model; not counted
        await pages[0].get_by_role("button", name="New chat").click()
        await page_settled(pages[0])
        warm_rss = rss_mb(pid)
        answers, failures = [], []
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def visitor(index: int, page) -> None:
            turn = 0
            while time.perf_counter() < deadline:
                question = QUESTIONS[(index + turn) % len(QUESTIONS)]
                try:
                    result = await ask(page, question)
                except Exception as exc:  # a timeout or a broken page
                    failures.append(f"session {index}: {type(exc).__name__}: {str(exc)[:200]}")
                    return
                result.update(session=index, question=question)
                (failures.append(f"session {index}: error shown") if result["error"] else answers.append(result))
                turn += 1
                if turn % 3 == 0:  # keep the page short, as a visitor starting over would
                    await page.get_by_role("button", name="New chat").click()
                    await page_settled(page)

        await asyncio.gather(*(visitor(i, p) for i, p in enumerate(pages)))
        elapsed = time.perf_counter() - start
        await browser.close()
    return {"answers": answers, "failures": failures, "elapsed_s": elapsed, "warm_up_s": warm["total_s"],
            "warm_rss_mb": warm_rss}


async def page_settled(page) -> None:
    await page.wait_for_function("() => document.querySelectorAll('[data-testid=stChatMessage]').length === 0",
                                 timeout=60_000, polling=100)


def count_tokens(texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    from core.models.convert import embedded_folder

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_folder()))
    return [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def model_mb() -> float:
    from core.models.convert import embedded_folder

    return sum(p.stat().st_size for p in embedded_folder().glob("*.safetensors")) / 2 ** 20


def engine_run(sessions: int, max_new_tokens: int, repeats: int = 3) -> dict:
    """The generation engine alone, in this process: `sessions` chats asked at the same moment on one loaded model,
    batched (the studio) vs one at a time (max_batch=1); no browser, no Streamlit. Median of `repeats` rounds."""
    import threading

    from core.models.base import CompletionLabels
    from core.models.batching import Batcher
    from core.models.generation import GenerationSettings
    from core.models.local import LocalModel
    from core.models.registry import get_backend
    from core.models.source import ModelSource

    shared = get_backend(ModelSource())
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    prompts = [shared.render([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], CompletionLabels())
               for i in range(sessions)]

    def round_of(model: LocalModel) -> dict:
        streams = [model.stream(prompt, settings) for prompt in prompts]
        started = time.perf_counter()
        threads = [threading.Thread(target=s.run_to_end) for s in streams]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        return {"tokens_per_s": sum(s.output_tokens for s in streams) / wall,
                "ttft_p95_s": percentile([s.first_token_s or wall for s in streams], 0.95)}

    results = {}
    for name, max_batch in (("batched", MAX_SESSIONS_BATCH), ("one_at_a_time", 1)):
        model = LocalModel(shared.name, shared.model, shared.tokenizer)
        model._batcher = Batcher(model.model, model.tokenizer, model.lock, max_batch)
        round_of(model)  # warm-up
        rounds = [round_of(model) for _ in range(repeats)]
        results[name] = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}
    results["throughput_ratio"] = round(results["batched"]["tokens_per_s"] / results["one_at_a_time"]["tokens_per_s"],
                                        2)
    results["ttft_p95_ratio"] = round(results["one_at_a_time"]["ttft_p95_s"] / results["batched"]["ttft_p95_s"], 2)
    return results


MAX_SESSIONS_BATCH = 8


def load_run(home: Path, slug: str, sessions: int, seconds: float, max_batch: int | None) -> dict:
    server, url = start_demo(home, slug, max_batch)
    try:
        pid = streamlit_pid(server)
        outcome = asyncio.run(run_sessions(url, sessions, seconds, pid))
        end_rss = rss_mb(pid)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    answers = outcome["answers"]
    tokens = count_tokens([a["text"] for a in answers])
    ttft = [a["ttft_s"] for a in answers]
    return {
        "max_batch": max_batch or int(os.environ.get("STUDIO_MAX_BATCH", "8")),
        "answers": len(answers), "errors": len(outcome["failures"]), "failures": outcome["failures"][:5],
        "sessions_answered": len({a["session"] for a in answers}),
        "ttft_p50_s": round(percentile(ttft, 0.5), 3), "ttft_p95_s": round(percentile(ttft, 0.95), 3),
        "answer_p50_s": round(percentile([a["total_s"] for a in answers], 0.5), 3),
        "tokens_per_s": round(sum(tokens) / outcome["elapsed_s"], 2),
        "answers_per_min": round(60 * len(answers) / outcome["elapsed_s"], 2),
        "mean_answer_tokens": round(statistics.mean(tokens), 1) if tokens else 0,
        "elapsed_s": round(outcome["elapsed_s"], 1), "warm_up_s": round(outcome["warm_up_s"], 1),
        "server_rss_model_loaded_mb": round(outcome["warm_rss_mb"], 1), "server_rss_end_mb": round(end_rss, 1),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    home, slug = prepare_home(args.max_new_tokens)
    saved_home = os.environ.get("STUDIO_HOME")
    os.environ["STUDIO_HOME"] = str(REPO_ROOT / ".studio-home")  # this process reads the converted model there
    try:
        weights = model_mb()
        engine = None if args.no_baseline else engine_run(args.sessions, args.max_new_tokens)
        batched = load_run(home, slug, args.sessions, args.seconds, None)
        baseline = None if args.no_baseline else load_run(home, slug, args.sessions, args.seconds, 1)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if saved_home is None:
            os.environ.pop("STUDIO_HOME", None)
        else:
            os.environ["STUDIO_HOME"] = saved_home
    # Measured from the model's first answer (warm-up) to the end: a second copy would add its weights.
    growth = batched["server_rss_end_mb"] - batched["server_rss_model_loaded_mb"]
    result = {
        "benchmark": "demo_load", "sessions": args.sessions, "seconds": args.seconds, "cpus": os.cpu_count(),
        "max_new_tokens": args.max_new_tokens, "model_weights_mb": round(weights, 1),
        **{k: v for k, v in batched.items()},
        "rss_growth_under_load_mb": round(growth, 1), "one_model_in_memory": growth < weights,
        "baseline_one_at_a_time": baseline,
        "engine_only": engine,
    }
    if baseline:
        result["throughput_ratio"] = round(batched["tokens_per_s"] / max(baseline["tokens_per_s"], 1e-9), 2)
        result["ttft_p95_ratio"] = round(baseline["ttft_p95_s"] / max(batched["ttft_p95_s"], 1e-9), 2)
    for label, run in (("batched", batched), ("one at a time", baseline)):
        if run:
            print(f"{label:>14}: {run['answers']} answers, {run['errors']} errors, TTFT p50 {run['ttft_p50_s']} s "
                  f"p95 {run['ttft_p95_s']} s, {run['tokens_per_s']} tok/s")
    if engine:
        print(f"engine alone: {engine['batched']['tokens_per_s']} vs {engine['one_at_a_time']['tokens_per_s']} tok/s "
              f"({engine['throughput_ratio']}x), p95 first token {engine['batched']['ttft_p95_s']} vs "
              f"{engine['one_at_a_time']['ttft_p95_s']} s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
