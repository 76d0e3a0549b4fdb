"""Where a model comes from. Saved inside the recipe; API keys are never part of it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from core.errors import ModelLoadError
from core.i18n import Msg

SourceKind = Literal["embedded", "local", "gguf", "hub", "openai"]
SOURCE_KINDS: tuple[str, ...] = ("embedded", "local", "gguf", "hub", "openai")
SOURCE_LABELS = {
    "embedded": Msg("Embedded Gemma 3 270M (offline)"),
    "local": Msg("Local Hugging Face folder"),
    "gguf": Msg("GGUF file"),
    "hub": Msg("Hugging Face hub id (needs internet)"),
    "openai": Msg("OpenAI-compatible endpoint (Ollama, vLLM, LM Studio)"),
}


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind = field(default="embedded", metadata={"help": "One of SOURCE_KINDS."})
    location: str = field(default="", metadata={"help": "Folder, .gguf path, hub id, or endpoint base URL."})
    model_name: str = field(default="", metadata={"help": "Model name sent to an OpenAI-compatible endpoint."})
    api_key_env: str = field(default="", metadata={"help": "Name of the environment variable holding the key."})

    def __post_init__(self):
        if self.kind not in SOURCE_KINDS:
            raise ModelLoadError(Msg("Unknown model source '{kind}'; choose one of {kinds}.", kind=self.kind,
                                     kinds=", ".join(SOURCE_KINDS)))
        if self.kind != "embedded" and not self.location.strip():
            raise ModelLoadError(Msg("Enter the base URL of the endpoint.") if self.kind == "openai"
                                 else Msg("Enter where the model is (folder, file or hub id)."))
        if self.kind == "openai" and not self.model_name.strip():
            raise ModelLoadError(Msg("Enter the model name the endpoint serves (for example 'llama3.2')."))

    @property
    def trainable(self) -> bool:
        return self.kind != "openai"

    @property
    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def api_key(self) -> str:
        """The key itself, from the environment or a secrets file (core.secrets); only its NAME is saved."""
        from core.secrets import get_secret

        return get_secret(self.api_key_env)

    def describe(self) -> str:
        if self.kind == "embedded":
            return SOURCE_LABELS["embedded"]
        if self.kind == "openai":
            return f"{self.model_name} at {self.location}"
        return self.location

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ModelSource":
        data = data or {}
        return cls(**{k: data[k] for k in ("kind", "location", "model_name", "api_key_env") if k in data})
