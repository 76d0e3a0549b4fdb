"""Running a retrieval sweep (core.evaluate.sweep): for each chunking × embedder × rewriting group, the knowledge
base's stored documents are cut again into a temporary LanceDB table (indexes/sweep-tmp/, dropped when the group
is done), then every setting of the group is scored (core.rag.metrics) on every query.

* Embeddings: through the project's `EmbeddingCache`, seeded with the vectors already stored in the knowledge
  base, so a chunk text is embedded at most once per embedder, across groups, sweeps and restarts. What each
  group reused and computed is appended to embeddings.jsonl.
* Searches: one vector search and one full-text search per query and group, deep enough for every setting;
  each setting's ranking is then `core.rag.ranking.rank` on them, exactly what `KnowledgeBase.search` does.
* Resume: a setting's result line is appended as soon as it is scored; a restart skips finished settings (and
  groups whose settings are all finished).
"""

from __future__ import annotations

import json
import time
from typing import Callable

from core.errors import StudioError
from core.evaluate.sweep import SweepConfig, SweepRun, documents_fingerprint, get_sweep
from core.i18n import Msg
from core.rag import metrics as M
from core.rag import ranking, relevance
from core.rag.chunking import passage_texts_to_embed, split_passage_vectors
from core.rag.embedders import EmbeddingCache, EmbedStats, Stopped, get_embedder
from core.rag.ranking import Scorer
from core.rag.store import both
from core.workspace import Project

Emit = Callable[..., None]
SNIPPET = 200
EMBED_SHARE = 0.8   # share of a group's progress spent embedding


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _memo_scorer(scorer: Scorer | None) -> Scorer | None:
    """The scorer, remembering each (question, passage) so a passage is scored once across settings."""
    if scorer is None:
        return None
    memo: dict[tuple[str, str], float] = {}

    def score(question: str, texts: list[str]) -> list[float]:
        missing = [t for t in dict.fromkeys(texts) if (question, t) not in memo]
        if missing:
            memo.update(((question, t), float(s)) for t, s in zip(missing, scorer(question, missing)))
        return [memo[(question, t)] for t in texts]

    return score


class _TempTables:
    """The sweep's temporary tables, in indexes/sweep-tmp (always local, wherever the knowledge base lives)."""

    def __init__(self, project: Project, sweep_id: str):
        from core.rag.store import KnowledgeStore

        self.folder = project.subdir("indexes") / "sweep-tmp"
        self.store = KnowledgeStore(str(self.folder))
        self.prefix = f"sweep-{sweep_id}-"
        for name in self.store.db.list_tables().tables:  # left over by a killed run
            if name.startswith(self.prefix):
                self.store.drop(name)

    def build(self, group: int, rows: list[dict], vectors, sentence_vectors: list, embedder: str,
              chunking: dict) -> str:
        name = f"{self.prefix}{group}"
        self.store.drop(name)
        self.store.upsert(name, [{**row, "vector": vector, "sentence_vectors": sentences}
                                 for row, vector, sentences in zip(rows, vectors, sentence_vectors)],
                          int(vectors.shape[1]), embedder, chunking)
        return name

    def close(self) -> None:
        for name in self.store.db.list_tables().tables:
            if name.startswith(self.prefix):
                self.store.drop(name)


def _documents(base, emit: Emit) -> dict[str, tuple[str, list]]:
    """source -> (content hash, parsed sections) for the knowledge base's indexed documents."""
    from core.rag.kb import max_document_bytes
    from core.rag.parse import parse_document

    parsed = {}
    for source in base.documents():
        path = base.documents_dir / source
        try:
            document = parse_document(path.read_bytes(), source, max_bytes=max_document_bytes())
        except (OSError, StudioError) as exc:
            emit(warning=Msg("{file} was left out of the sweep: {reason}", file=source, reason=str(exc)))
            continue
        parsed[source] = (document.content_hash, document.sections)
    return parsed


def _chunk_rows(documents: dict, chunking) -> list[dict]:
    """The chunks `KnowledgeBase.ingest` would store with this chunking (same counter, same fields)."""
    from core.rag import kb
    from core.rag.chunking import chunk_sections

    count_tokens = kb._count_tokens()
    rows = []
    for source, (doc_hash, sections) in documents.items():
        for chunk in chunk_sections(sections, chunking, count_tokens):
            rows.append({"doc_id": source, "doc_hash": doc_hash, "source": source, "page": chunk.page or 0,
                         "heading": chunk.heading, "text": chunk.text})
    return rows


def _seed(project: Project, base, embedder: str) -> int:
    """Put the knowledge base's stored vectors into the embedding cache (same embedder only)."""
    if embedder != base.manifest()["embedder"]:
        return 0
    texts, vectors = base.store().texts_and_vectors(base.name)
    return EmbeddingCache.for_project(project, embedder).add(texts, vectors) if texts else 0


