"""`studio eval`: score a recipe, or the whole ladder built from it, on an evaluation set."""

from __future__ import annotations

import json
from typing import Optional

import typer

from core.cli import common
from core.errors import StudioError

STEP_METRIC = "token_f1"  # each rung's step over the one below, with its bootstrap interval
STEP_READINGS = {"gain": "a real gain", "loss": "a real loss", "noise": "could be noise"}


def eval_command(project: str = typer.Argument(..., help="Project name or folder name; 'sample' evaluates the "
                                                         "sample project, setting up its rungs first."),
                 recipe: str = typer.Option("assistant", help="Recipe to evaluate (the ladder is built from it)."),
                 dataset: str = typer.Option("eval", help="Evaluation set."),
                 ladder: bool = typer.Option(False, "--ladder", help="Score every rung of the ladder."),
                 limit: Optional[int] = typer.Option(None, help="Only the first N questions."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Score a recipe (or the whole ladder built from it) on an evaluation set, in this process."""
    if limit is not None and limit < 1:
        common.usage(f"--limit must be at least 1, not {limit}.")
    from core import runlock
    from core.evaluate import runs, variants
    from core.evaluate.steps import ladder_steps
    from core.recipe import RecipeStore

    def show(**event) -> None:
        if event.get("message"):
            typer.echo(str(event["message"]), err=True)

    try:
        if project == "sample":
            from core import sample

            target = sample.ladder_ready_project(show)
        else:
            target = common.open_project(project)
        current = RecipeStore(target, recipe).load()
        chosen = variants.ladder(target, current) if ladder else [variants.saved_recipe(target, recipe)]
        runlock.RunLock(target.path, "eval").check_free()  # before a run is made that could not start
        run = runs.create_eval_run(target, dataset, chosen, runs.EvalOptions(limit=limit))
        with runlock.holding(target.path, "eval", run.id):  # one evaluation at a time per project
            result = common.attached(run.folder / "jobs", f"eval {run.id}", show,
                                     lambda emit, should_stop: runs.execute(target, run.id, emit, should_stop))
    except StudioError as exc:
        common.fail(str(exc))
    if not result["finished"]:
        common.fail("Stopped; the answers so far are kept. Continue on the Evaluation page.")
    summary = result["summary"]
    steps = ladder_steps(run.results(), [v.key for v in chosen if v.ready], STEP_METRIC) if ladder else []
    rows = [{"variant": v.key, "label": v.label, "ready": v.ready, "missing": str(v.missing or ""),
             **{k: round(x, 4) for k, x in summary.get(v.key, {}).items()}} for v in chosen]
    if as_json:
        found = {"run": run.id, "dataset": dataset, "variants": rows, "steps": [step.to_dict() for step in steps]}
        typer.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    names = [m for m in ("token_f1", "exact_match", "rouge_l", "semantic_similarity", "hit_at_k",
                         "answer_in_passages", "latency_s") if any(m in r for r in rows)]
    typer.echo(f"{'variant':28}" + "".join(f"{n:>21}" for n in names))
    for row in rows:
        cells = "".join(f"{row[n]:>21.3f}" if n in row else f"{'-':>21}" for n in names)
        typer.echo(f"{row['label'][:27]:28}" + (cells if row["ready"] else f"  not set up: {row['missing']}"))
    labels = {v.key: v.label for v in chosen}
    for step in steps:
        typer.echo(f"{labels[step.variant][:27]:28}{STEP_METRIC} {step.difference:+.3f} over {labels[step.below]} "
                   f"(95% interval {step.low:+.3f} … {step.high:+.3f}, {step.questions} questions): "
                   f"{STEP_READINGS[step.verdict]}")
