"""What an eval run compares: variants of the Assistant recipe.

The ladder is built from the current recipe, one rung per step an analyst takes: the prompt alone, then few-shot
examples, then the retriever, then a fine-tuned adapter, then adapter and retriever together. A rung whose
ingredient does not exist yet is kept, marked "not set up", with the page that sets it up. Saved recipe versions
and other model precisions are variants too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.i18n import Msg
from core.recipe import Recipe, RecipeStore
from core.workspace import Project

RUNGS = ("prompt", "fewshot", "retriever", "adapter", "adapter_retriever")
RUNG_LABELS = {
    "prompt": Msg("Prompt (zero-shot)"),
    "fewshot": Msg("+ few-shot"),
    "retriever": Msg("+ retriever"),
    "adapter": Msg("+ adapter"),
    "adapter_retriever": Msg("+ adapter + retriever"),
    "preference": Msg("+ preference tuning"),
}
PREFERENCE_RUNG = "preference"  # shown only when a preference-tuned adapter exists; its parent is "fewshot"
PREFERENCE_TUNED = ("dpo", "orpo", "kto")
SETUP_PAGES = {"fewshot": "fewshot", "retriever": "retriever", "adapter": "finetune"}


@dataclass(frozen=True)
class Variant:
    key: str                   # stable id inside a run: a rung name, "recipe:NAME@vN" or "...|int8"
    label: str
    recipe: Recipe | None      # None: not set up yet
    missing: Msg | None = None  # why it is not set up
    setup_page: str | None = None
    precision: str = "fp32"

    @property
    def ready(self) -> bool:
        return self.recipe is not None

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "recipe": self.recipe.to_dict() if self.recipe else None,
                "missing": str(self.missing) if self.missing else None, "setup_page": self.setup_page,
                "precision": self.precision}

    @classmethod
    def from_dict(cls, data: dict) -> "Variant":
        return cls(data["key"], data["label"], Recipe.from_dict(data["recipe"]) if data.get("recipe") else None,
                   data.get("missing"), data.get("setup_page"), data.get("precision", "fp32"))


def _examples_ready(project: Project, recipe: Recipe) -> Msg | None:
    from core.data import pairs

    if pairs.load_pairs(project, recipe.fewshot.dataset):
        return None
    return Msg("No examples in dataset '{name}' yet.", name=recipe.fewshot.dataset)


def _retriever_ready(project: Project, recipe: Recipe) -> Msg | None:
    from core.rag.kb import KnowledgeBase

    if KnowledgeBase(project, recipe.retriever.knowledge_base).documents():
        return None
    return Msg("Knowledge base '{name}' has no indexed documents yet.", name=recipe.retriever.knowledge_base)


def ladder_adapter(project: Project, recipe: Recipe, objectives: tuple[str, ...] = ("sft",)) -> str | None:
    """The recipe's adapter, else the newest adapter trained on the recipe's model, among adapters trained with
    `objectives` (supervised by default; a reward model scores answers and never writes them)."""
    from core.models.adapters import AdapterRegistry

    registry = AdapterRegistry(project)
    if recipe.adapter and registry.exists(recipe.adapter) and registry.get(recipe.adapter).objective in objectives:
        return recipe.adapter
    same_model = [a for a in registry.list() if a.manifest.get("base_model") == recipe.model.to_dict()
                  and a.objective in objectives]
    return same_model[0].id if same_model else None


def ladder(project: Project, recipe: Recipe) -> list[Variant]:
    """The five rungs built from `recipe`: prompt, + few-shot, + retriever, then the adapter in place of the
    examples (+ adapter, + adapter + retriever). An adapter learnt from prompts without examples, so it is asked
    that way: adding examples it never saw in training makes it answer worse, not better. The prompt rung is
    zero-shot; without examples of the user's, the + retriever rung gets the starter examples, as chat does."""
    prompt_only = recipe.with_changes(adapter=None, fewshot=replace(recipe.fewshot, enabled=False),
                                      retriever=replace(recipe.retriever, enabled=False))
    examples_missing = _examples_ready(project, recipe)
    retriever_missing = _retriever_ready(project, recipe)
    adapter = ladder_adapter(project, recipe)
    with_examples = prompt_only.with_changes(fewshot=replace(recipe.fewshot, enabled=True)) \
        if examples_missing is None else prompt_only
    with_retriever = with_examples.with_changes(retriever=replace(recipe.retriever, enabled=True))
    adapter_missing = None if adapter else Msg("No fine-tuned adapter for this model yet.")
    built = {  # the first rung is zero-shot: no starter examples either (core.fewshot.STARTER_EXAMPLES)
        "prompt": (prompt_only.with_changes(prompt=replace(recipe.prompt, starter_examples=False)), None),
        "fewshot": (with_examples, examples_missing),
        "retriever": (with_retriever, retriever_missing),
        "adapter": (prompt_only.with_changes(adapter=adapter), adapter_missing),
        "adapter_retriever": (prompt_only.with_changes(adapter=adapter, retriever=replace(recipe.retriever,
                                                                                         enabled=True)),
                              adapter_missing or retriever_missing),
    }
    variants = []
    for rung in RUNGS:
        candidate, missing = built[rung]
        page = None
        if missing is not None:
            page = SETUP_PAGES["adapter" if rung.startswith("adapter") and adapter_missing else
                               "retriever" if "retriever" in rung else "fewshot"]
        variants.append(Variant(rung, str(RUNG_LABELS[rung]), None if missing else candidate, missing, page))
    preference = ladder_adapter(project, recipe, PREFERENCE_TUNED)
    if preference:
        variants.append(Variant(PREFERENCE_RUNG, str(RUNG_LABELS[PREFERENCE_RUNG]),
                                with_examples.with_changes(adapter=preference)))
    return variants


