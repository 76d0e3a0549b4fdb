"""Which folders on this machine the studio may read documents from, and walking one of them safely.

The folder comes from a web page, so it is checked before anything is read:

* allowed roots: $STUDIO_ALLOWED_FOLDERS (folders separated by os.pathsep), else the user's home folder and the
  studio home (core.workspace.studio_home);
* the folder is resolved first (links followed, '..' removed), then it must lie inside an allowed root, with no
  hidden folder (.ssh, .config, …) between the root and it;
* system folders (/etc, /proc, /sys, …) are never read, even when an allowed root contains them;
* while walking, hidden files and folders are left out, and a link (to a file or a folder) is followed only when
  its target stays inside the chosen folder's allowed root (and outside the system folders); a folder reached
  twice through links is walked once.

`allowed_folder(folder)` returns (resolved folder, its root) or raises StudioError with one sentence for the
user; `walk(folder, root)` lists the documents and the links it left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import StudioError
from core.i18n import Msg

ENV = "STUDIO_ALLOWED_FOLDERS"
# Never read, whatever the roots say (a root of "/" must not expose them).
POSIX_SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/run", "/bin", "/sbin", "/lib", "/lib32",
                        "/lib64", "/libx32", "/usr", "/var/log", "/var/run", "/var/spool", "/var/mail",
                        "/System", "/Library", "/private/etc", "/private/var/db", "/private/var/log")
WINDOWS_SYSTEM_VARIABLES = ("SystemRoot", "windir", "ProgramFiles", "ProgramFiles(x86)", "ProgramData")


def allowed_roots() -> list[Path]:
    """The folders (resolved) whose contents may be added: $STUDIO_ALLOWED_FOLDERS, else home and studio home."""
    from core.workspace import studio_home

    configured = [part.strip() for part in os.environ.get(ENV, "").split(os.pathsep) if part.strip()]
    roots = [Path(part).expanduser() for part in configured] or [Path.home(), studio_home()]
    return list(dict.fromkeys(_resolve(root) for root in roots))


def system_folders() -> list[Path]:
    folders = [Path(p) for p in POSIX_SYSTEM_FOLDERS] if os.name != "nt" else []
    folders += [Path(os.environ[v]) for v in WINDOWS_SYSTEM_VARIABLES if os.environ.get(v)]
    return list(dict.fromkeys([*folders, *map(_resolve, folders)]))  # /etc and, on macOS, /private/etc


def is_system(path: Path) -> bool:
    return any(_within(path, folder) for folder in system_folders())


def inside(path: Path, root: Path) -> bool:
    """A resolved path inside `root`, with no hidden part below the root, and not in a system folder."""
    return _within(path, root) and not _hidden(path.relative_to(root)) and not is_system(path)


def allowed_folder(folder: str | Path) -> tuple[Path, Path]:
    """(the folder resolved, the allowed root it is in: the outermost one when roots nest). Raises StudioError
    when the folder is missing, a system folder, hidden or outside every allowed root."""
    shown = str(folder).strip()
    if not shown:
        raise StudioError(Msg("Type the path of a folder on this machine."))
    path, root = allowed_path(shown)
    if not path.is_dir():
        raise StudioError(Msg("The folder {folder} does not exist; check the path.", folder=shown))
    return path, root


def allowed_path(given: str | Path) -> tuple[Path, Path]:
    """`allowed_folder` for a file or a folder (a dataset file typed on a page): (resolved path, its root). Does
    not say whether it exists, so the message cannot tell what lies outside the allowed folders."""
    shown = str(given).strip()
    path = _resolve(Path(shown).expanduser())
    if is_system(path):
        raise StudioError(Msg("{folder} is a system folder; the studio does not read documents from it. Choose a "
                              "folder of your documents.", folder=shown))
    roots = allowed_roots()
    holding = [root for root in roots if inside(path, root)]
    if not holding:
        raise StudioError(Msg("{folder} is outside the folders the studio may read ({roots}). Choose a folder "
                              "inside one of them, or add it to {variable}.", folder=shown,
                              roots=", ".join(map(str, roots)), variable=ENV))
    return path, min(holding, key=lambda root: len(root.parts))


@dataclass
class FolderContents:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path to read, posix path relative to the folder)
    skipped_links: list[str] = field(default_factory=list)       # relative paths of links that lead outside


def walk(folder: Path, root: Path, suffixes: set[str] | frozenset[str]) -> FolderContents:
    """Files with one of `suffixes` in `folder` and its sub-folders, in sorted order (see the module docstring
    for what is left out). `folder` and `root` come from `allowed_folder`."""
    found = FolderContents()
    seen: set[Path] = set()
    stack: list[tuple[Path, PurePosixPath]] = [(folder, PurePosixPath())]
    while stack:
        directory, relative = stack.pop()
        real = _resolve(directory)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: nothing in it can be added
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path, rel = Path(entry.path), relative / entry.name
            try:
                if entry.is_symlink() and not inside(_resolve(path), root):
                    found.skipped_links.append(rel.as_posix())
                    continue
                if entry.is_dir():
                    subfolders.append((path, rel))
                elif entry.is_file() and Path(entry.name).suffix.lower() in suffixes:
                    found.files.append((path, rel.as_posix()))
            except OSError:
                continue  # a broken link, or a file removed meanwhile
        stack.extend(reversed(subfolders))
    found.files.sort(key=lambda item: item[1])
    return found


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return Path(os.path.abspath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
