"""The `studio` command line calls the same core functions as the pages."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core import cli
from core.cli import common
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
    monkeypatch.setattr(common, "run_child", lambda argv, env=None: calls.append(argv) or 0)
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
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", str(tmp_path))  # folders are read only inside the allowed ones
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "hours.md").write_text("# Hours\n\nWe open at nine and close at six.", encoding="utf-8")
    (folder / "giờ.txt").write_text("Cửa hàng mở cửa lúc 9 giờ sáng.", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    result = runner.invoke(cli.app, ["kb", "ingest", "Docs", str(folder)])
    assert result.exit_code == 2  # one bad file: reported, the others indexed
    assert "indexed   hours.md" in result.stdout and "indexed   giờ.txt" in result.stdout
    assert "refused   empty.txt" in result.stdout  # refused before it is copied
    hits = json.loads(runner.invoke(cli.app, ["kb", "search", "Docs", "mở cửa", "--mode", "fts", "--json"]).stdout)
    assert [h["source"] for h in hits] == ["giờ.txt"]
    for flag in ("-k", "--k"):  # -k as the README shows it, --k as before
        short = runner.invoke(cli.app, ["kb", "search", "Docs", "open", "--mode", "fts", flag, "1", "--json"])
        assert short.exit_code == 0, short.output
        assert len(json.loads(short.stdout)) == 1
    assert runner.invoke(cli.app, ["kb", "delete", "Docs", "giờ.txt"]).exit_code == 0
    hits = json.loads(runner.invoke(cli.app, ["kb", "search", "Docs", "mở cửa", "--mode", "fts", "--json"]).stdout)
    assert hits == []
    assert runner.invoke(cli.app, ["kb", "delete", "Docs", "nope.md"]).exit_code == 1


def _file(tmp_path, text: str, name: str = "run.json") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _pairs(tmp_path) -> str:
    return _file(tmp_path, json.dumps({"prompt": "Hi?", "response": "Hello."}) + "\n", "pairs.jsonl")


def _not_utf8(tmp_path) -> str:
    (tmp_path / "run.json").write_bytes(b'{"epochs": "\xff"}')
    return str(tmp_path / "run.json")


# (arguments, a fragment of the one sentence): mistakes in the command's own words, found before any work starts
USAGE_ERRORS = {
    "map without =": (lambda tmp: ["data", "import", "Shop", _pairs(tmp), "--map", "prompt"],
                      "--map takes field=column"),
    "map without field": (lambda tmp: ["data", "import", "Shop", _pairs(tmp), "--map", "=question"], "--map takes"),
    "map unknown field": (lambda tmp: ["data", "import", "Shop", _pairs(tmp), "--map", "answer=response"],
                          "sft records have no field 'answer'"),
    "unknown kind": (lambda tmp: ["data", "import", "Shop", _pairs(tmp), "--kind", "bogus"],
                     "--kind must be one of sft, chat, preference, eval"),
    "unknown purpose": (lambda tmp: ["data", "check", "Shop", "faq", "--purpose", "bogus"], "--purpose must be"),
    "eval fraction": (lambda tmp: ["data", "split", "Shop", "faq", "--eval-fraction", "2"], "--eval-fraction must"),
    "unknown format": (lambda tmp: ["data", "export", "Shop", "faq", "--format", "bogus", "--out", str(tmp / "x")],
                       "--format must be one of"),
    "unknown mode": (lambda tmp: ["kb", "search", "Shop", "q", "--mode", "bogus"], "--mode must be one of"),
    "k below 1": (lambda tmp: ["kb", "search", "Shop", "q", "-k", "0"], "-k must be at least 1"),
    "unknown strategy": (lambda tmp: ["kb", "ingest", "Shop", _pairs(tmp), "--strategy", "bogus"],
                         "--strategy must be one of recursive, fixed"),
    "sizes not numbers": (lambda tmp: ["kb", "sweep", "Shop", "--queries", "q", "--chunk-sizes", "100,abc"],
                          "--chunk-sizes takes whole numbers"),
    "unknown sweep mode": (lambda tmp: ["kb", "sweep", "Shop", "--queries", "q", "--modes", "fts,bogus"],
                           "--modes must be one of"),
    "unknown metric": (lambda tmp: ["kb", "sweep", "Shop", "--queries", "q", "--metric", "bogus"],
                       "--metric must be one of"),
    "eval limit": (lambda tmp: ["eval", "Shop", "--limit", "0"], "--limit must be at least 1"),
    "train without config": (lambda tmp: ["train", "Shop"], "Give --config"),
    "config string for int": (lambda tmp: ["train", "Shop", "--config", _file(tmp, '{"epochs": "3"}')],
                              "'epochs' must be a whole number"),
    "config unknown key": (lambda tmp: ["train", "Shop", "--config", _file(tmp, '{"epochs": 2, "lr": 1}')],
                           "unknown setting(s): lr"),
    "config out of range": (lambda tmp: ["train", "Shop", "--config", _file(tmp, '{"epochs": 0}')],
                            "Epochs must be between"),
    "config bad JSON": (lambda tmp: ["train", "Shop", "--config", _file(tmp, '{"epochs": 2,')], "is not valid JSON"),
    "config not an object": (lambda tmp: ["train", "Shop", "--config", _file(tmp, "[1, 2]")], "JSON object"),
    "config missing": (lambda tmp: ["train", "Shop", "--config", str(tmp / "missing.json")], "Could not read"),
    "config a folder": (lambda tmp: ["train", "Shop", "--config", str(tmp)], "Could not read"),
    "config not UTF-8": (lambda tmp: ["train", "Shop", "--config", _not_utf8(tmp)], "not a UTF-8 text file"),
    "unknown quantization": (lambda tmp: ["export", "Shop", "-q", "Q9"], "--quantization must be one of Q8_0"),
    "unknown engine": (lambda tmp: ["engine", "vllm"], "the engine must be one of auto, transformers, llama.cpp"),
}


def _one_sentence(result) -> str:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and not result.stdout.strip(), result.output
    return lines[0]


@pytest.mark.parametrize("make_args, fragment", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_errors_are_one_sentence_and_exit_2(workspace, tmp_path, make_args, fragment):
    workspace.create("Shop")
    result = runner.invoke(cli.app, make_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert fragment in _one_sentence(result)


def test_typer_own_usage_errors_exit_2_without_traceback(workspace):
    workspace.create("Shop")
    for args in (["kb", "search", "Shop", "q", "-k", "many"], ["data", "list"], ["kb", "search", "Shop", "q", "--x"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)


@pytest.mark.parametrize("args, fragment", [
    (["data", "list", "Nope"], "no project called 'Nope'"),
    (["train", "Nope", "--config", "{config}"], "no project called 'Nope'"),
    (["kb", "delete", "Shop", "x.md", "--kb", "bad name"], "knowledge-base name"),
    (["data", "check", "Shop", "nope"], "no dataset called 'nope'"),
    (["export", "Shop", "--adapter", "missing"], "Adapter 'missing' not found"),
])
def test_other_mistakes_are_one_sentence_and_exit_1(workspace, tmp_path, args, fragment):
    workspace.create("Shop")
    config = _file(tmp_path, '{"epochs": 1}')
    result = runner.invoke(cli.app, [a.replace("{config}", config) for a in args])
    assert result.exit_code == 1, result.output
    assert fragment in _one_sentence(result)


def test_a_studio_error_no_command_caught_is_still_one_sentence(workspace, monkeypatch):
    from core.errors import StudioError
    from core.workspace import Workspace

    def broken(self):
        raise StudioError("The projects folder is locked; close the other studio.")

    monkeypatch.setattr(Workspace, "list_projects", broken)
    result = runner.invoke(cli.app, ["project", "list"])
    assert result.exit_code == 1
    assert _one_sentence(result) == "The projects folder is locked; close the other studio."


def test_export_defaults_to_a_format_the_kind_has(workspace, tmp_path):
    assert runner.invoke(cli.app, ["project", "create", "Data"]).exit_code == 0
    assert runner.invoke(cli.app, ["data", "import", "Data", _pairs(tmp_path), "--name", "faq"]).exit_code == 0
    out = tmp_path / "faq.jsonl"
    result = runner.invoke(cli.app, ["data", "export", "Data", "faq", "--out", str(out)])  # sft has no plain jsonl
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["messages"][0]["content"] == "Hi?"


def test_data_check_says_which_records_a_finding_is_about(workspace, tmp_path):
    workspace.create("Data")
    source = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(6)]
    rows.insert(4, dict(rows[1]))  # row 5 repeats row 2
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert runner.invoke(cli.app, ["data", "import", "Data", str(source), "--name", "faq"]).exit_code == 0
    checked = runner.invoke(cli.app, ["data", "check", "Data", "faq"])
    lines = checked.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "same input and output" in line)
    assert lines[at + 1].strip().startswith("records: row 2 (id ") and ", row 5 (id " in lines[at + 1]


def test_eval_ladder_prints_each_step_with_its_interval(workspace, tiny_model_dir, monkeypatch):
    from canned_ladder import ANSWERS, QUESTIONS, make_eval_project
    from core.evaluate import runs

    make_eval_project(workspace, tiny_model_dir)
    by_question = {q: i for i, (q, _) in enumerate(QUESTIONS)}
    monkeypatch.setattr(runs, "_backend", lambda project, variant: object())
    monkeypatch.setattr(runs, "_ask", lambda project, variant, record, backend, pool: {
        "answer": ANSWERS[variant.key][by_question[record["question"]]], "latency_s": 0.1, "prompt_tokens": 9,
        "output_tokens": 3, "retrieved": []})
    result = runner.invoke(cli.app, ["eval", "Eval shop", "--dataset", "faq", "--ladder", "--json"])
    assert result.exit_code == 0, result.output
    (step,) = json.loads(result.stdout[result.stdout.index("{"):])["steps"]
    assert step["variant"] == "fewshot" and step["below"] == "prompt" and step["questions"] == 3
    assert step["low"] <= step["difference"] <= step["high"] and step["difference"] > 0.3
    shown = runner.invoke(cli.app, ["eval", "Eval shop", "--dataset", "faq", "--ladder"])
    assert shown.exit_code == 0, shown.output
    assert "over Prompt (zero-shot) (95% interval" in shown.stdout


def test_engine_shows_and_saves_the_setting(workspace, monkeypatch):
    monkeypatch.delenv("STUDIO_ENGINE", raising=False)
    workspace.create("Shop")
    result = runner.invoke(cli.app, ["engine", "transformers", "--project", "Shop"])
    assert result.exit_code == 0, result.output
    assert "setting: transformers" in result.stdout
    assert "answers: transformers (transformers was chosen on the Model page.)" in result.stdout
    assert "setting: transformers" in runner.invoke(cli.app, ["engine"]).stdout
    monkeypatch.setenv("STUDIO_ENGINE", "transformers")  # the environment overrides the setting, and says so
    assert "chosen with STUDIO_ENGINE=transformers" in runner.invoke(cli.app, ["engine", "--project", "Shop"]).stdout
