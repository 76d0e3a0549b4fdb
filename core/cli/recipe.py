"""`studio recipe show|set`: read a recipe, or change settings and save them as a new recipe version.

The keys are the recipe's own fields (core/recipe.py and the settings dataclasses it holds), written
`section.field` (`fewshot.k`, `retriever.mode`) or `field` for the recipe's top level (`adapter`); a value is
read by the field's type and checked by the dataclass itself, as the pages' widgets are.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import types
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

from core.cli import common
from core.errors import StudioError

app = typer.Typer(help="Show a recipe, or change its settings (each change is saved as a new version).",
                  no_args_is_help=True)

SECTIONS = ("model", "prompt", "fewshot", "generation", "retriever")  # the recipe's fields that hold settings
TOP_LEVEL = ("adapter", "context_window", "tools")                   # set directly on the recipe (not its name)
ALIASES = {"prompt.system": "prompt.system_prompt"}
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
NONE = ("none", "null", "")


@dataclass(frozen=True)
class Key:
    """One settable key: where it lives, how its value is read (bool/int/float/str/tuple/dict), its help."""
    name: str
    section: str | None  # None: a field of the recipe itself
    field: str
    kind: str
    optional: bool       # None is allowed (written none)
    choices: tuple = ()
    help: str = ""


def _kind(hint) -> tuple[str, bool, tuple]:
    """(kind, optional, choices) of a resolved type hint such as `int | None` or `Literal["fixed", ...]`."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
    if typing.get_origin(hint) is typing.Literal:
        return "str", optional, typing.get_args(hint)
    origin = typing.get_origin(hint) or hint
    for kind in (bool, int, float, str, tuple, dict):
        if origin is kind:
            return kind.__name__, optional, ()
    raise TypeError(f"no CLI reader for {hint!r}")


@functools.lru_cache(maxsize=1)
def settable_keys() -> dict[str, Key]:
    """Every key `studio recipe set` takes, in the order `show` prints them."""
    from core.recipe import Recipe

    keys: dict[str, Key] = {}
    recipe_hints = typing.get_type_hints(Recipe)
    for name in TOP_LEVEL:
        kind, optional, choices = _kind(recipe_hints[name])
        keys[name] = Key(name, None, name, kind, optional, choices,
                         Recipe.__dataclass_fields__[name].metadata.get("help", ""))
    for section in SECTIONS:
        cls = recipe_hints[section]
        hints = typing.get_type_hints(cls, include_extras=False)
        for spec in fields(cls):
            kind, optional, choices = _kind(hints[spec.name])
            name = f"{section}.{spec.name}"
            keys[name] = Key(name, section, spec.name, kind, optional, choices, spec.metadata.get("help", ""))
    return keys


def keys_help(between: str = "\n\n") -> str:
    """The settable keys, one paragraph per section, for the `set` help and a bad key's message."""
    by_section: dict[str, list[str]] = {}
    for key in settable_keys().values():
        by_section.setdefault(key.section or "recipe", []).append(key.name)
    aliases = ", ".join(f"{alias} for {target}" for alias, target in ALIASES.items())
    header = f"Settable keys ({aliases}; one entry of a dict as prompt.variables.NAME):"
    return header + (" " if between == "; " else between) + \
        between.join(", ".join(names) for names in by_section.values()) + "."


class _SetCommand(TyperCommand):
    """The settable keys are listed under the help; they are read from the recipe only when help is shown, so
    `import core.cli` loads no recipe (and no numpy)."""

    def format_help(self, ctx, formatter) -> None:
        self.epilog = keys_help()
        super().format_help(ctx, formatter)


# ---- values -----------------------------------------------------------------------------------------------------

