"""Projects on disk: create/list/get/rename/duplicate/delete, slugs, atomic writes, damaged files."""

from __future__ import annotations

import json
import os

import pytest

from core import atomic
from core.errors import ProjectExistsError, ProjectNotFoundError, StudioError
from core.workspace import PROJECT_DIRS, PROJECT_FILE, Workspace, slugify
from core.workspace import studio_home as home_from_env


def _temp_leftovers(root):
    """Files or folders an interrupted atomic write / staged create would leave behind."""
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".creating", ".copying", ".deleting"))]


def test_studio_home_follows_env(studio_home, tmp_path, monkeypatch):
    assert home_from_env() == studio_home
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "elsewhere"))
    assert Workspace().projects_dir == tmp_path / "elsewhere" / "projects"
    assert (tmp_path / "elsewhere" / "projects").is_dir()


def test_create_makes_folder_metadata_and_subdirs(workspace):
    project = workspace.create("  Support bot  ")
    assert project.name == "Support bot"  # surrounding spaces trimmed
    assert project.slug == "support-bot"
    assert project.path.parent == workspace.projects_dir
    meta = json.loads((project.path / PROJECT_FILE).read_text(encoding="utf-8"))
    assert meta["name"] == "Support bot"
    assert meta["created"] == pytest.approx(project.created)
    for sub in PROJECT_DIRS:
        assert (project.path / sub).is_dir(), sub
    assert project.exists()
    assert project.require() is project
    assert _temp_leftovers(workspace.root) == []


def test_list_is_sorted_case_insensitively_and_get_finds_by_slug_or_name(workspace):
    for name in ("beta", "Alpha", "gamma"):
        workspace.create(name)
    assert [p.name for p in workspace.list_projects()] == ["Alpha", "beta", "gamma"]
    assert workspace.get("alpha").name == "Alpha"  # by slug
    assert workspace.get("Alpha").slug == "alpha"  # by display name
    with pytest.raises(ProjectNotFoundError, match="delta"):
        workspace.get("delta")


def test_list_empty_workspace(workspace):
    assert workspace.list_projects() == []


@pytest.mark.parametrize("first, second", [
    ("Demo", "Demo"),
    ("Demo", "demo"),
    ("Demo", "  DEMO "),
    ("Trợ lý", "TRỢ LÝ"),
])
def test_duplicate_names_refused(workspace, first, second):
    workspace.create(first)
    with pytest.raises(ProjectExistsError, match="already exists"):
        workspace.create(second)
    assert len(workspace.list_projects()) == 1


@pytest.mark.parametrize("name", ["", "   ", None])
def test_empty_name_refused(workspace, name):
    with pytest.raises(StudioError, match="name"):
        workspace.create(name)
    assert workspace.list_projects() == []


@pytest.mark.parametrize("name, slug", [
    ("Trợ lý Đà Nẵng", "tro-ly-da-nang"),
    ("Hỏi đáp khách hàng", "hoi-dap-khach-hang"),
    ("Đường sắt Bắc - Nam!", "duong-sat-bac-nam"),
    ("Café & Crème", "cafe-creme"),
    ("   ***   ", "project"),
    ("日本語", "project"),
    ("x" * 100, "x" * 60),
])
def test_slugify(name, slug):
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["Trợ lý Đà Nẵng", "Dự án ưu tiên số 1", "Ôn thi đại học"])
def test_vietnamese_names_keep_display_name(workspace, name):
    project = workspace.create(name)
    assert project.slug == slugify(name)
    assert project.slug.isascii()
    listed = workspace.list_projects()
    assert [p.name for p in listed] == [name]  # accents kept for display
    assert workspace.get(name).path == project.path
    assert workspace.get(project.slug).name == name


def test_names_with_same_slug_get_distinct_folders(workspace):
    first = workspace.create("Đà Nẵng")
    second = workspace.create("Da Nang!")
    third = workspace.create("da-nang")
    assert [first.slug, second.slug, third.slug] == ["da-nang", "da-nang-2", "da-nang-3"]
    assert {p.name for p in workspace.list_projects()} == {"Đà Nẵng", "Da Nang!", "da-nang"}


def test_rename_keeps_folder_and_updates_name(workspace):
    project = workspace.create("Old name")
    (project.subdir("datasets") / "x.jsonl").write_text("{}\n")
    renamed = workspace.rename(project, "Tên mới")
    assert renamed.name == "Tên mới"
    assert renamed.path == project.path
    assert renamed.created == project.created
    assert workspace.get("Tên mới").path == project.path
    assert (renamed.path / "datasets" / "x.jsonl").exists()
    with pytest.raises(ProjectNotFoundError):
        workspace.get("Old name")
    assert _temp_leftovers(workspace.root) == []


def test_rename_to_existing_name_refused(workspace):
    workspace.create("Taken")
    project = workspace.create("Mine")
    with pytest.raises(ProjectExistsError):
        workspace.rename(project, "taken")
    assert workspace.get("Mine").name == "Mine"


def test_rename_deleted_project_raises(workspace):
    project = workspace.create("Gone")
    workspace.delete(project, "Gone")
    with pytest.raises(ProjectNotFoundError):
        workspace.rename(project, "Back")


