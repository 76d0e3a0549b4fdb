"""Benchmarks that print ratios measured in one run. Importing the package sets what every benchmark needs before
transformers loads: offline, quiet, no tokenizer threads competing with the measured work."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
