"""Fine-tuning runs on disk, and the code that executes one (in a job subprocess or in the CLI's process).

runs/finetune/<run>/run.json     what to train: config, base model, prompt format, dataset and version
runs/finetune/<run>/jobs/<job>/  one folder per start (the first, each resume, each "add epochs")
runs/finetune/<run>/checkpoint/  latest checkpoint (trainable tensors, optimizer, data position)
"""

from __future__ import annotations

import logging
import shlex
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core import atomic, runlock
from core.errors import StudioError, TrainingError
from core.finetune.config import DATA_KINDS, TrainConfig
from core.finetune.distributed import Workers
from core.i18n import Msg
from core.jobs import Job
from core.workspace import Project

log = logging.getLogger(__name__)
RUNS = "finetune"
RUN = Msg("training run")
CANCEL_GRACE_S = 60.0  # time to write a checkpoint before a cancelled run is killed
KEEP_FILE = "keep_requested"  # "stop and keep": stop at the next step and save the best adapter so far
Emit = Callable[..., None]


def runs_folder(project: Project) -> Path:
    return project.subdir("runs") / RUNS


@dataclass(frozen=True)
class RunStatus:
    state: str          # new | running | done | cancelled | failed
    step: int
    total: int
    resumable: bool     # a checkpoint exists to continue from
    error: str = ""
    message: str = ""


