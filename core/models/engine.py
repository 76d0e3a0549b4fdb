"""Which engine answers with a local model: transformers (always there; trains, and runs on a GPU) or llama.cpp
(optional, through llama-cpp-python: quantized weights, several times faster on a CPU).

The choice is the studio's, not the recipe's: the same recipe answers the same way on either engine (the prompt is
rendered and tokenized by the same tokenizer), only faster. `STUDIO_ENGINE` (auto | transformers | llama.cpp)
overrides the setting saved from the Model page. With auto, llama.cpp answers when it is installed, the model comes
from a GGUF file (the embedded model or a GGUF source), no GPU is present and the adapter (if any) can be written
as GGUF; otherwise transformers answers.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from core import atomic
from core.errors import StudioError
from core.i18n import Msg
from core.workspace import studio_home

ENGINES = ("auto", "transformers", "llama.cpp")
ENGINE_LABELS = {"auto": Msg("Automatic (the fastest that can run this model)"),
                 "transformers": Msg("transformers (PyTorch)"), "llama.cpp": Msg("llama.cpp (quantized, fast on CPU)")}
SETTINGS_FILE = "settings.json"
GGUF_SOURCES = ("embedded", "gguf")
SOFT_PROMPTS = ("prompt_tuning", "prefix_tuning")


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def preference() -> str:
    """auto | transformers | llama.cpp: $STUDIO_ENGINE, else the studio setting, else auto."""
    chosen = os.environ.get("STUDIO_ENGINE", "").strip()
    if not chosen:
        path = studio_home() / SETTINGS_FILE
        chosen = (atomic.read_json(path) if path.exists() else {}).get("engine", "auto")
    return chosen if chosen in ENGINES else "auto"


def set_preference(engine: str) -> None:
    if engine not in ENGINES:
        raise StudioError(Msg("Unknown engine '{engine}'; pick one of {engines}.", engine=engine,
                              engines=", ".join(ENGINES)))
    path = studio_home() / SETTINGS_FILE
    settings = atomic.read_json(path) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {**settings, "engine": engine})


@dataclass(frozen=True)
class EngineChoice:
    engine: str           # "transformers" | "llama.cpp"
    reason: Msg           # why, in one sentence for the Model page


def choose(source, adapter_manifest: dict | None = None, precision: str | None = None) -> EngineChoice:
    """The engine that answers for this model, adapter (its manifest) and precision, and why."""
    wanted = preference()
    if wanted == "transformers":
        if os.environ.get("STUDIO_ENGINE", "").strip() == "transformers":  # the page's setting has no say then
            return EngineChoice("transformers", Msg("transformers was chosen with STUDIO_ENGINE=transformers, which "
                                                    "overrides the Model page's setting."))
        return EngineChoice("transformers", Msg("transformers was chosen on the Model page."))
    blocker = _llama_cpp_blocker(source, adapter_manifest, precision)
    if blocker is None:
        return EngineChoice("llama.cpp", Msg("llama.cpp answers: several times faster than transformers on a CPU."))
    if wanted == "llama.cpp":
        return EngineChoice("transformers", Msg("transformers answers instead of llama.cpp: {why}", why=blocker))
    return EngineChoice("transformers", blocker)


def _llama_cpp_blocker(source, adapter_manifest: dict | None, precision: str | None) -> Msg | None:
    if not llama_cpp_installed():
        return Msg("llama.cpp is not installed (Model page: Install the fast engine).")
    if source.kind not in GGUF_SOURCES:
        return Msg("llama.cpp reads GGUF files; this model is not one (the embedded model and GGUF files are).")
    if precision not in (None, "fp32"):
        return Msg("comparing precisions loads the model in transformers.")
    if _has_gpu():
        return Msg("a GPU is present, and transformers uses it.")
    if adapter_manifest is not None:
        method = adapter_manifest.get("config", {}).get("method")
        if method in SOFT_PROMPTS:
            return Msg("soft prompts (prompt and prefix tuning) run in transformers only.")
    return None


def _has_gpu() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()
