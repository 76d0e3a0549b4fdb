"""Concurrent chats share one loaded model: requests that wait together are answered in one batched `generate`.

Every browser session, demo visitor and `studio serve` client calls `LocalModel.stream`; the request joins a queue
and one worker thread per model takes all waiting requests with compatible sampling settings (up to MAX_BATCH),
left-pads them and generates them together. Each row streams its own text, stops on its own (EOS, its stop
strings, its own token limit, its own cancel) and the batch ends when every row is done or after CHUNK_STEPS
steps: rows still writing then go on in the next batch (from their prompt and what they wrote so far), together
with the requests that arrived meanwhile, so a new chat waits at most one chunk. On a CPU a step for 8 rows costs
little more than a step for one (reading the weights dominates), so waiting chats share the work instead of
queueing behind each other.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_BATCH = int(os.environ.get("STUDIO_MAX_BATCH", "8"))  # 1 turns batching off (one request at a time)
CHUNK_STEPS = 32  # a batch runs at most this many steps; then newcomers join the rows still writing
IDLE_S = 30.0  # an idle worker ends after this long; the next request starts a new one
GATHER_S = 0.05  # how long the worker waits for companions once a request arrived (threads start staggered)


@dataclass
class Request:
    input_ids: list[int]
    settings: object            # GenerationSettings
    stops: tuple[str, ...]
    cancel: threading.Event
    pieces: "queue.Queue" = field(default_factory=queue.Queue)  # text pieces, then a final (prompt, output) or error
    generated: list[int] = field(default_factory=list)
    emitted: str = ""
    done: bool = False
    first_token_bans: tuple[int, ...] = ()  # tokens the answer may not start with

    @property
    def should_end(self) -> bool:
        """Its reader left, it reached its own token limit, or its text shows one of its stop strings."""
        return (self.cancel.is_set() or len(self.generated) >= self.settings.max_new_tokens
                or any(stop in self.emitted for stop in self.stops))

    @property
    def sampling(self) -> tuple:
        s = self.settings
        sampled = s.temperature > 0
        return (sampled, s.temperature if sampled else 0.0, s.top_p if sampled else 1.0, s.repetition_penalty)


class Finished:
    def __init__(self, prompt_tokens: int = 0, output_tokens: int = 0, error: BaseException | None = None):
        self.prompt_tokens, self.output_tokens, self.error = prompt_tokens, output_tokens, error


class Batcher:
    """One per loaded model. `submit` returns a Request whose `pieces` queue the caller drains."""

    def __init__(self, model, tokenizer, lock: threading.Lock, max_batch: int = MAX_BATCH):
        self.model, self.tokenizer, self.lock = model, tokenizer, lock
        self.max_batch = max(1, max_batch)
        self.waiting: "queue.Queue[Request]" = queue.Queue()
        self.held: list[Request] = []  # taken from the queue but incompatible with the batch being formed
        self.submitted = 0
        self.batches_run = 0
        self.largest_batch = 0
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, request: Request) -> Request:
        with self._start_lock:
            self.submitted += 1
            self.waiting.put(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="generation-batcher", daemon=True)
                self._worker.start()
        return request

    def _next_batch(self) -> list[Request] | None:
        """The next batch; None once idle for IDLE_S (the worker ends, so a model the registry dropped is freed)."""
        continuing = bool(self.held)
        if continuing:
            first = self.held.pop(0)
        else:
            first = next_waiting(self)
            if first is None:
                return None
        batch, later = [first], []
        for request in self.held:
            (batch if request.sampling == first.sampling and len(batch) < self.max_batch else later).append(request)
        self.held = later
        deadline = time.monotonic() + (0.0 if continuing else GATHER_S)  # rows mid-answer do not wait
        while len(batch) < self.max_batch:
            try:
                request = self.waiting.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            (batch if request.sampling == first.sampling else self.held).append(request)
        return [r for r in batch if not self._cancelled_before_start(r)]

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            try:
                self._generate(batch)
            except BaseException as exc:  # every row of a failed batch reports the error to its reader
                log.exception("batched generation failed")
                for request in batch:
                    request.pieces.put(Finished(error=exc))
                continue
            continuing = [r for r in batch if not r.done]
            self.held[:0] = continuing  # first in line for the next batch, with whoever arrived meanwhile
            for request in batch:
                if request.done:
                    request.pieces.put(Finished(len(request.input_ids), self._output_tokens(request)))

    def _generate(self, batch: list[Request]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        tokenizer, model = self.tokenizer, self.model
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        pad_id = padding_id(tokenizer)
        eos_ids = _eos_ids(model, tokenizer)
        # A continuing row goes on from what it has written.
        input_ids, attention = left_padded([r.input_ids + r.generated for r in batch], pad_id, model.device)
        batcher = self

        class RowStreamer(BaseStreamer):
            def __init__(self):
                self.prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # generate first hands over the prompt ids
                    self.prompt_seen = True
                    return
                for request, token in zip(batch, value.reshape(len(batch), -1)[:, -1].tolist()):
                    if request.done:
                        continue
                    if token in eos_ids:
                        request.done = True
                        continue
                    request.generated.append(int(token))
                    batcher._emit(request)

            def end(self):
                pass

        class RowDone(StoppingCriteria):  # a row stops on its own limit, stop string or cancel
            def __call__(self, ids, scores, **kwargs):
                for request in batch:
                    request.done = request.done or request.should_end
                return torch.tensor([r.done for r in batch], device=ids.device)

        steps = min(CHUNK_STEPS, max(r.settings.max_new_tokens - len(r.generated) for r in batch))
        with self.lock, torch.inference_mode():
            model.generate(input_ids=input_ids, attention_mask=attention, streamer=RowStreamer(),
                           max_new_tokens=steps, stopping_criteria=StoppingCriteriaList([RowDone()]),
                           logits_processor=first_token_processor([() if r.generated else r.first_token_bans
                                                                   for r in batch]),
                           **generation_kwargs(batch[0].settings, pad_id))
        for request in batch:
            request.done = request.done or request.should_end
            if request.done:
                self._emit(request, final=True)

    def _emit(self, request: Request, final: bool = False) -> None:
        emit_text(self.tokenizer, request, final)

    def _cancelled_before_start(self, request: Request) -> bool:
        """A chat left before its (next) batch: it ends with what it wrote so far."""
        if request.cancel.is_set():
            request.done = True
            self._emit(request, final=True)
            request.pieces.put(Finished(len(request.input_ids), self._output_tokens(request)))
            return True
        return False

    def _output_tokens(self, request: Request) -> int:
        from core.models.local import _count_until_stop

        return _count_until_stop(self.tokenizer, request.generated, request.stops)


def next_waiting(batcher) -> Request | None:
    """The next waiting request, or None after IDLE_S without one: the worker then ends (`batcher._worker` is
    cleared under `batcher._start_lock`, so the next submit starts a new worker), and a model the registry
    dropped is freed."""
    try:
        return batcher.waiting.get(timeout=IDLE_S)
    except queue.Empty:
        with batcher._start_lock:
            if batcher.waiting.empty():
                batcher._worker = None
                return None
        return batcher.waiting.get()


def emit_text(tokenizer, request: Request, final: bool = False) -> None:
    """The request's new text since what it emitted, held back while it ends in half a multi-byte character."""
    text = tokenizer.decode(request.generated, skip_special_tokens=True)
    if not final and text.endswith("\ufffd"):
        return
    if len(text) > len(request.emitted) and text.startswith(request.emitted):
        request.pieces.put(text[len(request.emitted):])
        request.emitted = text


