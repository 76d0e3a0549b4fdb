"""`studio kb ingest|search|sweep|delete|clean-failed`. Only the embedder and LanceDB load here, never the LLM
(except a sweep asked to rerank or rewrite with it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from core.cli import common
from core.errors import StudioError

app = typer.Typer(help="Knowledge bases: ingest documents, search them, delete documents, clean failed files.",
                  no_args_is_help=True)


@app.command("ingest")
def kb_ingest(project: str, files: list[Path] = typer.Argument(..., help="Files or folders of documents."),
              kb: str = typer.Option("docs", help="Knowledge base name."),
              strategy: Optional[str] = typer.Option(None, help="recursive or fixed (changing it re-indexes)."),
              chunk_tokens: Optional[int] = typer.Option(None),
              overlap_tokens: Optional[int] = typer.Option(None)) -> None:
    """Add documents to a knowledge base and index them (unchanged files are skipped)."""
    from core.rag.chunking import STRATEGIES, ChunkingConfig
    from core.rag.kb import KnowledgeBase

    common.one_of("--strategy", strategy, STRATEGIES)
    try:
        base = KnowledgeBase(common.open_project(project), kb)
        chunking = None
        if strategy or chunk_tokens is not None or overlap_tokens is not None:
            current = base.chunking()
            chunking = ChunkingConfig(strategy or current.strategy,
                                      current.chunk_tokens if chunk_tokens is None else chunk_tokens,
                                      current.overlap_tokens if overlap_tokens is None else overlap_tokens)
        missing = [str(f) for f in files if not f.is_dir() and not f.is_file()]
        if missing:
            common.fail(f"Not found: {', '.join(missing)}")
        # A folder keeps each document's path inside it (sub1/policy.txt) and is read only inside the allowed
        # folders (STUDIO_ALLOWED_FOLDERS, else home and the studio home), like the Retriever page's.
        added = [base.add_folder(f) if f.is_dir() else base.add_files([(f.name, f.read_bytes())]) for f in files]
        saved = list(dict.fromkeys(p for a in added for p in a))
        results = [r for a in added for r in a.refused] + base.ingest(saved, chunking, common.progress)
    except StudioError as exc:
        common.fail(str(exc))
    for link in (link for a in added for link in a.skipped_links):
        typer.echo(f"{'skipped':9} {link}  (a link that leads outside the allowed folder)")
    for result in results:
        typer.echo(f"{result.status:9} {result.source}" + (f"  ({result.chunks} chunks)" if result.chunks else "")
                   + (f"  {result.message}" if result.message else ""))
    if any(r.status in ("error", "refused") for r in results):
        raise typer.Exit(code=2)


@app.command("clean-failed")
def kb_clean_failed(project: str, kb: str = typer.Option("docs", help="Knowledge base name.")) -> None:
    """Remove the files that were refused or could not be read (they are not retried on their own)."""
    from core.rag.kb import KnowledgeBase, failure_reason

    try:
        base = KnowledgeBase(common.open_project(project), kb)
        failed = base.failed()
        base.clear_failed()
    except StudioError as exc:
        common.fail(str(exc))
    for source, entry in sorted(failed.items()):
        typer.echo(f"{'removed':9} {source}  {failure_reason(entry)}")
    typer.echo(f"{len(failed)} failed file(s) removed from '{kb}'.")


@app.command("search")
def kb_search(project: str, query: str, kb: str = typer.Option("docs"),
              mode: str = typer.Option("hybrid", help="vector, fts or hybrid."),
              k: int = typer.Option(5, "-k", "--k", help="How many passages."),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Search a knowledge base the way the assistant does."""
    from core.rag.kb import KnowledgeBase
    from core.rag.retriever import MODES

    common.one_of("--mode", mode, MODES)
    if k < 1:
        common.usage(f"-k must be at least 1, not {k}.")

    try:
        hits = KnowledgeBase(common.open_project(project), kb).search(query, mode, k)
    except StudioError as exc:
        common.fail(str(exc))
    rows = [{"rank": i, "source": h.source, "page": h.page, "heading": h.heading, "score": round(h.score, 4),
             "similarity": round(h.similarity, 4) if h.similarity is not None else None, "text": h.text}
            for i, h in enumerate(hits, start=1)]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            typer.echo(f"{row['rank']}. {row['source']}" + (f" p.{row['page']}" if row["page"] else "")
                       + f"  {row['heading']}  ({row['score']})\n   {row['text'][:200]}")


