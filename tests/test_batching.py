"""Concurrent streams on one loaded model are generated together and each gets exactly its own answer."""

import threading
import time

import pytest

from core.models.base import CompletionLabels
from core.models.generation import GenerationSettings
from core.models.local import LocalModel

LABELS = CompletionLabels()
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=12)
QUESTIONS = ["What is the capital of France?", "Xin chào, bạn khỏe không?", "Open hours?", "a b c d e f g h i j",
             "How much is a basic service for a bike?", "Why?", "Tell me about returns and refunds please", "Hi"]


def fresh(tiny_backend, arch="llama", chat=False) -> LocalModel:
    """A LocalModel sharing the session's weights but with its own lock and batcher (counters start at 0)."""
    shared = tiny_backend(arch, chat)
    return LocalModel(shared.name, shared.model, shared.tokenizer)


def render(backend, question):
    return backend.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}], LABELS)


def run_concurrently(backend, jobs, hold_lock=True):
    """Start every (prompt, settings) stream in its own thread while the model is busy, then let them run."""
    streams = [backend.stream(prompt, settings) for prompt, settings in jobs]
    texts = [None] * len(streams)

    def read(i):
        texts[i] = streams[i].run_to_end()

    submitted = backend.batcher.submitted
    if hold_lock:
        backend.lock.acquire()  # the model is "busy": the requests gather in the queue
    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(streams))]
    for thread in threads:
        thread.start()
    if hold_lock:
        deadline = time.time() + 10
        while backend.batcher.submitted < submitted + len(streams) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # the worker has taken its first batch and waits for the lock
        backend.lock.release()
    for thread in threads:
        thread.join(timeout=120)
    return streams, texts


@pytest.mark.parametrize("arch,chat", [("llama", False), ("gemma3", True), ("phi", False)])
def test_concurrent_streams_equal_one_at_a_time(tiny_backend, arch, chat):
    backend = fresh(tiny_backend, arch, chat)
    prompts = [render(backend, q) for q in QUESTIONS]
    alone = []
    for prompt in prompts:
        stream = backend.stream(prompt, GREEDY)
        alone.append((stream.run_to_end(), stream.prompt_tokens, stream.output_tokens))
    assert backend.batcher.largest_batch == 1
    batches_before = backend.batcher.batches_run
    streams, texts = run_concurrently(backend, [(p, GREEDY) for p in prompts])
    assert [(t, s.prompt_tokens, s.output_tokens) for t, s in zip(texts, streams)] == alone
    assert backend.batcher.batches_run - batches_before <= 2  # 8 chats, at most 2 generate calls
    assert backend.batcher.largest_batch >= 4


def test_each_row_keeps_its_own_limit_and_stop(tiny_backend):
    backend = fresh(tiny_backend)
    prompt = render(backend, QUESTIONS[0])
    full = backend.stream(prompt, GenerationSettings(max_new_tokens=20)).run_to_end()
    words = full.split()
    assert len(words) >= 3, "the tiny model should say a few words"
    stop_word = words[2]
    jobs = [(prompt, GenerationSettings(max_new_tokens=3)), (prompt, GenerationSettings(max_new_tokens=20)),
            (prompt, GenerationSettings(max_new_tokens=20, stop=(stop_word,)))]
    streams, texts = run_concurrently(backend, jobs)
    assert 0 < streams[0].output_tokens <= 3
    assert texts[1] == full and streams[1].output_tokens > streams[0].output_tokens
    assert stop_word not in texts[2] and full.startswith(texts[2]) and streams[2].stopped_by == "stop"


def test_cancelling_one_chat_leaves_the_others(tiny_backend):
    backend = fresh(tiny_backend)
    prompts = [render(backend, q) for q in QUESTIONS[:3]]
    settings = GenerationSettings(max_new_tokens=40)
    expected = [backend.stream(p, settings).run_to_end() for p in prompts]
    streams = [backend.stream(p, settings) for p in prompts]
    streams[1].cancel()  # the visitor left before the batch started
    results = [None] * 3

    def read(i):
        results[i] = streams[i].run_to_end()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results[0] == expected[0] and results[2] == expected[2]
    assert streams[1].stopped_by == "cancelled" and streams[1].output_tokens == 0


