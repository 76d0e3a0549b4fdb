"""Names never escape the project: every store refuses hostile names on every operation, not only on create,
and the plain names people use (spaces, Vietnamese letters, dots inside) keep working."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core import cli
from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError
from core.workspace import UnsafeNameError, check_name

HOSTILE = ["../x", "a/b", "..", "a\\b", "\x00", "a\x00b", "", ".", "   ", "/etc/passwd", "../../other/datasets/victim",
           ".hidden", "tab\there", "x" * 101]


def _dataset(project):
    return DatasetStore(project)


def _adapter_register(project, name):
    from core.finetune.adapters import register

    register(project, name, None, None, {})


def _kb(project, name):
    from core.rag.kb import KnowledgeBase

    return KnowledgeBase(project, name)


def _registry(project):
    from core.models.adapters import AdapterRegistry

    return AdapterRegistry(project)


def _recipe(project, name):
    from core.recipe import RecipeStore

    return RecipeStore(project, name).versions()


def _finetune_run(project, name):
    from core.finetune.runs import get_run

    return get_run(project, name)


def _eval_run(project, name):
    from core.evaluate.runs import get_eval_run

    return get_eval_run(project, name)


def _sweep(project, name):
    from core.evaluate.sweep import get_sweep

    return get_sweep(project, name)


def _reindex(project, name):
    from core.evaluate.sweep import start_reindex
    from core.rag.chunking import ChunkingConfig

    return start_reindex(project, name, ChunkingConfig())


def _bundle_export(project, name):
    from core.bundle import export_bundle

    return export_bundle(project, recipe_name=name)


def _dataset_export_folder(project, name):
    from core.data import formats

    return formats.export_folder(project, name, 1)


OPERATIONS = {
    "dataset create": lambda p, n: _dataset(p).create(n, "sft"),
    "dataset exists": lambda p, n: _dataset(p).exists(n),
    "dataset load": lambda p, n: _dataset(p).load(n),
    "dataset info": lambda p, n: _dataset(p).info(n),
    "dataset versions": lambda p, n: _dataset(p).versions(n),
    "dataset latest version": lambda p, n: _dataset(p).latest_version(n),
    "dataset save": lambda p, n: _dataset(p).save(n, [], base_version=1),
    "dataset delete": lambda p, n: _dataset(p).delete(n),
    "recipe versions": _recipe,
    "knowledge base": _kb,
    "adapter exists": lambda p, n: _registry(p).exists(n),
    "adapter get": lambda p, n: _registry(p).get(n),
    "adapter rename": lambda p, n: _registry(p).rename(n, "new label"),
    "adapter delete": lambda p, n: _registry(p).delete(n),
    "adapter register": _adapter_register,
    "training run": _finetune_run,
    "evaluation run": _eval_run,
    "retrieval sweep": _sweep,
    "re-index job": _reindex,
    "bundle export": _bundle_export,
    "dataset export folder": _dataset_export_folder,
}


@pytest.fixture
def victim(workspace):
    """Another project with a dataset, which no name used in the first project may reach."""
    other = workspace.create("Other")
    DatasetStore(other).create("victim", "sft", [new_record("sft", prompt="q", response="a")])
    return other


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
@pytest.mark.parametrize("operation", list(OPERATIONS), ids=str)
def test_every_store_refuses_hostile_names_on_every_operation(project, victim, name, operation):
    before = sorted(p.relative_to(victim.path) for p in victim.path.rglob("*"))
    with pytest.raises(StudioError) as raised:
        OPERATIONS[operation](project, name)
    assert str(raised.value) and "\n" not in str(raised.value)  # one sentence for the user
    assert sorted(p.relative_to(victim.path) for p in victim.path.rglob("*")) == before
    assert DatasetStore(victim).latest_version("victim") == 1


def test_a_link_planted_in_the_project_does_not_lead_out(project, victim):
    (project.subdir("datasets") / "victim").symlink_to(victim.path / "datasets" / "victim")
    with pytest.raises(UnsafeNameError, match="outside the project"):
        DatasetStore(project).exists("victim")


@pytest.mark.parametrize("name", ["FAQ pairs", "Câu hỏi thường gặp", "faq.v2", "my-data_1", "x" * 60])
def test_plain_dataset_names_keep_working(project, name):
    store = DatasetStore(project)
    store.create(name, "sft", [new_record("sft", prompt="q", response="a")])
    assert store.exists(name) and store.names() == [name]
    records, number = store.load(name)
    assert number == 1 and records[0]["prompt"] == "q"
    assert store.save(name, records, base_version=1) == 2
    store.delete(name)
    assert not store.exists(name)


def test_deleted_datasets_being_removed_are_not_listed(project):
    store = DatasetStore(project)
    store.create("faq", "sft")
    trash = project.subdir("datasets") / ".faq.deleting"
    (project.subdir("datasets") / "faq").rename(trash)
    assert store.names() == []


@pytest.mark.parametrize("name", ["docs", "Câu hỏi", "run 2024-01-01", "a.b", "x" * 100])
def test_check_name_accepts_plain_names(name):
    assert check_name("dataset", name) == name


def test_the_refusal_names_the_kind_and_shows_invisible_characters(project):
    with pytest.raises(UnsafeNameError, match=r"'a\\x00b' cannot be a dataset name"):
        DatasetStore(project).exists("a\x00b")


def test_cli_data_import_cannot_write_into_another_project(project, victim, tmp_path):
    source = tmp_path / "f.jsonl"
    source.write_text(json.dumps({"prompt": "Do you ship?", "response": "Yes."}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["data", "import", project.name, str(source), "--name",
                                          f"../../{victim.slug}/datasets/victim"])
    assert result.exit_code == 1, result.output
    assert "cannot be a dataset name" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert DatasetStore(victim).latest_version("victim") == 1
    assert DatasetStore(project).names() == []

