"""Continuous batching on llama.cpp: every waiting chat (and every question of an evaluation batch) is a sequence of
one llama.cpp context, and each step decodes one token of every active sequence in one `llama_decode`.

A newcomer joins at the next step: its prompt is read, its first token sampled, and it decodes with the others
from then on; a finished sequence leaves at once and frees its slot. On a CPU a step for eight sequences costs
little more than a step for one (reading the weights dominates), so eight visitors share the work instead of
queueing behind each other. Requests are core.models.batching's: the same stream protocol (text pieces, then
Finished), stop strings, token limits and cancel as the transformers batcher.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from dataclasses import dataclass, field

from core.models.batching import MAX_BATCH, Finished, Request, emit_text, next_waiting

log = logging.getLogger(__name__)
PROMPT_CHUNK = 512  # prompt tokens read per llama_decode call


@dataclass
class _Row:
    request: Request
    seq: int
    sampler: object
    position: int = 0       # the next token's position in its sequence
    last: int = -1          # the token to feed at the next step
    emitted_tokens: list = field(default_factory=list)


class SequenceBatcher:
    """One per loaded llama.cpp model. `submit(request)` returns the request, whose `pieces` queue the caller drains
    (core.models.batching.stream_through)."""

    def __init__(self, model_ptr, tokenizer, eos_ids: set[int], context: int, threads: int,
                 lora=None, max_rows: int = MAX_BATCH, top_k: int = 50):
        import llama_cpp

        self.tokenizer, self.eos_ids, self.top_k = tokenizer, set(eos_ids), top_k
        self.max_rows = max(1, max_rows)
        self.sequence_length = context  # one sequence never grows past this (prompts are cut to fit)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context * min(self.max_rows, 2)  # shared by the sequences; a full cache ends the longest
        params.n_batch = params.n_ubatch = max(PROMPT_CHUNK, self.max_rows)
        params.n_seq_max = self.max_rows
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True
        params.swa_full = False
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model_ptr, params)
        if self.ctx is None:
            raise RuntimeError("llama.cpp could not create a context")
        if lora is not None:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales):
                raise RuntimeError("llama.cpp could not apply the adapter")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model_ptr))
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, self.max_rows)
        self.llama_cpp = llama_cpp
        self.waiting: "queue.Queue[Request]" = queue.Queue()
        self.largest_batch = 0
        self.lock = threading.Lock()  # held while the worker uses the context
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._active: set[int] = set()  # sequences holding a request

    # -- the public side ----------------------------------------------------------------------------------------

    def submit(self, request: Request) -> Request:
        with self._start_lock:
            self.waiting.put(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="llama.cpp-batcher", daemon=True)
                self._worker.start()
        return request

    def close(self) -> None:
        with self._start_lock, self.lock:
            if self._closed:
                return
            self._closed = True
            self.llama_cpp.llama_batch_free(self.batch)
            self.llama_cpp.llama_free(self.ctx)

    # -- the worker ---------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        rows: list[_Row] = []
        free = list(range(self.max_rows))
        while True:
            if not rows:
                first = next_waiting(self)
                if first is None:
                    return
                newcomers = [first]
            else:
                newcomers = []
            while len(rows) + len(newcomers) < self.max_rows:
                try:
                    newcomers.append(self.waiting.get_nowait())
                except queue.Empty:
                    break
            with self.lock:
                if self._closed:
                    for request in newcomers + [row.request for row in rows]:
                        request.pieces.put(Finished(error=RuntimeError("the model was unloaded")))
                    return
                try:
                    for request in newcomers:
                        seq = free.pop()
                        row = self._start(request, seq)
                        if row is None:
                            free.append(seq)
                            continue
                        if self._finished(row):
                            self._end(row, free)
                        else:
                            rows.append(row)
                    if rows:
                        self.largest_batch = max(self.largest_batch, len(rows))
                        self._step(rows, free)
                        rows = [row for row in rows if row.seq in self._active]
                except Exception as exc:  # every waiting reader gets the error; the worker goes on with new ones
                    log.exception("llama.cpp batched generation failed")
                    rows, free = self._fail_all(newcomers, rows, exc)

    def _start(self, request: Request, seq: int) -> _Row | None:
        """Reads the prompt into sequence `seq` and samples the first token (None when the request ended)."""
        llama_cpp = self.llama_cpp
        if request.cancel.is_set():
            request.done = True
            request.pieces.put(Finished(len(request.input_ids), 0))
            self._release(seq)
            return None
        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)
        limit = max(1, self.sequence_length - request.settings.max_new_tokens)
        prompt = list(request.input_ids)[-limit:]
        row = _Row(request, seq, self._sampler(request, prompt))
        try:
            for start in range(0, len(prompt), PROMPT_CHUNK):
                piece = prompt[start:start + PROMPT_CHUNK]
                self._fill([(token, start + i, seq, start + i == len(prompt) - 1) for i, token in enumerate(piece)])
                self._decode()
        except RuntimeError as exc:
            llama_cpp.llama_sampler_free(row.sampler)
            self._release(seq)
            request.pieces.put(Finished(error=exc))
            return None
        row.position = len(prompt)
        self._active.add(seq)
        if request.first_token_bans:
            first = self._sampler(request, prompt, request.first_token_bans)
            token = llama_cpp.llama_sampler_sample(first, self.ctx, self.batch.n_tokens - 1)
            llama_cpp.llama_sampler_free(first)
            llama_cpp.llama_sampler_accept(row.sampler, token)  # the repetition penalty counts it
        else:
            token = llama_cpp.llama_sampler_sample(row.sampler, self.ctx, self.batch.n_tokens - 1)
        self._take(row, token)
        return row

    def _step(self, rows: list[_Row], free: list[int]) -> None:
        """One token for every active row, in one decode."""
        while True:
            self._fill([(row.last, row.position, row.seq, True) for row in rows])
            try:
                self._decode()
                break
            except RuntimeError:  # the shared cache is full: the longest sequence ends here
                longest = max(rows, key=lambda r: r.position)
                rows.remove(longest)
                self._end(longest, free)
                if not rows:
                    return
        for index, row in enumerate(rows):
            row.position += 1
            self._take(row, self.llama_cpp.llama_sampler_sample(row.sampler, self.ctx, index))
        for row in rows:
            if self._finished(row):
                self._end(row, free)

    def _take(self, row: _Row, token: int) -> None:
        request = row.request
        if token in self.eos_ids:
            request.done = True
            return
        request.generated.append(int(token))
        row.last = int(token)
        emit_text(self.tokenizer, request)

    def _finished(self, row: _Row) -> bool:
        request = row.request
        request.done = request.done or request.should_end
        return request.done

    def _end(self, row: _Row, free: list[int]) -> None:
        from core.models.local import _count_until_stop

        emit_text(self.tokenizer, row.request, final=True)
        self.llama_cpp.llama_sampler_free(row.sampler)
        self._release(row.seq)
        free.append(row.seq)
        row.request.pieces.put(Finished(len(row.request.input_ids),
                                        _count_until_stop(self.tokenizer, row.request.generated, row.request.stops)))

    def _fail_all(self, newcomers: list[Request], rows: list[_Row], error: Exception) -> tuple[list, list[int]]:
        """Ends every request in hand with `error` and frees every sequence: ([], all slots free)."""
        for request in newcomers + [row.request for row in rows]:
            if not request.done:
                request.done = True
                request.pieces.put(Finished(error=error))
        for row in rows:
            self.llama_cpp.llama_sampler_free(row.sampler)
        for seq in list(self._active):
            self._release(seq)
        return [], list(range(self.max_rows))

    def _release(self, seq: int) -> None:
        self._active.discard(seq)
        self.llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    # -- llama.cpp plumbing -------------------------------------------------------------------------------------

    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits

    def _decode(self) -> None:
        code = self.llama_cpp.llama_decode(self.ctx, self.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def _sampler(self, request: Request, prompt: list[int], banned: tuple[int, ...] = ()):
        """The request's sampling as a llama.cpp sampler chain: greedy at temperature 0, else top-k, top-p and
        temperature as transformers samples; a repetition penalty that, as in transformers, counts the prompt.
        `banned` tokens are never picked (the first token's bans)."""
        import random

        llama_cpp, settings = self.llama_cpp, request.settings
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if banned:
            biases = (llama_cpp.llama_logit_bias * len(banned))(
                *[llama_cpp.llama_logit_bias(token, float("-inf")) for token in banned])
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(
                self.n_vocab, len(banned), biases))
        if settings.repetition_penalty != 1.0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(
                self.n_vocab, self.sequence_length, settings.repetition_penalty, 0.0, 0.0))
        if settings.temperature > 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(self.top_k))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(settings.top_p, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(settings.temperature))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(random.randrange(2**31)))
        else:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        if settings.repetition_penalty != 1.0:
            for token in prompt:
                llama_cpp.llama_sampler_accept(chain, token)
        return chain
