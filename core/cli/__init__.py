"""`studio` command line. The pages and these commands call the same core functions.

One module per command group; each imports only typer and light core modules at the top and loads heavy
libraries inside its commands, so `studio --help`, `project`, `data` and `kb` never load the LLM.
"""

from __future__ import annotations

from core.cli import quiet  # noqa: F401  first: its settings must precede every library import

import typer
from typer.core import TyperGroup

from core.cli import bundle, data, evaluate, kb, model, project, recipe, studio_cmds, train
from core.errors import StudioError


class _StudioGroup(TyperGroup):
    """A StudioError no command caught still ends as its one sentence (exit 1), never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StudioError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None


app = typer.Typer(cls=_StudioGroup, help="LLM Customization Studio: customize a language model step by step.",
                  no_args_is_help=True)
app.command()(studio_cmds.run)
app.command()(studio_cmds.demo)
app.add_typer(project.app, name="project")
app.add_typer(recipe.app, name="recipe")
app.command()(studio_cmds.generate)
app.command()(studio_cmds.serve)
app.add_typer(data.app, name="data")
app.add_typer(kb.app, name="kb")
app.add_typer(bundle.app, name="bundle")
app.command()(train.train)
app.command("eval")(evaluate.eval_command)
app.command()(model.export)
app.command()(model.engine)

__all__ = ["app"]
