"""The `studio` command as a user runs it, in its own process: it loads only what a command needs, prints only its
own output, and stopping a server command stops the server it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# conftest.py sets these for the test process; the command must quiet the libraries by itself.
QUIET_VARIABLES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE",
                   "TRANSFORMERS_VERBOSITY")
LLM_MODULES = ("core.models.local", "core.models.registry", "core.assistant")


def _environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in QUIET_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_importing_the_command_line_loads_no_heavy_library():
    heavy = ["torch", "transformers", "sentence_transformers", "peft", "bitsandbytes", "lancedb", "pyarrow",
             "pandas", "numpy", "streamlit"]
    code = (f"import json, sys\nimport core.cli\nprint(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_environment(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


DRIVER = r"""
import json, logging, re, sys
from core import cli  # first, as the `studio` script does


def studio(*args):
    try:
        cli.app(list(args), prog_name="studio")
    except SystemExit as exc:
        return exc.code


codes = {"ingest": studio("kb", "ingest", "Shop", sys.argv[1]),
         "search": studio("kb", "search", "Shop", "When do you open?", "-k", "1", "--json")}
llm = sorted(m for m in sys.modules if m in LLM_MODULES
             or re.match(r"transformers\.models\.(llama|gemma3?|phi3?|qwen\d*|mistral)\.modeling_", m))
embedder = "transformers.models.bert.modeling_bert" in sys.modules and "torch" in sys.modules
training_stack = sorted(m for m in ("sentence_transformers", "peft", "trl") if m in sys.modules)
codes["generate"] = studio("generate", "Shop", "Hello?", "--max-new-tokens", "3")
import bitsandbytes  # noqa: F401  (loaded by peft already; its CPU backend logs the notice at import)
notice = logging.getLogger("bitsandbytes.backends.cpu.ops")
# Logged as is on CPUs with AVX512-BF16 when the optional `kernels` package is missing.
notice.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
               "`pip install kernels` and the kernels >= 0.11.1", "No module named 'kernels'")
notice.warning("A warning a user can act on.")
# Logged by the `kernels` package (a transformers dependency from 5.25) when bitsandbytes asks it offline.
logging.getLogger("kernels._internals.hf_hub").warning(
    "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in "
    "offline mode.")
print(json.dumps({"codes": codes, "llm_after_kb": llm, "embedder": embedder, "training_after_kb": training_stack}))
"""


def test_commands_print_only_their_own_output_and_kb_never_loads_the_llm(workspace, tiny_model_dir, tmp_path):
    """`kb ingest` and `kb search` load torch and the embedder (MiniLM through transformers) but not the LLM; `generate`
    loads a model. None of them prints loading bars or bitsandbytes' optional-kernel notice; other warnings show."""
    from core.models.source import ModelSource
    from core.recipe import Recipe, RecipeStore

    project = workspace.create("Shop")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    document = tmp_path / "hours.md"
    document.write_text("# Opening hours\n\nWe open at nine and close at six, Monday to Saturday.", encoding="utf-8")
    driver = DRIVER.replace("LLM_MODULES", repr(LLM_MODULES))
    result = subprocess.run([sys.executable, "-c", driver, str(document)], cwd=REPO, env=_environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == {"ingest": 0, "search": 0, "generate": 0}, result.stderr[-3000:]
    assert report["embedder"]  # the real embedder ran: these commands did load torch
    assert report["llm_after_kb"] == []
    assert report["training_after_kb"] == []  # the embedder needs transformers alone
    assert '"source": "hours.md"' in result.stdout
    for noise in ("kernels-community", "pip install kernels", "Loading weights", "it/s]", "%|"):
        assert noise not in result.stdout + result.stderr, f"{noise!r} in the output:\n{result.stderr[-3000:]}"
    assert "A warning a user can act on." in result.stderr


def _wait_until_serving(parent: subprocess.Popen, port: int, timeout_s: float = 180) -> list:
    import psutil

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert parent.poll() is None, f"the command ended with {parent.returncode}"
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return psutil.Process(parent.pid).children(recursive=True)
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the Streamlit server did not answer")


@pytest.mark.parametrize("command, signum", [("run", signal.SIGTERM), ("run", signal.SIGINT), ("demo", signal.SIGTERM)],
                         ids=["run-SIGTERM", "run-SIGINT", "demo-SIGTERM"])
def test_stopping_the_command_stops_its_streamlit_server(workspace, studio_home, tiny_model_dir, command, signum):
    import psutil

    if command == "demo":
        from core.models.source import ModelSource
        from core.recipe import Recipe, RecipeStore

        RecipeStore(workspace.create("Shop")).save(
            Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    port = _free_port()
    argv = [sys.executable, "-m", "core.cli", command, *(["Shop"] if command == "demo" else []), "--port", str(port)]
    parent = subprocess.Popen(argv, cwd=REPO, env=_environment(STUDIO_HOME=str(studio_home)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children = _wait_until_serving(parent, port)
        assert children, "the server is not a child of the command"
        parent.send_signal(signum)  # to the command only, as `kill` or a process manager sends it
        parent.wait(timeout=20)
        _, alive = psutil.wait_procs(children, timeout=20)
        assert alive == [], f"still running after the command stopped: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()
        for child in psutil.Process().children(recursive=True):
            child.kill()


def test_a_server_that_ignores_the_signal_is_killed_after_the_grace_time():
    code = ("import sys\nfrom core.cli import common\ncommon.STOP_GRACE_S = 1\n"
            "child = [sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print(\"ready\", flush=True); time.sleep(120)']\n"
            "print('code', common.run_child(child), flush=True)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=_environment(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        started = time.time()
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=20)
        assert out.split() == ["code", "137"] and parent.returncode == 0  # the child was killed (128 + SIGKILL)
        assert time.time() - started < 10
    finally:
        if parent.poll() is None:
            parent.kill()
