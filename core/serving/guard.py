"""What a request must be before the API reads it: an allowed Host, a JSON body, at most MAX_BODY_BYTES.

`RequestGuard` is a plain ASGI middleware around the Starlette app:

* a Host (or a browser's Origin) not on the allow-list (core.hosts) gets 421: a web page that rebinds its own
  name to this machine (DNS rebinding) cannot talk to the server;
* a POST whose Content-Type is not application/json gets 415: text/plain, form and multipart bodies are what a
  page on another site may send without the browser asking first (CORS "simple requests");
* a body over MAX_BODY_BYTES gets 413, from its Content-Length before anything is read, or as soon as the bytes
  read pass the cap; the app then gets the body already read, so it never waits on a slow client.

Every refusal is an error in the OpenAI shape.
"""

from __future__ import annotations

from core.hosts import refusal
from core.i18n import Msg

MAX_BODY_BYTES = 1024 * 1024  # a chat request is a few KB; the question itself is capped by the model's context
JSON_TYPE = "application/json"
BODY_METHODS = ("POST", "PUT", "PATCH")


def _error(message, code: str) -> dict:
    from core.serving.openai_api import ApiError  # the API's own error shape

    return ApiError(400, message, code=code).body()


def media_type(content_type: str | None) -> str:
    """'application/json; charset=utf-8' -> 'application/json'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class BodyTooLarge(Exception):
    pass


class RequestGuard:
    def __init__(self, app, allowed_hosts: frozenset[str], max_body: int = MAX_BODY_BYTES):
        self.app, self.allowed_hosts, self.max_body = app, allowed_hosts, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        problem = refusal(headers.get("host"), headers.get("origin"), self.allowed_hosts)
        if problem is not None:
            return await _respond(send, 421, _error(problem, "host_not_allowed"))
        if scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        if media_type(headers.get("content-type")) != JSON_TYPE:
            return await _respond(send, 415, _error(Msg(
                "Send the request body as JSON with the header 'Content-Type: application/json'."),
                "unsupported_media_type"))
        length = headers.get("content-length", "").strip()
        if length and (not length.isdigit() or int(length) > self.max_body):
            return await _respond(send, 413, self.too_large())
        try:
            body = await self.read_body(receive)
        except BodyTooLarge:
            return await _respond(send, 413, self.too_large())
        if body is None:  # the client left while sending
            return None
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect comes

        return await self.app(scope, replay, send)

    async def read_body(self, receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def too_large(self) -> dict:
        return _error(Msg("The request body is larger than {size} KB; send a shorter question.",
                               size=self.max_body // 1024), "request_too_large")


async def _respond(send, status: int, body: dict) -> None:
    import json

    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
