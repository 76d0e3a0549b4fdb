"""`studio` command line. The pages and these commands call the same core functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from core.errors import StudioError

app = typer.Typer(help="LLM Customization Studio: customize a language model step by step.", no_args_is_help=True)
project_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)
app.add_typer(project_app, name="project")
APP_PATH = Path(__file__).resolve().parent.parent / "studio" / "app.py"


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@app.command()
def run(port: int = typer.Option(8501, help="Port to serve on."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps the studio on this machine."),
        open_browser: bool = typer.Option(False, "--open/--no-open", help="Open a browser tab.")) -> None:
    """Start the studio in the browser."""
    typer.echo(f"Studio: http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}  "
               f"(projects in {os.environ.get('STUDIO_HOME') or Path.home() / '.llm-studio'})")
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.address", host,
               "--server.port", str(port), "--server.headless", str(not open_browser).lower(),
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    raise typer.Exit(subprocess.call(command))


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
    from core.models.registry import get_backend
    from core.recipe import RecipeStore
    from core.workspace import Workspace

    try:
        proj = Workspace().get(project)
        chosen = RecipeStore(proj, recipe).load(version)
        if max_new_tokens:
            chosen = chosen.with_changes(generation=replace(chosen.generation, max_new_tokens=max_new_tokens))

        def progress(fraction: float, message: str) -> None:
            typer.echo(f"[{fraction:4.0%}] {message}", err=True)

        backend = get_backend(chosen.model, progress)
        prepared, stream = assistant.answer(chosen, question, backend, assistant.example_pool(proj, chosen))
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


if __name__ == "__main__":
    app()
