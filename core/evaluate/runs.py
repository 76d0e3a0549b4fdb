"""Eval runs: every variant answers every question of one eval set; answers are scored and stored.

A run lives in runs/eval/<id>/: spec.json (dataset and version, the variants with their full recipe snapshots, the
options), results.jsonl (one line per answer, appended as it comes, so a cancelled or failed run keeps what it
had and a restart only answers what is missing) and jobs/ (the background job's events).

Answers are cached per project (cache/eval_answers.jsonl) under a key made of everything that shapes an answer:
the recipe snapshot, the model's and adapter's identity, the precision, the few-shot pool's and the knowledge
base's versions, and the question (with its tools). Re-running an unchanged variant costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from core import atomic, runlock
from core.errors import StudioError
from core.evaluate import metrics
from core.evaluate.variants import Variant
from core.i18n import Msg
from core.jobs import Job
from core.workspace import Project

Emit = Callable[..., None]
CACHE_FILE = "eval_answers.jsonl"
RUN = Msg("evaluation run")
MODELS_CACHE_FILE = "eval_models.json"  # variant fingerprint -> weights in memory, for variants answered from cache


@dataclass(frozen=True)
class EvalOptions:
    semantic: bool = field(default=True, metadata={"help": "Score meaning with the embedder (cosine)."})
    k: int = field(default=5, metadata={"help": "Cut-off for retrieval hit@k."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions (a quick look)."})
    batch_size: int = field(default=8, metadata={"help": "Questions a local model answers at once."})
    judge_model: dict | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint that judges."})
    judge_rubric: str = ""
    win_judge: str = field(default="", metadata={"help": "Win rate judge: '' (off), 'reward:<adapter id>' or 'judge'."})
    win_parent: str = field(default="", metadata={"help": "Variant key the win rate compares every variant with."})

    def __post_init__(self):
        from core.evaluate.win_rate import check_win_options

        check_win_options(self.win_judge, self.win_parent, self.judge_model)
        if self.k < 1:
            raise StudioError(Msg("k must be at least 1."))
        if self.limit is not None and self.limit < 1:
            raise StudioError(Msg("Evaluate at least one question."))
        if not 1 <= self.batch_size <= 64:
            raise StudioError(Msg("The batch size must be between 1 and 64."))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "EvalOptions":
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


# ---- identity and cache -----------------------------------------------------------------------------------------

def _model_identity(project: Project, variant: Variant) -> dict:
    recipe = variant.recipe
    identity = {"model": recipe.model.to_dict(), "precision": variant.precision,
                "weights": _weights_fingerprint(recipe.model)}
    manifest = None
    if recipe.adapter:
        from core.models.adapters import AdapterRegistry

        manifest = AdapterRegistry(project).get(recipe.adapter).manifest
        identity["adapter"] = {"id": recipe.adapter, "created": manifest.get("created"),
                               "base": manifest.get("base_fingerprint")}
    if recipe.model.kind != "openai":
        from core.models.engine import choose

        chosen = choose(recipe.model, manifest, variant.precision).engine
        if chosen != "transformers":  # left out for transformers, so answers cached before engines existed stay valid
            identity["engine"] = chosen
    return identity


def _weights_fingerprint(source) -> str | None:
    """The weights behind a local source, so answers are not reused after a folder's model changed."""
    from core.models.adapters import folder_fingerprint, source_folder

    try:
        if source.kind in ("embedded", "local"):
            return folder_fingerprint(source_folder(source))
        if source.kind == "gguf":
            stat = Path(source.location).expanduser().stat()
            return f"{stat.st_size}:{int(stat.st_mtime)}"
    except (OSError, ValueError, StudioError):
        return None  # an unreadable model fails later, when it is loaded, with its own message
    return None


