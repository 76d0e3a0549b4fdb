"""`studio export` (a tuned assistant as GGUF for Ollama, LM Studio and llama.cpp) and `studio engine` (which engine
answers with local models)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from core.cli import common
from core.errors import StudioError

QUANTIZATIONS = ("Q8_0", "Q4_K_M", "Q4_0", "F16")  # core.models.gguf_write.QUANTIZATIONS
ENGINES = ("auto", "transformers", "llama.cpp")  # core.models.engine.ENGINES


def export(project: str = typer.Argument(..., help="Project name or folder name."),
           recipe: str = typer.Option("assistant", help="Recipe name."),
           version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
           adapter: Optional[str] = typer.Option(None, help="Adapter id to merge instead of the recipe's; 'none' "
                                                            "exports the base model."),
           quantization: str = typer.Option("Q8_0", "-q", "--quantization",
                                            help="Q8_0 (nearly lossless), Q4_K_M (needs llama.cpp), Q4_0 or F16."),
           out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder to write (default: the project's "
                                                                        "exports folder).")) -> None:
    """Write the recipe's model with its adapter merged as one GGUF file, with an Ollama Modelfile and a guide to
    the prompt format."""
    common.one_of("--quantization", quantization, QUANTIZATIONS)
    from core.finetune.gguf_export import export_gguf
    from core.recipe import RecipeStore

    proj = common.open_project(project)
    try:
        chosen = RecipeStore(proj, recipe).load(version)
        if adapter is not None:
            chosen = chosen.with_changes(adapter=None if adapter.lower() == "none" else adapter)
        folder = export_gguf(proj, chosen, quantization, out, common.progress)
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo(f"Wrote {folder}")
    typer.echo(f"Ollama: cd {folder} && ollama create {chosen.name} -f Modelfile && ollama run {chosen.name}")


def engine(choice: Optional[str] = typer.Argument(None, help="auto, transformers or llama.cpp; without it, show "
                                                               "the setting."),
           project: Optional[str] = typer.Option(None, help="Also say which engine answers this project's recipe."),
           ) -> None:
    """Show or set which engine answers with local models (the Model page's setting)."""
    common.one_of("the engine", choice, ENGINES)
    from core.models import engine as engines

    if choice is not None:
        engines.set_preference(choice)
    typer.echo(f"setting: {engines.preference()}")
    typer.echo(f"llama.cpp installed: {'yes' if engines.llama_cpp_installed() else 'no (make fast)'}")
    if project is not None:
        from core.models.adapters import AdapterRegistry
        from core.recipe import RecipeStore

        proj = common.open_project(project)
        recipe = RecipeStore(proj).load()
        manifest = AdapterRegistry(proj).get(recipe.adapter).manifest if recipe.adapter else None
        chosen = engines.choose(recipe.model, manifest)
        typer.echo(f"answers: {chosen.engine} ({chosen.reason})")
