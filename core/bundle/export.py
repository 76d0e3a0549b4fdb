"""Export: one recipe version and everything it needs, as one .zip written atomically (see core.bundle.layout)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from core.bundle import layout, model_ref
from core.errors import StudioError
from core.i18n import Msg
from core.recipe import DEFAULT_RECIPE, Recipe, RecipeStore
from core.workspace import Project

Progress = Callable[[float, Msg], None]
Source = bytes | Path  # an entry's content: bytes in memory, or a file copied as it is read


def studio_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-customization-studio")
    except PackageNotFoundError:
        return "unknown"


def _json(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def sample_questions(project: Project, limit: int = layout.SAMPLE_LIMIT) -> list[dict]:
    """Up to `limit` questions from the project's eval datasets, else from its training pairs (rejected records
    left out), each with its reference answer when there is one."""
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    datasets = store.list()
    for kind, question, answer in (("eval", "question", "reference"), ("sft", "prompt", "response")):
        found = []
        for info in (d for d in datasets if d.kind == kind):
            for record in store.load(info.name)[0]:
                text = str(record.get(question) or "").strip()
                if record.get("status") != "rejected" and text:
                    found.append({"question": text, "reference": str(record.get(answer) or "").strip()})
                if len(found) >= limit:
                    return found
        if found:
            return found
    return []


def _adapter_entries(project: Project, recipe: Recipe) -> tuple[list[tuple[str, Source]], dict | None]:
    if not recipe.adapter:
        return [], None
    from core.models.adapters import AdapterRegistry

    info = AdapterRegistry(project).get(recipe.adapter)  # a clear error when it was deleted
    files = sorted(f for f in info.folder.rglob("*") if f.is_file() and not f.is_symlink())
    return [(layout.ADAPTER_DIR + f.relative_to(info.folder).as_posix(), f) for f in files], info.manifest


def _knowledge_entries(project: Project, recipe: Recipe, scratch: Path) -> list[tuple[str, Source]]:
    if not recipe.retriever.enabled:
        return []
    import pyarrow.parquet as pq

    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, recipe.retriever.knowledge_base)
    store = kb.store()
    if not kb.manifest_path.exists() or not store.exists(kb.name):
        raise StudioError(Msg("The recipe searches the knowledge base '{name}', which has no indexed documents; index "
                              "them on the Retriever page or turn the retriever off.", name=kb.name))
    index = {**kb.manifest(), "name": kb.name, "uri": None}  # where it lived stays here: it lands in the project
    passages = scratch / "passages.parquet"
    pq.write_table(store.export_table(kb.name), passages)
    # Under their names in the knowledge base, sub-folders included ("sub1/policy.txt" and "sub2/policy.txt").
    documents = [(source, kb.documents_dir / source) for source in index["documents"]]
    return ([(layout.KB_INDEX, _json(index)), (layout.KB_PASSAGES, passages)] +
            [(layout.KB_DOCUMENTS + source, path) for source, path in documents if path.is_file()])


def _fewshot_entries(project: Project, recipe: Recipe) -> tuple[list[tuple[str, Source]], str | None]:
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    name = recipe.fewshot.dataset
    if not recipe.fewshot.enabled or not store.exists(name):
        return [], None
    records, number = store.load(name)
    info = {"name": name, "kind": store.kind(name), "version": number}
    return [(layout.FEWSHOT_INFO, _json(info)), (layout.FEWSHOT_RECORDS, _jsonl(records))], name


def _destination(project: Project, recipe: Recipe, number: int, destination: Path | str | None) -> Path:
    filename = f"{project.slug}-{recipe.name}-v{number}.zip"
    if destination is None:
        return project.child("exports", filename, Msg("export"))
    destination = Path(destination).expanduser()
    return destination / filename if destination.is_dir() else destination


def export_bundle(project: Project, recipe_name: str = DEFAULT_RECIPE, version: int | None = None,
                  destination: Path | str | None = None, progress: Progress | None = None) -> Path:
    """Write the bundle of a recipe version (the latest by default) and return its path. `destination` is a .zip
    path or a folder; by default the project's exports/ folder."""
    progress = progress or (lambda fraction, message: None)
    project.require()
    store = RecipeStore(project, recipe_name)
    versions = store.versions()
    if not versions:
        raise StudioError(Msg("Recipe '{name}' has no saved version yet; save it on the Prompt page first.",
                              name=recipe_name))
    chosen = versions[-1] if version is None else next((v for v in versions if v.number == version), None)
    if chosen is None:
        raise StudioError(Msg("Recipe '{name}' has no version {number}.", name=recipe_name, number=version))
    recipe = chosen.recipe
    target = _destination(project, recipe, chosen.number, destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(0.0, Msg("Collecting what the recipe uses"))
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        adapter_files, adapter_manifest = _adapter_entries(project, recipe)
        fewshot_files, fewshot_name = _fewshot_entries(project, recipe)
        samples = sample_questions(project)
        entries: list[tuple[str, Source]] = [
            (layout.RECIPE, _json({"name": recipe.name, "version": chosen.number, "note": chosen.note,
                                   "saved_at": chosen.saved_at, "recipe": recipe.to_dict()})),
            *adapter_files, *_knowledge_entries(project, recipe, Path(scratch)), *fewshot_files]
        if samples:
            entries.append((layout.SAMPLES, _jsonl(samples)))
        manifest = {
            "format": layout.FORMAT, "format_version": layout.FORMAT_VERSION, "studio_version": studio_version(),
            "created": time.time(), "project": project.name,
            "recipe": {"name": recipe.name, "version": chosen.number},
            "model": model_ref.reference(recipe.model, adapter_manifest),
            "adapter": recipe.adapter, "knowledge_base": recipe.retriever.knowledge_base if recipe.retriever.enabled
            else None, "fewshot_dataset": fewshot_name, "samples": len(samples), "files": {}}
        _write_zip(target, entries, manifest, progress)
    progress(1.0, Msg("Done"))
    return target


def _write_zip(target: Path, entries: list[tuple[str, Source]], manifest: dict, progress: Progress) -> None:
    """Entries, then the manifest with each one's sha256 and size, into a temporary file renamed over `target`."""
    total = sum(len(s) if isinstance(s, bytes) else s.stat().st_size for _, s in entries) or 1
    done = 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name, source in entries:
                progress(0.05 + 0.9 * done / total, Msg("Adding {file}", file=name))
                digest, size = hashlib.sha256(), 0
                with (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")) as reader, \
                        archive.open(_info(name), "w", force_zip64=True) as writer:
                    while chunk := reader.read(layout.CHUNK):
                        digest.update(chunk)
                        writer.write(chunk)
                        size += len(chunk)
                manifest["files"][name] = {"sha256": digest.hexdigest(), "size": size}
                done += size
            archive.writestr(_info(layout.MANIFEST), _json(manifest))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16  # a plain file, as import requires
    return info
