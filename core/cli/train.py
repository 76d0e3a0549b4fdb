"""`studio train`: a fine-tuning run headless, also under `accelerate launch`."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from core.cli import common
from core.errors import StudioError


def read_config(path: Path):
    """The run config a person wrote or downloaded; every mistake in it is a usage error naming the file."""
    from core.finetune.config import TrainConfig

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        common.usage(f"{path} is not a UTF-8 text file; give the run config JSON.")
    except OSError as exc:
        common.usage(f"Could not read {path}: {exc.strerror or exc}.")
    try:
        data = json.loads(text)
    except ValueError as exc:
        common.usage(f"{path} is not valid JSON ({exc}).")
    try:
        return TrainConfig.from_dict(data, strict=True)
    except (ValueError, TypeError, StudioError) as exc:  # wrong type or unknown key; StudioError: a value's range
        common.usage(f"{path}: {exc}")


def train(project: str = typer.Argument(..., help="Project name or folder name."),
          config: Optional[Path] = typer.Option(None, "--config", help="Run config JSON (the Fine-tune page shows "
                                                                       "and downloads it)."),
          recipe: str = typer.Option("assistant", help="Recipe whose model and prompt format to train."),
          resume: Optional[str] = typer.Option(None, help="Continue this run id from its checkpoint."),
          add_epochs: int = typer.Option(0, help="With --resume: train this many more epochs."),
          finish: Optional[str] = typer.Option(None, "--finish", help="Stop and keep: run RUN_ID stops at its next "
                                               "step (wherever it trains) and saves the best adapter so far; a "
                                               "stopped run is finished from its checkpoint.")) -> None:
    """Fine-tune headless: the same run the Fine-tune page starts, in this process.

    Under `accelerate launch` (several GPUs), every process runs this; the first creates the run and speaks.
    """
    settings = None
    if finish:
        if resume or config is not None:
            common.usage("--finish takes no --config or --resume: it finishes the run it names.")
        if _finish_elsewhere(project, finish):
            return
        resume = finish  # nothing trains it now: load its checkpoint here and save the adapter
    elif not resume:
        if config is None:
            common.usage("Give --config run.json or --resume RUN_ID.")
        settings = read_config(config)  # before torch loads, so a typo is reported at once
    import signal

    from core import runlock
    from core.finetune import runs
    from core.finetune.distributed import current_workers
    from core.recipe import RecipeStore

    workers = current_workers()
    target = common.open_project(project)
    stop = {"requested": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))

    def show(**event) -> None:
        if not workers.is_main:
            return
        # Preference runs (DPO, ORPO, KTO, reward model) also report the reward margin and accuracy.
        if event.get("type") == "step":
            typer.echo(f"step {event['step']}/{event['total_steps']}  loss {event['loss']:.4f}  "
                       f"{event['tokens_per_s']:.0f} tok/s  eta {event['eta_s']:.0f}s" + _rewards(event, ""))
        elif event.get("type") == "eval":
            best = f" (best {event['best_eval']:.4f})" if event.get("best_eval") is not None else " (before training)"
            typer.echo(f"eval loss {event['eval_loss']:.4f}{best}" + _rewards(event, "eval_"))
        elif event.get("message"):
            typer.echo(str(event["message"]))

    try:
        if resume:
            run = runs.get_run(target, resume)
            if add_epochs and workers.is_main:
                run.update_config(epochs=run.config.epochs + add_epochs, max_steps=0, max_minutes=0.0)
            workers.barrier()
        else:
            if workers.is_main:  # before a run is made that could not start
                runlock.RunLock(target.path, runs.RUNS).check_free()
            run_id = runs.create_run(target, settings, RecipeStore(target, recipe).load()).id \
                if workers.is_main else None
            run = runs.get_run(target, workers.broadcast(run_id))
            show(message=f"run {run.id}")
        if workers.is_main:  # recorded as a job of the run, so the Fine-tune page shows it and can cancel it
            with runlock.holding(target.path, runs.RUNS, run.id):  # one training run at a time per project
                result = common.attached(run.folder / "jobs", f"finetune {run.id}", show,
                                         lambda emit, should_stop: runs.execute(target, run.id, emit,
                                                                                should_stop=should_stop,
                                                                                workers=workers))
        else:
            result = runs.execute(target, run.id, show, should_stop=lambda: stop["requested"], workers=workers)
    except StudioError as exc:
        common.fail(str(exc))
    workers.close()
    if workers.is_main:
        typer.echo(json.dumps(result, default=str))
        if not result.get("finished"):
            name = shlex.quote(project)
            typer.echo(f"Resume with: studio train {name} --resume {run.id}   or keep the best adapter so far "
                       f"with: studio train {name} --finish {run.id}", err=True)
    if workers.parallel:
        # The process group's threads can outlive close() (FSDP's always, gloo's now and then); ending here skips the
        # interpreter teardown, in which they can abort the process ("terminate called without an active
        # exception") after a good run: seen twice in a data-parallel run of the tests.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _rewards(event: dict, prefix: str) -> str:
    margin, accuracy = event.get(prefix + "reward_margin"), event.get(prefix + "reward_accuracy")
    return (f"  margin {margin:+.3f}" if margin is not None else "") + \
        (f"  accuracy {accuracy:.0%}" if accuracy is not None else "")


def _finish_elsewhere(project: str, run_id: str) -> bool:
    """Ask run `run_id` to stop and keep. True when another process trains it: wait for it to save the adapter.
    False when nothing trains it (this command then finishes it from its checkpoint)."""
    import time

    from core.finetune import runs

    target = common.open_project(project)
    try:
        run = runs.get_run(target, run_id)
        if not run.request_keep():
            return False
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo("Asked the run to stop at its next step and save the best adapter so far…", err=True)
    while (status := run.status()).state == "running":
        time.sleep(1.0)
    if status.state != "done":
        common.fail(f"The run ended as {status.state} without saving the adapter. {status.error}".strip())
    done = next((e for e in reversed(run.latest_job().events()) if e.get("type") == "done"), {})
    typer.echo(json.dumps({"finished": True, "adapter": done.get("adapter", run.id), "steps": status.step}))
    return True
