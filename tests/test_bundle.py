"""Assistant bundles: export a recipe with its adapter, knowledge base and examples, import it as a new project, and
refuse tampered or malicious archives without leaving anything behind."""

from __future__ import annotations

import json
import stat
import unicodedata
import warnings
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core import cli
from core.bundle import export_bundle, import_bundle, layout, model_ref, model_warnings
from core.data.pairs import load_pairs, save_pairs
from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError
from core.fewshot import FewShotSettings
from core.finetune import runs
from core.finetune.config import TrainConfig
from core.models.adapters import AdapterRegistry, check_base
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from core.rag.kb import KnowledgeBase
from core.rag.retriever import RetrieverSettings
from core.recipe import Recipe, RecipeStore
from core.workspace import Workspace

HANDBOOK = """# Handbook

## Opening hours
The shop opens at nine in the morning and closes at six in the evening.

## Returns
Bikes can be returned within thirty days with the receipt.

## Warranty
Frames have a ten-year warranty against defects.
"""
PAIRS = [("When do orders ship?", "Within two business days."), ("How do I reset my password?", "Open settings."),
         ("When are refunds processed?", "Within five days."), ("Thủ đô của Việt Nam là gì?", "Hà Nội."),
         ("Where do fish swim?", "In the river."), ("What do birds do?", "They sing in the morning.")]
QUESTIONS = ["When does the shop open?", "How long is the frame warranty?", "Can I return a bike?"]


def simple_project(project, folder, **recipe_changes) -> Recipe:
    """A recipe on a tiny local model, few-shot examples and an eval set."""
    save_pairs(project, "examples", [{"prompt": q, "response": a} for q, a in PAIRS])
    DatasetStore(project).create("eval", "eval", [new_record("eval", question=q, reference="ref") for q in QUESTIONS])
    recipe = Recipe(model=ModelSource(kind="local", location=str(folder)),
                    fewshot=FewShotSettings(enabled=True, dataset="examples", k=2),
                    generation=GenerationSettings(temperature=0.0, max_new_tokens=4), **recipe_changes)
    RecipeStore(project).save(recipe, note="first")
    return recipe


@pytest.fixture
def full_project(project, tiny_model_dir, fake_embedder):
    """Recipe version 2 with a trained LoRA adapter, a knowledge base and few-shot examples."""
    folder = tiny_model_dir("llama")
    recipe = simple_project(project, folder)
    DatasetStore(project).create("pairs", "sft", [new_record("sft", prompt=q, response=a) for q, a in PAIRS * 2])
    config = TrainConfig(dataset="pairs", method="lora", epochs=1, batch_size=4, learning_rate=5e-3, lora_rank=4,
                         lora_alpha=8, max_length=64, eval_fraction=0.2, precision="fp32")
    run = runs.create_run(project, config, recipe)
    assert runs.execute(project, run.id, lambda **e: None)["finished"]
    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("handbook.md", HANDBOOK.encode())]))
    RecipeStore(project).save(recipe.with_changes(adapter=run.id, retriever=RetrieverSettings(
        enabled=True, knowledge_base="docs", k=2, min_similarity=0.0)), note="with adapter and documents")
    return project


def hits(kb, query, mode):
    return [(h.chunk_id, h.source, h.page, h.heading, h.text, round(h.score, 5)) for h in kb.search(query, mode, 3)]


