"""Retrieval sweeps: which retrieval settings find the gold passages of a project's labeled queries best. They
sit above core.rag (they read and write recipes and load the recipe's model), so they live with the evaluation.

A sweep tries every setting of a `SweepGrid` (chunking, embedder, query rewriting, search mode, k, RRF constant,
reranker) on one knowledge base and one set of retrieval queries (core.rag.queries), and scores each with hit@k,
recall@k, MRR and nDCG@k (core.rag.metrics; relevance judged by text, core.rag.relevance).

A sweep lives in runs/sweep/<id>/:

spec.json       the grid, the knowledge base (name, table version, documents and their hashes, its chunking and
                embedder), the queries (dataset, version, each query's gold units), the recipe, when it was made
results.jsonl   one line per finished setting: its config, metrics and per-query details; appended as settings
                finish, so a cancelled or crashed sweep keeps them and starting again skips them
finished        written when every setting is done
applied.json    what `apply_best` last made of it
jobs/           the background job's events (python -m core.evaluate.sweep_job PROJECT_DIR SWEEP_ID)

Running it (core.evaluate.sweep_exec.execute) re-chunks the stored documents into temporary LanceDB tables and
reuses embeddings through the project's embedding cache (core.rag.embedders).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from core import atomic, runlock
from core.errors import StudioError
from core.i18n import Msg
from core.jobs import Job
from core.rag.chunking import ChunkingConfig
from core.rag.ranking import RERANKERS
from core.rag.retriever import MODES
from core.workspace import Project

METRICS = {
    "hit_at_k": Msg("Hit@k"),
    "recall_at_k": Msg("Recall@k"),
    "mrr": Msg("MRR"),
    "ndcg_at_k": Msg("nDCG@k"),
}
DEFAULT_METRIC = "ndcg_at_k"
SWEEP = Msg("retrieval sweep")
MAX_CONFIGS = 2000
MODE_ORDER = ("fts", "vector", "hybrid")  # ties go to the simpler, cheaper search


@dataclass(frozen=True)
class SweepConfig:
    """One retrieval setting tried by a sweep."""
    chunking: ChunkingConfig
    embedder: str
    mode: str
    k: int
    rrf_k: int = 60
    reranker: str = "rrf"
    query_rewrite: bool = False

    def to_dict(self) -> dict:
        return {"chunking": self.chunking.to_dict(), "embedder": self.embedder, "mode": self.mode, "k": self.k,
                "rrf_k": self.rrf_k, "reranker": self.reranker, "query_rewrite": self.query_rewrite}

    @classmethod
    def from_dict(cls, data: dict) -> "SweepConfig":
        return cls(ChunkingConfig.from_dict(data["chunking"]), data["embedder"], data["mode"], int(data["k"]),
                   int(data.get("rrf_k", 60)), data.get("reranker", "rrf"), bool(data.get("query_rewrite", False)))

    @property
    def key(self) -> str:
        """A stable id of the setting (results are matched to configs by it)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def group(self) -> tuple:
        """Settings of one group share a temporary table and one pair of searches per query."""
        return json.dumps(self.chunking.to_dict(), sort_keys=True), self.embedder, self.query_rewrite

    def label(self) -> str:
        c = self.chunking
        parts = [f"{c.strategy} {c.chunk_tokens}/{c.overlap_tokens}", self.mode, f"k={self.k}"]
        if self.mode == "hybrid":
            parts.append(f"{self.reranker} {self.rrf_k}" if self.reranker == "rrf" else self.reranker)
        elif self.reranker == "llm":
            parts.append("llm")
        if self.query_rewrite:
            parts.append("rewrite")
        return " · ".join(parts)


def _tuple(values, convert=lambda v: v) -> tuple:
    return tuple(dict.fromkeys(convert(v) for v in values))