def parse_value(key: Key, text: str):
    """A value as the field's type: true/false, whole or decimal numbers, none where the field allows it, JSON
    lists and objects; a text in double quotes is read as JSON text (so "\\n" is a new line)."""
    if key.optional and text.strip().lower() in NONE:
        return None
    if key.kind == "bool":
        word = text.strip().lower()
        if word not in TRUE + FALSE:
            common.usage(f"{key.name} takes true or false, not '{text}'.")
        return word in TRUE
    if key.kind == "int":
        if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            common.usage(f"{key.name} takes a whole number{' or none' if key.optional else ''}, not '{text}'.")
        return int(text)
    if key.kind == "float":
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            common.usage(f"{key.name} takes a number (for example 0.7), not '{text}'.")
        return value
    if key.kind == "str":
        value = _json_text(text)
        if key.choices and value not in key.choices:
            common.usage(f"{key.name} must be one of {', '.join(key.choices)}, not '{value}'.")
        return value
    if key.kind == "tuple":
        if text.lstrip().startswith("["):
            return tuple(_json(key, text, list, "a JSON list"))
        return (_json_text(text),) if text else ()
    return _json(key, text, dict, 'a JSON object (for example {"company": "Acme"})')


def _json_text(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, str) else text
    return text


def _json(key: Key, text: str, wanted: type, described: str):
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, wanted):
        common.usage(f"{key.name} takes {described}, not '{text}'.")
    return value


def show_value(value) -> str:
    """A value as `set` reads it back (texts as they are, unless quoting keeps them on one line)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)
    if isinstance(value, str) and (not value or value != value.strip() or "\n" in value or "\r" in value
                                   or (value[0] == value[-1] == '"' and len(value) > 1)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# ---- changing a recipe ------------------------------------------------------------------------------------------

def parse_assignments(assignments: list[str]) -> list[tuple[str, str]]:
    """KEY=VALUE words as (key, value text), before anything is loaded; a word without '=' is a usage error."""
    found, seen = [], set()
    for item in assignments:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            common.usage(f"Settings are written KEY=VALUE (for example fewshot.k=3), not '{item}'.")
        key = ALIASES.get(key, key)
        if key in seen:
            common.usage(f"{key} is set twice; give each key once.")
        seen.add(key)
        found.append((key, value))
    return found


def apply_settings(recipe, assignments: list[tuple[str, str]]):
    """The recipe with every assignment applied; each settings section is rebuilt once, so its dataclass checks
    the new values together (model.kind=local with model.location=...)."""
    keys = settable_keys()
    changes: dict[str | None, dict] = {}
    for name, text in assignments:
        section, _, entry = name.rpartition(".") if name.count(".") == 2 else (None, None, None)
        if name in keys:
            key = keys[name]
            changes.setdefault(key.section, {})[key.field] = parse_value(key, text)
        elif section in keys and keys[section].kind == "dict" and entry:  # prompt.variables.company=Acme
            key = keys[section]
            current = changes.setdefault(key.section, {}).get(key.field)
            if current is None:
                current = dict(getattr(getattr(recipe, key.section), key.field))
            changes[key.section][key.field] = {**current, entry: _json_text(text)}
        else:
            common.usage(f"Unknown setting '{name}'. {keys_help(between='; ')}")
    try:
        top = changes.pop(None, {})
        sections = {name: replace(getattr(recipe, name), **values) for name, values in changes.items()}
        return recipe.with_changes(**sections, **top)
    except StudioError as exc:
        common.usage(str(exc))


def _check(project, recipe, changed: set[str]) -> None:
    """What the dataclasses cannot check alone: the prompt's template, and an adapter that exists, writes
    answers and was trained on this recipe's model."""
    from core.prompt import check_prompt

    if any(name.startswith("prompt.") for name in changed):
        problems = check_prompt(recipe.prompt).errors
        if problems:
            common.usage(str(problems[0]))
    if recipe.adapter is None or not ("adapter" in changed or any(n.startswith("model.") for n in changed)):
        return
    from core.models.adapters import AdapterRegistry, check_base

    try:
        info = AdapterRegistry(project).get(recipe.adapter)
        if info.is_reward:
            common.usage(f"Adapter '{recipe.adapter}' is a reward model: it scores answers and cannot answer "
                         f"in a recipe.")
        if not recipe.model.trainable:
            common.usage("A model behind an endpoint takes no adapter; set adapter=none or use a local model.")
        if recipe.model.kind == "local" and (Path(recipe.model.location).expanduser() / "config.json").exists():
            check_base(info, Path(recipe.model.location).expanduser())
    except StudioError as exc:
        common.usage(str(exc))