def _inputs_identity(project: Project, variant: Variant) -> dict:
    """Versions of what the recipe reads besides the question: its few-shot pool and its knowledge base."""
    recipe = variant.recipe
    found = {}
    if recipe.fewshot.enabled:
        from core.data.store import DatasetStore

        store = DatasetStore(project)
        found["fewshot"] = store.latest_version(recipe.fewshot.dataset) if store.exists(recipe.fewshot.dataset) else None
    if recipe.retriever.enabled:
        from core.rag.kb import KnowledgeBase

        base = KnowledgeBase(project, recipe.retriever.knowledge_base)
        found["kb"] = hashlib.sha256(json.dumps([base.documents(), base.manifest().get("chunking")], sort_keys=True,
                                                default=str).encode()).hexdigest()[:16]
    return found


def variant_fingerprint(project: Project, variant: Variant) -> str:
    recipe = {k: v for k, v in variant.recipe.to_dict().items() if k != "name"}
    for part in ("fewshot", "retriever"):  # the settings of a switched-off step do not shape answers
        if not recipe[part].get("enabled"):
            recipe[part] = {"enabled": False}
    from core.models.generation import DECODING_VERSION

    payload = {"recipe": recipe, "model": _model_identity(project, variant),
               "inputs": _inputs_identity(project, variant), "decoding": DECODING_VERSION}
    if recipe["retriever"].get("enabled"):
        from core.rag.retriever import PASSAGE_PROMPT_VERSION

        payload["passage_prompt"] = PASSAGE_PROMPT_VERSION
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def answer_key(fingerprint: str, record: dict) -> str:
    asked = {"question": record.get("question", ""), "tools": record.get("tools") or []}
    return hashlib.sha256((fingerprint + json.dumps(asked, sort_keys=True)).encode()).hexdigest()[:32]


class AnswerCache:
    def __init__(self, project: Project):
        self.path = project.subdir("cache") / CACHE_FILE

    def load(self) -> dict[str, dict]:
        found = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    found[entry["key"]] = entry
                except (ValueError, KeyError):
                    continue  # a half-written line from a killed run
        return found

    def add(self, key: str, answer: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, **answer}, ensure_ascii=False) + "\n")


# ---- runs ---------------------------------------------------------------------------------------------------------

def runs_folder(project: Project) -> Path:
    return project.subdir("runs") / "eval"


@dataclass(frozen=True)
class EvalStatus:
    state: str     # new | running | done | cancelled | failed
    answered: int
    total: int
    error: str = ""
    message: str = ""


