"""`studio serve` refuses what it must not answer: other Hosts (DNS rebinding), cross-site "simple" bodies, huge
bodies and questions, malformed JSON, short API keys; and it keeps keys sent in a URL out of its access log."""

from __future__ import annotations

import io
import json
import logging
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from core import assistant, cli, hosts
from core.errors import StudioError
from core.secrets import RedactAccessLog, get_secret, redact_url
from core.serving import openai_api
from core.serving.guard import MAX_BODY_BYTES
from tests.test_serve import MODEL_ID, ask, running, serve, served_project  # noqa: F401 (fixtures)

LONG_KEY = "k" * 24


def chat(url: str, body=None, *, content: bytes | None = None, headers: dict | None = None) -> httpx.Response:
    if content is None:
        content = json.dumps(body if body is not None else {"model": MODEL_ID, "messages": ask()}).encode()
    return httpx.post(f"{url}/chat/completions", content=content, timeout=60,
                      headers={"Content-Type": "application/json", **(headers or {})})


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def raw_request(url: str, head: str, body: bytes = b"") -> str:
    """One HTTP exchange on a plain socket (for headers httpx would correct); the status line and body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received.decode("utf-8", "replace")


# --- 1. Host and Origin (DNS rebinding) ------------------------------------------------------------------------

@pytest.mark.parametrize("headers, allowed", [
    ({}, True),
    ({"Host": "localhost:8000"}, True),
    ({"Host": "[::1]:8000"}, True),
    ({"Host": "attacker.example"}, False),
    ({"Host": "attacker.example:8000", "Origin": "http://attacker.example:8000"}, False),
    ({"Host": "localhost:8000", "Origin": "http://attacker.example"}, False),
    ({"Host": "localhost:8000", "Origin": "http://localhost:8000"}, True),
])
def test_only_allowed_hosts_are_answered(serve, headers, allowed):
    url = serve()
    for response in (httpx.get(f"{url}/models", headers=headers, timeout=60), chat(url, headers=headers)):
        if allowed:
            assert response.status_code == 200, response.text
        else:
            assert_openai_error(response, 421, "host_not_allowed")
            assert "STUDIO_ALLOWED_HOSTS" in response.json()["error"]["message"]


def test_hosts_the_user_names_are_answered(serve, monkeypatch):
    monkeypatch.setenv(hosts.ALLOWED_HOSTS_ENV, "studio.example.com, .corp.example")
    url = serve()
    for host in ("studio.example.com", "gpu.corp.example:8000"):
        assert httpx.get(f"{url}/models", headers={"Host": host}, timeout=60).status_code == 200
    assert httpx.get(f"{url}/models", headers={"Host": "other.example"}, timeout=60).status_code == 421


def test_cli_allows_the_bound_host_and_this_machines_names(served_project, monkeypatch):  # noqa: F811
    calls = []
    monkeypatch.setattr(openai_api, "serve", lambda app, host, port: calls.append(app))
    monkeypatch.setattr(hosts, "machine_names", lambda: ("gpu-box", "192.0.2.7"))
    monkeypatch.setenv("STUDIO_TEST_KEY", LONG_KEY)
    result = CliRunner().invoke(cli.app, ["serve", "test-project", "--host", "0.0.0.0", "--api-key-env",
                                          "STUDIO_TEST_KEY"])
    assert result.exit_code == 0, result.output
    auth = {"Authorization": f"Bearer {LONG_KEY}"}
    with running(calls[0]) as url:
        for host, status in [("gpu-box:8000", 200), ("192.0.2.7:8000", 200), ("localhost", 200),
                             ("attacker.example", 421)]:
            assert httpx.get(f"{url}/models", headers={**auth, "Host": host}, timeout=60).status_code == status


# --- content types -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type, status", [
    ("text/plain", 415),
    ("text/plain;charset=UTF-8", 415),
    ("application/x-www-form-urlencoded", 415),
    ("multipart/form-data; boundary=x", 415),
    (None, 415),
    ("application/json", 200),
    ("Application/JSON; charset=utf-8", 200),
])
def test_only_json_bodies_are_read(serve, content_type, status):
    """A page on another site may POST text/plain, forms and multipart without the browser asking first."""
    url = serve()
    body = json.dumps({"model": MODEL_ID, "messages": ask()})
    head = [f"POST /v1/chat/completions HTTP/1.1", f"Host: {urlsplit(url).netloc}", "Connection: close",
            f"Content-Length: {len(body)}"] + ([f"Content-Type: {content_type}"] if content_type else [])
    answer = raw_request(url, "\r\n".join(head), body.encode())
    assert answer.startswith(f"HTTP/1.1 {status} "), answer[:300]
    if status == 415:
        assert '"code": "unsupported_media_type"' in answer and "application/json" in answer


# --- 2. malformed JSON is a 400, never a 500 --------------------------------------------------------------------

def body_with(content: str) -> bytes:
    """A chat request whose user content is `content`, spliced in as raw JSON text."""
    return ('{"model": "%s", "messages": [{"role": "user", "content": %s}]}' % (MODEL_ID, content)).encode()


@pytest.mark.parametrize("content, message", [
    (body_with(r'"a\ud800b"'), "lone surrogate"),
    (body_with(r'"\udfff"'), "lone surrogate"),
    (('{"model": "%s", "\\ud800": 1, "messages": [{"role": "user", "content": "hi"}]}' % MODEL_ID).encode(),
     "lone surrogate"),
    (body_with('[{"type": "text", "text": 5}]'), "list of text parts"),
    (body_with('[{"type": "text", "text": null}]'), "list of text parts"),
    (body_with('[{"type": "text", "text": ["a"]}]'), "list of text parts"),
    (body_with('{"text": "hi"}'), "list of text parts"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (body_with("[" * 100_000 + "]" * 100_000), "nests too deeply"),
    (body_with('{"a": ' * 50_000 + "1" + "}" * 50_000), "nests too deeply"),
    (body_with('"a"')[:-1] + b', "temperature": NaN}', "not valid JSON"),
    (body_with('"a"')[:-1] + b', "top_p": -Infinity}', "not valid JSON"),
    (b'{"model": "\xff\xfe", "messages": []}', "not valid JSON"),
    (body_with('"a"')[:-1] + b', "max_tokens": ' + b"9" * 5000 + b"}", "not valid JSON"),  # over int's digit limit
    (body_with('"ab"').replace(b'"ab"', b'"a\xed\xa0\x80b"'), "lone surrogate"),  # a surrogate as UTF-8 bytes
    (b'["not", "an", "object"]', "JSON object"),
    (b'"just a string"', "JSON object"),
])
def test_malformed_bodies_get_400_in_the_openai_shape(serve, content, message):
    url = serve()
    error = assert_openai_error(chat(url, content=content), 400)
    assert error["type"] == "invalid_request_error" and message in error["message"], error
    assert chat(url).status_code == 200  # the server goes on answering


# --- 3. size caps ----------------------------------------------------------------------------------------------

def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(serve, monkeypatch):
    monkeypatch.setattr(assistant, "answer", lambda *a, **k: pytest.fail("nothing may be answered"))
    url = serve()
    head = "\r\n".join(["POST /v1/chat/completions HTTP/1.1", f"Host: {urlsplit(url).netloc}",
                        "Content-Type: application/json", f"Content-Length: {50 * 1024 * 1024}", "Connection: close"])
    answer = raw_request(url, head)  # the 50 MB never come: the answer must not wait for them
    assert answer.startswith("HTTP/1.1 413 ") and '"code": "request_too_large"' in answer, answer[:300]


def test_a_chunked_body_over_the_cap_is_refused_while_read(serve, monkeypatch):
    monkeypatch.setattr(assistant, "answer", lambda *a, **k: pytest.fail("nothing may be answered"))
    url = serve()
    chunk = b"x" * 65536
    chunks = MAX_BODY_BYTES // len(chunk) + 1
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(chunks)) + b"0\r\n\r\n"
    head = "\r\n".join(["POST /v1/chat/completions HTTP/1.1", f"Host: {urlsplit(url).netloc}",
                        "Content-Type: application/json", "Transfer-Encoding: chunked", "Connection: close"])
    answer = raw_request(url, head, body)
    assert answer.startswith("HTTP/1.1 413 "), answer[:300]
    assert_openai_error(chat(url, content=b" " * (MAX_BODY_BYTES + 1)), 413, "request_too_large")


def test_a_question_too_long_for_the_context_is_refused_before_tokenizing(serve, served_project,  # noqa: F811
                                                                          monkeypatch):
    url = serve()
    backend = assistant.recipe_backend(served_project, openai_api.load_served(served_project).recipe)
    limit = openai_api.MAX_CHARS_PER_TOKEN * backend.context_length
    assert limit < MAX_BODY_BYTES // 2  # the question cap, not the body cap, answers here
    monkeypatch.setattr(assistant, "answer", lambda *a, **k: pytest.fail("the question must not be tokenized"))
    error = assert_openai_error(chat(url, {"model": MODEL_ID, "messages": ask("a" * (limit + 1))}), 400,
                                "context_length_exceeded")
    assert error["param"] == "messages" and str(limit) in error["message"]


@pytest.mark.parametrize("length, context, refused", [
    (800, 100, False), (801, 100, True), (0, 1, False), (9, 1, True), (8 * 131072, 131072, False),
])
def test_question_length_bound(length, context, refused):
    if refused:
        with pytest.raises(openai_api.ApiError, match="Send a shorter question") as caught:
            openai_api.check_question_length("q" * length, context)
        assert caught.value.status == 400 and caught.value.code == "context_length_exceeded"
    else:
        openai_api.check_question_length("q" * length, context)


# --- 4. API keys -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, accepted", [
    ("k", False), ("1234567", False), ("s3cret-key", False), ("x" * 15, False), ("  " + "x" * 15 + " ", False),
    ("x" * 16, True), ("sk-" + "a" * 40, True),
])
def test_api_keys_need_16_characters(monkeypatch, served_project, key, accepted):  # noqa: F811
    monkeypatch.setenv("STUDIO_TEST_KEY", key)
    if accepted:
        assert openai_api.api_key_from_env("STUDIO_TEST_KEY") == key.strip()
        return
    with pytest.raises(StudioError, match="STUDIO_TEST_KEY has .* characters; use at least 16"):
        openai_api.api_key_from_env("STUDIO_TEST_KEY")
    monkeypatch.setattr(openai_api, "load_served", lambda *a, **k: pytest.fail("the model must not load"))
    with pytest.raises(StudioError, match="at least 16"):
        openai_api.create_app(served_project, api_key=key)


def test_cli_refuses_a_short_key_at_startup(served_project, monkeypatch):  # noqa: F811
    monkeypatch.setattr(openai_api, "create_app", lambda *a, **k: pytest.fail("the model must not load"))
    monkeypatch.setenv("STUDIO_TEST_KEY", "abc1234")
    result = CliRunner().invoke(cli.app, ["serve", "Test project", "--api-key-env", "STUDIO_TEST_KEY"])
    assert result.exit_code == 1 and "use at least 16" in result.output and "abc1234" not in result.output


# --- the access log ----------------------------------------------------------------------------------------------

ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d'  # as uvicorn's access logger


def access_record(path: str, logger: logging.Logger | None = None) -> logging.LogRecord:
    args = ("127.0.0.1:50412", "GET", path, "1.1", 401)
    if logger is not None:  # through the record factory, as a real log call
        return logger.makeRecord(logger.name, logging.INFO, __file__, 1, ACCESS_FORMAT, args, None)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, ACCESS_FORMAT, args, None)


@pytest.mark.parametrize("path, shown", [
    ("/v1/models?api_key=sk-live-0123456789abcdef", "/v1/models?api_key=***"),
    ("/v1/models?x=1&apiKey=abc&token=t0k&access_token=a&password=p", "/v1/models?x=1&apiKey=***&token=***"
                                                                       "&access_token=***&password=***"),
    ("/v1/models?key=", "/v1/models?key="),
    ("/v1/models?limit=5", "/v1/models?limit=5"),
    ("/v1/models", "/v1/models"),
])
def test_keys_in_a_url_are_redacted_in_the_access_log(path, shown):
    from uvicorn.logging import AccessFormatter

    assert redact_url(path) == shown
    record = access_record(path)
    assert RedactAccessLog().filter(record) is True
    assert isinstance(record.args, tuple) and len(record.args) == 5  # the shape uvicorn's formatter unpacks
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == f'127.0.0.1:50412 - "GET {shown} HTTP/1.1" 401 Unauthorized'
    assert logging.Formatter("%(message)s").format(record) == f'127.0.0.1:50412 - "GET {shown} HTTP/1.1" 401'


def test_a_known_key_in_a_url_is_redacted_without_a_logging_error(monkeypatch, capsys):
    """The server's own key is a known secret: the process-wide redaction must rewrite it inside the record's
    arguments, not replace them with None, or uvicorn's formatter fails with '--- Logging error ---'."""
    from uvicorn.logging import AccessFormatter

    key = "sk-served-" + "z" * 20
    monkeypatch.setenv("STUDIO_SERVE_TEST_KEY", key)
    assert get_secret("STUDIO_SERVE_TEST_KEY") == key
    logger = logging.getLogger("uvicorn.access.test")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    logger.addHandler(handler)
    logger.addFilter(RedactAccessLog())
    try:
        for path in (f"/v1/models?q={key}", f"/v1/models?api_key={key}", f"/v1/{key}"):
            record = access_record(path, logger)
            assert isinstance(record.args, tuple) and len(record.args) == 5
            logger.handle(record)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ['127.0.0.1:50412 - "GET /v1/models?q=*** HTTP/1.1" 401 Unauthorized',
                     '127.0.0.1:50412 - "GET /v1/models?api_key=*** HTTP/1.1" 401 Unauthorized',
                     '127.0.0.1:50412 - "GET /v1/*** HTTP/1.1" 401 Unauthorized']
    assert "Logging error" not in capsys.readouterr().err


def test_serve_installs_the_access_log_filter(monkeypatch):
    import uvicorn

    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(self.config))
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "filters", [])
    openai_api.serve(lambda scope, receive, send: None, "127.0.0.1", 8123)
    assert ran and ran[0].port == 8123
    assert any(isinstance(f, RedactAccessLog) for f in access.filters)