# ---- commands ---------------------------------------------------------------------------------------------------

def _store(project: str, recipe: str):
    from core.recipe import Recipe, RecipeStore

    proj = common.open_project(project)
    try:
        Recipe(name=recipe)  # the name's rules, as one sentence
        return RecipeStore(proj, recipe)
    except StudioError as exc:
        common.usage(f"--recipe: {exc}")


@app.command("show")
def recipe_show(project: str = typer.Argument(..., help="Project name or folder name."),
                recipe: str = typer.Option("assistant", "--recipe", help="Recipe name."),
                version: Optional[int] = typer.Option(None, "--version", help="Version (default: the latest)."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print a recipe: model, adapter, prompt, few-shot, retriever and generation settings."""
    store = _store(project, recipe)
    try:
        versions = store.versions()
        if version is not None:
            chosen = next((v for v in versions if v.number == version), None)
            if chosen is None:
                store.load(version)  # its one-sentence error
        else:
            chosen = versions[-1] if versions else None
        current = chosen.recipe if chosen else store.load()
    except StudioError as exc:
        common.fail(str(exc))
    meta = {"project": store.project.name, "name": store.name, "version": chosen.number if chosen else None,
            "saved_at": chosen.saved_at if chosen else None, "author": chosen.author if chosen else None,
            "note": chosen.note if chosen else None}
    if as_json:
        typer.echo(json.dumps({**meta, "recipe": current.to_dict()}, ensure_ascii=False, indent=2))
        return
    if chosen is None:
        typer.echo(f"Recipe '{store.name}' of {store.project.name}: not saved yet (the defaults).")
    else:
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(chosen.saved_at))
        typer.echo(f"Recipe '{store.name}' of {store.project.name}, version {chosen.number} "
                   f"(saved {saved} by {chosen.author or 'unknown'})")
        if chosen.note:
            typer.echo(f"Note: {chosen.note}")
    typer.echo(f"Model: {current.model.describe()}")
    keys = settable_keys()
    width = max(len(name) for name in keys) + 2
    section = "recipe"
    for key in keys.values():
        if (key.section or "recipe") != section:
            section = key.section
            typer.echo("")
        value = getattr(getattr(current, key.section) if key.section else current, key.field)
        typer.echo(f"{key.name:{width}}{show_value(value)}")


@app.command("set", cls=_SetCommand)
def recipe_set(project: str = typer.Argument(..., help="Project name or folder name."),
               assignments: list[str] = typer.Argument(..., metavar="KEY=VALUE...",
                                                       help="Settings to change, for example fewshot.k=3 "
                                                            "retriever.enabled=true adapter=none."),
               recipe: str = typer.Option("assistant", "--recipe", help="Recipe name."),
               note: str = typer.Option("", "--note", help="Why you changed it (kept in the version history).")
               ) -> None:
    """Change recipe settings and save them as a new version (earlier versions stay). Values: true/false,
    numbers, none, JSON lists and objects, or text ("..." in double quotes is read as JSON text)."""
    parsed = parse_assignments(assignments)
    store = _store(project, recipe)
    try:
        latest = store.latest()
        current = latest.recipe if latest else store.load()
    except StudioError as exc:
        common.fail(str(exc))
    changed = apply_settings(current, parsed)
    _check(store.project, changed, {name for name, _ in parsed})
    if latest is not None and changed.to_dict() == latest.recipe.to_dict():
        typer.echo(f"Nothing changed: recipe '{store.name}' stays at version {latest.number}.")
        return
    try:
        number = store.save(changed, note=note or "studio recipe set " + " ".join(name for name, _ in parsed))
    except StudioError as exc:
        common.fail(str(exc))
    typer.echo(f"Saved recipe '{store.name}' version {number}.")
