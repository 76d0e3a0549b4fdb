"""The sample project (sample_data/): a quick start that shows every rung on real, small data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core import atomic
from core.data.pairs import clean_rows, save_pairs
from core.data.records import new_record
from core.data.store import DatasetStore
from core.recipe import Recipe, RecipeStore
from core.workspace import Project, Workspace

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_NAME = "Lumen Bikes (sample)"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def create_sample_project(ws: Workspace, name: str = SAMPLE_NAME) -> Project:
    existing = {p.name for p in ws.list_projects()}
    final_name, n = name, 2
    while final_name in existing:
        final_name, n = f"{name} {n}", n + 1
    project = ws.create(final_name)
    recipe = Recipe.from_dict(atomic.read_json(SAMPLE_DIR / "recipe.json"))
    RecipeStore(project).save(recipe, note="Sample recipe")
    save_pairs(project, "examples", clean_rows(_jsonl(SAMPLE_DIR / "examples.jsonl")), note="Sample examples")
    DatasetStore(project).create("eval", "eval", [new_record("eval", **row) for row in _jsonl(SAMPLE_DIR / "eval.jsonl")],
                                 note="Sample eval set")
    shutil.copytree(SAMPLE_DIR / "docs", project.subdir("documents") / "docs", dirs_exist_ok=True)  # knowledge base "docs"
    return project
