"""Installing the optional llama.cpp engine from the Model page: `python -m core.models.install_engine` runs pip for
llama-cpp-python (at the version requirements.lock pins) and prints one JSON event per pip line, so the page shows
progress and can cancel. pip compiles llama.cpp from source: a few minutes, and it needs the package index (or a
pip cache that holds the package)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.i18n import Msg
from core.jobs import Job, print_event
from core.workspace import studio_home

PACKAGE = "llama-cpp-python"
SPEC = "llama-cpp-python>=0.3.36,<0.4"  # pyproject.toml's `fast` extra
LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"
BUILD_CONSTRAINTS = LOCK.with_name("build-constraints.txt")
EXPECTED_S = 330.0  # a build on 2 cores; the bar moves with time until pip ends


def jobs_folder() -> Path:
    return studio_home() / "jobs" / "install-engine"


def latest_job() -> Job | None:
    folder = jobs_folder()
    started = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []
    return Job(started[-1]) if started else None


def start_job() -> Job:
    return Job.start(jobs_folder(), ["-m", "core.models.install_engine"], label="Install llama.cpp")


# llama.cpp's own thread pool instead of OpenMP: PyTorch's OpenMP threads, left spinning by the embedder in the same
# process, slowed an OpenMP build by a third (bench/README.md); the Makefile builds it the same way.
BUILD_ENV = {"CMAKE_ARGS": "-DGGML_OPENMP=OFF"}


def build_env() -> dict:
    """The environment pip runs in: no OpenMP, and the build tools pinned (build-constraints.txt) when the studio
    runs from its source folder."""
    env = {**os.environ, **BUILD_ENV}
    if BUILD_CONSTRAINTS.exists():  # PIP_CONSTRAINT also reaches the isolated build environment
        env["PIP_CONSTRAINT"] = str(BUILD_CONSTRAINTS)
    return env


def pip_command() -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", "--no-cache-dir"]
    if LOCK.exists():  # the version every other machine of this project runs
        command += ["-c", str(LOCK)]
    return command + [SPEC]


def _step(line: str) -> Msg | None:
    """What a pip line means for the person waiting, or None for lines that change nothing."""
    text = line.strip()
    if text.startswith(("Collecting", "Downloading")):
        return Msg("Downloading {package}", package=PACKAGE)
    if "Building wheel" in text or "Preparing metadata" in text or "Getting requirements" in text:
        return Msg("Compiling llama.cpp (a few minutes)")
    if text.startswith("Installing collected packages"):
        return Msg("Installing")
    return None


def main() -> int:
    started = time.monotonic()
    print_event(progress=0.01, message=Msg("Starting pip"))
    process = subprocess.Popen(pip_command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1, env=build_env())
    tail: list[str] = []
    for line in process.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        step = _step(line)
        share = min(0.95, 0.02 + (time.monotonic() - started) / EXPECTED_S)
        if step is not None:
            print_event(progress=round(share, 3), message=step)
    code = process.wait()
    if code != 0:
        reason = next((line for line in reversed(tail) if "error" in line.lower()), tail[-1] if tail else "")
        print_event(error=Msg("pip could not install llama-cpp-python ({reason}). It needs the package index (or a "
                              "pip cache) and a C++ compiler; the transformers engine keeps working.",
                              reason=reason[:200]))
        return 1
    print_event(progress=1.0, message=Msg("llama.cpp is installed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
