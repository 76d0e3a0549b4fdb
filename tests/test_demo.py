"""Demo mode: settings and password (core), the demo-only app (AppTest), the Demo & share page and `studio demo`."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from core import demo
from core.errors import StudioError
from core.feedback import list_feedback
from core.models import registry
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore
from tests.apptest_helpers import APP, button, open_page


@pytest.fixture
def shop(workspace, tiny_model_dir):
    project = workspace.create("Bike shop")
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))),
                    generation=GenerationSettings(max_new_tokens=6))
    RecipeStore(project).save(recipe, note="v1")
    return project


def serve_demo(monkeypatch, project, password_hash: str = "", **extra):
    settings = demo.load_settings(project).with_changes(password_hash=password_hash, **extra)
    for name, value in demo.server_environment(project, settings).items():
        monkeypatch.setenv(name, value)


def demo_app(timeout: float = 120) -> AppTest:
    return AppTest.from_file(APP, default_timeout=timeout).run()


# --- core -----------------------------------------------------------------------------------------------------

def test_password_is_stored_only_as_a_salted_hash():
    stored = demo.hash_password("correct horse")
    assert "correct horse" not in stored and stored.startswith("scrypt$")
    assert demo.check_password("correct horse", stored)
    assert not demo.check_password("correct hors", stored)
    assert not demo.check_password("correct horse", "garbage")
    assert demo.hash_password("correct horse") != stored  # a new salt each time
    with pytest.raises(StudioError, match="at least 8"):
        demo.hash_password("short")


@pytest.mark.parametrize("changes,message", [
    ({"primary_color": "blue"}, "colour"),
    ({"version": 0}, "start at 1"),
    ({"sample_questions": tuple(f"q{i}" for i in range(7))}, "At most"),
    ({"title": "x" * 81}, "80 characters"),
])
def test_settings_refuse_bad_values(changes, message):
    with pytest.raises(StudioError, match=message):
        demo.DemoSettings(**changes)


def test_settings_round_trip_and_damaged_file(shop):
    settings = demo.DemoSettings(title="Ask Velo", sample_questions=(" Hours? ", "", "Prices?"), show_sources=False)
    assert settings.sample_questions == ("Hours?", "Prices?")
    demo.save_settings(shop, settings)
    assert demo.load_settings(shop) == settings
    (demo.demo_folder(shop) / "demo.json").write_text("{not json")
    assert demo.load_settings(shop) == demo.DemoSettings()


def test_logo_must_be_a_real_small_image(shop):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    assert demo.save_logo(shop, "Logo.PNG", buffer.getvalue()) == "logo.png"
    with pytest.raises(StudioError, match="not a readable image"):
        demo.save_logo(shop, "logo.png", b"not an image")
    with pytest.raises(StudioError, match="must be a"):
        demo.save_logo(shop, "logo.svg", buffer.getvalue())
    with pytest.raises(StudioError, match="larger than 2 MB"):
        demo.save_logo(shop, "logo.png", b"0" * (demo.MAX_LOGO_BYTES + 1))
    assert demo.logo_path(shop, demo.DemoSettings(logo="logo.png")).is_file()


def test_network_needs_a_password_and_a_saved_recipe_is_required(workspace):
    demo.check_host("127.0.0.1", protected=False)
    demo.check_host("0.0.0.0", protected=True)
    with pytest.raises(StudioError, match="Set a password"):
        demo.check_host("0.0.0.0", protected=False)
    empty = workspace.create("Empty")
    with pytest.raises(StudioError, match="Save a recipe version first"):
        demo.resolve_recipe(empty, demo.DemoSettings())


# --- the demo app -----------------------------------------------------------------------------------------------

def test_demo_serves_only_the_chat(shop, monkeypatch):
    demo.save_settings(shop, demo.DemoSettings(title="Ask Velo", sample_questions=("When are you open?",)))
    serve_demo(monkeypatch, shop)
    at = demo_app()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Ask Velo"
    assert len(at.sidebar.selectbox) == 0  # no project picker, no language or model panel
    assert len(at.chat_input) == 1
    # The demo chat is the only page this app registers: build pages cannot be reached.
    with pytest.raises(ValueError, match=r"Known pages: \['[^,]*demo_chat\.py'\]"):
        at.switch_page("../pages/finetune.py")
    button(at, "When are you open?").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    at.feedback[0].set_value(1).run()
    entries = list_feedback(shop)
    assert len(entries) == 1 and entries[0]["user"] == "demo" and entries[0]["rating"] == 1
    assert entries[0]["question"] == "When are you open?" and entries[0]["recipe_version"] == 1


def test_demo_password_gate(shop, monkeypatch):
    serve_demo(monkeypatch, shop, password_hash=demo.hash_password("open sesame"))
    at = demo_app()
    assert len(at.chat_input) == 0 and len(at.text_input) == 1
    at.text_input[0].set_value("wrong guess")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error) and len(at.chat_input) == 0
    at.text_input[0].set_value("open sesame")
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert len(at.chat_input) == 1


def test_demo_sessions_share_one_model_and_keep_their_own_chats(shop, monkeypatch):
    """Sessions take turns here (AppTest runs one script at a time); tests/test_demo_load.py runs 8 at once."""
    serve_demo(monkeypatch, shop)
    source = RecipeStore(shop).load().model
    registry.forget_backend(source)  # copies other tests loaded (an adapter on the same model) do not count
    sessions = [demo_app() for _ in range(3)]
    for round_number in range(2):
        for i, at in enumerate(sessions):
            at.chat_input[0].set_value(f"Visitor {i} question {round_number}").run()
            assert not at.exception, [e.value for e in at.exception]
    for i, at in enumerate(sessions):
        assert [m.markdown[0].value for m in at.chat_message if m.name == "user"] == \
            [f"Visitor {i} question 0", f"Visitor {i} question 1"]
    assert len([key for key in registry._backends if key.startswith(source.key)]) == 1  # one copy for all


def test_present_in_this_tab_and_leave(shop):
    at = open_page("share")
    button(at, "Present in this tab").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Bike shop" and len(at.chat_input) == 1
    button(at, "Leave demo mode").click().run()
    assert at.title[0].value == "Demo & share"


def test_share_page_saves_settings_and_password_hash(shop):
    at = open_page("share")
    at.text_input(key=f"share.{shop.slug}.title").set_value("Velo helper").run()
    at.text_area(key=f"share.{shop.slug}.samples").set_value("Hours?\nPrices?").run()
    button(at, "Save demo settings").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = demo.load_settings(shop)
    assert saved.title == "Velo helper" and saved.sample_questions == ("Hours?", "Prices?")
    password_box = next(i for i in at.text_input if i.label.startswith("New password"))
    password_box.set_value("velo-2026!")
    button(at, "Set password").click().run()
    assert not at.exception, [e.value for e in at.exception]
    stored = (demo.demo_folder(shop) / "demo.json").read_text()
    assert "velo-2026!" not in stored and demo.check_password("velo-2026!", json.loads(stored)["password_hash"])


def test_share_page_warns_when_the_shown_version_ignores_indexed_documents(shop):
    from core.rag.kb import KnowledgeBase

    warning = "This recipe version does not search your indexed documents"
    at = open_page("share")
    assert not any(w.value.startswith(warning) for w in at.warning)  # no documents yet
    kb = KnowledgeBase(shop, "docs")
    manifest = kb.manifest()
    manifest["documents"] = {"faq.md": {"chunks": 3}}
    kb._write(manifest)
    at = open_page("share")
    assert not at.exception and any(w.value.startswith(warning) for w in at.warning)
    store = RecipeStore(shop)
    recipe = store.load()
    store.save(recipe.with_changes(retriever=replace(recipe.retriever, enabled=True)), note="retriever on")
    at = open_page("share")
    assert not at.exception and not any(w.value.startswith(warning) for w in at.warning)


# --- command line -------------------------------------------------------------------------------------------------

def test_cli_demo_refuses_the_network_without_password_and_passes_only_the_hash(shop, monkeypatch):
    from core import cli
    from core.cli import common

    calls = []
    monkeypatch.setattr(common, "run_child", lambda command, env: calls.append((command, env)) or 0)
    runner = CliRunner()
    refused = runner.invoke(cli.app, ["demo", shop.slug, "--host", "0.0.0.0"])
    assert refused.exit_code == 1 and "password" in refused.output and not calls
    monkeypatch.setenv(demo.PASSWORD_ENV, "a long secret")
    result = runner.invoke(cli.app, ["demo", shop.slug, "--host", "0.0.0.0", "--port", "8600"])
    assert result.exit_code == 0, result.output
    command, env = calls[0]
    assert command[command.index("--server.address") + 1] == "0.0.0.0" and "8600" in command
    served = json.loads(env[demo.DEMO_ENV])
    assert served["project"] == shop.slug and demo.check_password("a long secret", served["password_hash"])
    assert demo.PASSWORD_ENV not in env and "a long secret" not in json.dumps(env)


def test_demo_server_starts_serves_and_stops(shop):
    import socket
    import time
    import urllib.request

    from tests.apptest_helpers import APP as app_path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StudioError, match="Set a password"):
        demo.start_server(shop, app_path, "0.0.0.0", port)
    info = demo.start_server(shop, app_path, "127.0.0.1", port)
    try:
        assert demo.running_server(shop)["pid"] == info["pid"]
        with pytest.raises(StudioError, match="already running"):
            demo.start_server(shop, app_path, "127.0.0.1", port + 1)
        deadline, healthy = time.time() + 60, False
        while time.time() < deadline and not healthy:
            try:
                healthy = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok"
            except OSError:
                time.sleep(0.5)
        assert healthy, (demo.demo_folder(shop) / "server.log").read_text()[-2000:]
    finally:
        demo.stop_server(shop)
    deadline = time.time() + 20
    while demo.running_server(shop) and time.time() < deadline:
        time.sleep(0.2)
    assert demo.running_server(shop) is None


def test_demo_speaks_vietnamese(shop, monkeypatch):
    demo.save_settings(shop, demo.DemoSettings(sample_questions=("Mấy giờ mở cửa?",)))
    serve_demo(monkeypatch, shop)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["language"] = "vi"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value == "Thử một trong các câu sau:" for c in at.caption)
    assert at.chat_input[0].placeholder == "Hỏi trợ lý"
    assert button(at, "Cuộc trò chuyện mới") is not None


def test_the_model_is_prepared_before_any_visitor_comes(shop, monkeypatch):
    from core import cli
    from core.cli import common
    from core.models import registry
    from tests.apptest_helpers import APP as app_path

    monkeypatch.setattr(registry, "needs_conversion", lambda source: True)
    with pytest.raises(StudioError, match="Prepare the model first"):
        demo.start_server(shop, app_path, "127.0.0.1", 8599)
    converted, launched = [], []
    monkeypatch.setattr(registry, "model_folder", lambda source, progress=None: converted.append(source))
    monkeypatch.setattr(common, "run_child", lambda command, env: launched.append(command) or 0)
    result = CliRunner().invoke(cli.app, ["demo", shop.slug])
    assert result.exit_code == 0, result.output
    assert converted == [RecipeStore(shop).load().model] and launched  # converted first, then served