@dataclass(frozen=True)
class SweepGrid:
    """The settings a sweep tries; every combination that changes the ranking is one config (`configs`)."""
    chunkings: tuple = field(default=(), metadata={
        "help": "ChunkingConfigs (or their dicts: strategy, chunk_tokens, overlap_tokens); none = the knowledge "
                "base's own."})
    modes: tuple = field(default=("vector", "fts", "hybrid"), metadata={"help": "vector, fts and/or hybrid."})
    ks: tuple = field(default=(3, 5), metadata={"help": "Passages retrieved (1 to 20)."})
    rrf_ks: tuple = field(default=(60,), metadata={"help": "Reciprocal rank fusion constants (hybrid, rrf)."})
    rerankers: tuple = field(default=("rrf",), metadata={
        "help": "rrf and/or linear (how hybrid fuses both searches), llm (the recipe's local model re-scores)."})
    embedders: tuple = field(default=("all-MiniLM-L6-v2",), metadata={"help": "Embedder names (core.rag.embedders)."})
    query_rewrite: bool = field(default=False, metadata={
        "help": "Also try every setting with the question rewritten into keywords by the recipe's model."})
    min_similarity: float | None = field(default=None, metadata={
        "help": "Passages less similar to the question than this are left out, as the assistant does; none = the "
                "recipe's minimum similarity (0 measures the ranking alone)."})

    def __post_init__(self):
        from core.rag.embedders import get_embedder

        chunkings = _tuple(self.chunkings, lambda c: c if isinstance(c, ChunkingConfig) else
                           ChunkingConfig.from_dict(c))
        object.__setattr__(self, "chunkings", chunkings)
        for name, convert in (("modes", str), ("ks", int), ("rrf_ks", int), ("rerankers", str), ("embedders", str)):
            object.__setattr__(self, name, _tuple(getattr(self, name), convert))
            if not getattr(self, name):
                raise StudioError(Msg("Pick at least one value for '{field}'.", field=name))
        for mode in self.modes:
            if mode not in MODES:
                raise StudioError(Msg("Unknown search mode '{mode}'.", mode=mode))
        if any(not 1 <= k <= 20 for k in self.ks):
            raise StudioError(Msg("The number of passages must be between 1 and 20."))
        if any(r < 1 for r in self.rrf_ks):
            raise StudioError(Msg("The fusion constant must be at least 1."))
        for reranker in self.rerankers:
            if reranker not in RERANKERS:
                raise StudioError(Msg("Unknown reranker '{reranker}'.", reranker=reranker))
        for name in self.embedders:
            get_embedder(name)
        if self.min_similarity is not None and not 0.0 <= self.min_similarity <= 1.0:
            raise StudioError(Msg("The minimum similarity must be between 0 and 1."))
        if len(self.configs(ChunkingConfig())) > MAX_CONFIGS:
            raise StudioError(Msg("This grid has more than {limit} settings; pick fewer values.", limit=MAX_CONFIGS))

    def to_dict(self) -> dict:
        return {"chunkings": [c.to_dict() for c in self.chunkings], "modes": list(self.modes), "ks": list(self.ks),
                "rrf_ks": list(self.rrf_ks), "rerankers": list(self.rerankers), "embedders": list(self.embedders),
                "query_rewrite": self.query_rewrite, "min_similarity": self.min_similarity}

    @classmethod
    def from_dict(cls, data: dict) -> "SweepGrid":
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def needs_model(self) -> bool:
        """Whether the recipe's model is needed (LLM reranker or query rewriting)."""
        return "llm" in self.rerankers or self.query_rewrite

    def configs(self, default_chunking: ChunkingConfig | None = None) -> list[SweepConfig]:
        """Every setting, grouped by chunking and embedder (one temporary table each). Settings that cannot
        change the ranking are tried once: rrf/linear and the RRF constant only matter to hybrid search (vector
        and full-text settings carry the first of each), and the llm reranker re-scores RRF-fused hybrid results
        with the first RRF constant."""
        chunkings = self.chunkings or (default_chunking or ChunkingConfig(),)
        fusions = [r for r in self.rerankers if r != "llm"]
        plain = fusions[0] if fusions else "rrf"
        found = []
        for chunking in chunkings:
            for embedder in self.embedders:
                for rewrite in ((False, True) if self.query_rewrite else (False,)):
                    for mode in self.modes:
                        for k in self.ks:
                            settings = []
                            if mode == "hybrid":
                                for reranker in fusions:
                                    rrf_ks = self.rrf_ks if reranker == "rrf" else self.rrf_ks[:1]
                                    settings += [(reranker, rrf_k) for rrf_k in rrf_ks]
                            elif fusions:
                                settings.append((plain, self.rrf_ks[0]))
                            if "llm" in self.rerankers:
                                settings.append(("llm", self.rrf_ks[0]))
                            found += [SweepConfig(chunking, embedder, mode, k, rrf_k, reranker, rewrite)
                                      for reranker, rrf_k in settings]
        return found