def test_duplicate_copies_content_with_new_name(workspace):
    project = workspace.create("Original")
    (project.subdir("datasets") / "examples.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    copy = workspace.duplicate(project, "Bản sao")
    assert copy.path != project.path
    assert copy.name == "Bản sao"
    assert (copy.path / "datasets" / "examples.jsonl").read_text() == '{"prompt": "a", "response": "b"}\n'
    assert json.loads((copy.path / PROJECT_FILE).read_text(encoding="utf-8"))["name"] == "Bản sao"
    assert json.loads((project.path / PROJECT_FILE).read_text(encoding="utf-8"))["name"] == "Original"
    assert sorted(p.name for p in workspace.list_projects()) == ["Bản sao", "Original"]
    # the copy is independent of the original
    (copy.path / "datasets" / "examples.jsonl").write_text("changed\n")
    assert "changed" not in (project.path / "datasets" / "examples.jsonl").read_text()
    assert _temp_leftovers(workspace.root) == []


def test_duplicate_to_existing_name_refused(workspace):
    project = workspace.create("One")
    workspace.create("Two")
    with pytest.raises(ProjectExistsError):
        workspace.duplicate(project, "TWO")
    assert len(workspace.list_projects()) == 2


@pytest.mark.parametrize("typed", ["", "keep me", "Keep Me", "Keep", "Keep me!"])
def test_delete_with_wrong_name_refused(workspace, typed):
    project = workspace.create("Keep me")
    with pytest.raises(StudioError, match="Keep me"):
        workspace.delete(project, typed)
    assert project.exists()
    assert [p.name for p in workspace.list_projects()] == ["Keep me"]


@pytest.mark.parametrize("typed", ["Xoá tôi", "  Xoá tôi  "])
def test_delete_with_typed_name(workspace, typed):
    other = workspace.create("Other")
    project = workspace.create("Xoá tôi")
    workspace.delete(project, typed)
    assert not project.path.exists()
    assert [p.name for p in workspace.list_projects()] == ["Other"]
    assert other.exists()
    assert not any(p.name.endswith(".deleting") for p in workspace.projects_dir.iterdir())
    with pytest.raises(ProjectNotFoundError, match="no longer exists"):
        project.require()
    with pytest.raises(ProjectNotFoundError):
        workspace.get("Xoá tôi")
    with pytest.raises(ProjectNotFoundError):
        workspace.delete(project, "Xoá tôi")  # deleting twice (another tab) is a clear error


def test_deleted_name_can_be_reused(workspace):
    project = workspace.create("Again")
    workspace.delete(project, "Again")
    again = workspace.create("Again")
    assert again.slug == "again"
    assert again.exists()


def test_two_workspace_objects_see_the_same_projects(workspace):
    workspace.create("Shared")
    assert [p.name for p in Workspace().list_projects()] == ["Shared"]


@pytest.mark.parametrize("damage", [
    b"{not json",
    b"",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b"null",
])
def test_damaged_project_file_does_not_hide_others(workspace, damage):
    workspace.create("Healthy A")
    broken = workspace.create("Broken")
    workspace.create("Healthy B")
    (broken.path / PROJECT_FILE).write_bytes(damage)
    assert [p.name for p in workspace.list_projects()] == ["Healthy A", "Healthy B"]


def test_stray_files_and_unfinished_staging_folders_are_not_projects(workspace):
    workspace.create("Real")
    (workspace.projects_dir / "notes.txt").write_text("hello")
    (workspace.projects_dir / "empty-folder").mkdir()
    # what a crash in the middle of create() would leave behind: a complete staging folder
    staging = workspace.projects_dir / ".half.creating"
    staging.mkdir()
    atomic.write_json(staging / PROJECT_FILE, {"name": "Half", "created": 0})
    assert [p.name for p in workspace.list_projects()] == ["Real"]
    workspace.create("Half")  # the name is free: the leftover is not a project


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "atomic" / "data.json"
    for i in range(5):
        atomic.write_json(target, {"i": i, "text": "Tiếng Việt"})
    assert atomic.read_json(target) == {"i": 4, "text": "Tiếng Việt"}
    assert "Tiếng Việt" in target.read_text(encoding="utf-8")  # not \u-escaped
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.json"]
    atomic.write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}, {"b": "đ"}])
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == '{"a": 1}\n{"b": "đ"}\n'


def test_atomic_write_failure_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    folder = tmp_path / "atomic"
    target = folder / "data.json"
    atomic.write_json(target, {"version": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            atomic.write_json(target, {"version": 2})
    assert atomic.read_json(target) == {"version": 1}
    assert sorted(p.name for p in folder.iterdir()) == ["data.json"]


def test_workspace_operations_leave_no_temp_files(workspace):
    project = workspace.create("A")
    project = workspace.rename(project, "B")
    copy = workspace.duplicate(project, "C")
    workspace.delete(copy, "C")
    assert _temp_leftovers(workspace.root) == []
    assert [p.name for p in workspace.list_projects()] == ["B"]