def score_query(hits: list, units: list) -> dict:
    """Metrics of one ranked list against one query's gold units, and what was retrieved."""
    judged = relevance.judge(hits, units)
    gold, k = relevance.labels(units), max(len(hits), 1)
    return {"rank": relevance.first_relevant_rank(judged),
            "hit": M.hit_at_k(judged, gold, k), "recall": M.recall_at_k(judged, gold, k),
            "rr": M.reciprocal_rank(judged, gold), "ndcg": M.ndcg_at_k(judged, gold, k),
            "retrieved": [{"source": h.source, "page": h.page, "heading": h.heading, "text": h.text[:SNIPPET],
                           "relevant": bool(found)} for h, found in zip(hits, judged)]}


def _score_config(config: SweepConfig, queries: list[dict], searched: dict, scorer: Scorer | None,
                  min_similarity: float) -> dict:
    rows = []
    for query in queries:
        by_vector, by_text, text_query = searched[query["id"]]
        hits = ranking.rank(config.mode, by_vector, by_text, config.k, config.rrf_k, config.reranker,
                            query["question"], scorer)
        if min_similarity > 0:  # as the assistant does (core.rag.retriever.relevant)
            hits = [h for h in hits if h.similarity is None or h.similarity >= min_similarity]
        row = {"id": query["id"], "question": query["question"], **score_query(hits, query["units"])}
        if config.query_rewrite:
            row["query"] = text_query
        rows.append(row)
    summary = {"hit_at_k": _mean([r["hit"] for r in rows]), "recall_at_k": _mean([r["recall"] for r in rows]),
               "mrr": _mean([r["rr"] for r in rows]), "ndcg_at_k": _mean([r["ndcg"] for r in rows])}
    return {"metrics": {k: round(v, 6) for k, v in summary.items()}, "queries": rows}