# ---- runs ---------------------------------------------------------------------------------------------------------

def sweeps_folder(project: Project) -> Path:
    return project.subdir("runs") / "sweep"


@dataclass(frozen=True)
class SweepStatus:
    state: str     # new | running | done | cancelled | failed
    done: int      # settings finished
    total: int
    error: str = ""
    message: str = ""


@dataclass(frozen=True)
class SweepResult:
    """One finished setting: its config, its metrics (means over the queries) and per-query details (question,
    rank of the first relevant passage or None, hit/recall/rr/ndcg, and what was retrieved: source, page,
    heading, the first 200 characters, relevant or not)."""
    config: SweepConfig
    metrics: dict
    queries: list
    chunks: int = 0

    @property
    def key(self) -> str:
        return self.config.key

    def row(self) -> dict:
        """The setting and its metrics as one flat dict (see `SweepRun.table`)."""
        config = self.config
        return {"key": config.key, "label": config.label(), **config.chunking.to_dict(), "embedder": config.embedder,
                "mode": config.mode, "k": config.k, "rrf_k": config.rrf_k, "reranker": config.reranker,
                "query_rewrite": config.query_rewrite, "chunks": self.chunks, **self.metrics}

    def misses(self) -> list[dict]:
        """Queries with no relevant passage among the k retrieved, with what was retrieved instead."""
        return [q for q in self.queries if q.get("rank") is None]