@app.command("sweep")
def kb_sweep(project: str, queries: str = typer.Option(..., help="Eval dataset of retrieval queries (questions "
                                                                  "with gold documents or passages, or with short "
                                                                  "reference answers to look for)."),
             kb: str = typer.Option("docs", help="Knowledge base name."),
             chunk_sizes: Optional[str] = typer.Option(None, help="Chunk sizes in tokens, e.g. 100,200 (default: "
                                                                  "the knowledge base's)."),
             strategy: Optional[str] = typer.Option(None, help="recursive or fixed (default: the knowledge base's)."),
             overlap: Optional[int] = typer.Option(None, help="Overlap in tokens (default: the knowledge base's, at "
                                                              "most half a chunk)."),
             modes: str = typer.Option("vector,fts,hybrid", help="Search modes to try."),
             ks: str = typer.Option("3,5", help="Numbers of passages to try."),
             rrf_ks: str = typer.Option("60", help="Reciprocal rank fusion constants to try (hybrid)."),
             rerankers: str = typer.Option("rrf", help="rrf, linear and/or llm (the recipe's local model)."),
             query_rewrite: bool = typer.Option(False, "--query-rewrite", help="Also try keywords rewritten by the "
                                                                               "recipe's model."),
             recipe: str = typer.Option("assistant", help="Recipe whose model reranks or rewrites."),
             metric: str = typer.Option("ndcg_at_k", help="Rank by hit_at_k, recall_at_k, mrr or ndcg_at_k."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Try retrieval settings on labeled queries, in this process, and rank them (best first)."""
    from core.evaluate.sweep import METRICS, SweepGrid, create_sweep
    from core.rag.chunking import STRATEGIES, ChunkingConfig
    from core.rag.ranking import RERANKERS
    from core.rag.retriever import MODES

    # Every value is checked before the sweep starts: a wrong --metric must not cost a whole sweep.
    common.one_of("--strategy", strategy, STRATEGIES)
    common.one_of("--metric", metric, METRICS)
    sizes = common.csv_list("--chunk-sizes", chunk_sizes, int)
    grid_values = dict(modes=common.csv_list("--modes", modes, allowed=MODES),
                       ks=common.csv_list("--ks", ks, int), rrf_ks=common.csv_list("--rrf-ks", rrf_ks, int),
                       rerankers=common.csv_list("--rerankers", rerankers, allowed=RERANKERS))
    from core import runlock
    from core.evaluate.sweep_exec import execute  # loads LanceDB: only once the options are known to be right
    from core.rag.kb import KnowledgeBase

    def show(**event) -> None:
        if event.get("message") and not as_json:
            typer.echo(str(event["message"]), err=True)

    try:
        target = common.open_project(project)
        current = KnowledgeBase(target, kb).chunking()
        chunkings = [ChunkingConfig(strategy or current.strategy, size,
                                    min(current.overlap_tokens if overlap is None else overlap, size // 2))
                     for size in sizes or [current.chunk_tokens]]
        grid = SweepGrid(chunkings=chunkings, query_rewrite=query_rewrite, **grid_values)
        runlock.RunLock(target.path, "sweep").check_free()  # before a sweep is made that could not start
        run = create_sweep(target, queries, grid, kb=kb, recipe=recipe)
        with runlock.holding(target.path, "sweep", run.id):  # one sweep at a time per project
            outcome = common.attached(run.folder / "jobs", f"sweep {run.id}", show,
                                      lambda emit, should_stop: execute(target, run.id, emit, should_stop))
        ranked = run.ranked(metric)
    except (StudioError, ValueError) as exc:
        common.fail(str(exc))
    if not outcome["finished"]:
        common.fail(f"Stopped; the {outcome['done']} settings scored so far are kept in sweep {run.id}.")
    rows = [{**r.row(), **{name: round(value, 4) for name, value in r.metrics.items()}} for r in ranked]
    if as_json:
        typer.echo(json.dumps({"sweep": run.id, "kb": kb, "queries": queries, "metric": metric,
                               "finished": outcome["finished"], "embeddings": outcome["embeddings"],
                               "best": rows[0] if rows else None, "configs": rows}, ensure_ascii=False, indent=2))
        return
    names = ("hit_at_k", "recall_at_k", "mrr", "ndcg_at_k")
    typer.echo(f"{'#':>3}  {'setting':52}" + "".join(f"{n:>12}" for n in names))
    for rank, row in enumerate(rows, start=1):
        typer.echo(f"{rank:>3}  {row['label'][:52]:52}" + "".join(f"{row[n]:>12.3f}" for n in names))
    embeddings = outcome["embeddings"]
    typer.echo(f"sweep {run.id}: {embeddings['computed']} passages embedded, {embeddings['reused']} reused")


@app.command("delete")
def kb_delete(project: str, source: str, kb: str = typer.Option("docs")) -> None:
    """Remove a document and its chunks from a knowledge base."""
    from core.rag.kb import KnowledgeBase

    try:
        base = KnowledgeBase(common.open_project(project), kb)
        if source not in base.documents():
            common.fail(f"'{source}' is not in knowledge base '{kb}'.")
        base.delete_document(source)
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo(f"Removed '{source}' from '{kb}'.")