def test_sampled_and_greedy_chats_are_not_mixed(tiny_backend):
    backend = fresh(tiny_backend)
    prompt = render(backend, QUESTIONS[0])
    sampled = GenerationSettings(temperature=0.9, top_p=0.9, max_new_tokens=8)
    greedy_alone = backend.stream(prompt, GREEDY).run_to_end()
    streams, texts = run_concurrently(backend, [(prompt, GREEDY), (prompt, sampled), (prompt, GREEDY)])
    assert texts[0] == texts[2] == greedy_alone
    assert streams[1].output_tokens > 0
    assert backend.batcher.largest_batch <= 2


def test_batches_group_requests_by_sampling_settings(tiny_backend):
    from core.models.batching import Batcher, Request

    backend = fresh(tiny_backend)
    batcher = Batcher(backend.model, backend.tokenizer, backend.lock, max_batch=2)
    sampled = GenerationSettings(temperature=0.9, max_new_tokens=8)
    requests = [Request([1, 2], settings, (), threading.Event())
                for settings in (GREEDY, sampled, GenerationSettings(max_new_tokens=3), GREEDY, sampled)]
    for request in requests:
        batcher.waiting.put(request)  # queued before the worker looks: no thread runs here
    first, second, third = batcher._next_batch(), batcher._next_batch(), batcher._next_batch()
    # greedy rows share a batch whatever their length limit; at most max_batch rows; order kept
    assert first == [requests[0], requests[2]]
    assert second == [requests[1], requests[4]]
    assert third == [requests[3]]


def test_a_failing_batch_reports_to_every_reader(tiny_backend, monkeypatch):
    backend = fresh(tiny_backend)
    prompts = [render(backend, q) for q in QUESTIONS[:2]]

    def broken(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend.model, "generate", broken)
    streams = [backend.stream(p, GREEDY) for p in prompts]
    for stream in streams:
        with pytest.raises(RuntimeError, match="out of memory"):
            stream.run_to_end()
    monkeypatch.undo()
    assert backend.stream(prompts[0], GREEDY).run_to_end() is not None  # the worker survived


def test_an_idle_worker_ends_so_a_dropped_model_can_be_freed(tiny_backend, monkeypatch):
    import gc
    import weakref

    from core.models import batching

    monkeypatch.setattr(batching, "IDLE_S", 0.2)
    backend = fresh(tiny_backend)
    prompt = render(backend, QUESTIONS[0])
    first = backend.stream(prompt, GREEDY).run_to_end()
    deadline = time.time() + 10
    while backend.batcher._worker is not None and time.time() < deadline:
        time.sleep(0.05)
    assert backend.batcher._worker is None
    assert backend.stream(prompt, GREEDY).run_to_end() == first  # a new worker starts on demand
    worker = weakref.ref(backend.batcher)
    del backend
    deadline = time.time() + 10
    while worker() is not None and time.time() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert worker() is None


