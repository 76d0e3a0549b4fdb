"""`studio` command line. The pages and these commands call the same core functions."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from core.errors import StudioError

# Library chatter a user cannot act on: download/loading progress bars and bitsandbytes' optional-kernel notice.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class _DropOptionalKernelNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropOptionalKernelNotice())

app = typer.Typer(help="LLM Customization Studio: customize a language model step by step.", no_args_is_help=True)
project_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)
app.add_typer(project_app, name="project")
APP_PATH = Path(__file__).resolve().parent.parent / "studio" / "app.py"


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _usage(message: str) -> None:
    """A mistake in the command's own words (an option's value, a config file): one sentence, exit 2 like Typer."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _run_child(command: list[str], env: dict | None = None) -> int:
    """Run a server child; Ctrl-C or SIGTERM on this command stops the child too, then this command."""
    child = subprocess.Popen(command, env=env)

    def forward(signum, _frame):
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


@app.command()
def run(port: int = typer.Option(8501, help="Port to serve on."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps the studio on this machine."),
        open_browser: bool = typer.Option(False, "--open/--no-open", help="Open a browser tab.")) -> None:
    """Start the studio in the browser."""
    typer.echo(f"Studio: http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}  "
               f"(projects in {os.environ.get('STUDIO_HOME') or Path.home() / '.llm-studio'})")
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.address", host,
               "--server.port", str(port), "--server.headless", str(not open_browser).lower(), "--server.maxUploadSize", "256",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    raise typer.Exit(_run_child(command))


@app.command()
def demo(project: str = typer.Argument(..., help="Project name or folder name."),
         recipe: Optional[str] = typer.Option(None, help="Recipe name (default: the demo settings' recipe)."),
         version: Optional[int] = typer.Option(None, help="Recipe version (default: the demo settings', else the "
                                                          "latest)."),
         port: int = typer.Option(8502, help="Port to serve on."),
         host: str = typer.Option("127.0.0.1", help="Address to bind; another address needs a password."),
         password: bool = typer.Option(False, "--password", help="Ask for a password visitors must enter "
                                                                 "(or set $STUDIO_DEMO_PASSWORD).")) -> None:
    """Serve only the chat of one recipe version to stakeholders (no build pages, no settings)."""
    from core import demo as demo_module
    from core.hosts import is_loopback

    try:
        target = _project(project)
        settings = demo_module.load_settings(target)
        if recipe or version is not None:
            settings = settings.with_changes(recipe=recipe or settings.recipe, version=version)
        secret = os.environ.get(demo_module.PASSWORD_ENV, "")
        if password and not secret:
            secret = typer.prompt("Demo password", hide_input=True, confirmation_prompt=True)
        if secret:
            settings = settings.with_changes(password_hash=demo_module.hash_password(secret))
        demo_module.check_host(host, settings.protected)
        recipe_obj, number = demo_module.resolve_recipe(target, settings)
        from core.models import registry

        if registry.needs_conversion(recipe_obj.model):  # once, here, so no visitor meets the preparation step
            registry.model_folder(recipe_obj.model, lambda fraction, message: typer.echo(
                f"[{fraction:4.0%}] {message}", err=True))
    except StudioError as exc:
        _fail(str(exc))
    import socket

    shown = "localhost" if is_loopback(host) else socket.gethostname() if host in ("0.0.0.0", "::") else host
    typer.echo(f"Demo of '{target.name}', recipe {recipe_obj.name} v{number}: http://{shown}:{port}"
               + ("  (password protected)" if settings.protected else ""))
    environment = {**os.environ, **demo_module.server_environment(target, settings)}
    environment.pop(demo_module.PASSWORD_ENV, None)  # only the hash travels on
    raise typer.Exit(_run_child(demo_module.streamlit_command(APP_PATH, host, port, settings), env=environment))


@project_app.command("create")
def project_create(name: str = typer.Argument(None, help="Project name."),
                   sample: bool = typer.Option(False, "--sample", help="Start from the sample project.")) -> None:
    """Create a project."""
    from core import sample as sample_module
    from core.workspace import Workspace

    try:
        ws = Workspace()
        project = sample_module.create_sample_project(ws, name or sample_module.SAMPLE_NAME) if sample \
            else ws.create(name or "")
    except StudioError as exc:
        _fail(str(exc))
    typer.echo(f"Created '{project.name}' in {project.path}")


@project_app.command("list")
def project_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List projects."""
    from core.recipe import RecipeStore
    from core.workspace import Workspace

    rows = []
    for project in Workspace().list_projects():
        latest = RecipeStore(project).latest()
        rows.append({"name": project.name, "slug": project.slug, "path": str(project.path),
                     "recipe_version": latest.number if latest else None})
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        typer.echo("No projects yet: studio project create NAME")
    else:
        for row in rows:
            typer.echo(f"{row['slug']:30} {row['name']}  (recipe v{row['recipe_version'] or '-'})")


@app.command()
def generate(project: str = typer.Argument(..., help="Project name or folder name."),
             question: str = typer.Argument(..., help="The question to answer."),
             recipe: str = typer.Option("assistant", help="Recipe name."),
             version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
             max_new_tokens: Optional[int] = typer.Option(None, help="Override the recipe's max new tokens."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming.")) -> None:
    """Answer a question with a project's recipe (streams to the terminal)."""
    from core import assistant
    from core.recipe import RecipeStore
    from core.workspace import Workspace

    try:
        proj = Workspace().get(project)
        chosen = RecipeStore(proj, recipe).load(version)
        if max_new_tokens:
            chosen = chosen.with_changes(generation=replace(chosen.generation, max_new_tokens=max_new_tokens))

        def progress(fraction: float, message: str) -> None:
            typer.echo(f"[{fraction:4.0%}] {message}", err=True)

        backend = assistant.recipe_backend(proj, chosen, progress)
        prepared, stream = assistant.answer(chosen, question, backend, assistant.example_pool(proj, chosen), proj)
        if as_json:
            stream.run_to_end()
        else:
            for piece in stream:
                typer.echo(piece, nl=False)
            typer.echo()
    except StudioError as exc:
        _fail(str(exc))
    if as_json:
        latest = RecipeStore(proj, recipe).latest()
        typer.echo(json.dumps({"project": proj.name, "recipe": chosen.name,
                               "recipe_version": version or (latest.number if latest else None), "question": question, "answer": stream.text, "examples_used": len(prepared.examples),
                               **stream.stats()}, ensure_ascii=False))


@app.command()
def serve(project: str = typer.Argument(..., help="Project name or folder name."),
          recipe: str = typer.Option("assistant", help="Recipe name."),
          version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
          host: str = typer.Option("127.0.0.1", help="Address to bind; another than 127.0.0.1 needs --api-key-env."),
          port: int = typer.Option(8000, help="Port to serve on."),
          api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Name of the environment variable "
                                                    "holding the API key clients must send as a Bearer token.")) -> None:
    """Serve a saved recipe as an OpenAI-compatible endpoint (/v1/chat/completions)."""
    from core.serving import openai_api
    from core.workspace import Workspace

    try:
        proj = Workspace().get(project)
        api_key = openai_api.api_key_from_env(api_key_env)
        openai_api.check_host(host, api_key)
        server_app = openai_api.create_app(proj, recipe, version, api_key,
                                           lambda fraction, message: typer.echo(f"[{fraction:4.0%}] {message}", err=True))
    except StudioError as exc:
        _fail(str(exc))
    typer.echo(f"Serving '{server_app.state.served.model_id}' at {openai_api.base_url(host, port)}"
               f"{'  (API key required)' if api_key else ''}")
    openai_api.serve(server_app, host, port)