def _append(path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def execute(project: Project, sweep_id: str, emit: Emit = lambda **event: None,
            should_stop: Callable[[], bool] = lambda: False, scorer: Scorer | None = None,
            rewriter: Callable[[str], str] | None = None) -> dict:
    """Score every unfinished setting of sweep `sweep_id`, appending results as they finish; resumable at any
    point. `scorer` (llm reranker) and `rewriter` (query rewriting) default to the recipe's model, loaded only
    when the grid needs them. Returns {"finished", "done", "total", "embeddings": {"reused", "computed",
    "seeded"}, "best": {"key", "config", "metrics"} or None}."""
    from core.rag.kb import KnowledgeBase

    run = get_sweep(project, sweep_id)
    spec, configs = run.spec, run.configs()
    base = KnowledgeBase(project, spec["kb"]["name"])
    if documents_fingerprint(base.documents()) != spec["kb"]["documents_hash"]:
        raise StudioError(Msg("The knowledge base's documents changed since this sweep was made; start a new "
                              "sweep."))
    done = run.done_keys()
    todo = [c for c in configs if c.key not in done]
    stats, seeded, total, finished = EmbedStats(), 0, len(configs), len(configs) - len(todo)
    if todo:
        scorer, rewriter = _model_helpers(project, run, todo, scorer, rewriter)
        seeded = _run_groups(project, run, base, todo, emit, should_stop, scorer, rewriter, stats, finished, total)
        if seeded is None:
            emit(message=Msg("Stopped; start again to finish the other settings."))
            return _outcome(run, False, stats, 0)
    (run.folder / "finished").write_text(str(time.time()))
    emit(type="done", progress=1.0, message=Msg("Sweep finished"))
    return _outcome(run, True, stats, seeded)


def _outcome(run: SweepRun, finished: bool, stats: EmbedStats, seeded: int) -> dict:
    best = run.best()
    status = run.status()
    return {"finished": finished, "done": status.done, "total": status.total,
            "embeddings": {"reused": stats.reused, "computed": stats.computed, "seeded": seeded},
            "best": {"key": best.key, "config": best.config.to_dict(), "metrics": best.metrics} if best else None}


def _model_helpers(project: Project, run: SweepRun, todo: list[SweepConfig], scorer, rewriter):
    wants_scorer = scorer is None and any(c.reranker == "llm" for c in todo)
    wants_rewriter = rewriter is None and any(c.query_rewrite for c in todo)
    if wants_scorer or wants_rewriter:
        from core import assistant
        from core.rag import rerank
        from core.recipe import RecipeStore

        recipe = RecipeStore(project, run.spec["recipe"]).load()
        backend = assistant.recipe_backend(project, recipe)
        scorer = scorer or rerank.llm_scorer(backend)
        rewriter = rewriter or rerank.llm_rewriter(backend, recipe)
        if wants_scorer and scorer is None:
            raise StudioError(Msg("The model reranker needs a model that runs on this machine; the recipe uses an "
                                  "endpoint. Leave the model reranker out or pick a local model."))
    return _memo_scorer(scorer), rewriter


def _run_groups(project, run, base, todo, emit, should_stop, scorer, rewriter, stats, finished, total) -> int | None:
    """Build, score and drop each group's table. Returns how many vectors were seeded from the knowledge base,
    or None when stopped."""
    spec = run.spec
    queries = [{"id": q["id"], "question": q["question"],
                "units": [relevance.GoldUnit.from_dict(u) for u in q["gold"]]} for q in spec["queries"]["items"]]
    groups: dict[tuple, list[SweepConfig]] = {}
    for config in todo:
        groups.setdefault(config.group, []).append(config)
    documents = _documents(base, emit)
    rewrites: dict[str, str] = {}
    seeded, seeded_for = 0, set()
    tables = _TempTables(project, run.id)
    try:
        for number, members in enumerate(groups.values()):
            first = members[0]
            share, start = len(members) / total, finished / total
            if should_stop():
                return None
            embedder = get_embedder(first.embedder)
            if first.embedder not in seeded_for:
                seeded += _seed(project, base, first.embedder)
                seeded_for.add(first.embedder)
            cache = EmbeddingCache.for_project(project, first.embedder)
            emit(progress=start, message=Msg("Cutting the documents: {setting}", setting=first.label()))
            rows = _chunk_rows(documents, first.chunking)
            if not rows:
                raise StudioError(Msg("No passages came out of the documents with {setting}.",
                                      setting=first.label()))

            def on_batch(count: int, todo_count: int, start=start, share=share) -> None:
                emit(progress=start + share * EMBED_SHARE * count / todo_count,
                     message=Msg("Embedding passages: {done} of {total}", done=count, total=todo_count))

            try:
                texts, sentence_counts = passage_texts_to_embed(  # as ingest embeds them
                    [(r["text"], r["heading"], r["source"]) for r in rows])
                embedded, group_stats = cache.embed(texts, embedder.embed, on_batch=on_batch, should_stop=should_stop)
                vectors, sentence_vectors = split_passage_vectors(embedded, sentence_counts)
            except Stopped:
                return None
            stats.add(group_stats)
            _append(run.folder / "embeddings.jsonl", {
                "chunking": first.chunking.to_dict(), "embedder": first.embedder, "chunks": len(rows),
                "sentences": sum(sentence_counts),
                "reused": group_stats.reused, "computed": group_stats.computed, "at": time.time()})
            table = tables.build(number, rows, vectors, sentence_vectors, first.embedder, first.chunking.to_dict())
            searched = _search(tables.store, table, queries, members, cache, embedder, rewriter, rewrites,
                               (spec.get("min_similarity") or 0.0) > 0)
            for i, config in enumerate(members):
                if should_stop():
                    return None
                result = _score_config(config, queries, searched, scorer, spec.get("min_similarity") or 0.0)
                _append(run.folder / "results.jsonl", {"key": config.key, "config": config.to_dict(),
                                                       "chunks": len(rows), **result, "finished_at": time.time()})
                finished += 1
                emit(type="config", key=config.key, metrics=result["metrics"],
                     progress=start + share * (EMBED_SHARE + (1 - EMBED_SHARE) * (i + 1) / len(members)),
                     message=Msg("{done} of {total} settings scored", done=finished, total=total))
            tables.store.drop(table)
    finally:
        tables.close()
    return seeded


def _search(store, table: str, queries: list[dict], members: list[SweepConfig], cache: EmbeddingCache, embedder,
            rewriter, rewrites: dict, filtered: bool) -> dict:
    """query id -> (vector hits, full-text hits, full-text query), deep enough for every setting of the group; with
    the question's vector every hit carries its similarity, judged as the assistant judges it."""
    fetch = max(ranking.fetch_depth(c.mode, c.k, c.reranker) for c in members)
    need_vector = any(c.mode != "fts" for c in members)
    need_text = any(c.mode != "vector" for c in members)
    rewrite = members[0].query_rewrite
    vectors = cache.embed([q["question"] for q in queries], embedder.embed)[0] if need_vector or filtered else None
    searched = {}
    for i, query in enumerate(queries):
        text_query = query["question"]
        if rewrite and rewriter is not None:
            if text_query not in rewrites:
                rewrites[text_query] = rewriter(text_query) or text_query
            text_query = rewrites[text_query]
        by_vector, by_text = both(lambda: store.search_vector(table, vectors[i], fetch) if need_vector else [],
                                  lambda: store.search_text(table, text_query, fetch, None,
                                                            None if vectors is None else vectors[i])
                                  if need_text else [])
        searched[query["id"]] = (by_vector, by_text, text_query)
    return searched
