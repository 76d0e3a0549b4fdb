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

KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNEL_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class DropOptionalKernelNotice(logging.Filter):
    """bitsandbytes logs this warning at import on CPUs with AVX512-BF16 when the optional `kernels` package is
    missing; 4-bit matmuls then use its built-in kernel, so there is nothing to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KERNEL_NOTICE)


if not any(isinstance(f, DropOptionalKernelNotice) for f in logging.getLogger(KERNEL_LOGGER).filters):
    logging.getLogger(KERNEL_LOGGER).addFilter(DropOptionalKernelNotice())


def child_environment(extra: dict | None = None) -> dict:
    """The environment for a server this command starts: the user's, without the settings added here."""
    environment = {name: value for name, value in os.environ.items() if name not in ADDED}
    return {**environment, **(extra or {})}
