"""`studio run`, `demo`, `generate` and `serve`: the studio, a stakeholder demo, one answer, an endpoint."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from core.cli import common, quiet
from core.errors import StudioError


def run(port: int = typer.Option(8501, help="Port to serve on."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps the studio on this machine."),
        open_browser: bool = typer.Option(False, "--open/--no-open", help="Open a browser tab.")) -> None:
    """Start the studio in the browser."""
    from core.hosts import streamlit_flags

    typer.echo(f"Studio: http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}  "
               f"(projects in {os.environ.get('STUDIO_HOME') or Path.home() / '.llm-studio'})")
    command = [sys.executable, "-m", "streamlit", "run", str(common.APP_PATH), "--server.address", host,
               "--server.port", str(port), "--server.headless", str(not open_browser).lower(),
               "--server.maxUploadSize", "256", "--browser.gatherUsageStats", "false", "--client.toolbarMode",
               "minimal", *streamlit_flags(host)]
    raise typer.Exit(common.run_child(command, env=quiet.child_environment()))


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
        target = common.open_project(project)
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
            registry.model_folder(recipe_obj.model, common.progress)
    except StudioError as exc:
        common.fail(str(exc))
    import socket

    shown = "localhost" if is_loopback(host) else socket.gethostname() if host in ("0.0.0.0", "::") else host
    typer.echo(f"Demo of '{target.name}', recipe {recipe_obj.name} v{number}: http://{shown}:{port}"
               + ("  (password protected)" if settings.protected else ""))
    environment = quiet.child_environment(demo_module.server_environment(target, settings))
    environment.pop(demo_module.PASSWORD_ENV, None)  # only the hash travels on
    raise typer.Exit(common.run_child(demo_module.streamlit_command(common.APP_PATH, host, port, settings),
                                      env=environment))


def generate(project: str = typer.Argument(..., help="Project name or folder name."),
             question: str = typer.Argument(..., help="The question to answer."),
             recipe: str = typer.Option("assistant", help="Recipe name."),
             version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
             max_new_tokens: Optional[int] = typer.Option(None, help="Override the recipe's max new tokens."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming.")) -> None:
    """Answer a question with a project's recipe (streams to the terminal)."""
    from dataclasses import replace

    from core import assistant
    from core.recipe import RecipeStore
    from core.workspace import Workspace

    try:
        proj = Workspace().get(project)
        chosen = RecipeStore(proj, recipe).load(version)
        if max_new_tokens:
            chosen = chosen.with_changes(generation=replace(chosen.generation, max_new_tokens=max_new_tokens))
        backend = assistant.recipe_backend(proj, chosen, common.progress)
        prepared, stream = assistant.answer(chosen, question, backend, assistant.example_pool(proj, chosen), proj)
        if as_json:
            stream.run_to_end()
        else:
            for piece in stream:
                typer.echo(piece, nl=False)
            typer.echo()
    except StudioError as exc:
        common.fail(str(exc))
    if as_json:
        latest = RecipeStore(proj, recipe).latest()
        typer.echo(json.dumps({"project": proj.name, "recipe": chosen.name,
                               "recipe_version": version or (latest.number if latest else None),
                               "question": question, "answer": stream.text, "examples_used": len(prepared.examples),
                               **stream.stats()}, ensure_ascii=False))


def serve(project: str = typer.Argument(..., help="Project name or folder name."),
          recipe: str = typer.Option("assistant", help="Recipe name."),
          version: Optional[int] = typer.Option(None, help="Recipe version (default: latest)."),
          host: str = typer.Option("127.0.0.1", help="Address to bind; another than 127.0.0.1 needs --api-key-env."),
          port: int = typer.Option(8000, help="Port to serve on."),
          api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Name of the environment variable "
                                                    "holding the API key clients must send as a Bearer token.")) -> None:
    """Serve a saved recipe as an OpenAI-compatible endpoint (/v1/chat/completions)."""
    from core.hosts import allowed_hosts
    from core.serving import openai_api
    from core.workspace import Workspace

    try:
        proj = Workspace().get(project)
        api_key = openai_api.api_key_from_env(api_key_env)
        openai_api.check_host(host, api_key)
        server_app = openai_api.create_app(proj, recipe, version, api_key, common.progress,
                                           allowed_hosts=allowed_hosts(host))
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo(f"Serving '{server_app.state.served.model_id}' at {openai_api.base_url(host, port)}"
               f"{'  (API key required)' if api_key else ''}")
    openai_api.serve(server_app, host, port)