class EvalRun:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.id = self.folder.name

    @property
    def spec(self) -> dict:
        return atomic.read_json(self.folder / "spec.json")

    @property
    def variants(self) -> list[Variant]:
        return [Variant.from_dict(v) for v in self.spec["variants"]]

    @property
    def options(self) -> EvalOptions:
        return EvalOptions.from_dict(self.spec.get("options"))

    def jobs(self) -> list[Job]:
        folder = self.folder / "jobs"
        return [Job(p) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.exists() else []

    def results(self) -> list[dict]:
        """One row per (variant, question) answered so far; a repeated row (after a restart) keeps the latest."""
        path = self.folder / "results.jsonl"
        rows: dict[tuple, dict] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                rows[(row["variant"], row["record_id"])] = row
        return list(rows.values())

    def total(self) -> int:
        ready = sum(1 for v in self.variants if v.ready)
        return ready * self.spec["questions"]

    def status(self) -> EvalStatus:
        answered, total = len(self.results()), self.total()
        jobs = self.jobs()
        if not jobs:
            done = (self.folder / "finished").exists()
            return EvalStatus("done" if done else "new", answered, total)
        status = jobs[-1].status()
        state = status.state
        if state == "done" and not (self.folder / "finished").exists():
            state = "failed"
        return EvalStatus(state, answered, total, str(status.error or ""), str(status.message or ""))

    def start(self) -> Job:
        jobs = self.jobs()
        if jobs and jobs[-1].status().state == "running":
            raise StudioError(Msg("This evaluation is already running."))
        project_dir = self.folder.parent.parent.parent
        # One evaluation at a time per project, for every process (another tab, the command line).
        return runlock.start_job(project_dir, "eval", self.id, lambda: Job.start(
            self.folder / "jobs", ["-m", "core.evaluate.job", str(project_dir), self.id], label=f"eval {self.id}"))

    def cancel(self) -> None:
        jobs = self.jobs()
        if jobs:
            jobs[-1].cancel()

    def models(self) -> dict[str, dict]:
        """Per variant key: the loaded model's precision and weights in memory (when known)."""
        path = self.folder / "models.json"
        return atomic.read_json(path) if path.exists() else {}

    def summary(self) -> dict[str, dict]:
        """Per variant key: the mean of every metric over its answered questions, how many, and the model's
        weights in memory (weights_mb) when known."""
        by_variant: dict[str, list[dict]] = {}
        for row in self.results():
            by_variant.setdefault(row["variant"], []).append(row["scores"])
        models = self.models()
        summary = {key: {**metrics.aggregate(rows), "answered": len(rows)} for key, rows in by_variant.items()}
        for key, found in summary.items():
            if models.get(key, {}).get("weights_bytes"):
                found["weights_mb"] = models[key]["weights_bytes"] / 2 ** 20
        return summary


def create_eval_run(project: Project, dataset: str, variants: list[Variant], options: EvalOptions = EvalOptions(),
                    version: int | None = None, only_ids: set[str] | None = None) -> EvalRun:
    """A new run over an eval set or a preference dataset; `only_ids` keeps those records (held-out prompts)."""
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    if not store.exists(dataset):
        raise StudioError(Msg("Dataset '{name}' does not exist.", name=dataset))
    if store.kind(dataset) not in EVAL_KINDS:
        raise StudioError(Msg("'{name}' is not an evaluation set; pick a dataset of questions with references.",
                              name=dataset))
    records, version = load_eval_records(project, dataset, version)
    records = usable_records(records)
    if only_ids is not None:
        records = [r for r in records if r["id"] in only_ids]
    if not records:
        raise StudioError(Msg("The evaluation set has no usable questions (rejected or empty ones are skipped)."))
    if not any(v.ready for v in variants):
        raise StudioError(Msg("Pick at least one variant that is set up."))
    if options.limit:
        records = records[:options.limit]
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    folder = project.child("runs/eval", run_id, RUN)
    folder.mkdir(parents=True)
    atomic.write_json(folder / "spec.json", {
        "dataset": dataset, "dataset_version": version, "questions": len(records),
        "record_ids": [r["id"] for r in records], "variants": [v.to_dict() for v in variants],
        "fingerprints": {v.key: variant_fingerprint(project, v) for v in variants if v.ready},
        "options": options.to_dict(), "created": time.time(),
        "metrics": metrics.applicable_metrics(records),
    })
    return EvalRun(folder)


EVAL_KINDS = ("eval", "preference")


def load_eval_records(project: Project, dataset: str, version: int | None = None) -> tuple[list[dict], int]:
    """An eval set's records; a preference dataset's pairs as questions whose reference is the chosen answer."""
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    records, version = store.load(dataset, version)
    if store.kind(dataset) == "preference":
        records = [{**r, "question": r.get("prompt", ""), "reference": r.get("chosen", "")} for r in records]
    return records, version


def usable_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") != "rejected" and str(r.get("question") or "").strip()]


def list_eval_runs(project: Project) -> list[EvalRun]:
    folder = runs_folder(project)
    found = [EvalRun(p) for p in sorted(folder.iterdir()) if (p / "spec.json").exists()] if folder.exists() else []
    return sorted(found, key=lambda r: r.id, reverse=True)


def get_eval_run(project: Project, run_id: str) -> EvalRun:
    folder = project.child("runs/eval", run_id, RUN)
    if not (folder / "spec.json").exists():
        raise StudioError(Msg("Evaluation run '{name}' not found.", name=run_id))
    return EvalRun(folder)


# ---- executing --------------------------------------------------------------------------------------------------

def _backend(project: Project, variant: Variant):
    from core import assistant

    if variant.precision == "fp32":
        return assistant.recipe_backend(project, variant.recipe)
    from core.models.registry import get_backend

    return get_backend(variant.recipe.model, adapter=assistant.adapter_folder(project, variant.recipe),
                       precision=variant.precision)


def _ask(project: Project, variant: Variant, record: dict, backend, pool: list[dict]) -> dict:
    """One answer with what it cost and what the retriever found."""
    from core import assistant

    extra = {"tools": record["tools"]} if record.get("tools") else {}
    started = time.perf_counter()
    prepared, stream = assistant.answer(variant.recipe, record["question"], backend, pool, project, **extra)
    text = stream.run_to_end()
    stats = stream.stats()
    return {"answer": text.strip(), "latency_s": round(time.perf_counter() - started, 3),
            "prompt_tokens": stats["prompt_tokens"], "output_tokens": stats["output_tokens"],
            "retrieved": [[hit.chunk_id, hit.source] for hit in prepared.sources],
            "passages_hold_answer": passages_hold_answer(record, prepared)}


def passages_hold_answer(record: dict, prepared) -> bool | None:
    """Whether the passages put in the prompt hold one of the record's short reference answers word for word (what
    retrieval gave the model to read); None when the recipe did not search or no answer is short enough to look
    for (core.rag.queries.answer_targets)."""
    from core.rag.queries import answer_targets
    from core.rag.relevance import holds_answer

    targets = answer_targets(record) if prepared.searched else []
    if not targets:
        return None
    return any(holds_answer(hit.text, answer) for hit in prepared.sources for answer in targets)


def _ask_batch(project: Project, variant: Variant, records: list[dict], backend, pool: list[dict],
               should_stop=None) -> list[dict]:
    """Answers to several questions in one batched generation, prompted exactly as chat prompts them."""
    from core import assistant

    answered = assistant.answer_batch(variant.recipe, [r["question"] for r in records], backend, pool, project,
                                      tools=[r.get("tools") for r in records], should_stop=should_stop)
    return [{"answer": out["text"].strip(), "latency_s": out["latency_s"], "prompt_tokens": out["prompt_tokens"],
             "output_tokens": out["output_tokens"],
             "retrieved": [[hit.chunk_id, hit.source] for hit in prepared.sources], "batched": True,
             "passages_hold_answer": passages_hold_answer(record, prepared)}
            for record, (prepared, out) in zip(records, answered)]


def _answer(project: Project, variant: Variant, records: list[dict], backend, pool: list[dict],
            should_stop=None) -> list[dict]:
    if len(records) > 1 and hasattr(backend, "generate_batch"):
        return _ask_batch(project, variant, records, backend, pool, should_stop)
    return [_ask(project, variant, record, backend, pool) for record in records]


def _score(record: dict, answered: dict, k: int) -> dict:
    scores = metrics.score_answer(record, answered["answer"],
                                  [tuple(item) for item in answered["retrieved"]] if record.get("gold_ids") and
                                  answered.get("searched") else None, k)
    scores.update(latency_s=answered["latency_s"], prompt_tokens=float(answered["prompt_tokens"]),
                  output_tokens=float(answered["output_tokens"]))
    if answered.get("passages_hold_answer") is not None:  # answers cached before this was measured lack it
        scores["answer_in_passages"] = float(answered["passages_hold_answer"])
    return scores


def execute(project: Project, run_id: str, emit: Emit, should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Answer every missing (variant, question) of run `run_id`, scoring as it goes; resumable at any point."""
    from core import assistant

    run = get_eval_run(project, run_id)
    spec, options = run.spec, run.options
    records_by_id = {r["id"]: r for r in load_eval_records(project, spec["dataset"], spec["dataset_version"])[0]}
    records = [records_by_id[i] for i in spec["record_ids"] if i in records_by_id]
    done = {(r["variant"], r["record_id"]) for r in run.results()}
    cache = AnswerCache(project)
    cached = cache.load()
    total = max(1, run.total())
    answered = len(done)
    for variant in [v for v in run.variants if v.ready]:
        todo = [r for r in records if (variant.key, r["id"]) not in done]
        if not todo:
            continue
        fingerprint = variant_fingerprint(project, variant)
        keys = {r["id"]: answer_key(fingerprint, r) for r in todo}
        backend, pool = None, None
        emit(progress=answered / total, message=Msg("{variant}: answering", variant=variant.label))
        _remember_model(project, run, variant, fingerprint, None)
        for start in range(0, len(todo), options.batch_size):
            if should_stop():
                emit(message=Msg("Stopped; start again to answer the rest."))
                return {"finished": False, "answered": answered}
            chunk = todo[start:start + options.batch_size]
            missing = [r for r in chunk if keys[r["id"]] not in cached]
            if missing:
                if backend is None:
                    backend = _backend(project, variant)
                    pool = assistant.example_pool(project, variant.recipe)
                    _remember_model(project, run, variant, fingerprint, backend)
                answers = _answer(project, variant, missing, backend, pool, should_stop)
                if should_stop():  # a stop request cut the batch short: its answers are not kept
                    emit(message=Msg("Stopped; start again to answer the rest."))
                    return {"finished": False, "answered": answered}
                for record, hit in zip(missing, answers):
                    hit = {**hit, "searched": variant.recipe.retriever.enabled}
                    cache.add(keys[record["id"]], hit)
                    cached[keys[record["id"]]] = hit
            rows = []
            for record in chunk:
                hit = cached[keys[record["id"]]]
                rows.append({"variant": variant.key, "record_id": record["id"], "question": record["question"],
                             **_reference_fields(record), "expected_call": record.get("expected_call"),
                             "answer": hit["answer"], "retrieved": hit["retrieved"], "cached": record not in missing,
                             "scores": _score(record, hit, options.k)})
            with open(run.folder / "results.jsonl", "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            answered += len(rows)
            emit(progress=answered / total, message=Msg("{variant}: {done} of {total} answered",
                                                       variant=variant.label, done=answered, total=total))
    emit(progress=0.98, message=Msg("Scoring"))
    _finish_scores(project, run, records, options)
    (run.folder / "finished").write_text(str(time.time()))
    summary = run.summary()
    emit(type="done", progress=1.0, message=Msg("Evaluation finished"))
    return {"finished": True, "answered": answered, "summary": summary}


def _reference_fields(record: dict) -> dict:
    """A result row's reference, and with several accepted answers all of them as 'references' (scored by the
    best; the results table shows them joined)."""
    answers = metrics.accepted_answers(record)
    reference = record.get("reference") or (answers[0] if answers else "")
    return {"reference": reference, "references": answers} if len(answers) > 1 else {"reference": reference}


def _remember_model(project: Project, run: EvalRun, variant: Variant, fingerprint: str, backend) -> None:
    """Record the variant's weights in memory: from the loaded backend, else from an earlier run's record."""
    cache_path = project.subdir("cache") / MODELS_CACHE_FILE
    known = atomic.read_json(cache_path) if cache_path.exists() else {}
    card = getattr(backend, "card", None)
    if card is not None:
        known[fingerprint] = {"weights_bytes": card.weights_bytes, "precision": variant.precision,
                              "engine": getattr(backend, "engine", "endpoint")}
        atomic.write_json(cache_path, known)
    if fingerprint in known:
        atomic.write_json(run.folder / "models.json", {**run.models(), variant.key: known[fingerprint]})


def _finish_scores(project: Project, run: EvalRun, records: list[dict], options: EvalOptions) -> None:
    """Scores that need every answer at once (embedder batches) or another model (the judge)."""
    rows = run.results()
    by_id = {r["id"]: r for r in records}
    changed = False
    if options.semantic:
        pending = [row for row in rows if row["reference"] and "semantic_similarity" not in row["scores"]]
        if pending:
            from core.models.embedder import embed

            values = metrics.semantic_similarity([r["answer"] for r in pending],
                                                 [r.get("references") or r["reference"] for r in pending], embed)
            for row, value in zip(pending, values):
                row["scores"]["semantic_similarity"] = round(float(value), 4)
            changed = True
    if options.judge_model:
        from core.evaluate.judge import judge_rows

        changed = judge_rows(rows, by_id, options) or changed
    if options.win_judge:
        from core.evaluate.win_rate import win_rows

        changed = win_rows(project, rows, options) or changed
    if changed:
        atomic.write_text(run.folder / "results.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