class Run:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.id = self.folder.name

    @property
    def spec(self) -> dict:
        return atomic.read_json(self.folder / "run.json")

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.spec["config"])

    def update_config(self, **changes) -> None:
        spec = self.spec
        spec["config"] = TrainConfig.from_dict(spec["config"]).with_changes(**changes).to_dict()
        atomic.write_json(self.folder / "run.json", spec)

    def jobs(self) -> list[Job]:
        folder = self.folder / "jobs"
        return [Job(p) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.exists() else []

    def latest_job(self) -> Job | None:
        jobs = self.jobs()
        return jobs[-1] if jobs else None

    def events(self) -> list[dict]:
        """Events of every start in order; a resumed run repeats steps after its checkpoint, so for each step
        the latest value wins."""
        events = [e for job in self.jobs() for e in job.events()]
        latest: dict[tuple, dict] = {}
        for event in events:
            if event.get("type") in ("step", "eval"):
                latest[(event["type"], event["step"])] = event
        return sorted(latest.values(), key=lambda e: (e["step"], e["type"] == "step"))

    def messages(self) -> list[dict]:
        return [e for job in self.jobs() for e in job.events() if "message" in e or e.get("type") == "report"]

    @property
    def has_checkpoint(self) -> bool:
        return any((self.folder / name / "state.json").exists() for name in ("checkpoint", "checkpoint.old"))

    def status(self) -> RunStatus:
        job = self.latest_job()
        steps = [e for e in self.events() if e.get("type") == "step"]
        step, total = (steps[-1]["step"], steps[-1]["total_steps"]) if steps else (0, 0)
        if job is None:
            return RunStatus("new", 0, 0, False)
        job_status = job.status()
        finished = any(e.get("type") == "done" for e in job.events())
        state = "done" if job_status.state == "done" and finished else job_status.state
        if job_status.state == "done" and not finished:
            state = "failed"
        return RunStatus(state, step, total, self.has_checkpoint and state in ("cancelled", "failed", "done"),
                         str(job_status.error or ""), str(job_status.message or ""))

    @property
    def keep_requested(self) -> bool:
        return (self.folder / KEEP_FILE).exists()

    def request_keep(self) -> bool:
        """"Stop and keep": training stops at its next step and saves the best adapter so far instead of waiting
        for a resume. True when a running job (here or a command line elsewhere) will see the request; False when
        nothing runs, and the caller finishes the run from its checkpoint (as `stop_and_keep` does)."""
        job = self.latest_job()
        running = job is not None and job.status().state == "running"
        if not running:
            self.check_keepable()
        atomic.write_text(self.folder / KEEP_FILE, str(time.time()))
        return running

    def check_keepable(self) -> None:
        if self.status().state == "done":
            raise TrainingError(Msg("This run has finished; its adapter is saved already."))
        if not self.has_checkpoint:
            raise TrainingError(Msg("This run has no checkpoint yet, so there is nothing learned to keep; resume or "
                                    "start it again."))

    def stop_and_keep(self) -> Job | None:
        """The page's "Stop and keep": a running job saves the adapter at its next step; a stopped run with a
        checkpoint gets a short job that loads it and saves the adapter without training further."""
        if self.request_keep():
            return None
        return self._launch()

    def start(self) -> Job:
        """Start (or resume from the latest checkpoint) in a subprocess."""
        (self.folder / KEEP_FILE).unlink(missing_ok=True)  # a plain resume trains to the end again
        return self._launch()

    def _launch(self) -> Job:
        job = self.latest_job()
        if job is not None and job.status().state == "running":
            raise TrainingError(Msg("This run is already training."))
        project_dir = self.folder.parent.parent.parent
        # One training run at a time per project, for every process (another tab, the command line).
        return runlock.start_job(project_dir, RUNS, self.id, lambda: Job.start(
            self.folder / "jobs", ["-m", "core.finetune.job", "train", str(project_dir), self.id],
            label=f"finetune {self.id}"))

    def cancel(self) -> None:
        job = self.latest_job()
        if job is not None:
            job.cancel(grace=CANCEL_GRACE_S)

    def add_epochs(self, extra: int) -> Job:
        if extra < 1:
            raise TrainingError(Msg("Add at least one epoch."))
        if not self.has_checkpoint:
            raise TrainingError(Msg("This run has no checkpoint to continue from; start a new run."))
        self.update_config(epochs=self.config.epochs + extra, max_steps=0, max_minutes=0.0)
        return self.start()


def create_run(project: Project, config: TrainConfig, recipe) -> Run:
    """A new run folder for `config`, trained in the prompt format of `recipe` on its model."""
    from core.data.store import DatasetStore

    from core.finetune import preference_data

    store = DatasetStore(project)
    extra = {}
    if config.is_preference:
        version = preference_data.check_source(project, config)
        if config.data_source == "feedback":  # a copy, so the run can be resumed and reproduced
            from core.feedback import list_feedback

            extra["feedback"] = list_feedback(project)
    else:
        if not config.dataset or not store.exists(config.dataset):
            raise TrainingError(Msg("Pick a dataset of training pairs first (Datasets page)."))
        kind = store.kind(config.dataset)
        if kind not in DATA_KINDS:
            raise TrainingError(wrong_kind(kind))
        if config.retrieval_context != "none":
            _check_retriever(project, recipe, kind)
        version = config.dataset_version or store.latest_version(config.dataset)
    if not recipe.model.trainable:
        raise TrainingError(Msg("Models behind an endpoint cannot be fine-tuned here; pick the embedded model, a "
                                "local folder, a GGUF file or a hub id on the Model page."))
    name = config.method if not config.is_preference else f"{config.objective}-{config.method}"
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{name.replace('_', '-')}-{uuid.uuid4().hex[:4]}"
    folder = project.child(f"runs/{RUNS}", run_id, RUN)
    folder.mkdir(parents=True)
    atomic.write_json(folder / "run.json", {
        "id": run_id, "created": time.time(), "recipe": recipe.name,
        "config": config.with_changes(dataset_version=version).to_dict(),
        "base_model": recipe.model.to_dict(), "prompt": recipe.prompt.to_dict(),
        "labels": {"user": recipe.labels.user, "assistant": recipe.labels.assistant},
        "retriever": recipe.retriever.to_dict(), **extra,
    })
    return Run(folder)


def retriever_has_documents(project: Project, recipe) -> bool:
    """Whether the recipe's knowledge base holds indexed documents, so training pairs can get passages."""
    from core.rag.kb import KnowledgeBase

    return bool(KnowledgeBase(project, recipe.retriever.knowledge_base).documents())


def _check_retriever(project: Project, recipe, kind: str) -> None:
    if kind != "sft":
        raise TrainingError(Msg("Passages can be added to training pairs only, not to chats."))
    if not retriever_has_documents(project, recipe):
        raise TrainingError(Msg("Training with passages needs indexed documents in knowledge base '{name}' "
                                "(Retriever page).", name=recipe.retriever.knowledge_base))


def passage_lookup(project: Project, spec: dict, cite: bool = True):
    """question -> the context block the recipe's retriever would put in the prompt for it (`cite`: as for a model
    with a chat template, core.rag.retriever.cites_sources)."""
    from core import assistant
    from core.rag.retriever import RetrieverSettings, context_block
    from core.recipe import Recipe

    settings = RetrieverSettings.from_dict({**spec.get("retriever", {}), "enabled": True})
    recipe = Recipe(retriever=settings)
    return lambda question: context_block(assistant.retrieve(project, recipe, question), cite)


def _with_passages(project: Project, spec: dict, config: TrainConfig, train_records: list[dict],
                   eval_records: list[dict], emit: Emit, cite: bool) -> tuple[list[dict], list[dict]]:
    """The pairs with the passages the recipe's retriever finds for their questions, with a progress count. The
    questions are embedded first in one batched call (the searches then find their vectors cached)."""
    from core.finetune import data
    from core.models.embedder import embed

    questions = [r["prompt"] for r in train_records + eval_records if r.get("prompt") and not r.get("context")]
    emit(progress=0.002, message=Msg("Finding passages for {count} training questions", count=len(questions)))
    embed(list(dict.fromkeys(questions)))
    context_for = passage_lookup(project, spec, cite)
    total = len(train_records) + len(eval_records)

    def progress(offset: int):
        return lambda done, _: emit(progress=0.002 + 0.008 * (offset + done) / max(1, total),
                                    message=Msg("Finding passages: {done} of {total} questions",
                                                done=offset + done, total=total))

    train = data.with_retrieved_context(train_records, context_for, config.retrieval_context, progress(0))
    held_out = data.with_retrieved_context(eval_records, context_for, config.retrieval_context,
                                           progress(len(train_records)))
    return train, held_out


def wrong_kind(kind: str) -> Msg:
    if kind == "preference":
        return Msg("This is a preference dataset (chosen vs rejected); supervised fine-tuning needs training pairs "
                   "or chats. Preference pairs are for preference tuning: pick DPO, ORPO, KTO or a reward model.")
    return Msg("This dataset is an evaluation set; fine-tuning needs training pairs or chats. Keep eval sets for "
               "measuring the result.")


def list_runs(project: Project) -> list[Run]:
    folder = runs_folder(project)
    if not folder.exists():
        return []
    return [Run(p) for p in sorted(folder.iterdir(), reverse=True) if (p / "run.json").exists()]


def get_run(project: Project, run_id: str) -> Run:
    folder = project.child(f"runs/{RUNS}", run_id, RUN)
    if not (folder / "run.json").exists():
        raise TrainingError(Msg("Run '{run}' not found.", run=run_id))
    return Run(folder)


# -- executing a run ---------------------------------------------------------------------------------------------

@dataclass
class PreparedRun:
    model: object
    tokenizer: object
    train: list
    eval: list
    report: object
    base_folder: Path
    device: str
    objective: object = None  # the trainer's objective; None = supervised fine-tuning

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id


def prepare(project: Project, spec: dict, config: TrainConfig, emit: Emit, device: str | None = None) -> PreparedRun:
    from transformers import AutoTokenizer

    from core.data.store import DatasetStore
    from core.finetune import data
    from core.models.adapters import source_folder
    from core.models.base import CompletionLabels
    from core.models.source import ModelSource
    from core.prompt import PromptSettings

    emit(progress=0.0, message=Msg("Reading the dataset"))
    if config.is_preference:
        return _prepare_preference(project, spec, config, emit, device)
    store = DatasetStore(project)
    if not store.exists(config.dataset):
        raise TrainingError(Msg("Dataset '{name}' no longer exists.", name=config.dataset))
    kind = store.kind(config.dataset)
    if kind not in DATA_KINDS:
        raise TrainingError(wrong_kind(kind))
    records, _ = store.load(config.dataset, config.dataset_version)
    train_records, eval_records = data.split_records(records, config.eval_fraction, config.seed)
    data.check_size(len(train_records))
    base_folder = source_folder(ModelSource.from_dict(spec["base_model"]))
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    if config.retrieval_context != "none" and kind == "sft":
        from core.rag.retriever import cites_sources

        train_records, eval_records = _with_passages(project, spec, config, train_records, eval_records, emit,
                                                     cite=cites_sources(tokenizer))
    emit(progress=0.01, message=Msg("Loading the base model"))
    prompt = PromptSettings.from_dict(spec["prompt"])
    labels = CompletionLabels(**spec["labels"])
    train, report = data.prepare_examples(train_records, kind, tokenizer, prompt, labels, config.max_length,
                                          config.completion_only)
    data.check_size(len(train))
    return _with_model(config, base_folder, tokenizer, train, report, emit, device, lambda: data.prepare_examples(
        eval_records, kind, tokenizer, prompt, labels, config.max_length, config.completion_only)[0]
        if eval_records else [])


def _with_model(config: TrainConfig, base_folder, tokenizer, train: list, report, emit: Emit, device: str | None,
                encode_eval, objective=None) -> PreparedRun:
    """The end every preparation shares: the eval split encoded, the data report, the model for training."""
    import torch

    from core.finetune import methods

    try:
        evaluation = encode_eval()
    except TrainingError:
        evaluation = []  # an unusable eval split only costs the eval curve
    emit(type="report", message=report.summary(), used=report.used, truncated=report.truncated,
         dropped=report.dropped_too_long, invalid=report.skipped_invalid, eval_examples=len(evaluation))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = methods.model_for_training(str(base_folder), config, tokenizer, device)
    return PreparedRun(model, tokenizer, train, evaluation, report, base_folder, device, objective)


def _prepare_preference(project: Project, spec: dict, config: TrainConfig, emit: Emit,
                        device: str | None) -> PreparedRun:
    """prepare() for DPO, ORPO, KTO and reward models: pairs or rated answers rendered as at inference."""
    from transformers import AutoTokenizer

    from core.finetune import data, preference_data
    from core.models.adapters import source_folder
    from core.finetune.preference import objective_for
    from core.models.base import CompletionLabels
    from core.models.source import ModelSource
    from core.prompt import PromptSettings

    records = preference_data.source_records(project, spec, config)
    train_records, eval_records = data.split_records(records, config.eval_fraction, config.seed)
    emit(progress=0.01, message=Msg("Loading the base model"))
    base_folder = source_folder(ModelSource.from_dict(spec["base_model"]))
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    prompt, labels = PromptSettings.from_dict(spec["prompt"]), CompletionLabels(**spec["labels"])
    train, report = preference_data.prepare_for(config, train_records, tokenizer, prompt, labels)
    preference_data.check_size(len(train), config)
    return _with_model(config, base_folder, tokenizer, train, report, emit, device, lambda: preference_data.prepare_for(
        config, eval_records, tokenizer, prompt, labels)[0] if eval_records else [], objective_for(config))


def execute(project: Project, run_id: str, emit: Emit, should_stop: Callable[[], bool] = lambda: False,
            workers: Workers = Workers()) -> dict:
    """Train run `run_id` to the end (resuming from its checkpoint when there is one) and register the adapter.

    Under `accelerate launch`, every process calls this with its `workers`; only the main one speaks and saves.
    """
    from core.finetune import distributed
    from core.finetune.adapters import register
    from core.finetune.methods import describe_trainable
    from core.finetune.trainer import Trainer
    from core.models.adapters import folder_fingerprint

    if not workers.is_main:
        emit = _silent
    run = get_run(project, run_id)
    spec, config = run.spec, run.config
    if workers.sharded:
        distributed.check_shardable(config)
    prepared = prepare(project, spec, config, emit, workers.device)
    trainable = describe_trainable(prepared.model)
    emit(type="trainable", trainable=trainable["trainable"], total=trainable["total"], message=trainable.get("note"))
    pad_id = prepared.pad_id
    trainer = Trainer(prepared.model, config, prepared.train, prepared.eval, pad_id, run.folder,
                      emit=lambda event: emit(**event), should_stop=lambda: should_stop() or run.keep_requested,
                      workers=workers, objective=prepared.objective)
    if workers.parallel:
        emit(message=Msg("Sharded across {n} processes (FSDP)", n=workers.world) if workers.sharded
             else Msg("Data parallel across {n} processes", n=workers.world))
    if trainer.resume():
        emit(message=Msg("Resumed from the checkpoint at step {step}", step=trainer.state.step))
    emit(progress=trainer.state.step / max(1, trainer.total_steps()), message=Msg("Training"))
    result = trainer.run()
    kept = not result.finished and run.keep_requested and result.state.step > 0
    if not result.finished and not kept:
        emit(message=Msg("Stopped at step {step}; resume continues from here.", step=result.state.step))
        return {"finished": False, "step": result.state.step}
    if kept:
        emit(message=Msg("Stopped at step {step} on request; saving the best adapter so far.", step=result.state.step))
    trainer.load_best()
    steps = [e for e in trainer.history if e["type"] == "step"]
    evals = [e for e in trainer.history if e["type"] == "eval"]
    metrics = {"steps": result.state.step, "train_loss": steps[-1]["loss"] if steps else None,
               "eval_loss": result.state.best_eval, "first_eval_loss": evals[0]["eval_loss"] if evals else None,
               "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None,
               "train_examples": len(prepared.train), "eval_examples": len(prepared.eval),
               "stopped_early": result.state.stopped_early, "stopped_by_user": kept,
               "stopped_by_time": result.state.stopped_by_time,
               **preference_metrics(trainer.history)}
    # Sharded: every process takes part in gathering the full trained tensors; the main one saves the adapter from
    # them, through the same code as always (full_parameters puts them in place of the shards while it runs).
    tensors = trainer.trainable_tensors() if workers.sharded else {}
    if not workers.is_main:
        workers.barrier()  # returns once the main process has registered the adapter
        return {"finished": True, "adapter": run.id, **metrics}
    try:
        emit(progress=0.99, message=Msg("Saving the adapter"))
        with distributed.full_parameters(prepared.model, tensors):
            info = register(project, run.id, prepared.model, config, {
                "name": adapter_name(config, spec), "run": run.id,
                "base_model": spec["base_model"], "base_fingerprint": folder_fingerprint(prepared.base_folder),
                "dataset": config.dataset, "dataset_version": config.dataset_version, "prompt": spec["prompt"],
                "labels": spec["labels"], "metrics": {k: v for k, v in metrics.items() if v is not None},
                "trainable_parameters": trainable["trainable"],
            })
        emit(type="done", progress=1.0, adapter=info.id, message=Msg("Finished: adapter saved"), **metrics)
    finally:
        workers.barrier()  # the other processes wait for the adapter
    return {"finished": True, "adapter": info.id, **metrics}


def execute_recorded(project: Project, run_id: str, emit: Emit, should_stop: Callable[[], bool] = lambda: False) -> dict:
    """`execute` in this process, recorded as a job of the run (core.jobs.Job.attach), so the Fine-tune page shows
    it as finished or failed, with its curves, and not as a run that never started."""
    from core.jobs import Job

    job = Job.attach(get_run(project, run_id).folder / "jobs", f"finetune {run_id}")

    def recorded(**event) -> None:
        emit(**event)
        job.record(**event)

    try:
        result = execute(project, run_id, recorded, should_stop=should_stop)
    except BaseException as exc:
        if isinstance(exc, StudioError):
            job.record(error=exc.args[0])
        job.finish(1)
        raise
    job.finish(0)
    return result


def _silent(**event) -> None:
    pass


def adapter_name(config: TrainConfig, spec: dict) -> str:
    """The registry's first name for a run's adapter, e.g. "lora · faq v3" or "dpo lora · prefs v2"."""
    method = config.method if config.objective == "sft" else f"{config.objective} {config.method}"
    if config.data_source == "feedback":
        return f"{method} · chat feedback ({len(spec.get('feedback', []))})"
    return f"{method} · {config.dataset} v{config.dataset_version}"


def preference_metrics(history: list[dict]) -> dict:
    """The last training and eval reward margin and accuracy, for the adapter's metrics ({} for supervised
    fine-tuning)."""
    names = ("reward_margin", "reward_accuracy", "eval_reward_margin", "eval_reward_accuracy")
    found = {}
    for event in history:  # later events win
        found.update({k: v for k, v in event.items() if k in names})
    return found


def calibrate(project: Project, spec: dict, emit: Emit, steps: int = 4) -> dict:
    """Seconds per update on this machine for this config, measured on a few real updates (nothing is saved).

    Not a run: it takes no run lock (core.runlock), so the Fine-tune page's "Measure the time" works while a run
    trains, as it always did, and a timing never blocks Start training."""
    import tempfile

    import psutil

    from core.finetune.trainer import Trainer

    config = TrainConfig.from_dict(spec["config"])
    started = time.perf_counter()
    prepared = prepare(project, spec, config, emit)  # the run does the same first: passages, the model
    prepare_s = time.perf_counter() - started
    pad_id = prepared.pad_id
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(prepared.model, config.with_changes(save_every=10 ** 6, eval_every=10 ** 6),
                          prepared.train, [], pad_id, Path(scratch), objective=prepared.objective)
        full = Trainer(prepared.model, config, prepared.train, prepared.eval, pad_id, Path(scratch),
                       objective=prepared.objective)
        planned = full.total_steps()
        trainer.emit = lambda event: None
        emit(progress=0.5, message=Msg("Timing a few training steps"))
        steps_s, tokens_per_s = _time_steps(trainer, full, planned, steps)
        eval_s = _eval_seconds(prepared, config, full, planned, scratch)
    per_step = steps_s / max(1, planned)
    result = {"seconds_per_step": per_step, "total_steps": planned, "prepare_s": prepare_s, "eval_s": eval_s,
              "estimate_s": prepare_s + steps_s + eval_s,
              "tokens_per_s": tokens_per_s, "peak_rss": psutil.Process().memory_info().rss}
    emit(type="calibration", progress=1.0, message=Msg("Timing done"), **result)
    return result


def _time_steps(trainer, full, planned: int, timed: int) -> tuple[float, float]:
    """(seconds for the run's `planned` updates, tokens per second). Batches differ a lot in length (pairs with and
    without passages, length-grouped batches), so a few batches spread over the length range are timed, a line
    `seconds = a + b * padded tokens` is fitted to them, and the run's own batches are summed with it."""
    import numpy as np

    epochs = max(1, full.config.epochs)
    batches = [batch for epoch in range(epochs) for batch in full.batches(epoch)]
    batches = batches[:planned * full.config.grad_accum]
    width = [len(b) * max(full.lengths[i] for i in b) for b in batches]  # padded tokens: what a step computes
    ranked = sorted(range(len(batches)), key=lambda n: width[n])
    picks = [ranked[round(q * (len(ranked) - 1))] for q in np.linspace(0.0, 1.0, max(2, timed))][::-1]
    # An update larger than any before it is much slower (the process grows its memory: 6.5 s against 3.9 s for
    # the same batch timed again, bench/README.md); a run pays that once, early. So the largest pick runs once
    # untimed, then every pick is timed, longest first.
    seconds = trainer.time_batches([batches[picks[0]]] + [batches[n] for n in picks], planned)[1:]
    tokens = [width[n] for n in picks]
    if len(set(tokens)) > 1:
        slope, intercept = (float(v) for v in np.polyfit(tokens, seconds, 1))
        if intercept < 0:  # a line through the origin instead
            slope, intercept = float(np.dot(tokens, seconds) / np.dot(tokens, tokens)), 0.0
    else:
        slope, intercept = sum(seconds) / max(1, sum(tokens)), 0.0
    total = sum(intercept + slope * w for w in width)
    real_tokens = sum(full.lengths[i] for n in picks for i in batches[n])
    return total, real_tokens / max(sum(seconds), 1e-9)


def _eval_seconds(prepared: PreparedRun, config: TrainConfig, full, planned: int, scratch) -> float:
    """The time the run's eval passes will take (one before training, then every eval interval), from one timed
    pass over a few batches of the eval split."""
    from core.finetune.trainer import Trainer

    if not prepared.eval:
        return 0.0
    sample = prepared.eval[:2 * config.batch_size]
    probe = Trainer(prepared.model, config, prepared.train, sample, prepared.pad_id, Path(scratch),
                    objective=prepared.objective)
    started = time.perf_counter()
    probe.evaluate()
    per_example = (time.perf_counter() - started) / len(sample)
    passes = 1 + planned // max(1, full.eval_interval())
    return per_example * len(prepared.eval) * passes


def headless_command(project: Project, config_path: str) -> str:
    return f"studio train {shlex.quote(project.name)} --config {shlex.quote(config_path)}"
