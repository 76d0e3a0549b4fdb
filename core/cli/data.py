"""`studio data list|import|export|check|split|draft`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from core.cli import common
from core.errors import StudioError

app = typer.Typer(help="Import, check, split and export datasets.", no_args_is_help=True)


@app.command("list")
def data_list(project: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List a project's datasets."""
    from core.data.store import DatasetStore

    datasets = DatasetStore(common.open_project(project)).list()
    rows = [{"name": d.name, "kind": d.kind, "rows": d.latest.rows if d.latest else 0,
             "version": d.latest.number if d.latest else None} for d in datasets]
    typer.echo(json.dumps(rows, ensure_ascii=False, indent=2) if as_json else
               "\n".join(f"{r['name']:30} {r['kind']:10} {r['rows']:6} rows  v{r['version']}" for r in rows))


def _parse_maps(mapping: list[str]) -> dict[str, str]:
    bad = [item for item in mapping if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        common.usage(f"--map takes field=column (for example --map prompt=question), not '{bad[0]}'.")
    return dict(item.split("=", 1) for item in mapping)


@app.command("import")
def data_import(project: str, path: Path = typer.Argument(..., help="File or datasets folder."),
                name: Optional[str] = typer.Option(None, help="Dataset name (default: the file name)."),
                kind: Optional[str] = typer.Option(None, help="sft, chat, preference or eval (default: detected)."),
                mapping: list[str] = typer.Option([], "--map", help="field=column, repeatable.")) -> None:
    """Import a file into a new dataset or append it to an existing one (a new version either way)."""
    from core.data import formats
    from core.data.records import KINDS
    from core.data.store import DatasetStore

    common.one_of("--kind", kind, KINDS)
    given = _parse_maps(mapping)
    proj = common.open_project(project)
    try:
        source = formats.read_source(path, path.name)
        chosen_kind = kind or formats.detect_kind(source)
        unknown = [field for field in given if field not in formats.MAPPING_FIELDS[chosen_kind]]
        if unknown:
            common.usage(f"--map: {chosen_kind} records have no field '{unknown[0]}'; use "
                         f"{', '.join(formats.MAPPING_FIELDS[chosen_kind])}.")
        fields = {**formats.propose_mapping(source, chosen_kind), **given}
        result = formats.apply_mapping(source, chosen_kind, fields)
        store = DatasetStore(proj)
        target = name or path.stem
        if store.exists(target):
            records, base = store.load(target)
            number = store.save(target, records + result.records, base, note=f"Imported {path.name}")
        else:
            number = store.create(target, chosen_kind, result.records, note=f"Imported {path.name}")
    except StudioError as exc:
        common.fail(str(exc))
    for problem in result.problems[:50]:
        typer.echo(f"warning: {problem}", err=True)
    typer.echo(f"Imported {len(result.records)} {chosen_kind} records into '{target}' (version {number}).")


@app.command("export")
def data_export(project: str, name: str,
                fmt: Optional[str] = typer.Option(None, "--format", help="Export format (default: jsonl, or the "
                                                                        "first one the dataset's kind has)."),
                out: Path = typer.Option(..., "--out", help="File (or folder for hf_folder)."),
                version: Optional[int] = typer.Option(None)) -> None:
    """Export a dataset version (rejected records left out)."""
    from core.data import formats
    from core.data.store import DatasetStore

    common.one_of("--format", fmt, dict.fromkeys(f for kind_formats in formats.EXPORT_FORMATS.values()
                                                 for f in kind_formats))
    store = DatasetStore(common.open_project(project))
    try:
        records, number = store.load(name, version)
        kind = store.kind(name)
        available = formats.EXPORT_FORMATS[kind]
        fmt = fmt or ("jsonl" if "jsonl" in available else available[0])
        if fmt not in available:
            common.fail(f"Format '{fmt}' is not available for {kind}; choose one of {', '.join(available)}.")
        kept = [r for r in records if r.get("status") != "rejected"]
        payload = formats.export_records(kept, kind, fmt, out if fmt == "hf_folder" else None)
        if fmt != "hf_folder":
            out.write_bytes(payload)
    except StudioError as exc:
        common.fail(str(exc))
    except OSError as exc:
        common.fail(f"Could not write {out}: {exc.strerror or exc}.")
    typer.echo(f"Exported {len(kept)} records of '{name}' version {number} to {out}.")


@app.command("check")
def data_check(project: str, name: str,
               against: Optional[str] = typer.Option(None, help="Dataset to test leakage against."),
               purpose: str = typer.Option("training", help="training, fewshot or eval."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Pre-flight checks: duplicates, leakage, empty fields, label balance, too few examples."""
    from core.data import checks
    from core.data.store import DatasetStore

    common.one_of("--purpose", purpose, checks.PURPOSES)
    store = DatasetStore(common.open_project(project))
    try:
        records, number = store.load(name)
        extra = {"eval_records": store.load(against)[0], "eval_kind": store.kind(against)} if against else {}
        report = checks.run_checks(records, store.kind(name), purpose=purpose, **extra)
    except StudioError as exc:
        common.fail(str(exc))
    payload = {"dataset": name, "version": number, "ok": report.ok,
               "findings": [{"code": f.code, "severity": f.severity, "message": str(f.message),
                             "records": list(f.record_ids)} for f in report.findings],
               "advice": [str(a) for a in report.advice], "label_counts": report.label_counts}
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        rows = {record.get("id"): number for number, record in enumerate(records, start=1)}
        for finding in payload["findings"]:
            typer.echo(f"{finding['severity']:8} {finding['message']}")
            if finding["records"]:
                typer.echo(" " * 9 + _which_records(finding["records"], rows))
        for advice in payload["advice"]:
            typer.echo(f"advice   {advice}")
        typer.echo("OK" if report.ok else "Problems found.")
    if not report.ok:
        raise typer.Exit(code=2)


@app.command("split")
def data_split(project: str, name: str, eval_fraction: float = typer.Option(0.2), seed: int = typer.Option(42),
               stratify: bool = typer.Option(False)) -> None:
    """Assign records to train/eval with a seed; saved as a new version."""
    from core.data import split
    from core.data.store import DatasetStore

    if not 0 < eval_fraction <= split.MAX_EVAL_FRACTION:
        common.usage(f"--eval-fraction must be more than 0 and at most {split.MAX_EVAL_FRACTION}, "
                     f"not {eval_fraction}.")
    store = DatasetStore(common.open_project(project))
    try:
        records, base = store.load(name)
        done = split.split_records(records, eval_fraction, seed, stratify, store.kind(name))
        number = store.save(name, done, base, note=f"Split eval={eval_fraction}, seed={seed}")
    except StudioError as exc:
        common.fail(str(exc))
    counts = split.split_summary(done)
    typer.echo(f"Version {number}: {counts.get('train', 0)} train, {counts.get('eval', 0)} eval.")


def _which_records(ids: list[str], rows: dict) -> str:
    """"records: row 3 (id a1b2), row 7 (id c3d4)": which records a finding is about, by row and id."""
    shown = [f"row {rows[i]} (id {i})" if i in rows else f"id {i}" for i in ids[:8]]
    more = f" and {len(ids) - 8} more" if len(ids) > 8 else ""
    return "records: " + ", ".join(shown) + more


@app.command("draft")
def data_draft(project: str,
               kb: str = typer.Option("docs", help="Knowledge base whose passages the pairs are drafted from."),
               count: int = typer.Option(50, help="How many pairs to draft."),
               dataset: str = typer.Option("drafted", help="Training-pair dataset to add them to (created if "
                                                           "missing)."),
               seed: int = typer.Option(0, help="Which passages and answers are picked."),
               endpoint: Optional[str] = typer.Option(None, help="Base URL of an OpenAI-compatible endpoint that "
                                                                 "writes the questions (default: the recipe's model)."),
               model: Optional[str] = typer.Option(None, help="The endpoint's model name."),
               api_key_env: str = typer.Option("", help="Environment variable holding the endpoint's key."),
               writer: str = typer.Option("model", help="'model': the recipe's model (or --endpoint) writes the "
                                                       "questions; 'cloze': each is the sentence that states the "
                                                       "answer with the answer blanked out (no model, seconds).")
               ) -> None:
    """Draft training pairs from documents: suggestions to accept in the labeling queue (Labeling page)."""
    if count < 1:
        common.usage("--count must be at least 1.")
    if endpoint and not model:
        common.usage("--endpoint needs --model (the name the endpoint serves).")
    from core.rag import drafting
    from core.models.embedder import embed
    from core.models.source import ModelSource
    from core.recipe import RecipeStore

    proj = common.open_project(project)
    try:
        settings = drafting.DraftSettings(kb, count, seed, writer=writer)
        source = ModelSource(kind="openai", location=endpoint, model_name=model, api_key_env=api_key_env) \
            if endpoint else RecipeStore(proj).load().model
        backend = drafting.writer_backend(proj, source) if writer == "model" else None
        result = drafting.draft_into_dataset(proj, backend, settings, dataset, common.progress, embed=embed)
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo(f"Drafted {result.drafted} pairs into '{result.dataset}' (version {result.version}); "
               f"{result.rejected_as_leaks} rejected as too close to an evaluation question. Review them on the "
               f"Labeling page.")