data_app = typer.Typer(help="Import, check, split and export datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _project(name: str):
    from core.workspace import Workspace

    try:
        return Workspace().get(name)
    except StudioError as exc:
        _fail(str(exc))


@data_app.command("list")
def data_list(project: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List a project's datasets."""
    from core.data.store import DatasetStore

    rows = [{"name": d.name, "kind": d.kind, "rows": d.latest.rows if d.latest else 0,
             "version": d.latest.number if d.latest else None} for d in DatasetStore(_project(project)).list()]
    typer.echo(json.dumps(rows, ensure_ascii=False, indent=2) if as_json else
               "\n".join(f"{r['name']:30} {r['kind']:10} {r['rows']:6} rows  v{r['version']}" for r in rows))


@data_app.command("import")
def data_import(project: str, path: Path = typer.Argument(..., help="File or datasets folder."),
                name: Optional[str] = typer.Option(None, help="Dataset name (default: the file name)."),
                kind: Optional[str] = typer.Option(None, help="sft, chat, preference or eval (default: detected)."),
                mapping: list[str] = typer.Option([], "--map", help="field=column, repeatable.")) -> None:
    """Import a file into a new dataset or append it to an existing one (a new version either way)."""
    from core.data import formats
    from core.data.store import DatasetStore

    from core.data.records import KINDS

    if kind is not None and kind not in KINDS:
        _usage(f"--kind must be one of {', '.join(KINDS)}, not '{kind}'.")
    bad_maps = [item for item in mapping if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad_maps:
        _usage(f"--map takes field=column (for example --map prompt=question), not '{bad_maps[0]}'.")
    proj = _project(project)
    try:
        source = formats.read_source(path, path.name)
        chosen_kind = kind or formats.detect_kind(source)
        fields = {**formats.propose_mapping(source, chosen_kind),
                  **dict(item.split("=", 1) for item in mapping)}
        result = formats.apply_mapping(source, chosen_kind, fields)
        store = DatasetStore(proj)
        target = name or path.stem
        if store.exists(target):
            records, base = store.load(target)
            number = store.save(target, records + result.records, base, note=f"Imported {path.name}")
        else:
            number = store.create(target, chosen_kind, result.records, note=f"Imported {path.name}")
    except StudioError as exc:
        _fail(str(exc))
    for problem in result.problems[:50]:
        typer.echo(f"warning: {problem}", err=True)
    typer.echo(f"Imported {len(result.records)} {chosen_kind} records into '{target}' (version {number}).")


@data_app.command("export")
def data_export(project: str, name: str, fmt: str = typer.Option("jsonl", "--format"),
                out: Path = typer.Option(..., "--out", help="File (or folder for hf_folder)."),
                version: Optional[int] = typer.Option(None)) -> None:
    """Export a dataset version (rejected records left out)."""
    from core.data import formats
    from core.data.store import DatasetStore

    store = DatasetStore(_project(project))
    try:
        records, number = store.load(name, version)
        kind = store.kind(name)
        if fmt not in formats.EXPORT_FORMATS[kind]:
            _fail(f"Format '{fmt}' is not available for {kind}; choose one of {', '.join(formats.EXPORT_FORMATS[kind])}.")
        kept = [r for r in records if r.get("status") != "rejected"]
        payload = formats.export_records(kept, kind, fmt, out if fmt == "hf_folder" else None)
        if fmt != "hf_folder":
            out.write_bytes(payload)
    except StudioError as exc:
        _fail(str(exc))
    typer.echo(f"Exported {len(kept)} records of '{name}' version {number} to {out}.")


@data_app.command("check")
def data_check(project: str, name: str, against: Optional[str] = typer.Option(None, help="Dataset to test leakage against."),
               purpose: str = typer.Option("training", help="training, fewshot or eval."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Pre-flight checks: duplicates, leakage, empty fields, label balance, too few examples."""
    from core.data import checks
    from core.data.store import DatasetStore

    store = DatasetStore(_project(project))
    try:
        records, number = store.load(name)
        extra = {"eval_records": store.load(against)[0], "eval_kind": store.kind(against)} if against else {}
        report = checks.run_checks(records, store.kind(name), purpose=purpose, **extra)
    except StudioError as exc:
        _fail(str(exc))
    payload = {"dataset": name, "version": number, "ok": report.ok,
               "findings": [{"code": f.code, "severity": f.severity, "message": str(f.message),
                             "records": list(f.record_ids)} for f in report.findings],
               "advice": [str(a) for a in report.advice], "label_counts": report.label_counts}
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for finding in payload["findings"]:
            typer.echo(f"{finding['severity']:8} {finding['message']}")
        for advice in payload["advice"]:
            typer.echo(f"advice   {advice}")
        typer.echo("OK" if report.ok else "Problems found.")
    if not report.ok:
        raise typer.Exit(code=2)


@data_app.command("split")
def data_split(project: str, name: str, eval_fraction: float = typer.Option(0.2), seed: int = typer.Option(42),
               stratify: bool = typer.Option(False)) -> None:
    """Assign records to train/eval with a seed; saved as a new version."""
    from core.data import split
    from core.data.store import DatasetStore

    store = DatasetStore(_project(project))
    try:
        records, base = store.load(name)
        done = split.split_records(records, eval_fraction, seed, stratify, store.kind(name))
        number = store.save(name, done, base, note=f"Split eval={eval_fraction}, seed={seed}")
    except StudioError as exc:
        _fail(str(exc))
    counts = split.split_summary(done)
    typer.echo(f"Version {number}: {counts.get('train', 0)} train, {counts.get('eval', 0)} eval.")


kb_app = typer.Typer(help="Knowledge bases: ingest documents, search them, delete documents.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")


@kb_app.command("ingest")
def kb_ingest(project: str, files: list[Path] = typer.Argument(..., help="Files or folders of documents."),
              kb: str = typer.Option("docs", help="Knowledge base name."),
              strategy: Optional[str] = typer.Option(None, help="recursive or fixed (changing it re-indexes)."),
              chunk_tokens: Optional[int] = typer.Option(None), overlap_tokens: Optional[int] = typer.Option(None)) -> None:
    """Add documents to a knowledge base and index them (unchanged files are skipped)."""
    from core.rag.chunking import ChunkingConfig
    from core.rag.kb import KnowledgeBase

    try:
        base = KnowledgeBase(_project(project), kb)
        chunking = None
        if strategy or chunk_tokens or overlap_tokens is not None:
            current = base.chunking()
            chunking = ChunkingConfig(strategy or current.strategy, chunk_tokens or current.chunk_tokens,
                                      current.overlap_tokens if overlap_tokens is None else overlap_tokens)
        paths = [p for f in files for p in (sorted(x for x in f.rglob("*") if x.is_file()) if f.is_dir() else [f])]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            _fail(f"Not found: {', '.join(missing)}")
        saved = base.add_files([(p.name, p.read_bytes()) for p in paths])
        results = base.ingest(saved, chunking, lambda fraction, message: typer.echo(f"[{fraction:4.0%}] {message}",
                                                                                  err=True))
    except StudioError as exc:
        _fail(str(exc))
    for result in results:
        typer.echo(f"{result.status:9} {result.source}" + (f"  ({result.chunks} chunks)" if result.chunks else "")
                   + (f"  {result.message}" if result.message else ""))
    if any(r.status == "error" for r in results):
        raise typer.Exit(code=2)


@kb_app.command("search")
def kb_search(project: str, query: str, kb: str = typer.Option("docs"),
              mode: str = typer.Option("hybrid", help="vector, fts or hybrid."),
              k: int = typer.Option(5, "-k", "--k", help="How many passages."),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Search a knowledge base the way the assistant does."""
    from core.rag.kb import KnowledgeBase

    try:
        hits = KnowledgeBase(_project(project), kb).search(query, mode, k)
    except StudioError as exc:
        _fail(str(exc))
    rows = [{"rank": i, "source": h.source, "page": h.page, "heading": h.heading, "score": round(h.score, 4),
             "similarity": round(h.similarity, 4) if h.similarity is not None else None, "text": h.text}
            for i, h in enumerate(hits, start=1)]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            typer.echo(f"{row['rank']}. {row['source']}" + (f" p.{row['page']}" if row["page"] else "")
                       + f"  {row['heading']}  ({row['score']})\n   {row['text'][:200]}")


def _csv(value: Optional[str], convert=str) -> list:
    return [convert(part.strip()) for part in (value or "").split(",") if part.strip()]


@kb_app.command("sweep")
def kb_sweep(project: str, queries: str = typer.Option(..., help="Eval dataset of retrieval queries (questions "
                                                                  "with gold documents or passages)."),
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
    from core.rag.chunking import ChunkingConfig
    from core.rag.kb import KnowledgeBase
    from core.evaluate.sweep import SweepGrid, create_sweep
    from core.evaluate.sweep_exec import execute

    def show(**event) -> None:
        if event.get("message") and not as_json:
            typer.echo(str(event["message"]), err=True)

    try:
        target = _project(project)
        current = KnowledgeBase(target, kb).chunking()
        sizes = _csv(chunk_sizes, int) or [current.chunk_tokens]
        chunkings = [ChunkingConfig(strategy or current.strategy, size,
                                    min(current.overlap_tokens if overlap is None else overlap, size // 2))
                     for size in sizes]
        grid = SweepGrid(chunkings=chunkings, modes=_csv(modes), ks=_csv(ks, int), rrf_ks=_csv(rrf_ks, int),
                         rerankers=_csv(rerankers), query_rewrite=query_rewrite)
        run = create_sweep(target, queries, grid, kb=kb, recipe=recipe)
        outcome = _attached(run.folder / "jobs", f"sweep {run.id}", show,
                            lambda emit, should_stop: execute(target, run.id, emit, should_stop))
        ranked = run.ranked(metric)
    except (StudioError, ValueError) as exc:
        _fail(str(exc))
    if not outcome["finished"]:
        _fail(f"Stopped; the {outcome['done']} settings scored so far are kept in sweep {run.id}.")
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


@kb_app.command("delete")
def kb_delete(project: str, source: str, kb: str = typer.Option("docs")) -> None:
    """Remove a document and its chunks from a knowledge base."""
    from core.rag.kb import KnowledgeBase

    base = KnowledgeBase(_project(project), kb)
    if source not in base.documents():
        _fail(f"'{source}' is not in knowledge base '{kb}'.")
    base.delete_document(source)
    typer.echo(f"Removed '{source}' from '{kb}'.")


bundle_app = typer.Typer(help="Move an assistant between machines: one .zip with a recipe version, its adapter, "
                              "knowledge base, few-shot examples and sample questions.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("export")
def bundle_export(project: str = typer.Argument(..., help="Project name or folder name."),
                  recipe: str = typer.Option("assistant", help="Recipe name."),
                  version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
                  out: Optional[Path] = typer.Option(None, "-o", "--out", help="The .zip to write, or a folder "
                                                     "(default: the project's exports folder).")) -> None:
    """Write an assistant bundle (API keys are never in it: only the names of their variables)."""
    from core.bundle import export_bundle

    proj = _project(project)
    try:
        path = export_bundle(proj, recipe, version, out, lambda fraction, message: typer.echo(
            f"[{fraction:4.0%}] {message}", err=True))
    except StudioError as exc:
        _fail(str(exc))
    typer.echo(f"Wrote {path}")


@bundle_app.command("import")
def bundle_import(path: Path = typer.Argument(..., help="An assistant bundle (.zip)."),
                  name: Optional[str] = typer.Option(None, help="Project name (default: the bundle's).")) -> None:
    """Create a new project from a bundle; every file is checked against the bundle's manifest first."""
    from core.bundle import import_bundle, model_warnings
    from core.workspace import Workspace

    try:
        project = import_bundle(path, Workspace(), name)
    except StudioError as exc:
        _fail(str(exc))
    for warning in model_warnings(project):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"Imported '{project.name}' into {project.path}")



@app.command()
def train(project: str = typer.Argument(..., help="Project name or folder name."),
          config: Optional[Path] = typer.Option(None, "--config", help="Run config JSON (the Fine-tune page shows "
                                                                       "and downloads it)."),
          recipe: str = typer.Option("assistant", help="Recipe whose model and prompt format to train."),
          resume: Optional[str] = typer.Option(None, help="Continue this run id from its checkpoint."),
          add_epochs: int = typer.Option(0, help="With --resume: train this many more epochs.")) -> None:
    """Fine-tune headless: the same run the Fine-tune page starts, in this process.

    Under `accelerate launch` (several GPUs), every process runs this; the first creates the run and speaks.
    """
    import signal

    from core.finetune import runs
    from core.finetune.config import TrainConfig
    from core.finetune.distributed import current_workers
    from core.recipe import RecipeStore

    workers = current_workers()
    target = _project(project)
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
            typer.echo(f"eval loss {event['eval_loss']:.4f} (best {event['best_eval']:.4f})" + _rewards(event, "eval_"))
        elif event.get("message"):
            typer.echo(str(event["message"]))

    try:
        if resume:
            run = runs.get_run(target, resume)
            if add_epochs and workers.is_main:
                run.update_config(epochs=run.config.epochs + add_epochs, max_steps=0)
            workers.barrier()
        else:
            if config is None:
                _fail("Give --config run.json or --resume RUN_ID.")
            try:
                data = json.loads(config.read_text(encoding="utf-8"))
            except OSError as exc:
                _usage(f"Could not read {config}: {exc.strerror or exc}.")
            except ValueError as exc:
                _usage(f"{config} is not valid JSON ({exc}).")
            try:
                settings = TrainConfig.from_dict(data, strict=True)
            except (ValueError, TypeError) as exc:
                _usage(f"{config}: {exc}")
            run_id = runs.create_run(target, settings, RecipeStore(target, recipe).load()).id \
                if workers.is_main else None
            run = runs.get_run(target, workers.broadcast(run_id))
            show(message=f"run {run.id}")
        if workers.is_main:  # recorded as a job of the run, so the Fine-tune page shows it and can cancel it
            result = _attached(run.folder / "jobs", f"finetune {run.id}", show,
                               lambda emit, should_stop: runs.execute(target, run.id, emit, should_stop=should_stop,
                                                                      workers=workers))
        else:
            result = runs.execute(target, run.id, show, should_stop=lambda: stop["requested"], workers=workers)
    except StudioError as exc:
        _fail(str(exc))
    workers.close()
    if workers.is_main:
        typer.echo(json.dumps(result, default=str))
    if workers.sharded:
        # FSDP keeps the process group's threads alive past close(); ending here skips the interpreter teardown, in
        # which they can abort the process ("terminate called without an active exception") after a good run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _rewards(event: dict, prefix: str) -> str:
    margin, accuracy = event.get(prefix + "reward_margin"), event.get(prefix + "reward_accuracy")
    return (f"  margin {margin:+.3f}" if margin is not None else "") + \
        (f"  accuracy {accuracy:.0%}" if accuracy is not None else "")


def _attached(jobs_dir: Path, label: str, show, work):
    """Run `work(emit, should_stop)` in this process as a job the pages can watch and cancel (SIGTERM or Ctrl-C
    stops it cleanly)."""
    import signal

    from core.jobs import Job

    job = Job.attach(jobs_dir, label)
    stop = {"requested": False}
    previous = {number: signal.signal(number, lambda *_: stop.update(requested=True))
                for number in (signal.SIGINT, signal.SIGTERM)}

    def emit(**event) -> None:
        show(**event)
        job.record(**event)

    try:
        result = work(emit, lambda: stop["requested"])
    except StudioError as exc:
        job.record(error=exc.args[0])
        job.finish(1)
        raise
    except BaseException:
        job.finish(1)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    job.finish(0)
    return result


@app.command("eval")
def eval_command(project: str = typer.Argument(..., help="Project name or folder name; 'sample' evaluates the "
                                                         "sample project, setting up its rungs first."),
                 recipe: str = typer.Option("assistant", help="Recipe to evaluate (the ladder is built from it)."),
                 dataset: str = typer.Option("eval", help="Evaluation set."),
                 ladder: bool = typer.Option(False, "--ladder", help="Score every rung of the ladder."),
                 limit: Optional[int] = typer.Option(None, help="Only the first N questions."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Score a recipe (or the whole ladder built from it) on an evaluation set, in this process."""
    from core.evaluate import runs, variants
    from core.recipe import RecipeStore

    def show(**event) -> None:
        if event.get("message"):
            typer.echo(str(event["message"]), err=True)

    try:
        if project == "sample":
            from core import sample

            target = sample.ladder_ready_project(show)
        else:
            target = _project(project)
        current = RecipeStore(target, recipe).load()
        chosen = variants.ladder(target, current) if ladder else [variants.saved_recipe(target, recipe)]
        run = runs.create_eval_run(target, dataset, chosen, runs.EvalOptions(limit=limit))
        result = _attached(run.folder / "jobs", f"eval {run.id}", show,
                           lambda emit, should_stop: runs.execute(target, run.id, emit, should_stop))
    except StudioError as exc:
        _fail(str(exc))
    if not result["finished"]:
        _fail("Stopped; the answers so far are kept. Continue on the Evaluation page.")
    summary = result["summary"]
    rows = [{"variant": v.key, "label": v.label, "ready": v.ready, "missing": str(v.missing or ""),
             **{k: round(x, 4) for k, x in summary.get(v.key, {}).items()}} for v in chosen]
    if as_json:
        typer.echo(json.dumps({"run": run.id, "dataset": dataset, "variants": rows}, ensure_ascii=False, indent=2))
        return
    names = [m for m in ("token_f1", "exact_match", "rouge_l", "semantic_similarity", "hit_at_k", "latency_s")
             if any(m in r for r in rows)]
    typer.echo(f"{'variant':28}" + "".join(f"{n:>21}" for n in names))
    for row in rows:
        cells = "".join(f"{row[n]:>21.3f}" if n in row else f"{'-':>21}" for n in names)
        typer.echo(f"{row['label'][:27]:28}" + (cells if row["ready"] else f"  not set up: {row['missing']}"))


if __name__ == "__main__":
    app()
