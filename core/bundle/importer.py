"""Import: check a bundle entry by entry, unpack it into a hidden folder with every file's size and checksum
verified, then build a new project from it; the project appears whole or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

from core import atomic
from core.bundle import layout, model_ref
from core.errors import StudioError
from core.i18n import Msg
from core.workspace import Project, Workspace, display_name

Progress = Callable[[float, Msg], None]
ORIGIN = "bundle.json"  # in the imported project: where it came from (the bundle's manifest without its file list)
_ADAPTER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def _refuse(reason: Msg) -> StudioError:
    return StudioError(Msg("The bundle was refused: {reason} Nothing was imported.", reason=reason))


def _manifest(archive: zipfile.ZipFile) -> dict:
    try:
        info = archive.getinfo(layout.MANIFEST)
    except KeyError:
        raise _refuse(Msg("it has no manifest.json, so it was not made by Export bundle.")) from None
    if info.file_size > layout.MAX_MANIFEST_BYTES:
        raise _refuse(Msg("its manifest.json is too large."))
    try:
        manifest = json.loads(archive.read(info).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise _refuse(Msg("its manifest.json cannot be read.")) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != layout.FORMAT:
        raise _refuse(Msg("its manifest.json is not the manifest of an assistant bundle."))
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > layout.FORMAT_VERSION:
        raise _refuse(Msg("it was made by a newer studio (bundle format {version}); update the studio first.",
                          version=version))
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _refuse(Msg("its manifest.json lists no files."))
    for name, entry in files.items():
        problem = layout.name_problem(name)
        if problem is not None:
            raise _refuse(problem)
        if name == layout.MANIFEST or not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or \
                entry["size"] < 0 or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
            raise _refuse(Msg("its manifest.json has a bad entry for '{name}'.", name=name))
    return manifest


def check_entries(archive: zipfile.ZipFile, max_bytes: int) -> dict:
    """Every entry a plain file with a safe, unique, relative name listed in the manifest, every listed file there,
    and the whole no larger than `max_bytes` unpacked. Returns the manifest."""
    infos = archive.infolist()
    if len(infos) > layout.MAX_ENTRIES:
        raise _refuse(Msg("it has more than {count} files.", count=layout.MAX_ENTRIES))
    seen: set[str] = set()
    for info in infos:
        problem = layout.name_problem(info.filename.rstrip("/") if info.is_dir() else info.filename)
        if problem is not None:
            raise _refuse(problem)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if info.is_dir() or kind not in (0, stat.S_IFREG):
            raise _refuse(Msg("'{name}' is a link, a folder or a special file, not a plain file.", name=info.filename))
        if info.flag_bits & 0x1:
            raise _refuse(Msg("'{name}' is encrypted.", name=info.filename))
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refuse(Msg("'{name}' uses a compression the studio does not read.", name=info.filename))
        key = layout.same_name_key(info.filename)
        if key in seen:
            raise _refuse(Msg("'{name}' appears twice.", name=info.filename))
        seen.add(key)
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise _refuse(Msg("it would unpack to {size} MB, more than the {limit} MB allowed (STUDIO_MAX_BUNDLE_MB).",
                          size=round(total / 2**20), limit=round(max_bytes / 2**20)))
    manifest = _manifest(archive)
    listed = manifest["files"]
    for info in infos:
        if info.filename != layout.MANIFEST and info.filename not in listed:
            raise _refuse(Msg("'{name}' is not listed in its manifest.", name=info.filename))
    present = {info.filename for info in infos}
    for name, entry in listed.items():
        if name not in present:
            raise _refuse(Msg("'{name}' is listed in its manifest but missing.", name=name))
        if archive.getinfo(name).file_size != entry["size"]:
            raise _refuse(Msg("'{name}' does not have the size its manifest gives.", name=name))
    return manifest


def unpack_verified(archive: zipfile.ZipFile, manifest: dict, folder: Path, progress: Progress) -> None:
    """Each listed file into `folder`, its size and sha256 checked as it is written (a lying header cannot make
    it write more than the manifest says)."""
    root = folder.resolve()
    files = manifest["files"]
    total, done = sum(e["size"] for e in files.values()) or 1, 0
    for name, entry in files.items():
        progress(0.05 + 0.6 * done / total, Msg("Checking {file}", file=name))
        target = folder / name
        if root not in target.resolve().parents:
            raise _refuse(Msg("'{name}' climbs out of its folder (..).", name=name))
        digest, size = hashlib.sha256(), 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as reader, open(target, "xb") as writer:
                while chunk := reader.read(layout.CHUNK):
                    size += len(chunk)
                    if size > entry["size"]:
                        raise _refuse(Msg("'{name}' does not have the size its manifest gives.", name=name))
                    digest.update(chunk)
                    writer.write(chunk)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # CRC error, truncated or bad data
            raise _refuse(Msg("'{name}' is damaged (it cannot be unpacked).", name=name)) from exc
        if size != entry["size"]:
            raise _refuse(Msg("'{name}' does not have the size its manifest gives.", name=name))
        if digest.hexdigest() != entry["sha256"]:
            raise _refuse(Msg("'{name}' was changed or damaged: its checksum does not match the manifest.", name=name))
        done += size


# ---- building the project --------------------------------------------------------------------------------------

def _read_json(folder: Path, name: str):
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _refuse(Msg("'{name}' cannot be read.", name=name)) from exc


def _read_jsonl(folder: Path, name: str) -> list[dict]:
    try:
        rows = [json.loads(line) for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise _refuse(Msg("'{name}' cannot be read.", name=name)) from exc
    if not all(isinstance(row, dict) for row in rows):
        raise _refuse(Msg("'{name}' cannot be read.", name=name))
    return rows


def _place_recipe(project: Project, unpacked: Path, manifest: dict, origin: str) -> None:
    from core.recipe import Recipe, RecipeStore

    data = _read_json(unpacked, layout.RECIPE)
    try:
        recipe = Recipe.from_dict(data["recipe"])  # a StudioError of its own when a setting is invalid
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refuse(Msg("'{name}' is not a recipe.", name=layout.RECIPE)) from exc
    if recipe.adapter != manifest.get("adapter"):
        raise _refuse(Msg("its recipe and its manifest name different adapters."))
    RecipeStore(project, recipe.name).save(recipe, note=f"Imported from {origin} (version {data.get('version')} of "
                                                         f"'{manifest.get('project')}')")


def _place_adapter(project: Project, unpacked: Path, adapter_id: str) -> None:
    from core.models.adapters import MANIFEST, AdapterRegistry

    if not isinstance(adapter_id, str) or not _ADAPTER_ID.fullmatch(adapter_id):
        raise _refuse(Msg("its adapter has an unusable name."))
    source = unpacked / layout.ADAPTER_DIR
    if not (source / MANIFEST).is_file() or not isinstance(_read_json(source, MANIFEST), dict):
        raise _refuse(Msg("its adapter has no adapter.json."))
    os.replace(source, AdapterRegistry(project).path(adapter_id))


def _place_knowledge(project: Project, unpacked: Path, name: str) -> None:
    import pyarrow.parquet as pq

    from core.rag.kb import KnowledgeBase
    from core.rag.parse import safe_relative_name

    kb = KnowledgeBase(project, name)  # refuses a name that is not a plain one
    index = _read_json(unpacked, layout.KB_INDEX)
    if not isinstance(index, dict) or not isinstance(index.get("documents"), dict):
        raise _refuse(Msg("'{name}' is not a knowledge-base index.", name=layout.KB_INDEX))
    documents = unpacked / layout.KB_DOCUMENTS
    kb.documents_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in documents.rglob("*") if p.is_file()) if documents.is_dir() else []:
        name = path.relative_to(documents).as_posix()  # a document's name keeps its sub-folders
        if safe_relative_name(name) != name:
            raise _refuse(Msg("'{name}' is not a plain document name.", name=layout.KB_DOCUMENTS + name))
        target = kb.documents_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    try:
        rows = pq.read_table(unpacked / layout.KB_PASSAGES)
        kb.store().import_table(kb.name, rows)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # pyarrow's errors derive from these
        raise _refuse(Msg("'{name}' is not a table of passages.", name=layout.KB_PASSAGES)) from exc
    atomic.write_json(kb.manifest_path, {**index, "name": kb.name, "uri": None})


def _place_datasets(project: Project, unpacked: Path, manifest: dict) -> None:
    from core.data.records import new_record
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    if manifest.get("fewshot_dataset"):
        info = _read_json(unpacked, layout.FEWSHOT_INFO)
        if not isinstance(info, dict) or info.get("name") != manifest["fewshot_dataset"]:
            raise _refuse(Msg("'{name}' does not match its manifest.", name=layout.FEWSHOT_INFO))
        store.create(info["name"], info.get("kind"), _read_jsonl(unpacked, layout.FEWSHOT_RECORDS),
                     note=f"Imported from a bundle (version {info.get('version')})")
    if (unpacked / layout.SAMPLES).is_file():
        samples = [row for row in _read_jsonl(unpacked, layout.SAMPLES) if str(row.get("question") or "").strip()]
        name, n = layout.SAMPLES_DATASET, 2
        while store.exists(name):
            name, n = f"{layout.SAMPLES_DATASET}-{n}", n + 1
        if samples:
            store.create(name, "eval", [new_record("eval", question=str(r["question"]),
                                                   reference=str(r.get("reference") or "")) for r in samples],
                         note="Sample questions from the bundle")


def _free_name(workspace: Workspace, name: str) -> str:
    taken = {p.name.lower() for p in workspace.list_projects()}
    chosen, n = name, 2
    while chosen.lower() in taken:
        chosen, n = f"{name} {n}", n + 1
    return chosen


def import_bundle(archive: Path | str | BinaryIO, workspace: Workspace, name: str | None = None,
                  progress: Progress | None = None, max_bytes: int | None = None) -> Project:
    """A new project from a bundle: the recipe (version 1 of the same recipe name, adapter id kept), its adapter,
    knowledge base, few-shot dataset and sample questions (eval dataset "sample-questions"). The name is the
    bundle's project name (made unique) unless `name` is given. Anything wrong with the archive raises StudioError
    before the project exists; `model_warnings(project)` then tells whether its model is on this machine."""
    progress = progress or (lambda fraction, message: None)
    origin = Path(archive if isinstance(archive, (str, Path)) else getattr(archive, "name", "") or "bundle.zip").name
    unpacked = workspace.projects_dir / f".import-{uuid.uuid4().hex[:12]}"  # hidden: never listed as a project
    try:
        try:
            opened = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise StudioError(Msg("{file} is not an assistant bundle (a .zip made by Export bundle).",
                                  file=origin)) from exc
        with opened:
            manifest = check_entries(opened, layout.max_bundle_bytes() if max_bytes is None else max_bytes)
            unpacked.mkdir(parents=True)
            unpack_verified(opened, manifest, unpacked, progress)

        def fill(project: Project) -> None:
            progress(0.7, Msg("Placing the recipe, adapter and knowledge base"))
            _place_recipe(project, unpacked, manifest, origin)
            if manifest.get("adapter"):
                _place_adapter(project, unpacked, manifest["adapter"])
            if manifest.get("knowledge_base"):
                _place_knowledge(project, unpacked, manifest["knowledge_base"])
            _place_datasets(project, unpacked, manifest)
            atomic.write_json(project.path / ORIGIN, {"imported_at": time.time(), "file": origin,
                                                      "manifest": {k: v for k, v in manifest.items() if k != "files"}})

        chosen = display_name(name or "") or _free_name(
            workspace, display_name(str(manifest.get("project") or "")) or "Imported assistant")
        project = workspace.create(chosen, fill)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    progress(1.0, Msg("Done"))
    return project


def model_warnings(project: Project) -> list[Msg]:
    """For a project made from a bundle: whether the bundle's model is on this machine and the same weights."""
    path = project.path / ORIGIN
    if not path.is_file():
        return []
    return model_ref.warnings(atomic.read_json(path).get("manifest", {}).get("model"))