@pytest.mark.parametrize("arch,chat", [("llama", False), ("gemma3", True)])
def test_long_answers_go_on_in_chunks_and_newcomers_join(tiny_backend, monkeypatch, arch, chat):
    from core.models import batching

    backend = fresh(tiny_backend, arch, chat)
    prompt, other = render(backend, QUESTIONS[0]), render(backend, QUESTIONS[4])
    settings = GenerationSettings(max_new_tokens=30)
    whole = backend.stream(prompt, settings)
    reference = whole.run_to_end()
    assert whole.output_tokens >= 12, "the tiny model should write a long answer"
    alone_other = backend.stream(other, GenerationSettings(max_new_tokens=6)).run_to_end()

    monkeypatch.setattr(batching, "CHUNK_STEPS", 4)
    before = backend.batcher.batches_run
    chunked = backend.stream(prompt, settings)
    assert chunked.run_to_end() == reference and chunked.output_tokens == whole.output_tokens
    assert backend.batcher.batches_run - before >= whole.output_tokens // 4  # it went on chunk after chunk

    long = backend.stream(prompt, settings)
    reader = threading.Thread(target=long.run_to_end)
    reader.start()
    deadline = time.time() + 30
    while long.first_token_s is None and time.time() < deadline:
        time.sleep(0.005)
    with backend.lock:  # the long answer waits before its next chunk; the newcomer arrives meanwhile
        submitted = backend.batcher.submitted
        newcomer = backend.stream(other, GenerationSettings(max_new_tokens=6))
        answer = []
        asking = threading.Thread(target=lambda: answer.append(newcomer.run_to_end()))
        asking.start()
        while backend.batcher.submitted == submitted and time.time() < deadline:
            time.sleep(0.005)
    asking.join(timeout=60)
    assert answer == [alone_other]
    reader.join(timeout=60)
    assert long.text == reference
    assert backend.batcher.largest_batch == 2  # the newcomer joined the long answer between chunks


def test_the_first_token_bans_hold_for_streams_and_batches_and_only_for_the_first_token(tiny_backend, monkeypatch):
    import torch

    from core.models.batching import Finished, Request

    backend = fresh(tiny_backend)
    prompt = render(backend, QUESTIONS[0])
    assert prompt.format == "completion" and backend.first_token_bans(prompt) == backend.newline_token_ids
    ids = backend.encode(prompt)
    with torch.no_grad():
        favourite = int(backend.model(torch.tensor([ids])).logits[0, -1].argmax())
    settings = GenerationSettings(max_new_tokens=6)

    def first_tokens(bans):
        request = backend.batcher.submit(Request(ids, settings, (), threading.Event(), first_token_bans=bans))
        while not isinstance(request.pieces.get(timeout=60), Finished):
            pass
        return request.generated

    assert first_tokens(())[0] == favourite
    banned = first_tokens((favourite,))
    assert banned[0] != favourite and len(banned) == 6
    monkeypatch.setattr(backend, "first_token_bans", lambda rendered: (favourite,))
    free = backend.generate_batch([prompt], settings)  # the model's favourite is banned here too
    assert free[0]["text"] == backend.tokenizer.decode(banned, skip_special_tokens=True).strip()


def test_newline_tokens_are_the_white_space_tokens_with_a_line_break(tiny_backend):
    backend = fresh(tiny_backend)
    found = backend.newline_token_ids
    texts = [backend.tokenizer.decode([i]) for i in found]
    assert found and all("\n" in text and not text.strip() for text in texts)
    assert backend.tokenizer.encode("\n", add_special_tokens=False)[0] in found
    assert not set(found) & set(backend.tokenizer.encode("Open hours", add_special_tokens=False))


def test_below_passages_an_answer_may_not_open_a_bracket_or_a_parenthesis(tiny_backend):
    from core.rag.retriever import context_block
    from core.rag.store import Hit

    backend = fresh(tiny_backend)
    newlines, openers = backend.answer_start_tokens
    texts = [backend.tokenizer.decode([i]) for i in openers]
    assert openers and all(text.lstrip(" ")[0] in "[(" for text in texts)
    for opener in ("(", "[", " (", " ["):
        ids = backend.tokenizer.encode(opener, add_special_tokens=False)
        assert len(ids) > 1 or ids[0] in openers  # the tiny BPE writes " (" as a space, then "("
    assert not set(openers) & set(backend.tokenizer.encode("Open hours (daily)", add_special_tokens=False)[:2])
    hits = [Hit("1", "d", "hours.md", 0, "Hours", "We open at nine.", 1.0)]
    with_passages = backend.render([{"role": "system", "content": "Be brief.\n\n" + context_block(hits, cite=False)},
                                    {"role": "user", "content": "Open hours?"}], LABELS)
    assert backend.first_token_bans(with_passages) == newlines + openers
    assert backend.first_token_bans(render(backend, "Open hours?")) == newlines  # a list answer may start with "["
