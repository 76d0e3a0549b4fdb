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
        return not convert.is_converted(convert.embedded_folder())
    if source.kind == "gguf":
        path = Path(source.location).expanduser()
        return path.is_file() and not convert.is_converted(convert.gguf_cache_folder(path))
    return False


def conversion_argv(source: ModelSource) -> list[str]:
    if source.kind == "embedded":
        return ["-m", "core.models.convert", "embedded"]
    path = Path(source.location).expanduser()
    return ["-m", "core.models.convert", str(path), str(convert.gguf_cache_folder(path))]


def open_backend(source: ModelSource, progress=None) -> ModelBackend:
    from core.errors import ModelLoadError
    from core.models import local

    if source.kind == "openai":
        from core.models.endpoint import EndpointModel

        backend = EndpointModel(source)
        backend.check()
        return backend
    if source.kind == "embedded":
        return local.load_folder(convert.ensure_embedded(progress), name="Gemma 3 270M (embedded)")
    if source.kind == "local":
        return local.load_folder(Path(source.location))
    if source.kind == "gguf":
        path = Path(source.location).expanduser()
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(Msg("{name} is not a .gguf file; pick a file ending in .gguf.", name=path.name))
        folder = convert.gguf_cache_folder(path) if path.is_file() else None
        if folder is None:
            raise ModelLoadError(Msg("GGUF file not found: {path}. Check the path.", path=str(path)))
        if not convert.is_converted(folder):
            convert.convert_gguf(path, folder, progress)
        return local.load_folder(folder, name=path.name)
    return local.load_folder(local.resolve_hub_id(source.location), name=source.location)


MAX_TUNED = 2  # base + adapter copies kept loaded; each is a full model in memory


def _key(source: ModelSource, adapter: Path | None) -> str:
    if adapter is None:
        return source.key
    manifest = Path(adapter) / "adapter.json"  # re-registered (more epochs) adapters get a new key
    stamp = manifest.stat().st_mtime_ns if manifest.exists() else 0
    return f"{source.key}|adapter:{Path(adapter).resolve()}|{stamp}"


def open_tuned(source: ModelSource, adapter: Path) -> ModelBackend:
    """A separate copy of the base model with the adapter applied: the shared base copy is never modified."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.finetune.adapters import AdapterInfo, apply_adapter, check_base, source_folder
    from core.models.local import LocalModel
    from core import atomic

    info = AdapterInfo(Path(adapter).name, Path(adapter), atomic.read_json(Path(adapter) / "adapter.json"))
    folder = source_folder(source)
    check_base(info, folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model = apply_adapter(model, info).to(device)
    model.eval()
    return LocalModel(f"{source.describe() if source.kind != 'embedded' else 'Gemma 3 270M'} + {info.label}",
                      model, AutoTokenizer.from_pretrained(str(folder)))


def get_backend(source: ModelSource, progress=None, adapter: Path | None = None) -> ModelBackend:
    """The loaded model; with `adapter` (an adapter folder), the base with that adapter applied."""
    key = _key(source, adapter)
    with _registry_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # two sessions asking at once load it once
        if key not in _backends:
            if adapter is None:
                _backends[key] = open_backend(source, progress)
            else:
                if source.kind in ("embedded", "gguf") and needs_conversion(source):
                    open_backend(source, progress)  # converts once; the tuned copy loads from that folder
                tuned = [k for k in _backends if "|adapter:" in k]
                for old in tuned[:max(0, len(tuned) - MAX_TUNED + 1)]:
                    _backends.pop(old, None)
                _backends[key] = open_tuned(source, adapter)
        return _backends[key]


def peek_backend(source: ModelSource, adapter: Path | None = None) -> ModelBackend | None:
    return _backends.get(_key(source, adapter))


def forget_backend(source: ModelSource) -> None:
    for key in [k for k in _backends if k == source.key or k.startswith(source.key + "|")]:
        _backends.pop(key, None)
