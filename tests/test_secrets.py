"""Secrets: keys come from the environment or a secrets.toml, reach the endpoint, and are written nowhere (logs,
recipes, feedback, dataset exports, bundles, evaluation runs)."""

from __future__ import annotations

import io
import logging
import sys
import zipfile

import pytest

from core import secrets
from core.data.formats import export_records
from core.data.pairs import save_pairs
from core.data.store import DatasetStore
from core.data.records import new_record
from core.evaluate import runs, variants
from core.feedback import record_feedback
from core.fewshot import FewShotSettings
from core.models import registry
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore
from tests.test_endpoint import server  # noqa: F401  (the fake OpenAI-compatible server fixture)

ENV_KEY = "sk-env-7f3a9c1e-DO-NOT-WRITE-5b2d"
FILE_KEY = "sk-file-0c4e8b2a-DO-NOT-WRITE-91fd"


@pytest.fixture
def keys(tmp_path, monkeypatch):
    """One key in the environment, one only in .streamlit/secrets.toml of the current folder."""
    app = tmp_path / "app"
    (app / ".streamlit").mkdir(parents=True)
    (app / ".streamlit" / "secrets.toml").write_text(f'STUDIO_TEST_FILE_KEY = "{FILE_KEY}"\nnested = {{ a = 1 }}\n')
    monkeypatch.chdir(app)
    monkeypatch.setenv("STUDIO_TEST_ENV_KEY", ENV_KEY)
    monkeypatch.delenv("STUDIO_TEST_FILE_KEY", raising=False)
    return app


def test_get_secret_reads_the_environment_then_the_secrets_files(keys, studio_home, monkeypatch):
    assert secrets.get_secret("STUDIO_TEST_ENV_KEY") == ENV_KEY
    assert secrets.get_secret("STUDIO_TEST_FILE_KEY") == FILE_KEY
    assert secrets.get_secret("nested") == "" and secrets.get_secret("") == ""
    (studio_home / "secrets.toml").write_text('STUDIO_TEST_FILE_KEY = "sk-studio-home-value"\n'
                                              'STUDIO_TEST_HOME_ONLY = "sk-studio-home-only"\n')
    assert secrets.get_secret("STUDIO_TEST_FILE_KEY") == FILE_KEY  # the current folder's file wins
    assert secrets.get_secret("STUDIO_TEST_HOME_ONLY") == "sk-studio-home-only"
    monkeypatch.setenv("STUDIO_TEST_FILE_KEY", "sk-from-the-environment")
    assert secrets.get_secret("STUDIO_TEST_FILE_KEY") == "sk-from-the-environment"  # the environment wins
    (keys / ".streamlit" / "secrets.toml").write_text('STUDIO_TEST_OTHER = "sk-edited-file-value"\n')
    assert secrets.get_secret("STUDIO_TEST_OTHER") == "sk-edited-file-value"  # an edited file is read again
    assert {"sk-studio-home-only", "sk-edited-file-value", ENV_KEY} <= set(secrets.known_secret_values())
    assert ModelSource(kind="openai", location="http://x/v1", model_name="m",
                       api_key_env="STUDIO_TEST_HOME_ONLY").api_key() == "sk-studio-home-only"


def test_the_log_filter_redacts_messages_and_tracebacks(keys):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(secrets.RedactSecrets())
    try:
        raise RuntimeError(f"refused {ENV_KEY}")
    except RuntimeError:
        # Made directly, not through the logging factory, so only the filter can redact it.
        record = logging.LogRecord("studio", logging.ERROR, __file__, 1, "key %s and %s", (ENV_KEY, FILE_KEY),
                                   sys.exc_info())
    handler.handle(record)
    written = stream.getvalue()
    assert "key *** and ***" in written and "RuntimeError: refused ***" in written
    assert ENV_KEY not in written and FILE_KEY not in written


def walk_bytes(root):
    """(path, content) of every file under root; the members of zip archives too."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        yield str(path), data
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    yield f"{path}!{name}", archive.read(name)


def test_keys_reach_the_endpoint_and_are_written_nowhere(keys, server, project, studio_home):  # noqa: F811
    from core import assistant

    server.pieces = ["4"]
    logs = studio_home / "logs" / "studio.log"
    logs.parent.mkdir()
    handler = logging.FileHandler(logs, encoding="utf-8")  # as a deployment would log; no filter of its own
    logging.getLogger().addHandler(handler)
    source = ModelSource(kind="openai", location=server.url, model_name="llama3.2", api_key_env="STUDIO_TEST_ENV_KEY")
    judge = ModelSource(kind="openai", location=server.url, model_name="qwen2.5", api_key_env="STUDIO_TEST_FILE_KEY")
    try:
        save_pairs(project, "examples", [{"prompt": "Do you ship abroad?", "response": "Yes, to the EU."}])
        DatasetStore(project).create("eval", "eval", [new_record("eval", question="When do orders ship?",
                                                                 reference="4")])
        recipe = Recipe(model=source, fewshot=FewShotSettings(enabled=True, dataset="examples", k=1),
                        generation=GenerationSettings(max_new_tokens=8))
        RecipeStore(project).save(recipe, note="endpoint")

        # Chat, then a rating with its answer and statistics.
        backend = assistant.recipe_backend(project, recipe)
        _, stream = assistant.answer(recipe, "When do orders ship?", backend, [], project)
        answer = stream.run_to_end()
        record_feedback(project, question="When do orders ship?", answer=answer, rating=-1, correction="Two days.",
                        recipe="assistant", recipe_version=1, stats=stream.stats())

        # Errors that quote the key, logged the way the studio and its jobs log.
        logging.getLogger("studio").error("endpoint refused key %s", ENV_KEY)
        logging.getLogger("core.models.endpoint").warning(f"retrying with {FILE_KEY}")
        try:
            raise ConnectionError(f"Authorization: Bearer {ENV_KEY}")
        except ConnectionError:
            logging.getLogger("core.jobs").exception("evaluation failed")

        # Dataset export and a bundle.
        exports = project.subdir("exports")
        records, _ = DatasetStore(project).load("examples")
        (exports / "examples.jsonl").write_bytes(export_records(records, "sft", "openai_chat"))
        from core.bundle import export_bundle

        export_bundle(project, destination=exports)

        # An evaluation of the recipe, graded by a judge whose key is only in secrets.toml.
        run = runs.create_eval_run(project, "eval", [variants.saved_recipe(project, "assistant")],
                                   runs.EvalOptions(semantic=False, judge_model=judge.to_dict()))
        assert runs.execute(project, run.id, lambda **e: None)["finished"]
        assert run.results()[0]["scores"].get("judge") == 0.75
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        registry.forget_backend(source)
        registry.forget_backend(judge)

    sent = {request["auth"] for request in server.requests if request["method"] == "POST"}
    assert {f"Bearer {ENV_KEY}", f"Bearer {FILE_KEY}"} <= sent  # the keys were really used
    assert "STUDIO_TEST_ENV_KEY" in (project.path / "recipes" / "assistant" / "v0001.json").read_text()
    assert "endpoint refused key ***" in logs.read_text() and "Bearer ***" in logs.read_text()
    walked = dict(walk_bytes(studio_home))
    assert any(name.endswith(".zip!recipe.json") for name in walked) and any("eval" in name for name in walked)
    leaks = [name for name, data in walked.items() if ENV_KEY.encode() in data or FILE_KEY.encode() in data]
    assert leaks == []
