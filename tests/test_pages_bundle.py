"""AppTest of the bundle panels: import on the Projects page (good and bad archives), build and download a bundle."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.bundle import export_bundle
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore
from tests.apptest_helpers import button, open_page


@pytest.fixture
def bundle_bytes(workspace, tiny_model_dir, tmp_path) -> bytes:
    project = workspace.create("Shop bot")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    return export_bundle(project, destination=tmp_path / "shop.zip").read_bytes()


def test_import_a_bundle_opens_the_new_project(workspace, bundle_bytes):
    at = open_page("projects")
    at.file_uploader(key="bundle.upload").set_value(("shop.zip", bundle_bytes, "application/zip")).run()
    button(at, "Import the bundle").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Imported the bundle as 'Shop bot 2'" in s.value for s in at.success)
    assert any("Open: **Shop bot 2**" in s.value for s in at.success)
    assert [p.name for p in workspace.list_projects()] == ["Shop bot", "Shop bot 2"]


def test_a_bad_archive_gets_one_sentence_and_changes_nothing(workspace, bundle_bytes):
    at = open_page("projects")
    at.file_uploader(key="bundle.upload").set_value(("notes.zip", b"not a zip", "application/zip")).run()
    button(at, "Import the bundle").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["notes.zip is not an assistant bundle (a .zip made by Export bundle)."]
    assert [p.name for p in workspace.list_projects()] == ["Shop bot"]


def export_script():
    from studio.ui.bundle_panel import export_panel
    from core.workspace import Workspace

    export_panel(Workspace().get("Shop bot"))


def test_export_panel_builds_a_bundle_to_download(workspace, bundle_bytes):
    at = AppTest.from_function(export_script, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("API keys are never included" in c.value for c in at.caption)
    button(at, "Build the bundle").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [download] = at.get("download_button")
    assert download.proto.label == "Download shop-bot-assistant-v1.zip"
    assert (workspace.get("Shop bot").path / "exports" / "shop-bot-assistant-v1.zip").is_file()