def saved_recipe(project: Project, name: str, version: int | None = None) -> Variant:
    store = RecipeStore(project, name)
    number = version or (store.latest().number if store.latest() else None)
    recipe = store.load(number)
    return Variant(f"recipe:{name}@v{number}", f"{name} v{number}", recipe)


def at_precision(variant: Variant, precision: str) -> Variant:
    """The same variant with its model loaded at another precision (fp32 / bf16 / int8 / nf4)."""
    if precision == "fp32":
        return variant
    return replace(variant, key=f"{variant.key}|{precision}", label=f"{variant.label} · {precision}",
                   precision=precision)


@dataclass(frozen=True)
class MergedExport:
    folder: str
    adapter: str | None  # the adapter it was merged from (None: the base model alone)
    gguf: str | None = None  # a GGUF export: its file; else a safetensors folder
    quantization: str = ""

    @property
    def name(self) -> str:
        return self.folder.rstrip("/").rsplit("/", 1)[-1]


def merged_exports(project: Project) -> list[MergedExport]:
    """Merged model folders and GGUF files written by the Fine-tune page's exports (newest first)."""
    from core import atomic
    from core.finetune.adapters import EXPORT_MANIFEST

    folder = project.subdir("exports")
    found = [(p, atomic.read_json(p / EXPORT_MANIFEST)) for p in folder.iterdir()
             if (p / EXPORT_MANIFEST).exists()] if folder.exists() else []
    found.sort(key=lambda item: item[1].get("created", 0), reverse=True)
    return [MergedExport(str(path), manifest.get("adapter"),
                         str(path / manifest["file"]) if manifest.get("format") == "gguf" else None,
                         manifest.get("quantization", "")) for path, manifest in found]


def export_parity(project: Project, recipe: Recipe, export: MergedExport) -> list[Variant]:
    """The recipe with base + adapter, and the same recipe on the exported model: with greedy decoding their
    scores should match (a GGUF quantized below 16 bits may drift a little; the gap shows how much)."""
    from core.models.source import ModelSource

    tuned = recipe.with_changes(adapter=export.adapter)
    model = ModelSource(kind="gguf", location=export.gguf) if export.gguf else \
        ModelSource(kind="local", location=export.folder)
    exported = recipe.with_changes(adapter=None, model=model)
    label = f"base + adapter {export.adapter}" if export.adapter else "base model"
    kind = f"GGUF {export.quantization}" if export.gguf else "merged export"
    return [Variant(f"parity:{export.adapter or 'base'}", label, tuned),
            Variant(f"parity:{export.name}", f"{kind} {export.name}", exported)]