def test_round_trip_keeps_recipe_adapter_knowledge_base_and_examples(full_project, workspace, tmp_path):
    archive = export_bundle(full_project, "assistant", None, tmp_path)
    assert archive == tmp_path / "test-project-assistant-v2.zip"
    other = Workspace(tmp_path / "elsewhere")
    imported = import_bundle(archive, other)
    assert imported.name == "Test project" and imported.path.parent == other.projects_dir

    original = RecipeStore(full_project).load(2)
    [version] = RecipeStore(imported).versions()
    assert version.number == 1 and version.recipe.to_dict() == original.to_dict()
    assert "version 2 of 'Test project'" in version.note

    info = AdapterRegistry(imported).get(original.adapter)
    source = AdapterRegistry(full_project).get(original.adapter)
    assert info.manifest == source.manifest
    assert {p.name: p.read_bytes() for p in info.folder.iterdir()} == \
        {p.name: p.read_bytes() for p in source.folder.iterdir()}
    check_base(info, Path(original.model.location))  # the same base model: accepted

    old_kb, new_kb = KnowledgeBase(full_project, "docs"), KnowledgeBase(imported, "docs")
    assert new_kb.documents() == old_kb.documents() and new_kb.chunking() == old_kb.chunking()
    assert (new_kb.documents_dir / "handbook.md").read_text() == HANDBOOK
    assert new_kb.uri == str(imported.path / "indexes" / "lancedb")
    for query in ("When does the shop open in the morning?", "warranty defects", "thirty days receipt"):
        for mode in ("vector", "fts", "hybrid"):
            assert hits(new_kb, query, mode) == hits(old_kb, query, mode) != []

    assert load_pairs(imported, "examples") == load_pairs(full_project, "examples")
    samples, _ = DatasetStore(imported).load(layout.SAMPLES_DATASET)
    assert [r["question"] for r in samples] == QUESTIONS  # eval questions come before training pairs
    assert model_warnings(imported) == []  # the same model folder is on this machine
    assert not [p for p in other.projects_dir.iterdir() if p.name.startswith(".")]

    again = import_bundle(archive, other)  # a second import gets a name of its own
    assert again.name == "Test project 2" and again.path != imported.path


def test_the_manifest_lists_every_file_with_checksum_and_the_model_fingerprint(full_project, tmp_path):
    from core.models.adapters import folder_fingerprint

    archive = export_bundle(full_project, destination=tmp_path / "b.zip")
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
        for name, entry in manifest["files"].items():
            data = zf.read(name)
            assert (layout.sha256_bytes(data), len(data)) == (entry["sha256"], entry["size"])
    assert names == set(manifest["files"]) | {"manifest.json"}
    assert {layout.RECIPE, "adapter/adapter.json", layout.KB_INDEX, layout.KB_PASSAGES,
            layout.KB_DOCUMENTS + "handbook.md", layout.FEWSHOT_RECORDS, layout.SAMPLES} <= names
    recipe = RecipeStore(full_project).load()
    assert manifest["format_version"] == layout.FORMAT_VERSION and manifest["recipe"] == {"name": "assistant",
                                                                                           "version": 2}
    assert manifest["model"] == {"source": recipe.model.to_dict(),
                                 "fingerprint": folder_fingerprint(Path(recipe.model.location))}
    assert manifest["adapter"] == recipe.adapter and manifest["knowledge_base"] == "docs"


def test_an_older_version_without_retrieval_carries_no_knowledge_base(full_project, tmp_path):
    archive = export_bundle(full_project, version=1, destination=tmp_path)
    with zipfile.ZipFile(archive) as zf:
        assert not [n for n in zf.namelist() if n.startswith(("knowledge/", "adapter/"))]
    with pytest.raises(StudioError, match="has no version 7"):
        export_bundle(full_project, version=7, destination=tmp_path)


def test_model_warnings_when_the_model_is_missing_or_different(tiny_model_dir, tmp_path, monkeypatch):
    folder = tiny_model_dir("llama")
    source = ModelSource(kind="local", location=str(folder))
    good = model_ref.reference(source)
    assert good["fingerprint"] and model_ref.warnings(good) == []
    assert "not the one the bundle was made with" in str(model_ref.warnings({**good, "fingerprint": "0" * 16})[0])
    missing = {"source": {**source.to_dict(), "location": str(tmp_path / "nowhere")}, "fingerprint": "x"}
    assert "is not on this machine" in str(model_ref.warnings(missing)[0])
    assert "not downloaded" in str(model_ref.warnings({"source": {"kind": "hub", "location": "org/no-such"}})[0])
    endpoint = {"source": {"kind": "openai", "location": "http://127.0.0.1:9/v1", "model_name": "m",
                           "api_key_env": "STUDIO_BUNDLE_TEST_KEY"}}
    monkeypatch.delenv("STUDIO_BUNDLE_TEST_KEY", raising=False)
    assert "STUDIO_BUNDLE_TEST_KEY" in str(model_ref.warnings(endpoint)[0])
    monkeypatch.setenv("STUDIO_BUNDLE_TEST_KEY", "sk-bundle-test-value")
    assert model_ref.warnings(endpoint) == []


# ---- refused archives ------------------------------------------------------------------------------------------

@pytest.fixture
def bundle(project, tiny_model_dir, tmp_path) -> Path:
    simple_project(project, tiny_model_dir("llama"))
    return export_bundle(project, destination=tmp_path / "good.zip")


