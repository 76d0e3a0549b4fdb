"""`studio serve`: a saved recipe behind an OpenAI-compatible endpoint, called with the official `openai` client
on a real uvicorn server (a tiny random model, so answers are gibberish but exactly reproducible)."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import ExitStack, contextmanager

import httpx
import openai
import pytest
import uvicorn
from typer.testing import CliRunner

from core import assistant, cli
from core.errors import StudioError
from core.models.generation import GenerationSettings, GenerationStream
from core.models.source import ModelSource
from core.rag.attribution import supporting
from core.rag.retriever import RetrieverSettings
from core.rag.store import Hit
from core.recipe import Recipe, RecipeStore
from core.serving import openai_api

QUESTION = "When do orders ship?"
MODEL_ID = "test-project/assistant@v1"
MAX_TOKENS = 8


@pytest.fixture
def served_project(project, tiny_model_dir):
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama", chat_template=True))),
                    generation=GenerationSettings(max_new_tokens=MAX_TOKENS))
    RecipeStore(project).save(recipe)
    return project


@contextmanager
def running(app):
    """The app on a free loopback port, served by uvicorn in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def serve(served_project):
    """serve(api_key=None, version=None) -> base URL of the served project's recipe."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(running(openai_api.create_app(served_project, **kwargs)))


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def ask(question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": question}]


def studio_answer(project, question: str = QUESTION, **generation):
    """What the studio itself answers (the Chat page and `studio generate` call this)."""
    recipe = RecipeStore(project).load()
    recipe = recipe.with_changes(generation=GenerationSettings(**{**recipe.generation.to_dict(), **generation}))
    backend = assistant.recipe_backend(project, recipe)
    prepared, stream = assistant.answer(recipe, question, backend, assistant.example_pool(project, recipe), project)
    stream.run_to_end()
    return prepared, stream


def test_answers_exactly_as_the_studio_with_token_counts(serve, served_project):
    completion = client(serve()).chat.completions.create(model=MODEL_ID, messages=ask())
    prepared, expected = studio_answer(served_project)
    assert expected.text  # the tiny model says something, so the comparison means something
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected.text
    assert completion.model == MODEL_ID and completion.object == "chat.completion"
    assert completion.usage.prompt_tokens == expected.prompt_tokens > 0
    assert completion.usage.completion_tokens == expected.output_tokens > 0
    assert completion.usage.total_tokens == expected.prompt_tokens + expected.output_tokens
    assert choice.finish_reason == ("length" if expected.output_tokens >= MAX_TOKENS else "stop")
    assert completion.model_extra["sources"] == []


def test_stream_joins_to_the_whole_answer_and_reports_usage(serve):
    api = client(serve())
    whole = api.chat.completions.create(model=MODEL_ID, messages=ask())
    chunks = list(api.chat.completions.create(model=MODEL_ID, messages=ask(), stream=True,
                                              stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL_ID for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # streamed piece by piece
    assert "".join(pieces) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    *body, last = chunks
    assert last.choices == [] and last.usage == whole.usage
    assert all(c.usage is None for c in body)


def test_stream_without_usage_ends_with_done(serve):
    with httpx.stream("POST", f"{serve()}/chat/completions", timeout=60,
                      json={"model": MODEL_ID, "messages": ask(), "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[0]["sources"] == []


def test_only_the_last_user_message_is_the_question(serve):
    api = client(serve())
    alone = api.chat.completions.create(model=MODEL_ID, messages=ask()).choices[0].message.content
    conversation = [{"role": "system", "content": "Talk like a pirate."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Arr."},
                    {"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    for model in ("assistant", "assistant@v1", MODEL_ID):  # the plain recipe name is accepted too
        answer = api.chat.completions.create(model=model, messages=conversation)
        assert answer.choices[0].message.content == alone and answer.model == MODEL_ID


def test_request_settings_override_the_recipe(serve, served_project):
    api = client(serve())
    short = api.chat.completions.create(model=MODEL_ID, messages=ask(), max_tokens=2)
    _, expected = studio_answer(served_project, max_new_tokens=2)
    assert short.choices[0].message.content == expected.text
    assert short.usage.completion_tokens == expected.output_tokens <= 2
    newer = api.chat.completions.create(model=MODEL_ID, messages=ask(), max_completion_tokens=3)
    assert newer.usage.completion_tokens == studio_answer(served_project, max_new_tokens=3)[1].output_tokens
    whole = api.chat.completions.create(model=MODEL_ID, messages=ask()).choices[0].message.content
    stop = whole[len(whole) // 2:][:3]
    cut = api.chat.completions.create(model=MODEL_ID, messages=ask(), stop=[stop])
    assert cut.choices[0].message.content == whole[:whole.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("change, param", [
    ({"temperature": 3}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"max_completion_tokens": 100000}, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"n": 2}, "n"),
    ({"stream": "yes"}, "stream"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "Hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages"),
    ({"messages": [{"role": "user", "content": "   "}]}, None),
])
def test_bad_requests_get_400_in_the_openai_shape(serve, change, param):
    response = httpx.post(f"{serve()}/chat/completions", json={"model": MODEL_ID, "messages": ask(), **change},
                          timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_bad_values_raise_the_clients_bad_request_error(serve):
    url = serve()
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(model=MODEL_ID, messages=ask(), temperature=3)
    assert caught.value.status_code == 400 and "Temperature must be between 0 and 2" in caught.value.message
    response = httpx.post(f"{url}/chat/completions", content=b"{not json", timeout=60,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_unknown_model_is_404(serve):
    api = client(serve())
    with pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model="gpt-4o", messages=ask())
    assert caught.value.body["code"] == "model_not_found" and MODEL_ID in caught.value.message
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("gpt-4o")


def test_models_lists_the_served_version(serve, served_project):
    recipe = RecipeStore(served_project).load()
    RecipeStore(served_project).save(recipe.with_changes(generation=GenerationSettings(max_new_tokens=4)))
    assert [m.id for m in client(serve()).models.list()] == ["test-project/assistant@v2"]
    older = client(serve(version=1))
    assert [m.id for m in older.models.list()] == [MODEL_ID]
    assert older.models.retrieve(MODEL_ID).id == MODEL_ID
    with pytest.raises(openai.NotFoundError):  # the server answers with the version it serves only
        older.chat.completions.create(model="assistant@v2", messages=ask())
    with pytest.raises(StudioError, match="has no version 9"):
        openai_api.create_app(served_project, version=9)
    with pytest.raises(StudioError, match="no saved recipe 'other'"):
        openai_api.create_app(served_project, "other")


def test_api_key_is_required_when_configured(serve):
    url = serve(api_key="s3cret-key-0123456789")
    with pytest.raises(openai.AuthenticationError) as caught:
        client(url, "wrong").chat.completions.create(model=MODEL_ID, messages=ask())
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").models.list()
    response = httpx.get(f"{url}/models", timeout=60)  # no Authorization header at all
    assert response.status_code == 401 and response.json()["error"]["type"] == "invalid_request_error"
    assert "s3cret" not in response.text
    good = client(url, "s3cret-key-0123456789")
    assert [m.id for m in good.models.list()] == [MODEL_ID]
    assert good.chat.completions.create(model=MODEL_ID, messages=ask()).choices[0].message.content


def test_sources_come_back_and_nothing_found_says_so(serve, served_project, monkeypatch):
    recipe = RecipeStore(served_project).load()
    RecipeStore(served_project).save(recipe.with_changes(retriever=RetrieverSettings(enabled=True)))
    hit = Hit("c1", "d1", "faq.md", 0, "Shipping", "Orders ship within two business days.", 1.0, 0.9)
    found: list = [hit]
    monkeypatch.setattr(assistant, "retrieve", lambda project, recipe, question: list(found))
    api = client(serve())
    model = "test-project/assistant@v2"
    answer = api.chat.completions.create(model=model, messages=ask())
    (source,) = answer.model_extra["sources"]
    drawn_from = supporting(answer.choices[0].message.content, [hit.text]) == [1]
    assert source.pop("supports") is drawn_from  # whether the answer holds the passage's words
    assert source == {"number": 1, "source": "faq.md", "page": 0, "heading": "Shipping", "text": hit.text,
                      "similarity": 0.9}
    first = next(iter(api.chat.completions.create(model=model, messages=ask(), stream=True)))
    assert first.model_extra["sources"][0]["source"] == "faq.md"
    found.clear()
    none = api.chat.completions.create(model=model, messages=ask())
    assert none.choices[0].message.content == RetrieverSettings().no_answer
    assert none.usage.completion_tokens == 0 and none.choices[0].finish_reason == "stop"
    assert none.model_extra["sources"] == []


def test_disconnect_cancels_generation_and_the_loop_keeps_serving(serve, monkeypatch):
    """A slow stream stands in for a long answer: while it streams, another request is answered at once, and
    closing the streaming connection cancels the generation."""
    streams: list[GenerationStream] = []
    stopped_at: list[int] = []
    real_answer = assistant.answer

    def slow_answer(recipe, question, backend, pool, project=None, **kwargs):
        prepared, _ = real_answer(recipe, question, backend, pool, project, **kwargs)

        def produce(emit, cancel_event):
            for n in range(400):
                if cancel_event.is_set():
                    stopped_at.append(n)
                    return 1, n
                emit(f"word{n} ")
                time.sleep(0.02)
            return 1, 400

        streams.append(GenerationStream(produce))
        return prepared, streams[-1]

    monkeypatch.setattr(assistant, "answer", slow_answer)
    url = serve()
    with httpx.stream("POST", f"{url}/chat/completions", timeout=60,
                      json={"model": MODEL_ID, "messages": ask(), "stream": True}) as response:
        first = next(line for line in response.iter_lines() if '"content": "' in line and "word" in line)
        assert '"word0"' in first  # the answer's whitespace is trimmed
        started = time.monotonic()
        assert httpx.get(f"{url}/models", timeout=60).status_code == 200
        assert time.monotonic() - started < 2.0  # not queued behind the generation
    deadline = time.monotonic() + 5  # the whole answer would take 8 s
    while not stopped_at:
        assert time.monotonic() < deadline, "the generation went on after the client left"
        time.sleep(0.05)
    assert len(streams) == 1 and stopped_at[0] < 200


def test_concurrent_requests_share_one_loaded_model(serve, served_project):
    url = serve()
    answers: list[str] = []

    def one():
        answers.append(client(url).chat.completions.create(model=MODEL_ID, messages=ask()).choices[0].message.content)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 3 and len(set(answers)) == 1 and answers[0]
    first = openai_api.create_app(served_project).state.served.backend
    assert openai_api.create_app(served_project).state.served.backend is first  # the registry's copy, loaded once
    assert first is assistant.recipe_backend(served_project, RecipeStore(served_project).load())


@pytest.mark.parametrize("host, key, allowed", [
    ("127.0.0.1", None, True), ("localhost", None, True), ("::1", None, True),
    ("0.0.0.0", None, False), ("192.168.1.20", None, False), ("example.com", None, False),
    ("0.0.0.0", "k", True),
])
def test_other_hosts_need_an_api_key(host, key, allowed):
    if allowed:
        openai_api.check_host(host, key)
    else:
        with pytest.raises(StudioError, match="--api-key-env"):
            openai_api.check_host(host, key)


def test_cli_refuses_a_public_host_without_a_key_before_loading(served_project, monkeypatch):
    runner = CliRunner()
    monkeypatch.setattr(openai_api, "create_app", lambda *a, **k: pytest.fail("the model must not load"))
    result = runner.invoke(cli.app, ["serve", "Test project", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "127.0.0.1 only" in result.output
    monkeypatch.delenv("STUDIO_TEST_KEY", raising=False)
    result = runner.invoke(cli.app, ["serve", "Test project", "--host", "0.0.0.0", "--api-key-env", "STUDIO_TEST_KEY"])
    assert result.exit_code == 1 and "STUDIO_TEST_KEY is not set" in result.output


def test_cli_loads_the_model_then_serves_with_the_key_from_the_environment(served_project, monkeypatch):
    calls = []
    monkeypatch.setattr(openai_api, "serve", lambda app, host, port: calls.append((app, host, port)))
    monkeypatch.setenv("STUDIO_TEST_KEY", "from-env-0123456789abc")
    result = CliRunner().invoke(cli.app, ["serve", "test-project", "--port", "8123", "--host", "0.0.0.0",
                                          "--api-key-env", "STUDIO_TEST_KEY"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/v1" in result.output and MODEL_ID in result.output
    assert "from-env-0123456789abc" not in result.output
    app, host, port = calls[0]
    assert (host, port) == ("0.0.0.0", 8123) and app.state.served.backend is not None
    with running(app) as url:
        assert httpx.get(f"{url}/models", timeout=60).status_code == 401
        assert client(url, "from-env-0123456789abc").models.list().data[0].id == MODEL_ID
