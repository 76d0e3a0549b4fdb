"""Projects on disk: one folder per project under STUDIO_HOME. Every write is atomic."""

from __future__ import annotations

import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core import atomic
from core.errors import ProjectExistsError, ProjectNotFoundError, StudioError
from core.i18n import Msg

PROJECT_FILE = "project.json"
# Sub-folders every project has; later features fill them.
PROJECT_DIRS = ("recipes", "datasets", "indexes", "runs", "adapters", "feedback")
MAX_NAME_LENGTH = 100
# Characters no stored name may hold: controls (NUL, newline, ...), invisible format marks (bidirectional overrides),
# line and paragraph separators, surrogates and private-use characters.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


class UnsafeNameError(StudioError):
    """A dataset, knowledge base, adapter, recipe, run or export name that cannot be a folder inside the project."""


def check_name(kind: str, name: str) -> str:
    """`name` when it is one plain folder or file name, else UnsafeNameError. `kind` (a Msg such as Msg("dataset"))
    names what it is in the message. Every name that becomes a path in a project goes through here (see
    Project.child), for every operation (create, load, exists, delete, versions), so no name reaches outside its
    folder: no empty name, '.', '..', '/' or '\\', no control character, no leading dot (the studio's own staging
    and trash folders start with one), at most MAX_NAME_LENGTH characters."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafeNameError(Msg("Give the {kind} a name.", kind=kind))
    hidden = any(unicodedata.category(ch) in _HIDDEN_CATEGORIES for ch in name)
    shown = name.encode("unicode_escape").decode("ascii") if hidden else name  # shows a NUL as \\x00
    shown = shown if len(shown) <= 120 else shown[:120] + "…"
    if name in (".", "..") or "/" in name or "\\" in name:
        raise UnsafeNameError(Msg("'{name}' cannot be a {kind} name: use a plain name, without '/', '\\' or '..'.",
                                  name=shown, kind=kind))
    if hidden:
        raise UnsafeNameError(Msg("'{name}' cannot be a {kind} name: it contains a control or invisible character.",
                                  name=shown, kind=kind))
    if name.startswith("."):
        raise UnsafeNameError(Msg("'{name}' cannot be a {kind} name: it must not start with a dot.", name=shown,
                                  kind=kind))
    if len(name) > MAX_NAME_LENGTH:
        raise UnsafeNameError(Msg("A {kind} name has at most {limit} characters.", kind=kind, limit=MAX_NAME_LENGTH))
    return name


def studio_home() -> Path:
    """Where projects and model caches live: $STUDIO_HOME, else ~/.llm-studio."""
    return Path(os.environ.get("STUDIO_HOME") or Path.home() / ".llm-studio").expanduser()


def slugify(name: str) -> str:
    """A folder name from a display name; keeps it readable, drops accents only for the folder."""
    decomposed = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    # Accents (combining marks) vanish; any other non-ASCII character separates words like a space.
    kept = "".join("" if unicodedata.combining(c) else (c if c.isascii() else "-") for c in decomposed)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", kept).strip("-").lower()
    return slug[:60] or "project"


# Direction marks, overrides and isolates reorder how a name reads (a bundle called "\u202egpj.exe" shows as
# "exe.jpg"); document names (core/rag/parse.py) drop them too.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI_CONTROLS = dict.fromkeys(map(ord, BIDI_CONTROLS))


def display_name(name: str) -> str:
    """A name as people type and see it: without direction overrides or control characters, spaces collapsed."""
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" else c for c in (name or "").translate(_BIDI_CONTROLS))
    return " ".join(cleaned.split())


@dataclass(frozen=True)
class Project:
    path: Path
    name: str
    created: float

    @property
    def slug(self) -> str:
        return self.path.name

    def subdir(self, name: str) -> Path:
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def child(self, subdir: str, name: str, kind: str, suffix: str = "") -> Path:
        """The path of item `name` (a dataset, knowledge base, adapter, recipe, run, export) in the project's
        `subdir` ("datasets", "runs/eval", ...), plus `suffix` (".json"). The one way a name becomes a path: the name
        passes check_name and the resolved path must stay inside the project folder (a link planted in the project
        cannot lead out of it either). Raises UnsafeNameError."""
        check_name(kind, name)
        path = self.subdir(subdir) / (name + suffix)
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise UnsafeNameError(Msg("'{name}' cannot be a {kind} name: it leads outside the project folder.",
                                      name=name, kind=kind))
        return path

    def exists(self) -> bool:
        return (self.path / PROJECT_FILE).is_file()

    def require(self) -> "Project":
        """Raise a clear error when the project was deleted (for example from another tab)."""
        if not self.exists():
            raise ProjectNotFoundError(Msg(
                "Project '{name}' no longer exists (it was deleted or renamed elsewhere); pick another project.",
                name=self.name))
        return self


class Workspace:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else studio_home()
        self.projects_dir = self.root / "projects"
        self.projects_dir.mkdir(parents=True, exist_ok=True)

    def list_projects(self) -> list[Project]:
        projects = []
        for folder in sorted(self.projects_dir.iterdir()):
            meta_path = folder / PROJECT_FILE
            if folder.name.startswith("."):
                continue  # staging folders of an unfinished create/duplicate/delete are not projects
            if folder.is_dir() and meta_path.is_file():
                try:
                    meta = atomic.read_json(meta_path)
                except ValueError:
                    continue  # a damaged project file must not hide the other projects
                if not isinstance(meta, dict):
                    continue
                projects.append(Project(folder, meta.get("name", folder.name), meta.get("created", 0.0)))
        return sorted(projects, key=lambda p: p.name.lower())

    def get(self, slug_or_name: str) -> Project:
        for project in self.list_projects():
            if slug_or_name in (project.slug, project.name):
                return project
        raise ProjectNotFoundError(Msg("There is no project called '{name}'; create it first.", name=slug_or_name))

    def _check_name(self, name: str, renaming: Project | None = None) -> str:
        name = display_name(name)
        if not name:
            raise StudioError(Msg("Give the project a name."))
        others = [p for p in self.list_projects() if renaming is None or p.path != renaming.path]
        if any(p.name.lower() == name.lower() for p in others):
            raise ProjectExistsError(Msg("A project called '{name}' already exists; choose another name.", name=name))
        return name

    def _free_folder(self, name: str) -> Path:
        base = slugify(name)
        candidate, n = self.projects_dir / base, 2
        while candidate.exists():
            candidate, n = self.projects_dir / f"{base}-{n}", n + 1
        return candidate

    def create(self, name: str, fill: Callable[[Project], None] | None = None) -> Project:
        """A new project. `fill(project)` writes its content (an imported bundle) before the project appears;
        when it raises, nothing is left behind."""
        name = self._check_name(name)
        folder = self._free_folder(name)
        staging = folder.with_name(f".{folder.name}.creating")
        shutil.rmtree(staging, ignore_errors=True)
        for sub in PROJECT_DIRS:
            (staging / sub).mkdir(parents=True)
        created = time.time()
        atomic.write_json(staging / PROJECT_FILE, {"name": name, "created": created})
        try:
            if fill is not None:
                fill(Project(staging, name, created))
            os.replace(staging, folder)  # the project appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Project(folder, name, created)

    def rename(self, project: Project, new_name: str) -> Project:
        project.require()
        if new_name.strip() == project.name:
            return project
        new_name = self._check_name(new_name, renaming=project)
        meta = atomic.read_json(project.path / PROJECT_FILE)
        meta["name"] = new_name
        atomic.write_json(project.path / PROJECT_FILE, meta)
        return Project(project.path, new_name, project.created)

    def duplicate(self, project: Project, new_name: str) -> Project:
        project.require()
        new_name = self._check_name(new_name)
        folder = self._free_folder(new_name)
        staging = folder.with_name(f".{folder.name}.copying")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(project.path, staging)
        created = time.time()
        atomic.write_json(staging / PROJECT_FILE, {"name": new_name, "created": created})
        os.replace(staging, folder)
        return Project(folder, new_name, created)

    # Which project a browser session has open is that session's own (studio.ui.state: session state and the
    # ?project= address), never a file shared by every user of the server.

    def delete(self, project: Project, confirm_name: str) -> None:
        """Deletes only when the user typed the project's name, so a stray click loses nothing."""
        if confirm_name.strip() != project.name:
            raise StudioError(Msg("Type the project name '{name}' exactly to confirm deletion.", name=project.name))
        project.require()
        trash = project.path.with_name(f".{project.path.name}.deleting")
        os.replace(project.path, trash)  # disappears at once for other tabs, then is removed
        shutil.rmtree(trash, ignore_errors=True)