def padding_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_padded(rows: list[list[int]], pad_id: int, device):
    """(input_ids, attention_mask) for rows of different lengths, padded on the left as generate expects."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in rows], device=device)
    attention = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return input_ids, attention


def first_token_processor(bans: list[tuple[int, ...]]):
    """A transformers logits processor list that keeps each row's banned tokens out of its first new token (None
    when no row bans any)."""
    if not any(bans):
        return None
    from transformers import LogitsProcessor, LogitsProcessorList

    class FirstTokenBans(LogitsProcessor):
        def __init__(self):
            self.first = True

        def __call__(self, input_ids, scores):
            if self.first:  # generate calls it once per new token: only the first is constrained
                self.first = False
                scores = scores.clone()
                for row, banned in enumerate(bans):
                    if banned:
                        scores[row, list(banned)] = float("-inf")
            return scores

    return LogitsProcessorList([FirstTokenBans()])


def generation_kwargs(settings, pad_id: int) -> dict:
    """The `generate` arguments a GenerationSettings stands for (greedy at temperature 0)."""
    kwargs = dict(repetition_penalty=settings.repetition_penalty, pad_token_id=pad_id)
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _eos_ids(model, tokenizer) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, (list, tuple, set)) else [ids]
    return {int(i) for i in ids if i is not None}


def stream_through(batcher: Batcher, input_ids: list[int], settings, stops: tuple[str, ...],
                   first_token_bans: tuple[int, ...] = ()):
    """The `produce` function of a GenerationStream that is answered by the batcher."""

    def produce(emit, cancel_event):
        request = batcher.submit(Request(input_ids, settings, stops, cancel_event,
                                         first_token_bans=first_token_bans))
        while True:
            item = request.pieces.get()
            if isinstance(item, Finished):
                if item.error is not None:
                    raise item.error
                return item.prompt_tokens, item.output_tokens
            emit(item)

    return produce
