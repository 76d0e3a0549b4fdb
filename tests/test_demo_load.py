"""Load test: 8 browser sessions chat at once with one `studio demo` server on loopback (bench/demo_load.py, short).

No errors, every session answered with its own chat, and one model in memory (the server's memory does not grow
by another copy of the weights while the 8 sessions chat)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.real_model, pytest.mark.timeout(900)]
if not Path(CHROMIUM).exists():
    pytestmark.append(pytest.mark.skip(reason="Debian chromium is not installed (apt-get install chromium)"))


def test_eight_demo_sessions_on_one_server():
    from bench import demo_load

    result = demo_load.main(["--sessions", "8", "--seconds", "15", "--max-new-tokens", "24", "--no-baseline"])
    assert result["errors"] == 0, result["failures"]
    assert result["sessions_answered"] == 8
    assert result["answers"] >= 8 and result["mean_answer_tokens"] > 0
    assert result["one_model_in_memory"], result
