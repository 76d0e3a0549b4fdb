"""A GGUF model answered by llama.cpp (llama-cpp-python): several times the tokens per second of fp32 transformers
on a CPU.

Prompts are rendered and tokenized by the model's Hugging Face tokenizer (core.models.local.PromptRendering), and
token ids go to llama.cpp as they are, so both engines read exactly the same tokens; answers are decoded by the
same tokenizer and end on the same end-of-turn ids, stop strings and loop guard. A LoRA adapter is applied as a GGUF
adapter on the unchanged base file; other adapters are merged into a GGUF of their own (core.models.gguf_write).
Concurrent answers decode together, one token of each per step (core.models.llamacpp_batching).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from pathlib import Path

from core.errors import ModelLoadError
from core.i18n import Msg
from core.models.batching import Finished, Request, stream_through
from core.models.card import ModelCard
from core.models.generation import GenerationSettings, GenerationStream
from core.models.local import PromptRendering, RenderedPrompt, answer_from_tokens

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 8192  # tokens of KV cache llama.cpp reserves; $STUDIO_LLAMACPP_CONTEXT changes it
BATCH = 512
SCORING_CONTEXT = 2048  # the loader's own context only scores passages (continuation_logprobs)
ENGINE_WEIGHTS = "F16"  # the embedded model's and merged adapters' weights for llama.cpp (see engine_file)


_quiet = None  # the log callback handed to llama.cpp (kept alive here: ctypes does not hold it)


def route_logs() -> None:
    """llama.cpp's own messages (tensor loading, cache notes) go to Python logging at debug level; its errors stay
    errors. Without this some notes print to the terminal whatever `verbose` says."""
    global _quiet
    if _quiet is not None:
        return
    import ctypes

    import llama_cpp

    native = logging.getLogger("llama.cpp")
    error = 4  # GGML_LOG_LEVEL_ERROR (ggml.h); warnings are load notes a user cannot act on

    @llama_cpp.llama_log_callback
    def route(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            native.log(logging.ERROR if level == error else logging.DEBUG, message)

    _quiet = route
    llama_cpp.llama_log_set(route, ctypes.c_void_p(0))


def threads() -> int:
    """Physical cores (llama.cpp gains nothing from hyper-threads); $STUDIO_THREADS overrides."""
    wanted = os.environ.get("STUDIO_THREADS", "").strip()
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    import psutil

    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def _context_size(trained: int) -> int:
    wanted = os.environ.get("STUDIO_LLAMACPP_CONTEXT", "").strip()
    size = int(wanted) if wanted.isdigit() and int(wanted) >= 256 else DEFAULT_CONTEXT
    return min(size, trained) if trained > 0 else size


class LlamaCppModel(PromptRendering):
    approximate_tokens = False
    engine = "llama.cpp"

    def __init__(self, name: str, gguf_path: Path, tokenizer, eos_ids: set[int], lora_path: Path | None = None,
                 top_k: int = 50):
        from llama_cpp import Llama
        from llama_cpp._utils import suppress_stdout_stderr

        self.name = name
        self.tokenizer = tokenizer
        self.gguf_path = Path(gguf_path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.eos_ids = set(eos_ids)
        self.top_k = top_k
        self.lock = threading.Lock()  # the loader's context (relevance scores)
        self._batcher = None
        self._batcher_lock = threading.Lock()
        route_logs()
        try:
            probe = _metadata(self.gguf_path)
            context = _context_size(probe["context_length"])
            # Some load notes bypass the log callback and write to the terminal; the load's errors still raise.
            with suppress_stdout_stderr(disable=False):
                self.llm = Llama(model_path=str(self.gguf_path),
                                 lora_path=str(self.lora_path) if self.lora_path else None,
                                 n_ctx=min(context, SCORING_CONTEXT), n_batch=BATCH, n_threads=threads(),
                                 n_threads_batch=threads(), verbose=False)
        except Exception as exc:
            log.exception("llama.cpp could not load %s", self.gguf_path)
            raise ModelLoadError(Msg("llama.cpp could not load {path} ({reason}); choose transformers on the Model "
                                     "page.", path=str(self.gguf_path), reason=str(exc)[:160])) from exc
        self.context_length = context
        self.precision = probe["quantization"]
        self.card = ModelCard(
            name=name, architecture=probe["architecture"], model_type=probe["architecture"],
            parameters=probe["parameters"],
            context_length=context, dtype=probe["quantization"], device="cpu (llama.cpp)", layers=probe["layers"],
            hidden_size=probe["hidden"], vocab_size=self.llm.n_vocab(), has_chat_template=self.has_chat_template,
            weights_bytes=self.gguf_path.stat().st_size + (self.lora_path.stat().st_size if self.lora_path else 0),
            kv_cache_bytes_per_1k_tokens=2 * probe["layers"] * probe["kv_width"] * 2 * 1000)  # f16 cache

        atexit.register(self.close)

    def close(self) -> None:
        """Frees llama.cpp's contexts and model now (its own finalizer can fail while Python shuts down)."""
        if self._batcher is not None:
            self._batcher.close()
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            with self.lock:
                llm.close()

    # -- generation ---------------------------------------------------------------------------------------------

    @property
    def batcher(self):
        """The continuous batcher (core.models.llamacpp_batching) every answer goes through, made on first use."""
        from core.models.batching import MAX_BATCH
        from core.models.llamacpp_batching import SequenceBatcher

        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = SequenceBatcher(self.llm._model.model, self.tokenizer, self.eos_ids,
                                                self.context_length, threads(), self.llm._lora_adapter, MAX_BATCH,
                                                self.top_k)
            return self._batcher

    def stream(self, prompt: RenderedPrompt, settings: GenerationSettings) -> GenerationStream:
        """The answer as a stream; concurrent streams decode together."""
        stops = tuple(dict.fromkeys(prompt.stop + settings.stop))
        return GenerationStream(stream_through(self.batcher, self.encode(prompt), settings, stops,
                                               self.first_token_bans(prompt)), stops, settings.max_new_tokens)

    def generate_batch(self, prompts: list[RenderedPrompt], settings: GenerationSettings,
                       should_stop=None) -> list[dict]:
        """Answers to several prompts decoded together (evaluation), as LocalModel.generate_batch returns them.
        `should_stop()` true ends every answer at the next token (the caller drops them)."""
        cancel = threading.Event()
        started = time.perf_counter()
        requests = [self.batcher.submit(Request(self.encode(p), settings, tuple(dict.fromkeys(p.stop + settings.stop)),
                                                cancel, first_token_bans=self.first_token_bans(p))) for p in prompts]
        results = []
        for request in requests:
            while True:
                try:
                    item = request.pieces.get(timeout=0.1)
                except queue.Empty:
                    item = None
                if should_stop is not None and should_stop():
                    cancel.set()
                if isinstance(item, Finished):
                    if item.error is not None:
                        raise item.error
                    break
            text, output_tokens = answer_from_tokens(self.tokenizer, request.generated, request.stops)
            results.append({"text": text, "prompt_tokens": len(request.input_ids), "output_tokens": output_tokens})
        share = round((time.perf_counter() - started) / max(1, len(prompts)), 3)
        return [{**result, "latency_s": share} for result in results]

    def continuation_logprobs(self, prompts_ids: list[list[int]], continuation: list[int]) -> list[list[float]]:
        """log P(each token of `continuation`) after each prompt (the question-likelihood reranker). The prompt is
        read as usual; the last tokens go in one batch that asks llama.cpp for logits at every position."""
        import llama_cpp
        import numpy as np

        continuation = list(continuation)[:BATCH]
        if not continuation:
            return [[] for _ in prompts_ids]
        found = []
        with self.lock:
            for ids in prompts_ids:
                tokens = (list(ids) + continuation[:-1])[-self.llm.n_ctx():]
                head, tail = tokens[:-len(continuation)], tokens[-len(continuation):]
                self.llm.reset()
                if head:
                    self.llm.eval(head)
                self.llm._batch.set_batch(batch=tail, n_past=self.llm.n_tokens, logits_all=True)
                self.llm._ctx.decode(self.llm._batch)
                self.llm.n_tokens += len(tail)
                rows = []
                for row, target in enumerate(continuation):
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, row),
                                                   shape=(self.llm.n_vocab(),)).astype(np.float64)
                    top = logits.max()
                    rows.append(float(logits[target] - top - np.log(np.exp(logits - top).sum())))
                found.append(rows)
            self.llm.reset()
        return found