def rewrite(source: Path, target: Path, change=None, add=(), list_added=True, manifest_change=None,
            relist=False) -> Path:
    """A copy of a bundle with entries changed (`change(name, data) -> data`) or added ((ZipInfo|name, data)),
    listed in the manifest with their true checksums unless list_added is False; with relist, changed entries
    get their new checksums too (a consistent archive with bad content)."""
    with zipfile.ZipFile(source) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        entries = [(info, zf.read(info)) for info in zf.infolist() if info.filename != "manifest.json"]
    if change:
        entries = [(info, change(info.filename, data)) for info, data in entries]
    if relist:
        for info, data in entries:
            manifest["files"][info.filename] = {"sha256": layout.sha256_bytes(data), "size": len(data)}
    for info, data in add:
        entries.append((info, data))
        if list_added:
            name = info.filename if isinstance(info, zipfile.ZipInfo) else info
            manifest["files"][name] = {"sha256": layout.sha256_bytes(data), "size": len(data)}
    if manifest_change:
        manifest_change(manifest)
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names on purpose
        for info, data in entries:
            zf.writestr(info, data)
        zf.writestr("manifest.json", json.dumps(manifest))
    return target


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def flip_recipe(name, data):
    if name != layout.RECIPE:
        return data
    return data.replace(b'"first"', b'"fir5t"')  # same size: only the checksum tells


