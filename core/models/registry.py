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


def get_backend(source: ModelSource, progress=None) -> ModelBackend:
    with _registry_lock:
        lock = _locks.setdefault(source.key, threading.Lock())
    with lock:  # two sessions asking at once load it once
        if source.key not in _backends:
            _backends[source.key] = open_backend(source, progress)
        return _backends[source.key]


def peek_backend(source: ModelSource) -> ModelBackend | None:
    return _backends.get(source.key)


def forget_backend(source: ModelSource) -> None:
    _backends.pop(source.key, None)