def _metadata(path: Path) -> dict:
    """What the model card shows, from the GGUF header as llama.cpp reads it (vocabulary only, no weights)."""
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):
        probe = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        found = dict(probe.metadata)
        parameters = int(llama_cpp.llama_model_n_params(probe.model))
    finally:
        probe.close()

    def value(key, default=0):
        try:
            return int(float(found[key]))
        except (KeyError, ValueError):
            return default

    arch = found.get("general.architecture", "unknown")
    heads = value(f"{arch}.attention.head_count", 1) or 1
    kv_heads = value(f"{arch}.attention.head_count_kv", heads) or heads
    hidden = value(f"{arch}.embedding_length")
    key_width = value(f"{arch}.attention.key_length", hidden // heads)
    return {"architecture": arch, "context_length": value(f"{arch}.context_length"),
            "layers": value(f"{arch}.block_count"), "hidden": hidden, "kv_width": kv_heads * key_width,
            "parameters": parameters, "quantization": FILE_TYPE_NAMES.get(value("general.file_type", -1), "GGUF")}


FILE_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
                   11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
                   18: "Q6_K", 32: "BF16"}


def _cache_folder() -> Path:
    from core.models.convert import models_cache

    return models_cache() / "llama.cpp"


def embedded_engine_path(folder: Path) -> Path:
    from core.models.adapters import folder_fingerprint

    return _cache_folder() / f"{folder.name}-{folder_fingerprint(folder)}-{ENGINE_WEIGHTS}.gguf"


