"""The Assistant recipe: model + adapter + prompt + few-shot + retriever settings, saved as versioned JSON.

The Chat page, the CLI, the evaluator and every export read this one object.
"""

from __future__ import annotations

import copy
import getpass
import re
import time
from dataclasses import dataclass, field, replace

from core import atomic
from core.errors import StudioError
from core.fewshot import FewShotSettings
from core.models.base import CompletionLabels
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from core.prompt import PromptSettings
from core.rag.retriever import RetrieverSettings
from core.tools import normalize_tools
from core.workspace import Project
from core.i18n import Msg

SCHEMA_VERSION = 1
DEFAULT_RECIPE = "assistant"
RECIPE = Msg("recipe")
SAVE_ATTEMPTS = 100  # versions another session may save between our read of the latest and our write


@dataclass(frozen=True)
class Recipe:
    name: str = DEFAULT_RECIPE
    model: ModelSource = field(default_factory=ModelSource)
    adapter: str | None = field(default=None, metadata={"help": "Fine-tuned adapter run id, or none."})
    prompt: PromptSettings = field(default_factory=PromptSettings)
    fewshot: FewShotSettings = field(default_factory=FewShotSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    # A CPU laptop answers slowly past a few thousand tokens; users raise it up to the model's maximum.
    context_window: int | None = field(default=4096, metadata={"help": "Tokens to use; none = the model's maximum."})
    retriever: RetrieverSettings = field(default_factory=RetrieverSettings,
                                         metadata={"help": "Knowledge-base settings (the RAG rung)."})
    tools: tuple = field(default=(), metadata={"help": "Tools the model may call (OpenAI function tools)."})

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.name):
            raise StudioError(Msg("A recipe name uses letters, digits, - and _ only (at most 40)."))
        if self.context_window is not None and self.context_window < 64:
            raise StudioError(Msg("The context window must be at least 64 tokens."))
        object.__setattr__(self, "tools", normalize_tools(self.tools))  # StudioError with the first problem

    @property
    def labels(self) -> CompletionLabels:
        return CompletionLabels(self.prompt.user_label, self.prompt.assistant_label)

    def with_changes(self, **changes) -> "Recipe":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "model": self.model.to_dict(),
            "adapter": self.adapter,
            "prompt": self.prompt.to_dict(),
            "fewshot": self.fewshot.to_dict(),
            "generation": self.generation.to_dict(),
            "context_window": self.context_window,
            "retriever": self.retriever.to_dict(),
            "tools": copy.deepcopy(list(self.tools)),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        return cls(
            name=data.get("name", DEFAULT_RECIPE),
            model=ModelSource.from_dict(data.get("model")),
            adapter=data.get("adapter"),
            prompt=PromptSettings.from_dict(data.get("prompt")),
            fewshot=FewShotSettings.from_dict(data.get("fewshot")),
            generation=GenerationSettings.from_dict(data.get("generation")),
            context_window=data.get("context_window", cls.__dataclass_fields__["context_window"].default),
            retriever=RetrieverSettings.from_dict(data.get("retriever")),
            tools=data.get("tools") or (),
        )


@dataclass(frozen=True)
class RecipeVersion:
    number: int
    saved_at: float
    author: str
    note: str
    recipe: Recipe


class RecipeStore:
    """recipes/<name>/v0001.json, v0002.json, …: saving never overwrites an earlier version."""

    def __init__(self, project: Project, name: str = DEFAULT_RECIPE):
        self.project = project
        self.name = name
        project.child("recipes", name, RECIPE)  # a name like '../x' is refused at once

    @property
    def folder(self):
        return self.project.child("recipes", self.name, RECIPE)

    def versions(self) -> list[RecipeVersion]:
        if not self.folder.exists():
            return []
        found = []
        for path in sorted(self.folder.glob("v*.json")):
            data = atomic.read_json(path)
            found.append(RecipeVersion(int(path.stem[1:]), data.get("saved_at", 0.0), data.get("author", ""),
                                       data.get("note", ""), Recipe.from_dict(data["recipe"])))
        return found

    def latest(self) -> RecipeVersion | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def load(self, number: int | None = None) -> Recipe:
        """A version's recipe; the latest by default; a fresh default recipe when none was saved."""
        versions = self.versions()
        if number is None:
            return versions[-1].recipe if versions else Recipe(name=self.name)
        for version in versions:
            if version.number == number:
                return version.recipe
        raise StudioError(Msg("Recipe '{name}' has no version {number}.", name=self.name, number=number))

    def save(self, recipe: Recipe, note: str = "", author: str | None = None) -> int:
        self.project.require()
        latest = self.latest()
        if latest is not None and latest.recipe.to_dict() == recipe.to_dict():
            return latest.number  # nothing changed: no empty version
        payload = {"saved_at": time.time(), "author": author or _user(), "note": note, "recipe": recipe.to_dict()}
        number = (latest.number if latest else 0) + 1
        for _ in range(SAVE_ATTEMPTS):
            try:  # created exclusively: a version saved by another session at the same moment is never replaced
                atomic.write_json_new(self.folder / f"v{number:04d}.json", payload)
                return number
            except FileExistsError:
                number += 1  # that number was just taken: ours becomes the next one
        raise StudioError(Msg("Someone saved this recipe at the same moment; reload the page and save again."))


def list_recipes(project: Project) -> list[str]:
    folder = project.subdir("recipes")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("v*.json")))
    return names or [DEFAULT_RECIPE]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
