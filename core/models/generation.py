"""Generation settings and a token stream that also reports exact token counts and timings."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from core.errors import StudioError
from core.i18n import Msg
from core.models.degenerate import MIN_LOOP_CHARS, loop_start


# Raise when the same prompt and settings can give another answer (cached evaluation answers are asked again).
# 2: an answer in the completion format may not start with a line break.
# 3: nor, below passages, with "[" or "(" (a copy of a passage label).
# 4: a completion-format answer also ends where the model writes a new "Answer:" line.
# 5: a runaway number ("1000000…") is cut whole, not to its first two digits.
DECODING_VERSION = 5


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = field(default=0.0, metadata={"help": "0 = always the most likely word (repeatable)."})
    top_p: float = field(default=0.95, metadata={"help": "Sample only from the smallest set of words with this total probability."})
    max_new_tokens: int = field(default=200, metadata={"help": "Longest answer, in tokens."})
    repetition_penalty: float = field(default=1.0, metadata={
        "help": ">1 discourages repeating words; it also penalizes prompt words, so it hurts copying facts."})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "The answer ends before any of these strings."})

    def __post_init__(self):
        if not 0.0 <= self.temperature <= 2.0:
            raise StudioError(Msg("Temperature must be between 0 and 2."))
        if not 0.0 < self.top_p <= 1.0:
            raise StudioError(Msg("Top-p must be above 0 and at most 1."))
        if not 1 <= self.max_new_tokens <= 8192:
            raise StudioError(Msg("Max new tokens must be between 1 and 8192."))
        if not 0.5 <= self.repetition_penalty <= 2.0:
            raise StudioError(Msg("Repetition penalty must be between 0.5 and 2."))
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> "GenerationSettings":
        data = dict(data or {})
        data["stop"] = tuple(data.get("stop", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class GenerationStream:
    """Iterate for text pieces (st.write_stream takes it as is); afterwards read counts and timings.

    `produce(emit, cancel)` runs in a worker thread, calls emit(text_piece) as tokens arrive and returns
    (prompt_tokens, output_tokens). Stop strings are cut here so every backend behaves the same.
    """

    def __init__(self, produce: Callable[[Callable[[str], None], threading.Event], tuple[int, int]],
                 stop: tuple[str, ...] = (), max_new_tokens: int | None = None):
        self._produce = produce
        self._stop = stop
        self._max_new_tokens = max_new_tokens
        self.cancel_event = threading.Event()
        self.text = ""
        self.prompt_tokens = 0
        self.output_tokens = 0
        self.first_token_s: float | None = None
        self.total_s = 0.0
        # end (the model finished) | length (max new tokens) | stop | repetition (a loop was cut) | cancelled
        self.stopped_by: str = "end"
        self.error: BaseException | None = None

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Iterator[str]:
        import queue

        pieces: "queue.Queue[str | None]" = queue.Queue()
        start = time.perf_counter()

        def run():
            try:
                self.prompt_tokens, self.output_tokens = self._produce(pieces.put, self.cancel_event)
            except BaseException as exc:  # surfaced to the reader below
                self.error = exc
            finally:
                pieces.put(None)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        full, emitted = "", 0
        hold = max((len(s) for s in self._stop), default=1) - 1
        try:
            while True:
                piece = pieces.get()
                if piece is None:
                    break
                if self.first_token_s is None and piece:
                    self.first_token_s = time.perf_counter() - start
                full += piece
                looping = loop_start(full) if len(full) >= MIN_LOOP_CHARS else None
                if looping is not None:  # the model repeats itself: keep what came before, stop generating
                    full = full[:looping].rstrip()
                    self.stopped_by = "repetition"
                    self.cancel_event.set()
                    if len(full) > emitted:
                        yield full[emitted:]
                    emitted = len(full)
                    break
                cut = min((full.find(s) for s in self._stop if s in full), default=-1)
                if cut >= 0:
                    full = full[:cut]
                    self.stopped_by = "stop"
                    self.cancel_event.set()
                    if cut > emitted:
                        yield full[emitted:cut]
                    emitted = cut
                    break
                safe_end = len(full) - hold
                if safe_end > emitted:
                    yield full[emitted:safe_end]
                    emitted = safe_end
            if self.stopped_by not in ("stop", "repetition") and len(full) > emitted:
                yield full[emitted:]
            worker.join()
            if self.error is not None:
                raise self.error
            if self.cancel_event.is_set() and self.stopped_by not in ("stop", "repetition"):
                self.stopped_by = "cancelled"
            elif self.stopped_by == "end" and self._max_new_tokens and self.output_tokens >= self._max_new_tokens:
                self.stopped_by = "length"
        finally:
            self.cancel_event.set()  # the reader left early (page changed): stop generating
            self.text = full.strip()
            self.total_s = time.perf_counter() - start

    def run_to_end(self) -> str:
        for _ in self:
            pass
        return self.text

    def decode_rate(self) -> float:
        """Answer tokens per second after the first one: reading the prompt is not counted (it is first_token_s)."""
        decoding = self.total_s - (self.first_token_s or 0.0)
        if self.output_tokens > 1 and decoding > 0:
            return (self.output_tokens - 1) / decoding
        return self.output_tokens / self.total_s if self.total_s else 0.0

    def stats(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "first_token_s": round(self.first_token_s or 0.0, 3),
            "total_s": round(self.total_s, 3),
            "tokens_per_s": round(self.decode_rate(), 2),
            "stopped_by": self.stopped_by,
        }