def engine_file(source, folder: Path, progress=None) -> Path:
    """The GGUF llama.cpp answers from. A GGUF source: its own file, at the quantization its owner chose. The
    embedded model: an F16 copy of the de-quantized weights transformers uses, written once (bench/generate.py:
    with it llama.cpp gives the same greedy answers as transformers; quantized copies are faster but drift)."""
    from core.models import gguf_write
    from core.models.registry import gguf_file

    if source.kind != "embedded":
        return gguf_file(source)
    path = embedded_engine_path(folder)
    if not path.exists():
        if progress:
            progress(0.9, Msg("Writing the weights for llama.cpp"))
        gguf_write.write_model(gguf_file(source), gguf_write.merged_state(folder, None), path, ENGINE_WEIGHTS)
    return path


def adapter_as_gguf(info, base_gguf: Path, base_folder: Path, progress=None) -> tuple[str, Path]:
    """("lora", a GGUF LoRA adapter) for a PEFT LoRA adapter, else ("model", a GGUF with the adapter merged, at the
    precision the engine uses); written once into the model cache (a re-registered adapter gets a new file)."""
    import hashlib

    from core import atomic
    from core.models import gguf_write
    from core.models.adapters import MANIFEST

    manifest = info.folder / MANIFEST
    stamp = f"{info.folder.resolve()}|{manifest.stat().st_mtime_ns}|{base_gguf.resolve()}|{base_gguf.stat().st_size}"
    digest = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    lora_ready = info.is_peft and info.method in ("lora", "qlora") and gguf_write.lora_refusal(
        atomic.read_json(info.folder / "adapter_config.json")) is None
    kind = "lora" if lora_ready else "model"
    path = _cache_folder() / f"{digest}-{kind}.gguf"
    if path.exists():
        return kind, path
    if progress:
        progress(0.1, Msg("Writing the adapter for llama.cpp"))
    if lora_ready:
        gguf_write.write_lora(base_gguf, info.folder, path)
    else:
        gguf_write.write_model(base_gguf, gguf_write.merged_state(base_folder, info), path, ENGINE_WEIGHTS, progress)
    return kind, path
