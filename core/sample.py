"""The sample project (sample_data/): a quick start that shows every rung on real, small data.

A made-up city-bike shop, Lumen Bikes: company documents in several formats for the retriever, training pairs
for few-shot and fine-tuning, a held-out eval set whose facts are all in the documents, preference pairs and
tool-call eval rows. sample_data/README.md lists the files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core import atomic
from core.data.pairs import clean_rows
from core.data.records import new_record
from core.data.store import DatasetStore
from core.recipe import Recipe, RecipeStore
from core.workspace import Project, Workspace

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_NAME = "Lumen Bikes (sample)"
KNOWLEDGE_BASE = "docs"
# (dataset name, kind, file in sample_data/, note); "examples" is the dataset the recipe's few-shot names.
DATASETS = (
    ("examples", "sft", "train.jsonl", "Sample training pairs"),
    ("eval", "eval", "eval.jsonl", "Sample eval set"),
    ("preferences", "preference", "preferences.jsonl", "Sample preference pairs"),
    ("tools_eval", "eval", "tools_eval.jsonl", "Sample tool-call eval set"),
)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_records(kind: str, rows: list[dict]) -> list[dict]:
    """Records of a sample file. Training pairs carry no split, so a fine-tune holds out its own share for the eval
    loss curve; the held-out questions of the ladder are the separate "eval" dataset (training pairs teach their
    facts in other words, never the same question)."""
    if kind == "sft":
        return [new_record("sft", **row) for row in clean_rows(rows)]
    return [new_record(kind, **row) for row in rows]


def create_sample_project(ws: Workspace, name: str = SAMPLE_NAME, index: bool = False) -> Project:
    """The sample project. With `index`, its documents start indexing in a background job at once, so its
    retriever rungs are ready by the time the analyst reaches them."""
    existing = {p.name for p in ws.list_projects()}
    final_name, n = name, 2
    while final_name in existing:
        final_name, n = f"{name} {n}", n + 1
    project = ws.create(final_name)
    recipe = Recipe.from_dict(atomic.read_json(SAMPLE_DIR / "recipe.json"))
    RecipeStore(project).save(recipe, note="Sample recipe")
    store = DatasetStore(project)
    for dataset, kind, filename, note in DATASETS:
        store.create(dataset, kind, sample_records(kind, _jsonl(SAMPLE_DIR / filename)), note=note)
    # Markdown, PDF, DOCX and CSV documents, waiting to be indexed into the knowledge base.
    shutil.copytree(SAMPLE_DIR / "docs", project.subdir("documents") / KNOWLEDGE_BASE, dirs_exist_ok=True)
    if index:
        from core.rag import ingest_job
        from core.rag.kb import KnowledgeBase

        ingest_job.start(project, KNOWLEDGE_BASE, KnowledgeBase(project, KNOWLEDGE_BASE).pending())
    return project


# The adapter the sample's ladder uses: LoRA on every linear layer, trained on every pair (no held-out share:
# the eval set is separate) long enough to learn the shop's facts, each pair with and without the passages the
# retriever finds for it, so the adapter helps with and without the retriever.
SAMPLE_TRAINING = {"dataset": "examples", "method": "lora", "epochs": 5, "learning_rate": 5e-4, "lora_rank": 16,
                   "lora_alpha": 32, "target_preset": "all_linear", "batch_size": 8, "eval_fraction": 0.0,
                   "retrieval_context": "mixed", "max_length": 1024}


def fitted_sample_training(config, recipe):
    """The sample's training settings fitted to this machine's free memory: 8 prompts of up to 1,024 tokens need
    about 13 GB by the estimate (10 GB measured), so a laptop with less gets smaller batches with gradient
    accumulation, the same examples per update."""
    from core.finetune import estimate
    from core.finetune.recommend import fit_batch_to_memory
    from core.models import registry

    try:
        folder, _ = registry.model_folder(recipe.model)  # converts the embedded model once, as training would
        shape = estimate.ModelShape.from_folder(folder)
    except Exception:  # a model without a local folder: training reports it; the estimate must not stop it
        return config
    return fit_batch_to_memory(config, shape, config.max_length, estimate.available_memory("cpu"))


def ladder_ready_project(emit=lambda **event: None) -> Project:
    """The sample project with every rung set up: created if missing, its documents indexed, an adapter trained.

    Each step is skipped when already done, so running it again costs only what is missing.
    """
    from core import runlock
    from core.finetune import runs as finetune_runs
    from core.models.adapters import AdapterRegistry
    from core.finetune.config import TrainConfig
    from core.i18n import Msg
    from core.rag.kb import KnowledgeBase

    ws = Workspace()
    project = next((p for p in ws.list_projects() if p.name == SAMPLE_NAME), None) or create_sample_project(ws)
    base = KnowledgeBase(project, KNOWLEDGE_BASE)
    if base.pending():
        emit(message=Msg("Indexing the sample documents"))
        base.ingest(base.pending())
    if all(a.is_reward for a in AdapterRegistry(project).list()):  # a reward model is no rung of the ladder
        emit(message=Msg("Training the sample adapter (a few minutes on a laptop)"))
        recipe = RecipeStore(project).load()
        config = TrainConfig(dataset_version=DatasetStore(project).latest_version("examples"), **SAMPLE_TRAINING)
        config = fitted_sample_training(config, recipe)
        run = finetune_runs.create_run(project, config, recipe)
        with runlock.holding(project.path, finetune_runs.RUNS, run.id):  # one training run at a time per project
            finetune_runs.execute_recorded(project, run.id, emit)
    return project
