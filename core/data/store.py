"""Project datasets with versions: every save is a new immutable JSONL snapshot with author, time and note.

datasets/<name>/dataset.json   kind and creation time
datasets/<name>/v0003.jsonl    the records of version 3
datasets/<name>/v0003.json     its metadata, written last: a version exists only once this file does, so a
                               crash mid-save leaves the previous version as the latest

Two sessions editing the same dataset never overwrite each other silently: `save` takes the version the
edit started from and raises `ConflictError` when someone saved in between; `merge` then combines both edits
record by record and lists the records both changed differently.
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from core import atomic
from core.data.records import KINDS
from core.errors import StudioError
from core.i18n import Msg
from core.workspace import Project

DATASET = Msg("dataset")


class ConflictError(StudioError):
    def __init__(self, message, latest: int):
        super().__init__(message)
        self.latest = latest


@dataclass(frozen=True)
class VersionInfo:
    number: int
    saved_at: float
    author: str
    note: str
    rows: int
    parent: int | None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str
    created: float
    latest: VersionInfo | None


@dataclass
class MergeResult:
    records: list[dict]
    conflicts: list[tuple[dict | None, dict | None]] = field(default_factory=list)  # (mine, theirs), same id


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class DatasetStore:
    def __init__(self, project: Project):
        self.project = project
        self.root = project.subdir("datasets")

    # ---- datasets -----------------------------------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        """Every operation finds its dataset here, so a name like '../other' is refused, never followed."""
        return self.project.child("datasets", name, DATASET)

    def exists(self, name: str) -> bool:
        return (self._folder(name) / "dataset.json").is_file()

    def names(self) -> list[str]:
        # A leading dot is a dataset being deleted (or not a dataset at all).
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".")
                      and (p / "dataset.json").is_file())

    def info(self, name: str) -> DatasetInfo:
        self._require(name)
        meta = atomic.read_json(self._folder(name) / "dataset.json")
        versions = self.versions(name)
        return DatasetInfo(name, meta["kind"], meta.get("created", 0.0), versions[-1] if versions else None)

    def list(self) -> list[DatasetInfo]:
        return [self.info(name) for name in self.names()]

    def kind(self, name: str) -> str:
        return self.info(name).kind

    def create(self, name: str, kind: str, records: list[dict] | None = None, note: str = "",
               author: str | None = None) -> int:
        """A new dataset; its first version holds `records` (possibly none). Returns that version number."""
        name = (name or "").strip()
        if not re.fullmatch(r"[\w\-. ]{1,60}", name) or name.startswith("."):
            raise StudioError(Msg("A dataset name uses letters, digits, spaces, '-', '_' and '.' (at most 60)."))
        if kind not in KINDS:
            raise StudioError(Msg("Unknown dataset kind '{kind}'.", kind=kind))
        self.project.require()
        try:  # created exclusively: of two sessions creating the same name at once, the second is told
            atomic.write_json_new(self._folder(name) / "dataset.json", {"kind": kind, "created": time.time()})
        except FileExistsError:
            raise StudioError(Msg("A dataset called '{name}' already exists; pick another name.", name=name)) from None
        return self.save(name, records or [], base_version=None, note=note or "Created", author=author)

    def delete(self, name: str) -> None:
        self._require(name)
        trash = self._folder(name).with_name(f".{name}.deleting")
        self._folder(name).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise StudioError(Msg("There is no dataset called '{name}' in this project.", name=name))

    # ---- versions -----------------------------------------------------------------------------------------
    def versions(self, name: str) -> list[VersionInfo]:
        found = []
        for meta_path in sorted(self._folder(name).glob("v[0-9]*.json")):
            meta = atomic.read_json(meta_path)
            found.append(VersionInfo(int(meta_path.stem[1:]), meta["saved_at"], meta.get("author", ""),
                                     meta.get("note", ""), meta.get("rows", 0), meta.get("parent")))
        return found

    def latest_version(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1].number if versions else None

    def load(self, name: str, version: int | None = None) -> tuple[list[dict], int | None]:
        """Records of a version (the latest by default) and that version's number."""
        self._require(name)
        number = version if version is not None else self.latest_version(name)
        if number is None:
            return [], None
        path = self._folder(name) / f"v{number:04d}.jsonl"
        if not (path.with_suffix(".json")).exists():
            raise StudioError(Msg("Dataset '{name}' has no version {number}.", name=name, number=number))
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return records, number

    def save(self, name: str, records: list[dict], base_version: int | None, note: str = "",
             author: str | None = None) -> int:
        """A new version; refused with ConflictError when the latest is no longer `base_version`."""
        self.project.require()
        folder = self._folder(name)
        self._require(name)
        with FileLock(str(folder / ".lock")):
            latest = self.latest_version(name)
            if latest != base_version:
                raise ConflictError(Msg("Someone saved '{name}' (version {latest}) after you opened version "
                                        "{base}; merge your edits or reload.", name=name, latest=latest,
                                        base=base_version), latest)
            number = (latest or 0) + 1
            rows_path, meta_path = folder / f"v{number:04d}.jsonl", folder / f"v{number:04d}.json"
            if rows_path.exists() and not meta_path.exists():
                rows_path.unlink()  # left by a save that crashed before its metadata (this save holds the lock)
            # Both files are created exclusively, so even where the lock does not hold (some network file systems)
            # a version someone else saved is never replaced: this save is refused instead.
            try:
                atomic.write_bytes_new(rows_path, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                                          for row in records).encode("utf-8"))
                atomic.write_json_new(meta_path, {
                    "saved_at": time.time(), "author": author or _user(), "note": note, "rows": len(records),
                    "parent": latest})
            except FileExistsError:
                raise ConflictError(Msg("Someone saved '{name}' (version {latest}) after you opened version "
                                        "{base}; merge your edits or reload.", name=name, latest=number,
                                        base=base_version), number) from None
        return number

    def restore(self, name: str, version: int, author: str | None = None) -> int:
        """Make an old version the latest again, as a new version (history is never rewritten)."""
        records, _ = self.load(name, version)
        return self.save(name, records, self.latest_version(name), note=f"Restored version {version}",
                         author=author)

    def merge(self, name: str, mine: list[dict], base_version: int) -> MergeResult:
        """Three-way merge by record id of my edit (started from base_version) with the latest version."""
        base, _ = self.load(name, base_version)
        theirs, _ = self.load(name)
        return merge_records(base, mine, theirs)


def merge_records(base: list[dict], mine: list[dict], theirs: list[dict]) -> MergeResult:
    """Records changed on one side only take that change; changed on both sides the same way is fine;
    changed differently is a conflict (mine is kept in the result until the user decides)."""
    base_by, mine_by, theirs_by = ({r["id"]: r for r in rows} for rows in (base, mine, theirs))
    order = list(dict.fromkeys([r["id"] for r in theirs] + [r["id"] for r in mine]))
    merged, conflicts = [], []
    for record_id in order:
        b, m, t = base_by.get(record_id), mine_by.get(record_id), theirs_by.get(record_id)
        if m == t:
            chosen = m
        elif m == b:
            chosen = t          # only they changed it (or deleted it: t is None)
        elif t == b:
            chosen = m          # only I changed it
        else:
            conflicts.append((m, t))
            chosen = m if m is not None else t
        if chosen is not None:
            merged.append(chosen)
    return MergeResult(merged, conflicts)
