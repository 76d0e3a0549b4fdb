"""Library chatter a command-line user cannot act on, silenced before any heavy import.

Imported first by the package, so the settings are in place before torch, transformers, huggingface_hub,
sentence-transformers or bitsandbytes load. A variable the user set is left as it is. Library warnings other
than the notice filtered below still show.
"""

from __future__ import annotations

import logging
import os

# Weight-loading, download and conversion bars (transformers and sentence-transformers read the hub's switch;
# GGUF de-quantizing and other plain tqdm bars read TQDM_DISABLE). Commands print their own progress lines.
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}
ADDED = {name: value for name, value in QUIET_ENV.items() if name not in os.environ}
os.environ.update(ADDED)

# (logger, start of the message): notices about bitsandbytes' optional CPU kernels from the hub. 4-bit matmuls then
# use bitsandbytes' built-in kernel, and the studio runs offline on purpose, so there is nothing to do.
OPTIONAL_KERNEL_NOTICES = (
    # at import on CPUs with AVX512-BF16 when the `kernels` package is missing
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
    # with `kernels` installed (a dependency of transformers from 5.25) and the hub offline
    ("kernels._internals.hf_hub", "Skipping publisher trust check for 'kernels-community/"),
)


class DropOptionalKernelNotice(logging.Filter):
    def __init__(self, notice: str):
        super().__init__()
        self.notice = notice

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.notice)


for _logger_name, _notice in OPTIONAL_KERNEL_NOTICES:
    _logger = logging.getLogger(_logger_name)
    if not any(isinstance(f, DropOptionalKernelNotice) for f in _logger.filters):
        _logger.addFilter(DropOptionalKernelNotice(_notice))


def child_environment(extra: dict | None = None) -> dict:
    """The environment for a server this command starts: the user's, without the settings added here."""
    environment = {name: value for name, value in os.environ.items() if name not in ADDED}
    return {**environment, **(extra or {})}
