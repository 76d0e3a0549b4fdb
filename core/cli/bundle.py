"""`studio bundle export|import`: an assistant as one .zip."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from core.cli import common
from core.errors import StudioError

app = typer.Typer(help="Move an assistant between machines: one .zip with a recipe version, its adapter, "
                       "knowledge base, few-shot examples and sample questions.", no_args_is_help=True)


@app.command("export")
def bundle_export(project: str = typer.Argument(..., help="Project name or folder name."),
                  recipe: str = typer.Option("assistant", help="Recipe name."),
                  version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
                  out: Optional[Path] = typer.Option(None, "-o", "--out", help="The .zip to write, or a folder "
                                                     "(default: the project's exports folder).")) -> None:
    """Write an assistant bundle (API keys are never in it: only the names of their variables)."""
    from core.bundle import export_bundle

    proj = common.open_project(project)
    try:
        path = export_bundle(proj, recipe, version, out, common.progress)
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo(f"Wrote {path}")


@app.command("import")
def bundle_import(path: Path = typer.Argument(..., help="An assistant bundle (.zip)."),
                  name: Optional[str] = typer.Option(None, help="Project name (default: the bundle's).")) -> None:
    """Create a new project from a bundle; every file is checked against the bundle's manifest first."""
    from core.bundle import import_bundle, model_warnings
    from core.workspace import Workspace

    try:
        project = import_bundle(path, Workspace(), name)
    except StudioError as exc:
        common.fail(str(exc))
    for warning in model_warnings(project):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"Imported '{project.name}' into {project.path}")
