"""One loaded copy of each model per process, shared by every browser session and the CLI. Never mutated."""

from __future__ import annotations

import threading
from pathlib import Path

from core.models import convert
from core.models.base import ModelBackend
from core.models.source import ModelSource
from core.i18n import Msg

_backends: dict[str, ModelBackend] = {}
_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def needs_conversion(source: ModelSource) -> bool:
    """True when the first use must convert a GGUF file (long: the UI runs it as a cancellable job)."""
    if source.kind == "embedded":
        if not convert.is_converted(convert.embedded_folder()):
            return True
        return engine_choice(source).engine == "llama.cpp" and not _engine_weights_ready()
    if source.kind == "gguf":
        path = Path(source.location).expanduser()
        if not path.is_file() or convert.is_converted(convert.gguf_cache_folder(path)):
            return False
        if engine_choice(source).engine == "llama.cpp":  # llama.cpp reads the file; only its tokenizer is saved
            return not convert.is_converted(convert.tokenizer_folder(path))
        return True
    return False


def _engine_weights_ready() -> bool:
    from core.models.llamacpp import embedded_engine_path

    return embedded_engine_path(convert.embedded_folder()).exists()


def conversion_argv(source: ModelSource) -> list[str]:
    if source.kind == "embedded":
        return ["-m", "core.models.convert", "embedded"]
    path = Path(source.location).expanduser()
    if engine_choice(source).engine == "llama.cpp":
        return ["-m", "core.models.convert", "tokenizer", str(path)]
    return ["-m", "core.models.convert", str(path), str(convert.gguf_cache_folder(path))]


def open_backend(source: ModelSource, progress=None) -> ModelBackend:
    from core.models import local

    if source.kind == "openai":
        from core.models.endpoint import EndpointModel

        backend = EndpointModel(source)
        backend.check()
        return backend
    folder, name = model_folder(source, progress)
    return local.load_folder(folder, name=name)


def model_folder(source: ModelSource, progress=None) -> tuple[Path, str | None]:
    """The Hugging Face folder behind a local source (converting a GGUF file the first time) and its display name."""
    from core.errors import ModelLoadError
    from core.models import local

    if source.kind == "embedded":
        return convert.ensure_embedded(progress), "Gemma 3 270M (embedded)"
    if source.kind == "local":
        return Path(source.location).expanduser(), None
    if source.kind == "gguf":
        path = Path(source.location).expanduser()
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(Msg("{name} is not a .gguf file; pick a file ending in .gguf.", name=path.name))
        folder = convert.gguf_cache_folder(path) if path.is_file() else None
        if folder is None:
            raise ModelLoadError(Msg("GGUF file not found: {path}. Check the path.", path=str(path)))
        if not convert.is_converted(folder):
            convert.convert_gguf(path, folder, progress)
        return folder, path.name
    return local.resolve_hub_id(source.location), source.location


MAX_TUNED = 2  # base + adapter copies kept loaded; each is a full model in memory
LLAMA_CPP_KEY = "|engine:llama.cpp"
MAX_PRECISION_VARIANTS = 1  # copies at another precision (quantization comparison) kept besides those


def _key(source: ModelSource, adapter: Path | None, precision: str | None = None) -> str:
    key = source.key
    if adapter is not None:
        manifest = Path(adapter) / "adapter.json"  # re-registered (more epochs) adapters get a new key
        stamp = manifest.stat().st_mtime_ns if manifest.exists() else 0
        key = f"{key}|adapter:{Path(adapter).resolve()}|{stamp}"
    if precision is not None and precision != _default_precision(source, adapter):
        key = f"{key}|precision:{precision}"
    return key


def _default_precision(source: ModelSource, adapter: Path | None) -> str:
    """The precision of the copy loaded when none is asked for: fp32, except a base model on a GPU (bf16)."""
    if source.kind == "openai" or adapter is not None:
        return "fp32"
    from core.models.quantize import default_device, default_precision

    return default_precision(default_device())


def _check_precision(source: ModelSource, precision: str | None) -> None:
    from core.errors import StudioError
    from core.models.quantize import check_precision

    if precision is None:
        return
    check_precision(precision)
    if source.kind == "openai" and precision != "fp32":
        raise StudioError(Msg("An endpoint's precision is set by its server; compare precisions with a local model "
                              "(embedded, folder, GGUF or hub id)."))


def _is_variant(key: str) -> bool:
    return "|precision:" in key


def _is_tuned(key: str) -> bool:
    return "|adapter:" in key and not _is_variant(key)


def _make_room(keep, limit: int) -> None:
    """Drop the oldest cached copies among those `keep(key)` selects, so one more fits under `limit`."""
    chosen = [k for k in _backends if keep(k)]
    for old in chosen[:max(0, len(chosen) - limit + 1)]:
        _backends.pop(old, None)


def open_at_precision(source: ModelSource, precision: str, adapter: Path | None = None,
                      progress=None) -> ModelBackend:
    """A separate copy of the model (with the adapter merged, if any) at `precision` (core.models.quantize)."""
    from transformers import AutoTokenizer

    from core.errors import ModelLoadError, StudioError
    from core.models import local, quantize

    folder, name = model_folder(source, progress)
    local.check_model_folder(folder)
    try:
        model = quantize.load_at_precision(folder, precision, adapter)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except StudioError:
        raise
    except Exception as exc:
        local.log.exception("loading %s at %s failed", folder, precision)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(Msg("The model in {folder} could not be loaded at {precision} ({reason}).",
                                 folder=str(folder), precision=precision, reason=first_line)) from exc
    label = name or folder.name
    if adapter is not None:
        from core import atomic

        label += " + " + (atomic.read_json(Path(adapter) / "adapter.json").get("name") or Path(adapter).name)
    return local.LocalModel(f"{label} ({precision})", model, tokenizer, precision=precision)