BAD = {
    "tampered": (dict(change=flip_recipe), "'recipe.json' was changed or damaged: its checksum does not match"),
    "dot-dot": (dict(add=[("../evil.txt", b"x")]), r"'\.\./evil\.txt' climbs out of its folder"),
    "nested dot-dot": (dict(add=[("adapter/../../evil.txt", b"x")]), "climbs out of its folder"),
    "absolute": (dict(add=[("/tmp/evil.txt", b"x")]), "'/tmp/evil.txt' is an absolute path"),
    "drive letter": (dict(add=[("C:/evil.txt", b"x")]), "drive letter"),
    "backslash": (dict(add=[("..\\evil.txt", b"x")]), "backslash"),
    "symlink": (dict(add=[(symlink_entry("samples2.jsonl"), b"/etc/passwd")]), "is a link"),
    "folder entry": (dict(add=[("adapter/", b"")]), "not a plain file"),
    "unlisted": (dict(add=[("extra.txt", b"hello")], list_added=False), "'extra.txt' is not listed in its manifest"),
    "duplicate": (dict(add=[(layout.RECIPE, b"{}")], list_added=False), "'recipe.json' appears twice"),
    "case duplicate": (dict(add=[("Recipe.json", b"{}")]), "'Recipe.json' appears twice"),
    "missing": (dict(manifest_change=lambda m: m["files"].update(
        {"gone.txt": {"sha256": "0" * 64, "size": 1}})), "'gone.txt' is listed in its manifest but missing"),
    "wrong size": (dict(manifest_change=lambda m: m["files"][layout.RECIPE].update(size=3)), "size"),
    "newer format": (dict(manifest_change=lambda m: m.update(format_version=99)), "newer studio"),
    "adapter mismatch": (dict(manifest_change=lambda m: m.update(adapter="../x")), "different adapters"),
    "unreadable recipe": (dict(change=lambda n, d: b"{not json" if n == layout.RECIPE else d, relist=True),
                          "'recipe.json' cannot be read"),
    "bad few-shot kind": (dict(change=lambda n, d: d.replace(b'"sft"', b'"evil"') if n == layout.FEWSHOT_INFO
                               else d, relist=True), "Unknown dataset kind 'evil'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_archives_are_refused_and_leave_nothing(case, bundle, workspace, tmp_path):
    options, message = BAD[case]
    bad = rewrite(bundle, tmp_path / "bad.zip", **options)
    before = sorted(p.name for p in workspace.projects_dir.iterdir())
    with pytest.raises(StudioError, match=message):
        import_bundle(bad, workspace)
    assert sorted(p.name for p in workspace.projects_dir.iterdir()) == before
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_a_zip_bomb_is_refused_before_unpacking(bundle, workspace, tmp_path, monkeypatch):
    bomb = rewrite(bundle, tmp_path / "bomb.zip", add=[("samples2.jsonl", b"\0" * (30 * 2**20))])
    assert bomb.stat().st_size < 2**20
    monkeypatch.setenv("STUDIO_MAX_BUNDLE_MB", "10")
    with pytest.raises(StudioError, match=r"would unpack to 30 MB, more than the 10 MB allowed"):
        import_bundle(bomb, workspace)
    assert [p.name for p in workspace.projects_dir.iterdir()] == ["test-project"]


def test_not_a_zip_and_a_taken_name(bundle, workspace, tmp_path):
    junk = tmp_path / "notes.zip"
    junk.write_text("hello")
    with pytest.raises(StudioError, match="notes.zip is not an assistant bundle"):
        import_bundle(junk, workspace)
    with pytest.raises(StudioError, match="already exists"):
        import_bundle(bundle, workspace, name="Test project")
    assert [p.name for p in workspace.projects_dir.iterdir()] == ["test-project"]
    assert import_bundle(bundle, workspace, name="Copy").name == "Copy"


def test_a_failure_while_placing_leaves_nothing(bundle, workspace, monkeypatch):
    from core.bundle import importer

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(importer, "_place_datasets", broken)
    with pytest.raises(OSError):
        import_bundle(bundle, workspace)
    assert [p.name for p in workspace.projects_dir.iterdir()] == ["test-project"]


def test_cli_export_and_import(bundle, workspace, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.zip"
    result = runner.invoke(cli.app, ["bundle", "export", "Test project", "--version", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = runner.invoke(cli.app, ["bundle", "import", str(out), "--name", "From CLI"])
    assert result.exit_code == 0, result.output
    assert "From CLI" in [p.name for p in workspace.list_projects()]
    result = runner.invoke(cli.app, ["bundle", "import", str(tmp_path / "missing.zip")])
    assert result.exit_code == 1 and "not an assistant bundle" in result.output


def test_an_import_tells_when_the_model_is_not_on_this_machine(project, workspace, tmp_path):
    simple_project(project, tmp_path / "model-on-the-other-machine")
    imported = import_bundle(export_bundle(project, destination=tmp_path), Workspace(tmp_path / "here"))
    [warning] = model_warnings(imported)
    assert "model-on-the-other-machine is not on this machine" in warning
    assert RecipeStore(imported).load().model.location == str(tmp_path / "model-on-the-other-machine")


@pytest.mark.parametrize("shown", ["\u202egpj.exe", "Shop\u2066\u2067 FAQ", "a\x00b\tc", "\u200fSupport\u200e"])
def test_a_bundle_name_loses_direction_overrides_and_control_characters(shown, bundle, workspace, tmp_path):
    """A name like "\u202egpj.exe" reads "exe.jpg": the imported project's name must read as it is."""
    from core.workspace import display_name

    named = rewrite(bundle, tmp_path / "named.zip", manifest_change=lambda m: m.update(project=shown))
    project = import_bundle(named, workspace)
    assert project.name == display_name(shown)
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in project.name)
    assert project.name.replace(" ", "") in {"gpj.exe", "ShopFAQ", "abc", "Support"}


def test_documents_in_sub_folders_travel_under_their_own_names(project, tiny_model_dir, fake_embedder, workspace,
                                                                 tmp_path, monkeypatch):
    """sub1/policy.txt and sub2/policy.txt are two documents: a bundle must not flatten them into one."""
    folder = tmp_path / "handbook"
    for sub, text in (("sub1", "Returns are accepted within thirty days."), ("sub2", "Deposits are refunded.")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "policy.txt").write_text(text, encoding="utf-8")
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", str(tmp_path))
    recipe = simple_project(project, tiny_model_dir("llama"))
    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_folder(folder))
    RecipeStore(project).save(recipe.with_changes(retriever=RetrieverSettings(enabled=True, knowledge_base="docs")))
    archive = export_bundle(project, destination=tmp_path / "sub.zip")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert {layout.KB_DOCUMENTS + "sub1/policy.txt", layout.KB_DOCUMENTS + "sub2/policy.txt"} <= names
    imported = import_bundle(archive, Workspace(tmp_path / "elsewhere"))
    copied = KnowledgeBase(imported, "docs")
    assert set(copied.documents()) == {"sub1/policy.txt", "sub2/policy.txt"}
    assert (copied.documents_dir / "sub1" / "policy.txt").read_text(encoding="utf-8").startswith("Returns")
    assert (copied.documents_dir / "sub2" / "policy.txt").read_text(encoding="utf-8").startswith("Deposits")
