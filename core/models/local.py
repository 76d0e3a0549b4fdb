"""A transformers model loaded in this process (embedded, local folder, converted GGUF or hub snapshot)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from pathlib import Path

from core.errors import ModelLoadError
from core.models.base import PASSAGES_START, CompletionLabels, RenderedPrompt, render_completion
from core.models.card import ModelCard, card_from_model
from core.models.generation import GenerationSettings, GenerationStream
from core.tools import normalize_tools, with_tools_block
from core.i18n import Msg

log = logging.getLogger(__name__)
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
HUB_HOST = "huggingface.co"


class PromptRendering:
    """Rendering and counting with the model's own Hugging Face tokenizer: every engine that answers with a local
    model (transformers, llama.cpp) reads exactly the same tokens for the same conversation."""
    tokenizer = None
    name = ""

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def template_takes_tools(self) -> bool:
        """Whether the chat template reads `tools` (a template that never mentions them would drop them)."""
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):  # named templates; transformers picks "tool_use" when tools are given
            template = " ".join(str(t) for t in template.values())
        return bool(template) and "tools" in template

    def render(self, messages: list[dict], labels: CompletionLabels, tools=None) -> RenderedPrompt:
        tools = normalize_tools(tools)
        if self.has_chat_template:
            if tools and self.template_takes_tools:
                try:
                    text = self.tokenizer.apply_chat_template(messages, tools=[dict(t) for t in tools], tokenize=False,
                                                              add_generation_prompt=True)
                    return RenderedPrompt(tuple(messages), text, False, "chat template", tools=tools)
                except Exception:  # a template that mentions tools but refuses these messages: use the text block
                    log.warning("%s: the chat template refused tools; adding them to the system prompt", self.name,
                                exc_info=True)
            messages = with_tools_block(messages, tools)
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return RenderedPrompt(tuple(messages), text, False, "chat template", tools=tools)
        messages = with_tools_block(messages, tools)
        return RenderedPrompt(tuple(messages), render_completion(messages, labels), True, "completion",
                              labels.stops, tools)

    def first_token_bans(self, prompt: RenderedPrompt) -> tuple[int, ...]:
        """Tokens an answer may not start with. In the completion format every example's answer follows "Answer:"
        on the same line; a base model that starts on a new line instead copies the block above it rather than
        answering. Below passages, an answer may not open with "[" or "(" either: that is how it starts copying the
        passages' "[1] (file — heading)" labels (10 of 120 answers without examples did, bench/README.md)."""
        if prompt.format != "completion":
            return ()
        newlines, label_openers = self.answer_start_tokens
        return newlines + label_openers if PASSAGES_START in prompt.text else newlines

    @property
    def newline_token_ids(self) -> tuple[int, ...]:
        """Every token that is only white space with a line break ("\n", "\n\n", …)."""
        return self.answer_start_tokens[0]

    @functools.cached_property
    def answer_start_tokens(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The tokens that are only white space with a line break, and those that open a bracket or a parenthesis
        after optional spaces (" [", "(", " (\"", …), found in one pass over the vocabulary."""
        import re

        # Only pieces without ASCII letters or digits can decode to white space (byte-level BPE writes "\n" as
        # "Ċ", SentencePiece as "\n" or the byte "<0x0A>"), and a bracket opener starts with one after at most a
        # space marker: decoding just those keeps this fast on 262k tokens.
        maybe_blank = re.compile(r"[^A-Za-z0-9]*|<0x[0-9A-Fa-f]{2}>")
        maybe_opener = re.compile(r"(▁|Ġ| )*[\[(].*", re.DOTALL)
        pieces = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        maybe = [i for i, piece in enumerate(pieces) if piece is not None
                 and (maybe_blank.fullmatch(piece) or maybe_opener.fullmatch(piece))]
        texts = self.tokenizer.batch_decode([[i] for i in maybe])
        newlines = tuple(i for i, text in zip(maybe, texts) if "\n" in text and not text.strip())
        openers = tuple(i for i, text in zip(maybe, texts) if text.lstrip(" ")[:1] in ("[", "("))
        return newlines, openers

    def count_tokens(self, prompt: RenderedPrompt | str) -> int:
        if isinstance(prompt, str):
            return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        return len(self.tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"])

    def encode(self, prompt: RenderedPrompt) -> list[int]:
        return list(self.tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"])


class LocalModel(PromptRendering):
    """A transformers model in this process."""
    approximate_tokens = False
    engine = "transformers"

    def __init__(self, name: str, model, tokenizer, precision: str | None = None):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.precision = precision or _float_precision(model)  # core.models.quantize.PRECISIONS
        self.context_length = _context_length(model, tokenizer)
        self.card: ModelCard = card_from_model(name, model, tokenizer, self.context_length, self.precision)
        # One generation at a time per loaded model: parallel CPU generations only slow each other down.
        self.lock = threading.Lock()
        self._batcher = None
        self._batcher_lock = threading.Lock()

    def stream(self, prompt: RenderedPrompt, settings: GenerationSettings) -> GenerationStream:
        """The answer as a stream. Concurrent streams on this model are generated together (core.models.batching)."""
        from core.models.batching import stream_through

        # Stop strings are watched in the streamed text (GenerationStream), which cancels generation at once;
        # transformers' stop_strings would precompute tables over the whole vocabulary on every new stop set.
        stops = tuple(dict.fromkeys(prompt.stop + settings.stop))
        return GenerationStream(stream_through(self.batcher, self.encode(prompt), settings, stops,
                                               self.first_token_bans(prompt)), stops, settings.max_new_tokens)

    @property
    def batcher(self):
        from core.models.batching import MAX_BATCH, Batcher

        if self._batcher is None:
            with self._batcher_lock:
                if self._batcher is None:
                    # Soft prompts (prompt/prefix tuning) sit before the padding, so such models answer one at a time.
                    alone = bool(getattr(getattr(self.model, "active_peft_config", None), "is_prompt_learning", False))
                    self._batcher = Batcher(self.model, self.tokenizer, self.lock, 1 if alone else MAX_BATCH)
        return self._batcher

    def generate_batch(self, prompts: list[RenderedPrompt], settings: GenerationSettings,
                       should_stop=None) -> list[dict]:
        """Answers to several prompts in one batched `generate` (left-padded), for evaluation runs.

        Each result has the text (cut at the first stop string), prompt and output tokens, and the batch's wall
        time divided among its answers (`latency_s`); rows stop on their own at EOS or a stop string. When
        `should_stop()` turns true the whole batch ends at the next token (the caller discards the cut answers).
        """
        import time

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from core.models.batching import first_token_processor, generation_kwargs, left_padded, padding_id

        tokenizer, model = self.tokenizer, self.model
        pad_id = padding_id(tokenizer)
        encoded = [self.encode(p) for p in prompts]
        width = max(len(ids) for ids in encoded)
        input_ids, attention = left_padded(encoded, pad_id, model.device)
        stops = [tuple(dict.fromkeys(p.stop + settings.stop)) for p in prompts]

        class StopStrings(StoppingCriteria):  # per row: done once its new text shows one of its stop strings
            def __call__(self, ids, scores, **kwargs):
                tails = tokenizer.batch_decode(ids[:, width:][:, -12:], skip_special_tokens=True)
                return torch.tensor([any(s in tail for s in row_stops) for tail, row_stops in zip(tails, stops)],
                                    device=ids.device)

        class StopRequested(StoppingCriteria):
            def __call__(self, ids, scores, **kwargs):
                return torch.full((ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=ids.device)

        criteria = ([StopStrings()] if any(stops) else []) + ([StopRequested()] if should_stop else [])
        bans = [self.first_token_bans(p) for p in prompts]
        started = time.perf_counter()
        with self.lock, torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=attention,
                                    max_new_tokens=settings.max_new_tokens,
                                    stopping_criteria=StoppingCriteriaList(criteria) if criteria else None,
                                    logits_processor=first_token_processor(bans),
                                    **generation_kwargs(settings, pad_id))
        share = (time.perf_counter() - started) / len(prompts)
        results = []
        for row, row_stops in enumerate(stops):
            text, output_tokens = answer_from_tokens(tokenizer, output[row, width:], row_stops)
            results.append({"text": text, "prompt_tokens": len(encoded[row]), "output_tokens": output_tokens,
                            "latency_s": round(share, 3)})
        return results


def answer_from_tokens(tokenizer, generated, stops: tuple[str, ...]) -> tuple[str, int]:
    """(the answer text, its output tokens) from generated ids, as the stream shows it: cut at the first stop string
    and where a loop starts."""
    from core.models.degenerate import cut_loop

    text = tokenizer.decode(generated, skip_special_tokens=True)
    for stop in stops:
        text = text.split(stop)[0] if stop in text else text
    return cut_loop(text)[0], _count_until_stop(tokenizer, generated, stops)

def _count_until_stop(tokenizer, generated, stops) -> int:
    """Output tokens up to (not including) the stop string, so counts match the text shown."""
    special = set(tokenizer.all_special_ids)
    ids = [int(i) for i in generated if int(i) not in special]

    def shows_stop(n: int) -> bool:  # decoded as the streamer shows it
        text = tokenizer.decode(ids[:n], skip_special_tokens=True)
        return any(s in text for s in stops)

    if not stops or not shows_stop(len(ids)):
        return len(ids)
    low, high = 1, len(ids)  # a longer prefix keeps the stop, so binary search finds the first one that shows it
    while low < high:
        middle = (low + high) // 2
        if shows_stop(middle):
            high = middle
        else:
            low = middle + 1
    return low - 1


def _float_precision(model) -> str:
    return "bf16" if str(next(model.parameters()).dtype) == "torch.bfloat16" else "fp32"


def _context_length(model, tokenizer) -> int:
    config = getattr(model.config, "text_config", None) or model.config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if 0 < limit < 10_000_000 else 2048


def check_model_folder(folder: Path) -> None:
    if not folder.exists():
        raise ModelLoadError(Msg("The folder {folder} does not exist; check the path.", folder=str(folder)))
    if not folder.is_dir():
        raise ModelLoadError(Msg("{folder} is a file, not a folder; pick a Hugging Face model folder or a .gguf file.",
                                 folder=str(folder)))
    if not (folder / "config.json").is_file():
        raise ModelLoadError(Msg("{folder} has no config.json, so it is not a Hugging Face model folder.", folder=str(folder)))
    if not any(any(folder.glob(p)) for p in WEIGHT_PATTERNS):
        raise ModelLoadError(Msg("{folder} has no weights (*.safetensors); the download may be incomplete.",
                                 folder=str(folder)))


def load_folder(folder: Path, name: str | None = None) -> LocalModel:
    folder = Path(folder).expanduser()
    check_model_folder(folder)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device)
        model.eval()
    except ModelLoadError:
        raise
    except Exception as exc:
        log.exception("loading %s failed", folder)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(Msg("The model in {folder} could not be loaded ({reason}); the folder may be corrupt or of "
                                 "an unsupported architecture.", folder=str(folder), reason=first_line)) from exc
    return LocalModel(name or folder.name, model, tokenizer)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_hub_id(repo_id: str) -> Path:
    """A cached snapshot when there is one; otherwise download, but only after a quick reachability check."""
    from huggingface_hub import snapshot_download

    from core.secrets import get_secret

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise ModelLoadError(Msg("'{repo}' is not downloaded and the model hub cannot be reached (offline); use the "
                                 "embedded model or a local folder.", repo=repo_id))
    try:
        # A gated or private model needs the token: $HF_TOKEN or a secrets.toml (None: huggingface_hub's own login).
        token = get_secret("HF_TOKEN") or get_secret("HUGGING_FACE_HUB_TOKEN") or None
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10, token=token))
    except Exception as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ModelLoadError(Msg("Could not download '{repo}' ({reason}); check the id and your access rights.",
                                 repo=repo_id, reason=first_line)) from exc
