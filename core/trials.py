"""Quick trials: answers of a recipe on a few questions, saved with the recipe snapshot as a baseline."""

from __future__ import annotations

import time

from core import atomic
from core.recipe import Recipe
from core.workspace import Project


def save_trial(project: Project, recipe: Recipe, version: int | None, rows: list[dict]) -> str:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    atomic.write_json(project.subdir("runs") / "trials" / f"{run_id}.json",
                      {"time": time.time(), "recipe_version": version, "recipe": recipe.to_dict(), "rows": rows})
    return run_id


def list_trials(project: Project) -> list[dict]:
    folder = project.subdir("runs") / "trials"
    return [atomic.read_json(p) for p in sorted(folder.glob("*.json"))] if folder.exists() else []
