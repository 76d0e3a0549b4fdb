"""`studio project create|list`."""

from __future__ import annotations

import json

import typer

from core.cli import common
from core.errors import StudioError

app = typer.Typer(help="Create and list projects.", no_args_is_help=True)


@app.command("create")
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
        common.fail(str(exc))
    typer.echo(f"Created '{project.name}' in {project.path}")


@app.command("list")
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