class SweepRun:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.id = self.folder.name

    @property
    def project_dir(self) -> Path:
        return self.folder.parent.parent.parent

    @property
    def spec(self) -> dict:
        return atomic.read_json(self.folder / "spec.json")

    @property
    def grid(self) -> SweepGrid:
        return SweepGrid.from_dict(self.spec["grid"])

    def configs(self) -> list[SweepConfig]:
        return [SweepConfig.from_dict(c) for c in self.spec["configs"]]

    def jobs(self) -> list[Job]:
        folder = self.folder / "jobs"
        return [Job(p) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.exists() else []

    def results(self) -> list[SweepResult]:
        """Finished settings in the order they finished (a setting repeated after a restart keeps its latest)."""
        path = self.folder / "results.jsonl"
        rows: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a half-written last line of a killed run
                rows[row["key"]] = row
        return [SweepResult(SweepConfig.from_dict(r["config"]), r["metrics"], r.get("queries", []), r.get("chunks", 0))
                for r in rows.values()]

    def done_keys(self) -> set[str]:
        return {r.key for r in self.results()}

    def status(self) -> SweepStatus:
        done, total = len(self.done_keys() & {c.key for c in self.configs()}), len(self.spec["configs"])
        finished = (self.folder / "finished").exists()
        jobs = self.jobs()
        if not jobs:
            return SweepStatus("done" if finished else "new", done, total)
        status = jobs[-1].status()
        state = "failed" if status.state == "done" and not finished else status.state
        return SweepStatus(state, done, total, str(status.error or ""), str(status.message or ""))

    def start(self) -> Job:
        """Run (or continue) the sweep as a background job."""
        jobs = self.jobs()
        if jobs and jobs[-1].status().state == "running":
            raise StudioError(Msg("This sweep is already running."))
        # One sweep at a time per project, for every process (another tab, the command line).
        return runlock.start_job(self.project_dir, "sweep", self.id, lambda: Job.start(
            self.folder / "jobs", ["-m", "core.evaluate.sweep_job", str(self.project_dir), self.id],
            label=f"sweep {self.id}"))

    def cancel(self) -> None:
        jobs = self.jobs()
        if jobs:
            jobs[-1].cancel()

    def ranked(self, metric: str = DEFAULT_METRIC, k: int | None = None) -> list[SweepResult]:
        """Finished settings, best first by `metric` (hit_at_k, recall_at_k, mrr, ndcg_at_k), optionally only
        those with this k. Ties go to the other metrics (nDCG, MRR, recall, hit), then to fewer passages, then to
        no model (no LLM reranker, no rewriting), then to the simpler search (full text, vector, hybrid), then to
        the order of the grid."""
        if metric not in METRICS:
            raise StudioError(Msg("Unknown metric '{metric}'.", metric=metric))
        order = {c.key: i for i, c in enumerate(self.configs())}
        rows = [r for r in self.results() if r.key in order and (k is None or r.config.k == k)]
        others = [m for m in ("ndcg_at_k", "mrr", "recall_at_k", "hit_at_k") if m != metric]
        return sorted(rows, key=lambda r: (-r.metrics.get(metric, 0.0), *(-r.metrics.get(m, 0.0) for m in others),
                                           r.config.k, r.config.reranker == "llm", r.config.query_rewrite,
                                           MODE_ORDER.index(r.config.mode), order[r.key]))

    def table(self, metric: str = DEFAULT_METRIC) -> list[dict]:
        """`ranked(metric)` as flat rows (one per setting, best first) for tables and charts: key, label,
        strategy, chunk_tokens, overlap_tokens, embedder, mode, k, rrf_k, reranker, query_rewrite, chunks and the
        four metrics."""
        return [r.row() for r in self.ranked(metric)]

    def best(self, metric: str = DEFAULT_METRIC, k: int | None = None) -> SweepResult | None:
        """The winning setting so far (see `ranked`), or None before any finished."""
        ranked = self.ranked(metric, k)
        return ranked[0] if ranked else None

    def applied(self) -> dict | None:
        path = self.folder / "applied.json"
        return atomic.read_json(path) if path.exists() else None


def documents_fingerprint(documents: dict) -> str:
    """A short hash of a knowledge base's documents (names and content hashes)."""
    payload = json.dumps({name: info.get("hash") for name, info in documents.items()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def create_sweep(project: Project, queries: str, grid: SweepGrid | None = None, kb: str = "docs",
                 version: int | None = None, recipe: str = "assistant") -> SweepRun:
    """A new sweep of knowledge base `kb` on the retrieval queries of eval dataset `queries` (its `version`, the
    latest by default); `recipe` names the recipe whose model reranks or rewrites (when the grid asks for it) and
    whose minimum similarity filters passages unless the grid sets one (spec["min_similarity"]). Nothing runs yet: `SweepRun.start()` (a job) or
    core.evaluate.sweep_exec.execute (in this process)."""
    from core.rag import relevance
    from core.rag.kb import KnowledgeBase
    from core.rag.queries import load_queries
    from core.recipe import RecipeStore

    base = KnowledgeBase(project, kb)
    manifest = base.manifest()
    if not manifest["documents"]:
        raise StudioError(Msg("The knowledge base '{name}' has no indexed documents yet; index documents first.",
                              name=kb))
    grid = grid or SweepGrid()
    chosen = RecipeStore(project, recipe).load()
    if "llm" in grid.rerankers and chosen.model.kind == "openai":
        raise StudioError(Msg("The model reranker needs a model that runs on this machine; the recipe uses an "
                              "endpoint. Leave the model reranker out or pick a local model."))
    found, number = load_queries(project, queries, version)
    store = base.store()
    by_id = {r["chunk_id"]: {"source": r["source"], "text": r["text"]}
             for r in store.rows(kb, ["chunk_id", "source", "text"])}
    documents = list(manifest["documents"])
    gold = {q.id: relevance.gold_units(q.gold_ids, q.gold_passages, documents, by_id, q.answers) for q in found}
    configs = grid.configs(base.chunking())
    sweep_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    folder = project.child("runs/sweep", sweep_id, SWEEP)
    folder.mkdir(parents=True)
    atomic.write_json(folder / "spec.json", {
        "kb": {"name": kb, "uri": manifest.get("uri"), "table_version": store.version(kb),
               "embedder": manifest["embedder"], "chunking": manifest["chunking"],
               "documents": {name: info.get("hash") for name, info in manifest["documents"].items()},
               "documents_hash": documents_fingerprint(manifest["documents"])},
        "queries": {"dataset": queries, "version": number, "count": len(found),
                    "items": [{"id": q.id, "question": q.question, "gold": [u.to_dict() for u in gold[q.id]]}
                              for q in found]},
        "grid": grid.to_dict(), "configs": [c.to_dict() for c in configs],
        "chunkings": list({json.dumps(c.chunking.to_dict(), sort_keys=True): c.chunking.to_dict()
                           for c in configs}.values()),
        "embedders": list(grid.embedders), "recipe": recipe, "metrics": list(METRICS), "created": time.time(),
        "min_similarity": chosen.retriever.min_similarity if grid.min_similarity is None else grid.min_similarity,
    })
    return SweepRun(folder)


def list_sweeps(project: Project) -> list[SweepRun]:
    """Sweeps of the project, newest first."""
    folder = sweeps_folder(project)
    found = [SweepRun(p) for p in folder.iterdir() if (p / "spec.json").exists()] if folder.exists() else []
    return sorted(found, key=lambda r: r.id, reverse=True)


def get_sweep(project: Project, sweep_id: str) -> SweepRun:
    folder = project.child("runs/sweep", sweep_id, SWEEP)
    if not (folder / "spec.json").exists():
        raise StudioError(Msg("Sweep '{name}' not found.", name=sweep_id))
    return SweepRun(folder)


# ---- applying the winner ------------------------------------------------------------------------------------------

def reindex_needed(project: Project, kb: str, chunking) -> bool:
    """Whether knowledge base `kb` must be re-indexed to use `chunking` (a ChunkingConfig or its dict)."""
    from core.rag.kb import KnowledgeBase

    wanted = chunking if isinstance(chunking, ChunkingConfig) else ChunkingConfig.from_dict(chunking)
    base = KnowledgeBase(project, kb)
    return bool(base.documents()) and base.chunking() != wanted


def start_reindex(project: Project, kb: str, chunking) -> Job:
    """Re-index `kb` with `chunking` as a background ingest job (the Retriever page's job folder, so that page
    shows its progress). Vectors a sweep made for the new chunks are reused from the embedding cache."""
    from core.rag.kb import KNOWLEDGE_BASE, KnowledgeBase

    wanted = chunking if isinstance(chunking, ChunkingConfig) else ChunkingConfig.from_dict(chunking)
    base = KnowledgeBase(project, kb)
    paths = [str(base.documents_dir / source) for source in base.documents()]
    return Job.start(project.child("runs/ingest", base.name, KNOWLEDGE_BASE),
                     ["-m", "core.rag.ingest_job", str(project.path), kb, json.dumps(wanted.to_dict()), *paths],
                     label="Re-index")


def apply_best(project: Project, sweep: SweepRun | str, config: SweepConfig | dict | None = None,
               recipe_name: str = "assistant", metric: str = DEFAULT_METRIC, author: str | None = None) -> int:
    """Make a sweep's setting (by default its best by `metric`) the retriever settings of recipe `recipe_name`:
    a new recipe version with retrieval on, the sweep's knowledge base, and the setting's mode, k, RRF constant,
    reranker and query rewriting (the other retriever settings and the older versions stay). Returns the version
    number (the latest one when nothing changed). When the setting's chunking differs from the knowledge base's,
    the knowledge base must be re-indexed for it to take effect: applied.json records `reindex` (the chunking
    dict, else None); see `reindex_needed` and `start_reindex`."""
    from core.recipe import RecipeStore

    run = sweep if isinstance(sweep, SweepRun) else get_sweep(project, sweep)
    if config is None:
        winner = run.best(metric)
        if winner is None:
            raise StudioError(Msg("The sweep has no finished settings yet."))
        config = winner.config
    elif isinstance(config, dict):
        config = SweepConfig.from_dict(config)
    kb = run.spec["kb"]["name"]
    if config.embedder != run.spec["kb"]["embedder"]:
        raise StudioError(Msg("The knowledge base embeds with {current}; a setting with another embedder cannot be "
                              "applied yet.", current=run.spec["kb"]["embedder"]))
    store = RecipeStore(project, recipe_name)
    recipe = store.load()
    settings = replace(recipe.retriever, enabled=True, knowledge_base=kb, mode=config.mode, k=config.k,
                       rrf_k=config.rrf_k, reranker=config.reranker, query_rewrite=config.query_rewrite)
    reindex = reindex_needed(project, kb, config.chunking)
    note = f"Retrieval settings from sweep {run.id}: {config.label()}" + \
        (" (re-index the knowledge base with this chunking)" if reindex else "")
    number = store.save(recipe.with_changes(retriever=settings), note=note, author=author)
    atomic.write_json(run.folder / "applied.json", {
        "recipe": recipe_name, "version": number, "config": config.to_dict(), "key": config.key,
        "reindex": config.chunking.to_dict() if reindex else None, "applied_at": time.time()})
    return number
