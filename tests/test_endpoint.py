"""OpenAI-compatible endpoints against a small fake server on 127.0.0.1 (SSE streaming, usage, errors)."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import EndpointError
from core.models import registry
from core.models.base import CompletionLabels
from core.models.endpoint import EndpointModel
from core.models.generation import GenerationSettings
from core.models.source import ModelSource


class FakeOpenAI:
    """Configurable behaviour shared with the request handler; records what the client sent."""

    def __init__(self):
        self.models = ["llama3.2", "qwen2.5"]
        self.pieces = ["Hel", "lo ", "wor", "ld"]
        self.usage: dict | None = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
        self.api_key: str | None = None  # when set, requests need "Authorization: Bearer <key>"
        self.models_status = 200
        self.chat_status = 200
        self.requests: list[dict] = []


def _handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _authorized(self) -> bool:
            return fake.api_key is None or self.headers.get("Authorization") == f"Bearer {fake.api_key}"

        def _send_json(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            fake.requests.append({"method": "GET", "path": self.path, "auth": self.headers.get("Authorization")})
            if self.path != "/v1/models":
                return self._send_json(404, {"error": {"message": "not found"}})
            if not self._authorized():
                return self._send_json(401, {"error": {"message": "Invalid API key"}})
            if fake.models_status != 200:
                return self._send_json(fake.models_status, {"error": {"message": "broken"}})
            self._send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.requests.append({"method": "POST", "path": self.path, "body": body,
                                  "auth": self.headers.get("Authorization")})
            if self.path != "/v1/chat/completions":
                return self._send_json(404, {"error": {"message": "not found"}})
            if not self._authorized():
                return self._send_json(401, {"error": {"message": "Invalid API key"}})
            if fake.chat_status != 200:
                return self._send_json(fake.chat_status, {"error": {"message": "model overloaded"}})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

            def event(payload: str):
                self.wfile.write(f"data: {payload}\n\n".encode())
                self.wfile.flush()

            self.wfile.write(b": keep-alive comment\n\n")
            event(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
            for piece in fake.pieces:
                event(json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}, ensure_ascii=False))
            event(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            if fake.usage is not None and body.get("stream_options", {}).get("include_usage"):
                event(json.dumps({"choices": [], "usage": fake.usage}))
            event("[DONE]")

    return Handler


@pytest.fixture
def server():
    fake = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _backend(server, model="llama3.2", **kwargs) -> EndpointModel:
    return EndpointModel(ModelSource(kind="openai", location=server.url + "/", model_name=model, **kwargs),
                         timeout=10)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Xin chào?"}]


def test_check_lists_served_models(server):
    backend = _backend(server)
    assert backend.base_url == server.url  # trailing slash removed
    assert backend.check() == ["llama3.2", "qwen2.5"]
    assert server.requests[-1]["path"] == "/v1/models"
    assert server.requests[-1]["auth"] is None  # no key configured: no header


def test_check_model_not_served(server):
    with pytest.raises(EndpointError, match="does not serve 'mistral'; it serves: llama3.2, qwen2.5"):
        _backend(server, "mistral").check()


def test_check_with_empty_model_list_accepts_any_name(server):
    server.models = []
    assert _backend(server, "anything").check() == []


@pytest.mark.parametrize("status, fragment", [(401, "refused the API key"), (403, "refused the API key"),
                                              (404, "HTTP 404"), (500, "HTTP 500")])
def test_check_http_errors(server, status, fragment):
    server.models_status = status
    with pytest.raises(EndpointError, match=fragment):
        _backend(server).check()


def test_check_wrong_base_url(server):
    backend = EndpointModel(ModelSource(kind="openai", location=server.url.removesuffix("/v1"), model_name="m"))
    with pytest.raises(EndpointError, match="HTTP 404"):
        backend.check()


def test_api_key_from_environment(server, monkeypatch):
    server.api_key = "sk-test-123"
    backend = _backend(server, api_key_env="STUDIO_TEST_API_KEY")
    with pytest.raises(EndpointError, match=r"refused the API key; set it in \$STUDIO_TEST_API_KEY"):
        backend.check()
    monkeypatch.setenv("STUDIO_TEST_API_KEY", "sk-test-123")
    assert backend.check() == ["llama3.2", "qwen2.5"]
    assert server.requests[-1]["auth"] == "Bearer sk-test-123"
    assert backend.stream(backend.render(MESSAGES, CompletionLabels()), GenerationSettings()).run_to_end() == \
        "Hello world"


def test_stream_text_and_usage(server):
    backend = _backend(server)
    rendered = backend.render(MESSAGES, CompletionLabels())
    settings = GenerationSettings(temperature=0.3, top_p=0.8, max_new_tokens=50)
    stream = backend.stream(rendered, settings)
    pieces = list(stream)
    assert "".join(pieces) == "Hello world"
    assert stream.text == "Hello world"
    assert (stream.prompt_tokens, stream.output_tokens) == (12, 4)
    assert stream.stopped_by == "end"  # 4 tokens of 50: the model finished, it was not cut
    body = server.requests[-1]["body"]
    assert body["model"] == "llama3.2"
    assert body["messages"] == MESSAGES
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (50, 0.3, 0.8)
    assert "stop" not in body


def test_stream_without_usage_falls_back_to_estimates(server):
    server.usage = None
    server.pieces = ["một ", "hai ", "ba"]
    backend = _backend(server)
    rendered = backend.render(MESSAGES, CompletionLabels())
    stream = backend.stream(rendered, GenerationSettings())
    assert stream.run_to_end() == "một hai ba"
    assert stream.prompt_tokens == backend.count_tokens(rendered) == math.ceil(len(rendered.text) / 4)
    assert stream.output_tokens == 3  # one per content chunk


def test_stop_strings_are_sent_and_also_cut_locally(server):
    server.pieces = ["Answer one", "\nUser: ", "invented turn"]
    backend = _backend(server)
    stops = ("\nUser:", "###", "<END>", "\n\n\n", "fifth")
    stream = backend.stream(backend.render(MESSAGES, CompletionLabels()), GenerationSettings(stop=stops))
    assert stream.run_to_end() == "Answer one"
    assert stream.stopped_by == "stop"
    assert server.requests[-1]["body"]["stop"] == list(stops[:4])  # the API accepts at most four


@pytest.mark.parametrize("status", [401, 429, 500])
def test_stream_http_errors(server, status):
    if status == 401:
        server.api_key = "needed"
    else:
        server.chat_status = status
    stream = _backend(server).stream(_backend(server).render(MESSAGES, CompletionLabels()), GenerationSettings())
    with pytest.raises(EndpointError, match=f"HTTP {status}"):
        stream.run_to_end()


def test_render_and_count_are_estimates(server):
    backend = _backend(server)
    rendered = backend.render(MESSAGES, CompletionLabels())
    assert rendered.format == "endpoint chat"
    assert rendered.text == "system: Be brief.\nuser: Xin chào?"
    assert rendered.messages == tuple(MESSAGES)
    assert backend.approximate_tokens is True
    assert backend.count_tokens("abcdefgh") == 2 and backend.count_tokens("abcdefghi") == 3


def test_registry_opens_an_endpoint_after_checking_it(server):
    backend = registry.open_backend(ModelSource(kind="openai", location=server.url, model_name="qwen2.5"))
    assert isinstance(backend, EndpointModel)
    assert backend.name == "qwen2.5"
    assert [r["path"] for r in server.requests] == ["/v1/models"]
    with pytest.raises(EndpointError, match="does not serve"):
        registry.open_backend(ModelSource(kind="openai", location=server.url, model_name="gpt-9"))


def test_fewshot_budget_with_an_endpoint(server):
    from core.fewshot import fit_examples
    from core.prompt import PromptSettings

    backend = _backend(server)
    examples = [{"prompt": "Q1", "response": "A1"}, {"prompt": "Q2" * 400, "response": "A2"}]
    kept, rendered, budget = fit_examples(backend, PromptSettings(), "Hi?", examples, 50, 200, CompletionLabels())
    assert kept == examples[:1]  # the long example does not fit in 200 estimated tokens
    assert budget.approximate is True
    assert budget.used == backend.count_tokens(rendered)
