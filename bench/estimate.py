"""How close the Fine-tune page's time estimate ("Measure the time") comes to the run it predicts.

Run:  .venv/bin/python bench/estimate.py [--epochs 5] [--eval-fraction 0.2]

On the sample project (created in a throw-away STUDIO_HOME that shares the converted model of the default one),
with the sample's own training settings (LoRA on every linear layer, each pair with and without the passages the
retriever finds), it runs `core.finetune.runs.calibrate` as the page does, then the real run with
`core.finetune.runs.execute`, and prints both durations and their ratio. Goal: the estimate within +-30% of the
run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

GOAL = 0.30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the sample's training settings")
    parser.add_argument("--eval-fraction", type=float, default=None,
                        help="hold out this share for eval passes (the sample's settings hold out none)")
    parser.add_argument("--keep", help="studio home to use instead of a temporary one")
    args = parser.parse_args()
    default_home = Path(os.environ.get("STUDIO_HOME") or Path.home() / ".llm-studio").expanduser()
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="estimate-bench-"))
    models = default_home / "models"
    if models.exists() and not (home / "models").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(models)  # the converted model is shared, not converted again
    os.environ["STUDIO_HOME"] = str(home)

    from core.data.store import DatasetStore
    from core.finetune import runs
    from core.finetune.config import TrainConfig
    from core.rag.kb import KnowledgeBase
    from core.recipe import RecipeStore
    from core.sample import KNOWLEDGE_BASE, SAMPLE_TRAINING, create_sample_project
    from core.workspace import Workspace

    project = create_sample_project(Workspace())
    base = KnowledgeBase(project, KNOWLEDGE_BASE)
    base.ingest(base.pending())
    settings = {**SAMPLE_TRAINING, **({"epochs": args.epochs} if args.epochs else {}),
                **({"eval_fraction": args.eval_fraction} if args.eval_fraction is not None else {})}
    config = TrainConfig(dataset_version=DatasetStore(project).latest_version("examples"), **settings)
    recipe = RecipeStore(project).load()
    spec = {"config": config.to_dict(), "base_model": recipe.model.to_dict(), "prompt": recipe.prompt.to_dict(),
            "labels": {"user": recipe.labels.user, "assistant": recipe.labels.assistant},
            "retriever": recipe.retriever.to_dict()}

    def quiet(**event):
        if event.get("message"):
            print(f"  {event['message']}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    estimate = runs.calibrate(project, spec, quiet)
    calibration_s = time.perf_counter() - started
    run = runs.create_run(project, config, recipe)
    started = time.perf_counter()
    result = runs.execute(project, run.id, quiet)
    real_s = time.perf_counter() - started
    ratio = estimate["estimate_s"] / real_s
    figures = {"estimate_s": round(estimate["estimate_s"], 1), "real_s": round(real_s, 1),
               "ratio": round(ratio, 3), "within_goal": abs(ratio - 1) <= GOAL,
               "parts_s": {"prepare": round(estimate["prepare_s"], 1), "eval": round(estimate["eval_s"], 1),
                           "steps": round(estimate["seconds_per_step"] * estimate["total_steps"], 1)},
               "steps": estimate["total_steps"], "finished": bool(result.get("finished")),
               "calibration_s": round(calibration_s, 1), "config": settings}
    print(f"estimate {figures['estimate_s']} s, real run {figures['real_s']} s: ratio {ratio:.2f} "
          f"(goal within +-{GOAL:.0%})")
    print(json.dumps(figures))
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
