"""Installing llama.cpp from the Model page (core/models/install_engine.py): pip at the locked version, its lines
turned into progress, and a failure as one sentence."""

from __future__ import annotations

import json
import sys

from core.models import install_engine


def _events(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_pip_installs_the_locked_version():
    command = install_engine.pip_command()
    assert command[:3] == [sys.executable, "-m", "pip"] and command[-1] == install_engine.SPEC
    assert command[command.index("-c") + 1] == str(install_engine.LOCK)
    assert "llama_cpp_python==" in install_engine.LOCK.read_text()  # the lock pins it, so every machine agrees
    env = install_engine.build_env()  # its build tools too, and it builds without OpenMP
    assert env["PIP_CONSTRAINT"] == str(install_engine.BUILD_CONSTRAINTS) and env["CMAKE_ARGS"] == "-DGGML_OPENMP=OFF"
    assert "scikit-build-core==" in install_engine.BUILD_CONSTRAINTS.read_text()


def test_pip_lines_become_progress_and_a_failure_one_sentence(monkeypatch, capsys):
    fake_pip = ("print('Collecting llama-cpp-python'); print('  Building wheel for llama-cpp-python'); "
                "print('ERROR: Could not build wheels for llama-cpp-python'); import sys; sys.exit(1)")
    monkeypatch.setattr(install_engine, "pip_command", lambda: [sys.executable, "-c", fake_pip])
    assert install_engine.main() == 1
    events = _events(capsys)
    messages = [e.get("message") for e in events if e.get("message")]
    assert "Downloading llama-cpp-python" in messages and "Compiling llama.cpp (a few minutes)" in messages
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress) and max(progress) < 1.0
    assert "Could not build wheels" in events[-1]["error"]


def test_a_successful_install_ends_at_full_progress(monkeypatch, capsys):
    monkeypatch.setattr(install_engine, "pip_command", lambda: [sys.executable, "-c", "print('Installing collected "
                                                                                       "packages: x')"])
    assert install_engine.main() == 0
    assert _events(capsys)[-1] == {"progress": 1.0, "message": "llama.cpp is installed",
                                   "message_template": "llama.cpp is installed", "message_params": {}}
