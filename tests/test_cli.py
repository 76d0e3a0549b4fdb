"""The `studio` command line calls the same core functions as the pages."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core import cli
from core.data.pairs import save_pairs
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore

runner = CliRunner()


def test_project_create_and_list_json(workspace):
    assert runner.invoke(cli.app, ["project", "create", "Hỗ trợ khách hàng"]).exit_code == 0
    result = runner.invoke(cli.app, ["project", "create", "hỗ trợ KHÁCH hàng"])
    assert result.exit_code == 1 and "already exists" in result.output
    assert runner.invoke(cli.app, ["project", "create", "--sample"]).exit_code == 0
    listed = json.loads(runner.invoke(cli.app, ["project", "list", "--json"]).output)
    assert [p["name"] for p in listed] == ["Hỗ trợ khách hàng", "Lumen Bikes (sample)"]
    assert listed[0]["slug"] == "ho-tro-khach-hang" and listed[1]["recipe_version"] == 1


def test_generate_json_uses_the_recipe(workspace, tiny_model_dir):
    project = workspace.create("Shop")
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("gemma3"))))
    recipe = recipe.with_changes(fewshot=recipe.fewshot.__class__(enabled=True, k=2))
    RecipeStore(project).save(recipe)
    save_pairs(project, "examples", [{"prompt": "Hi?", "response": "Hello."}, {"prompt": "Bye?", "response": "Bye."}])
    result = runner.invoke(cli.app, ["generate", "Shop", "Do you ship?", "--json", "--max-new-tokens", "5"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["recipe_version"] == 1 and payload["examples_used"] == 2
    assert 0 < payload["output_tokens"] <= 5 and payload["prompt_tokens"] > 0


def test_generate_streams_text(workspace, tiny_model_dir):
    project = workspace.create("Shop")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("phi")))))
    result = runner.invoke(cli.app, ["generate", "shop", "Hello?", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output


def test_generate_errors_are_one_clear_line(workspace, tmp_path):
    result = runner.invoke(cli.app, ["generate", "missing", "Hi"])
    assert result.exit_code == 1 and "no project called 'missing'" in result.output
    project = workspace.create("Broken")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tmp_path / "nowhere"))))
    result = runner.invoke(cli.app, ["generate", "Broken", "Hi"])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_run_binds_localhost_by_default(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "_run_child", lambda argv, env=None: calls.append(argv) or 0)
    result = runner.invoke(cli.app, ["run", "--port", "8600"])
    assert result.exit_code == 0
    argv = calls[0]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "8600"
    assert argv[argv.index("run") + 1].endswith("studio/app.py")


def test_data_import_check_split_export_round_trip(workspace, tmp_path):
    from core.data.store import DatasetStore

    project = workspace.create("Data")
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"Câu {i}?", "response": f"Đáp {i}."}, ensure_ascii=False) + "\n"
                              for i in range(12)) + "{broken\n", encoding="utf-8")
    result = runner.invoke(cli.app, ["data", "import", "Data", str(source), "--name", "faq"])
    assert result.exit_code == 0, result.output
    assert "Imported 12 sft records into 'faq' (version 1)" in result.stdout
    assert "Line 13" in result.output  # the broken line is reported, the good ones imported
    listed = json.loads(runner.invoke(cli.app, ["data", "list", "Data", "--json"]).stdout)
    assert listed == [{"name": "faq", "kind": "sft", "rows": 12, "version": 1}]
    checked = runner.invoke(cli.app, ["data", "check", "Data", "faq", "--json"])
    report = json.loads(checked.stdout)
    assert checked.exit_code == 0 and report["ok"]  # 12 pairs: a warning to add more, not an error
    assert [f["severity"] for f in report["findings"] if f["code"] == "too_few"] == ["warning"]
    (tmp_path / "few.csv").write_text("prompt,response\na,b\n", encoding="utf-8")
    assert runner.invoke(cli.app, ["data", "import", "Data", str(tmp_path / "few.csv"), "--name", "few"]).exit_code == 0
    assert runner.invoke(cli.app, ["data", "check", "Data", "few"]).exit_code == 2  # one pair: an error
    split = runner.invoke(cli.app, ["data", "split", "Data", "faq", "--eval-fraction", "0.25", "--seed", "7"])
    assert split.exit_code == 0 and "9 train, 3 eval" in split.stdout
    out = tmp_path / "faq-export.jsonl"
    exported = runner.invoke(cli.app, ["data", "export", "Data", "faq", "--format", "openai_chat", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    again = runner.invoke(cli.app, ["data", "import", "Data", str(out), "--name", "again", "--kind", "sft"])
    assert again.exit_code == 0, again.output
    store = DatasetStore(project)
    original = [(r["prompt"], r["response"]) for r in store.load("faq")[0]]
    assert [(r["prompt"], r["response"]) for r in store.load("again")[0]] == original


def test_data_export_refuses_a_format_the_kind_lacks(workspace, tmp_path):
    from core.data.records import new_record
    from core.data.store import DatasetStore

    project = workspace.create("Data")
    DatasetStore(project).create("prefs", "preference", [new_record("preference", prompt="p", chosen="c", rejected="r")])
    result = runner.invoke(cli.app, ["data", "export", "Data", "prefs", "--format", "alpaca", "--out",
                                     str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "not available for preference" in result.output


def test_kb_ingest_search_delete(workspace, tmp_path, monkeypatch):
    from core.rag import kb as kb_module
    from tests.conftest import HashEmbedder

    monkeypatch.setattr(kb_module, "_embed", HashEmbedder(dims=384))
    monkeypatch.setattr(kb_module, "_count_tokens", lambda: (lambda text: len(text.split())))
    workspace.create("Docs")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "hours.md").write_text("# Hours\n\nWe open at nine and close at six.", encoding="utf-8")
    (folder / "giờ.txt").write_text("Cửa hàng mở cửa lúc 9 giờ sáng.", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    result = runner.invoke(cli.app, ["kb", "ingest", "Docs", str(folder)])
    assert result.exit_code == 2  # one bad file: reported, the others indexed
    assert "indexed   hours.md" in result.stdout and "indexed   giờ.txt" in result.stdout
    assert "error     empty.txt" in result.stdout
    hits = json.loads(runner.invoke(cli.app, ["kb", "search", "Docs", "mở cửa", "--mode", "fts", "--json"]).stdout)
    assert [h["source"] for h in hits] == ["giờ.txt"]
    short = runner.invoke(cli.app, ["kb", "search", "Docs", "open", "--mode", "fts", "-k", "1", "--json"])
    assert short.exit_code == 0, short.output and len(json.loads(short.stdout)) == 1  # -k as the README shows
    assert runner.invoke(cli.app, ["kb", "delete", "Docs", "giờ.txt"]).exit_code == 0
    hits = json.loads(runner.invoke(cli.app, ["kb", "search", "Docs", "mở cửa", "--mode", "fts", "--json"]).stdout)
    assert hits == []
    assert runner.invoke(cli.app, ["kb", "delete", "Docs", "nope.md"]).exit_code == 1


def _config_file(tmp_path, text: str):
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("make_args, fragment", [
    (lambda tmp: ["data", "import", "Shop", _config_file(tmp, "{}"), "--map", "prompt"], "--map takes field=column"),
    (lambda tmp: ["data", "import", "Shop", _config_file(tmp, "{}"), "--map", "=question"], "--map takes"),
    (lambda tmp: ["data", "import", "Shop", _config_file(tmp, "{}"), "--kind", "bogus"], "--kind must be one of"),
    (lambda tmp: ["train", "Shop", "--config", _config_file(tmp, '{"epochs": "3"}')], "'epochs' must be a whole"),
    (lambda tmp: ["train", "Shop", "--config", _config_file(tmp, '{"epochs": 2, "lr": 1}')], "unknown setting"),
    (lambda tmp: ["train", "Shop", "--config", _config_file(tmp, '{"epochs": 2,')], "is not valid JSON"),
    (lambda tmp: ["train", "Shop", "--config", _config_file(tmp, '[1, 2]')], "JSON object"),
    (lambda tmp: ["train", "Shop", "--config", str(tmp / "missing.json")], "Could not read"),
    (lambda tmp: ["kb", "search", "Shop", "q", "-k", "many"], ""),
])
def test_usage_errors_are_one_sentence_and_exit_2(workspace, tmp_path, make_args, fragment):
    workspace.create("Shop")
    result = runner.invoke(cli.app, make_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_stopping_studio_run_stops_its_streamlit_child(tmp_path):
    """SIGTERM (or Ctrl-C) on `studio run` ends the server it started, not only itself."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import psutil

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parent = subprocess.Popen([sys.executable, "-m", "core.cli", "run", "--port", str(port)],
                              env={**os.environ, "STUDIO_HOME": str(tmp_path)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline, children = time.time() + 60, []
        while time.time() < deadline and not children:
            children = psutil.Process(parent.pid).children(recursive=True)
            time.sleep(0.2)
        assert children, "studio run started no server"
        time.sleep(1)
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], f"still running after SIGTERM: {alive}"
    finally:
        for proc in psutil.Process().children(recursive=True):
            proc.kill()


def test_commands_print_no_library_noise_and_kb_search_loads_no_llm(tmp_path):
    """A command's output is the command's own: no optional-kernel notice, no loading bars; searching documents
    imports neither the LLM backends nor peft."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from core import cli\n"
        "try:\n"
        "    cli.app(['kb', 'search', 'Shop', 'when do you open', '--json'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import logging, torch, peft, bitsandbytes\n"
        # bitsandbytes logs this on CPUs with avx512_bf16 when the optional `kernels` package is missing
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning("
        "'Failed to load CPU gemm_4bit_forward from kernels-community: %s.', 'No module named kernels')\n"
        "from transformers.utils import logging as transformers_logging\n"
        "assert not transformers_logging.is_progress_bar_enabled(), 'loading bars are on'\n"
        "print(json.dumps(sorted(m for m in ('core.models.local', 'core.models.registry') if m in sys.modules)))\n"
    )
    env = {**os.environ, "STUDIO_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "core.cli", "project", "create", "Shop"], env=env, check=True,
                   capture_output=True)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "kernels-community" not in output and "Loading weights" not in output and "it/s]" not in output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
