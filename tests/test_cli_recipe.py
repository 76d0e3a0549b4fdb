"""`studio recipe show|set`: the recipe read and changed from the command line, each change a new version."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core import cli
from core.cli import recipe as recipe_cli
from core.recipe import Recipe, RecipeStore

runner = CliRunner()


def studio(*args: str):
    return runner.invoke(cli.app, list(args))


def shown(project: str, *options: str) -> dict:
    result = studio("recipe", "show", project, "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def key_values(output: str) -> dict[str, str]:
    """The KEY VALUE lines of `recipe show`."""
    pairs = [line.split(None, 1) for line in output.splitlines()]
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2 and pair[0] in recipe_cli.settable_keys()}


def test_show_set_show_round_trip(workspace):
    workspace.create("Shop")
    before = shown("Shop")
    assert before["version"] is None and before["recipe"] == Recipe().to_dict()  # nothing saved yet: the defaults

    result = studio("recipe", "set", "Shop", 'prompt.system=You are terse. Answer in "one" line.',
                    "prompt.variables.company=Lumen Bikes", "fewshot.enabled=true", "fewshot.k=3",
                    "retriever.enabled=yes", "retriever.k=5", "retriever.mode=hybrid",
                    "generation.max_new_tokens=120", "generation.temperature=0", 'generation.stop=["\\n\\n", "Q:"]',
                    "context_window=none", "adapter=none", "--note", "shorter answers")
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output

    after = shown("Shop")
    assert (after["version"], after["note"]) == (1, "shorter answers")
    saved = RecipeStore(workspace.get("Shop")).load()
    assert saved.prompt.system_prompt == 'You are terse. Answer in "one" line.'
    assert saved.prompt.variables == {"company": "Lumen Bikes"}
    assert (saved.fewshot.enabled, saved.fewshot.k) == (True, 3)
    assert (saved.retriever.enabled, saved.retriever.k, saved.retriever.mode) == (True, 5, "hybrid")
    assert (saved.generation.max_new_tokens, saved.generation.temperature) == (120, 0.0)
    assert saved.generation.stop == ("\n\n", "Q:")
    assert saved.context_window is None and saved.adapter is None
    assert after["recipe"] == saved.to_dict()
    # everything not set is as it was
    assert after["recipe"]["model"] == before["recipe"]["model"]
    assert after["recipe"]["fewshot"]["strategy"] == before["recipe"]["fewshot"]["strategy"]

    text = studio("recipe", "show", "Shop")
    assert text.exit_code == 0, text.output
    assert "version 1" in text.output and "Note: shorter answers" in text.output
    lines = key_values(text.output)
    assert lines["fewshot.enabled"] == "true" and lines["retriever.k"] == "5" and lines["context_window"] == "none"
    assert lines["generation.stop"] == '["\\n\\n", "Q:"]'


def test_what_show_prints_sets_the_same_recipe_again(workspace):
    """Every line of `show` is KEY VALUE in the form `set` reads: setting them all changes nothing."""
    project = workspace.create("Shop")
    RecipeStore(project).save(Recipe().with_changes(context_window=2048))
    pairs = key_values(studio("recipe", "show", "Shop").output)
    assert list(pairs) == list(recipe_cli.settable_keys())
    result = studio("recipe", "set", "Shop", *[f"{key}={value}" for key, value in pairs.items()])
    assert result.exit_code == 0, result.output
    assert "Nothing changed" in result.output and "version 1" in result.output
    assert len(RecipeStore(project).versions()) == 1


def test_each_set_saves_the_next_version_and_keeps_its_note(workspace):
    project = workspace.create("Shop")
    assert studio("recipe", "set", "Shop", "fewshot.k=2").exit_code == 0
    assert studio("recipe", "set", "Shop", "fewshot.k=4", "--note", "more examples").exit_code == 0
    result = studio("recipe", "set", "Shop", "generation.temperature=0.7", "--recipe", "creative")
    assert result.exit_code == 0 and "'creative' version 1" in result.output
    versions = RecipeStore(project).versions()
    assert [(v.number, v.recipe.fewshot.k) for v in versions] == [(1, 2), (2, 4)]
    assert versions[1].note == "more examples"
    assert versions[0].note == "studio recipe set fewshot.k"  # no note given: what was set
    assert shown("Shop", "--version", "1")["recipe"]["fewshot"]["k"] == 2
    assert shown("Shop", "--recipe", "creative")["recipe"]["generation"]["temperature"] == 0.7
    unchanged = studio("recipe", "set", "Shop", "fewshot.k=4")
    assert unchanged.exit_code == 0 and "stays at version 2" in unchanged.output
    assert len(RecipeStore(project).versions()) == 2


def test_an_adapter_is_attached_by_its_run_id(workspace):
    from core.models import adapters

    project = workspace.create("Shop")
    folder = project.path / "adapters" / "run-1"
    folder.mkdir(parents=True)
    (folder / adapters.MANIFEST).write_text(json.dumps({"config": {"method": "lora"}, "base_model": {}}))
    assert studio("recipe", "set", "Shop", "adapter=run-1").exit_code == 0
    assert RecipeStore(project).load().adapter == "run-1"
    assert studio("recipe", "set", "Shop", "adapter=none").exit_code == 0
    assert RecipeStore(project).load().adapter is None
    (folder / adapters.MANIFEST).write_text(json.dumps({"config": {"method": "lora", "objective": "reward"}}))
    result = studio("recipe", "set", "Shop", "adapter=run-1")
    assert result.exit_code == 2 and "reward model" in result.output


BAD = [
    (["fewshot.k"], "written KEY=VALUE"),
    (["=3"], "written KEY=VALUE"),
    (["nope=1"], "Unknown setting 'nope'"),
    (["fewshot.nope=1"], "Settable keys"),
    (["prompt.nope.x=1"], "Unknown setting"),
    (["fewshot.k=abc"], "fewshot.k takes a whole number"),
    (["fewshot.k=2.5"], "whole number"),
    (["fewshot.k=99"], "between 0 and 50"),
    (["fewshot.enabled=maybe"], "takes true or false"),
    (["fewshot.strategy=best"], "must be one of fixed, random, semantic, mmr"),
    (["fewshot.mmr_lambda=nan"], "takes a number"),
    (["retriever.mode=fuzzy"], "Unknown search mode 'fuzzy'"),
    (["retriever.k=0"], "between 1 and 20"),
    (["generation.temperature=5"], "Temperature must be between 0 and 2"),
    (["generation.max_new_tokens=none"], "whole number"),
    (["context_window=10"], "at least 64 tokens"),
    (["prompt.variables=[1]"], "takes a JSON object"),
    (["prompt.template=no question here"], "must contain {question}"),
    (["tools=[1]"], "is not a JSON object"),
    (["model.kind=local"], "Enter where the model is"),
    (["adapter=ghost"], "Adapter 'ghost' not found"),
    (["fewshot.k=1", "fewshot.k=2"], "set twice"),
    (["fewshot.k=1", "--recipe", "../x"], "--recipe"),
]


@pytest.mark.parametrize("arguments, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_settings_are_one_sentence_and_exit_2(workspace, arguments, message):
    project = workspace.create("Shop")
    result = studio("recipe", "set", "Shop", *arguments)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert RecipeStore(project).versions() == []  # nothing saved


def test_set_help_lists_the_settable_keys_and_missing_things_exit_1():
    result = studio("recipe", "set", "--help")
    assert result.exit_code == 0
    for key in ("prompt.system_prompt", "fewshot.k", "retriever.mode", "generation.max_new_tokens", "adapter"):
        assert key in result.output
    assert studio("recipe", "show", "missing").exit_code == 1
    assert studio("recipe", "set", "missing", "fewshot.k=1").exit_code == 1


def test_show_an_unknown_version_exits_1(workspace):
    workspace.create("Shop")
    result = studio("recipe", "show", "Shop", "--version", "3")
    assert result.exit_code == 1 and "has no version 3" in result.output


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"), ('"two\\nlines"', "two\nlines"), ('"unclosed', '"unclosed'), ('""', ""),
])
def test_text_values(text, expected):
    key = recipe_cli.settable_keys()["prompt.system_prompt"]
    assert recipe_cli.parse_value(key, text) == expected
    assert recipe_cli.parse_value(key, recipe_cli.show_value(expected)) == expected
