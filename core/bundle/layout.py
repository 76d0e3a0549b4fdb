"""What an assistant bundle holds, and which archive paths are acceptable.

manifest.json                  format, versions, the model reference, sha256 + size of every other file
recipe.json                    the recipe version: {"name", "version", "note", "recipe"}
adapter/<file>                 the adapter folder (adapter.json + weights), when the recipe attaches one
knowledge/index.json           the knowledge base's manifest (embedder, chunking, documents); its location dropped
knowledge/passages.parquet     its passages with their vectors (the rows of its LanceDB table)
knowledge/documents/<file>     the original documents, so the knowledge base can be re-indexed
fewshot/dataset.json           {"name", "kind", "version"} of the few-shot dataset, when few-shot is on
fewshot/records.jsonl          its records
samples.jsonl                  up to 10 sample questions ({"question", "reference"})
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

from core.i18n import Msg

FORMAT = "llm-studio-assistant-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RECIPE = "recipe.json"
ADAPTER_DIR = "adapter/"
KB_INDEX = "knowledge/index.json"
KB_PASSAGES = "knowledge/passages.parquet"
KB_DOCUMENTS = "knowledge/documents/"
FEWSHOT_INFO = "fewshot/dataset.json"
FEWSHOT_RECORDS = "fewshot/records.jsonl"
SAMPLES = "samples.jsonl"
SAMPLE_LIMIT = 10
SAMPLES_DATASET = "sample-questions"  # the eval dataset an import puts the sample questions in

MAX_ENTRIES = 50_000
MAX_MANIFEST_BYTES = 16 * 2**20
DEFAULT_MAX_MB = 4096
CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def max_bundle_bytes() -> int:
    """The most an import unpacks, from $STUDIO_MAX_BUNDLE_MB (default 4096 MB): a zip bomb is refused first."""
    value = os.environ.get("STUDIO_MAX_BUNDLE_MB", "").strip()
    return int(float(value) * 2**20) if value else DEFAULT_MAX_MB * 2**20


def name_problem(name: str) -> Msg | None:
    """Why an archive path is not acceptable (None when it is): only relative paths of plain names separated by
    '/', nothing that could land outside the import folder or mean something else on another system."""
    if not isinstance(name, str) or not name:
        return Msg("an entry has no name.")
    if name.startswith("/"):
        return Msg("'{name}' is an absolute path.", name=name)
    parts = name.split("/")
    if ".." in parts:
        return Msg("'{name}' climbs out of its folder (..).", name=name)
    if "\\" in name or ":" in name or _DRIVE.match(name) or any(p in ("", ".") for p in parts) or \
            any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name) or len(name) > 400:
        return Msg("'{name}' has a drive letter, a backslash or characters not allowed in a file name.",
                   name=name.encode("unicode_escape").decode("ascii"))
    return None


def same_name_key(name: str) -> str:
    """Two names that would be one file on a case-insensitive or normalizing file system compare equal."""
    return unicodedata.normalize("NFC", name).casefold()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