def open_tuned(source: ModelSource, adapter: Path) -> ModelBackend:
    """A separate copy of the base model with the adapter applied: the shared base copy is never modified."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models.adapters import apply_adapter, check_base, read_adapter, source_folder
    from core.models.local import LocalModel

    info = read_adapter(Path(adapter))
    folder = source_folder(source)
    check_base(info, folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model = apply_adapter(model, info).to(device)
    model.eval()
    return LocalModel(f"{source.describe() if source.kind != 'embedded' else 'Gemma 3 270M'} + {info.label}",
                      model, AutoTokenizer.from_pretrained(str(folder)))


def gguf_file(source: ModelSource) -> Path:
    """The GGUF file a GGUF-backed source reads (the embedded model's is assembled from its package once)."""
    return convert.assemble_embedded_gguf() if source.kind == "embedded" else Path(source.location).expanduser()


def engine_choice(source: ModelSource, adapter: Path | None = None, precision: str | None = None):
    """Which engine answers for this model, adapter and precision (core.models.engine), and why."""
    from core.models import engine

    manifest = None
    if adapter is not None and (Path(adapter) / "adapter.json").exists():
        from core import atomic

        manifest = atomic.read_json(Path(adapter) / "adapter.json")
    return engine.choose(source, manifest, precision)


def open_llama_cpp(source: ModelSource, adapter: Path | None = None, progress=None) -> ModelBackend:
    """The model answered by llama.cpp: its GGUF file, the tokenizer of its converted folder (prompts are tokenized
    as in transformers) and the adapter as GGUF."""
    from transformers import AutoTokenizer, GenerationConfig

    from core.models.adapters import check_base, read_adapter
    from core.models.llamacpp import LlamaCppModel, adapter_as_gguf, engine_file

    if source.kind == "gguf" and adapter is None:  # llama.cpp reads the file itself: only its tokenizer is needed
        path = Path(source.location).expanduser()
        if path.suffix.lower() != ".gguf" or not path.is_file():
            model_folder(source, progress)  # the same clear message as for transformers
        folder, name = convert.ensure_tokenizer(path, progress), path.name
    else:
        folder, name = model_folder(source, progress)
    base_gguf = engine_file(source, folder, progress)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    try:
        generation = GenerationConfig.from_pretrained(str(folder))
    except OSError:
        generation = None
    ends = getattr(generation, "eos_token_id", None)
    ends = set(ends if isinstance(ends, (list, tuple)) else [ends]) | {tokenizer.eos_token_id}
    label = "Gemma 3 270M" if source.kind == "embedded" else (name or folder.name)
    model_file, lora = base_gguf, None
    if adapter is not None:
        info = read_adapter(Path(adapter))
        check_base(info, folder)
        kind, path = adapter_as_gguf(info, base_gguf, folder, progress)
        model_file, lora = (base_gguf, path) if kind == "lora" else (path, None)
        label += f" + {info.label}"
    return LlamaCppModel(label, model_file, tokenizer, {int(i) for i in ends if i is not None}, lora,
                         top_k=getattr(generation, "top_k", None) or 50)


def get_backend(source: ModelSource, progress=None, adapter: Path | None = None,
                precision: str | None = None) -> ModelBackend:
    """The loaded model; with `adapter` (an adapter folder), the base with that adapter applied; with `precision`
    (core.models.quantize.PRECISIONS), a copy at that precision. None is the studio's default copy: fp32, or bf16
    for a base model on a GPU; asking for the default precision returns that same copy. The engine (transformers
    or llama.cpp) is the one `engine_choice` names."""
    _check_precision(source, precision)
    fast = engine_choice(source, adapter, precision).engine == "llama.cpp"
    key = _key(source, adapter, precision) + (LLAMA_CPP_KEY if fast else "")
    with _registry_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # two sessions asking at once load it once
        if key not in _backends:
            if fast:
                if adapter is not None:
                    _make_room(_is_tuned, MAX_TUNED)
                _backends[key] = open_llama_cpp(source, adapter, progress)
            elif _is_variant(key):
                _make_room(_is_variant, MAX_PRECISION_VARIANTS)
                _backends[key] = open_at_precision(source, precision, adapter, progress)
            elif adapter is None:
                _backends[key] = open_backend(source, progress)
            else:
                if source.kind in ("embedded", "gguf") and needs_conversion(source):
                    model_folder(source, progress)  # converts once; the tuned copy loads from that folder
                _make_room(_is_tuned, MAX_TUNED)
                _backends[key] = open_tuned(source, adapter)
        return _backends[key]


def peek_backend(source: ModelSource, adapter: Path | None = None, precision: str | None = None) -> ModelBackend | None:
    if source.kind == "openai" and precision not in (None, "fp32"):
        return None
    fast = engine_choice(source, adapter, precision).engine == "llama.cpp"
    return _backends.get(_key(source, adapter, precision) + (LLAMA_CPP_KEY if fast else ""))


def forget_backend(source: ModelSource) -> None:
    for key in [k for k in _backends if k == source.key or k.startswith(source.key + "|")]:
        _backends.pop(key, None)
