"""`python -m core.cli` (what `accelerate launch -m core.cli train ...` runs) is the `studio` command."""

from core.cli import app

app(prog_name="studio")
