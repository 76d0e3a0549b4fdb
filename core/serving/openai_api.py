"""One saved recipe version served as an OpenAI-compatible chat endpoint (`studio serve`).

    GET  /v1/models               the recipe as one model: "<project-slug>/<recipe>@v<N>"
    POST /v1/chat/completions     an answer, whole or streamed as server-sent events

Each request is answered like one question on the Chat page: the question is the last user message, and the
recipe's own system prompt, few-shot examples, retrieval and tools apply. Earlier turns and the client's system
messages are not used (the recipe was built and evaluated on single questions; a client's system message would
replace the prompt the recipe was tuned with). The passages retrieved for an answer come back in an extra
top-level "sources" field (in the first chunk when streaming), which OpenAI clients ignore.

What the server refuses before any work (core/serving/guard.py): another Host than its allow-list (421), a body
that is not application/json (415) or is over 1 MB (413). Here: a body that is not plain UTF-8 JSON (a lone
surrogate, NaN, nesting deeper than Python parses) and a question longer than MAX_CHARS_PER_TOKEN characters per
token of the model's context window (400, before anything is tokenized). An API key has at least
MIN_API_KEY_LENGTH characters.

The request's max_tokens / max_completion_tokens, temperature, top_p and stop replace the recipe's generation
settings for that request. The model is loaded once (core.models.registry) before the server accepts requests
and shared by all of them; generation runs in worker threads, so the event loop keeps serving other requests,
and a client that disconnects cancels its generation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, replace

from core import assistant
from core.errors import ContextOverflowError, EndpointError, StudioError
from core.hosts import allowed_hosts as default_allowed_hosts, is_loopback
from core.i18n import Msg
from core.secrets import get_secret, install_access_log_redaction
from core.models.base import ModelBackend
from core.models.generation import GenerationSettings, GenerationStream
from core.recipe import DEFAULT_RECIPE, Recipe, RecipeStore
from core.workspace import Project

log = logging.getLogger(__name__)
MAX_STOPS = 4  # as the OpenAI API
MAX_CHARS_PER_TOKEN = 8  # a question longer than this many characters per context token cannot fit: refused untokenized
MIN_API_KEY_LENGTH = 16


class ApiError(Exception):
    """An error answered in the OpenAI shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def body(self) -> dict:
        return {"error": {"message": str(self.message), "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Served:
    """The recipe version a server answers with, its loaded model and its few-shot pool."""
    project: Project
    recipe: Recipe
    version: int
    saved_at: float
    backend: ModelBackend
    pool: list

    @property
    def model_id(self) -> str:
        return f"{self.project.slug}/{self.recipe.name}@v{self.version}"

    @property
    def names(self) -> set[str]:
        """Model names a request may use: the id, the recipe's name, and "<recipe>@v<N>"."""
        return {self.model_id, self.recipe.name, f"{self.recipe.name}@v{self.version}"}


def load_served(project: Project, recipe_name: str | None = None, version: int | None = None,
                progress=None) -> Served:
    """A saved recipe version (the latest by default) with its model loaded; a clear StudioError otherwise."""
    store = RecipeStore(project, recipe_name or DEFAULT_RECIPE)
    versions = store.versions()
    if not versions:
        raise StudioError(Msg("Project '{project}' has no saved recipe '{recipe}'; save the recipe in the studio "
                              "first (only a saved version can be served).", project=project.name, recipe=store.name))
    chosen = versions[-1] if version is None else next((v for v in versions if v.number == version), None)
    if chosen is None:
        raise StudioError(Msg("Recipe '{name}' has no version {number}.", name=store.name, number=version))
    backend = assistant.recipe_backend(project, chosen.recipe, progress)
    return Served(project, chosen.recipe, chosen.number, chosen.saved_at, backend,
                  assistant.example_pool(project, chosen.recipe))


# --- requests -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatRequest:
    question: str
    settings: GenerationSettings
    stream: bool = False
    include_usage: bool = False


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if all(isinstance(text, str) for text in texts):
            return "\n".join(texts)
    raise ApiError(400, Msg("A message's content must be text or a list of text parts."), param="messages")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load_body(raw: bytes):
    """The parsed JSON body; ApiError(400) for one that is not strict UTF-8 JSON (NaN and Infinity are not JSON),
    nests deeper than the parser goes, or holds a lone surrogate ("\\ud800"), which no tokenizer can read."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # fails on a lone surrogate, in a key or a value
    except RecursionError:
        raise ApiError(400, Msg("The request body nests too deeply; send a flat JSON object.")) from None
    except UnicodeEncodeError:
        raise ApiError(400, Msg("The request body holds an invalid Unicode character (a lone surrogate such as "
                                "\\ud800); send valid UTF-8 text.")) from None
    except ValueError:  # UnicodeDecodeError included
        raise ApiError(400, Msg("The request body is not valid JSON.")) from None
    return body


def _question(messages) -> str:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, Msg("'messages' must be a non-empty list of messages."), param="messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise ApiError(400, Msg("'messages' has no user message; the question is the last user message."),
                       param="messages")
    return _text(users[-1].get("content"))


def _number(body: dict, name: str, integer: bool = False):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ApiError(400, Msg("'{name}' must be an integer.", name=name) if integer
                       else Msg("'{name}' must be a number.", name=name), param=name)
    return value


def _stops(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > MAX_STOPS:
        raise ApiError(400, Msg("'stop' must be a string or a list of at most {count} strings.", count=MAX_STOPS),
                       param="stop")
    return tuple(stops)


def check_question_length(question: str, context_tokens: int) -> None:
    """A cheap bound before tokenizing: a question this long cannot fit the context window whatever it says."""
    limit = MAX_CHARS_PER_TOKEN * context_tokens
    if len(question) > limit:
        raise ApiError(400, Msg("The question is {length} characters long; this model reads at most {limit} "
                                "({tokens} tokens of context). Send a shorter question.", length=len(question),
                                limit=limit, tokens=context_tokens),
                       code="context_length_exceeded", param="messages")


def parse_request(body, recipe_settings: GenerationSettings) -> ChatRequest:
    """The question and the generation settings of a chat request; ApiError(400) for a bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, Msg("The request body must be a JSON object."))
    if body.get("n") not in (None, 1):
        raise ApiError(400, Msg("Only one answer per request is supported (n=1)."), param="n")
    stream, options = body.get("stream") or False, body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ApiError(400, Msg("'stream' must be true or false, and 'stream_options' an object."), param="stream")
    max_tokens = _number(body, "max_completion_tokens", integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", integer=True)
    changes = {"max_new_tokens": ("max_tokens", max_tokens), "temperature": ("temperature", _number(body, "temperature")),
               "top_p": ("top_p", _number(body, "top_p")), "stop": ("stop", _stops(body.get("stop")))}
    settings = recipe_settings
    for field, (param, value) in changes.items():
        if value is not None:
            try:
                settings = replace(settings, **{field: value})
            except StudioError as exc:
                raise ApiError(400, exc.args[0], param=param) from exc
    return ChatRequest(_question(body.get("messages")), settings, stream, bool(options.get("include_usage")))


def finish_reason(stream: GenerationStream, settings: GenerationSettings) -> str:
    """ "length" when the answer was cut at max tokens, else "stop" (end of text, a stop string, "not found")."""
    if stream.stopped_by == "length" and stream.output_tokens >= settings.max_new_tokens:
        return "length"
    return "stop"


def usage(stream: GenerationStream) -> dict:
    return {"prompt_tokens": stream.prompt_tokens, "completion_tokens": stream.output_tokens,
            "total_tokens": stream.prompt_tokens + stream.output_tokens}


def trimmed(pieces):
    """The pieces without the answer's leading and trailing whitespace, so a streamed answer joins to exactly the
    non-streamed one (GenerationStream.text is stripped)."""
    started, pending = False, ""
    for piece in pieces:
        text = pending + piece
        if not started:
            text = text.lstrip()
        body = text.rstrip()
        pending = text[len(body):]
        if body:
            started = True
            yield body


def _studio_error(exc: StudioError) -> ApiError:
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, exc.args[0], code="context_length_exceeded", param="max_tokens")
    if isinstance(exc, EndpointError):  # the recipe's own model is a remote endpoint and it failed
        return ApiError(502, exc.args[0], type="server_error")
    return ApiError(400, exc.args[0])


# --- the app --------------------------------------------------------------------------------------------------

class _Api:
    def __init__(self, served: Served, api_key: str | None):
        self.served = served
        self._key = api_key.encode() if api_key else None

    def check_key(self, request) -> None:
        if self._key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
            raise ApiError(401, Msg("Missing or wrong API key; send it as 'Authorization: Bearer KEY'."),
                           code="invalid_api_key")

    def model_card(self) -> dict:
        return {"id": self.served.model_id, "object": "model", "created": int(self.served.saved_at),
                "owned_by": "llm-studio"}

    def check_model(self, name) -> None:
        if not isinstance(name, str) or name not in self.served.names:
            raise ApiError(404, Msg("The model '{name}' is not served here; this server serves '{model}'.",
                                    name=str(name), model=self.served.model_id), code="model_not_found", param="model")

    async def models(self, request):
        from starlette.responses import JSONResponse

        self.check_key(request)
        return JSONResponse({"object": "list", "data": [self.model_card()]})

    async def model(self, request):
        from starlette.responses import JSONResponse

        self.check_key(request)
        self.check_model(request.path_params["model"])
        return JSONResponse(self.model_card())

    async def chat(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse, StreamingResponse

        self.check_key(request)
        body = load_body(await request.body())  # the guard already read it, within MAX_BODY_BYTES
        if not isinstance(body, dict):
            raise ApiError(400, Msg("The request body must be a JSON object."))
        self.check_model(body.get("model"))
        parsed = parse_request(body, self.served.recipe.generation)
        served = self.served
        recipe = served.recipe.with_changes(generation=parsed.settings)
        check_question_length(parsed.question, assistant.context_window(recipe, served.backend))
        try:  # retrieval and prompt fitting block too: off the event loop
            prepared, stream = await run_in_threadpool(assistant.answer, recipe, parsed.question, served.backend,
                                                       served.pool, served.project)
        except StudioError as exc:
            raise _studio_error(exc) from exc
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": served.model_id}
        if parsed.stream:
            return StreamingResponse(self.events(head, prepared, stream, parsed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            text = await _run_to_end(stream, request)
        except StudioError as exc:
            raise _studio_error(exc) from exc
        return JSONResponse({
            **head, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish_reason(stream, parsed.settings)}],
            "usage": usage(stream), "sources": assistant.source_dicts(prepared, text)})

    async def events(self, head: dict, prepared, stream: GenerationStream, parsed: ChatRequest):
        """chat.completion.chunk events, then (with include_usage) a usage chunk, then [DONE]. Leaving early (the
        client disconnected: Starlette cancels this generator) cancels the generation."""
        from starlette.concurrency import iterate_in_threadpool

        def event(choices: list, **extra) -> str:
            chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
            if parsed.include_usage:
                chunk.setdefault("usage", None)
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        def delta(content: dict, finish: str | None = None) -> list:
            return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

        try:
            yield event(delta({"role": "assistant", "content": ""}), sources=assistant.source_dicts(prepared))
            async for piece in iterate_in_threadpool(trimmed(stream)):
                yield event(delta({"content": piece}))
            yield event(delta({}, finish_reason(stream, parsed.settings)))
            if parsed.include_usage:
                yield event([], usage=usage(stream))
            yield "data: [DONE]\n\n"
        except Exception as exc:  # headers are sent: the error becomes an event, as OpenAI streams do
            error = _studio_error(exc) if isinstance(exc, StudioError) else \
                ApiError(500, Msg("The model failed while answering; see the server log."), type="server_error")
            if not isinstance(exc, StudioError):
                log.exception("streamed generation failed")
            yield f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            stream.cancel()


async def _run_to_end(stream: GenerationStream, request) -> str:
    """The whole answer, generated in a worker thread; a client that leaves meanwhile cancels it."""
    from starlette.concurrency import run_in_threadpool

    task = asyncio.ensure_future(run_in_threadpool(stream.run_to_end))
    while not task.done():
        await asyncio.wait({task}, timeout=0.25)
        if not task.done() and await request.is_disconnected():
            stream.cancel()
    return task.result()


async def _api_error(request, exc: ApiError):
    from starlette.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _http_error(request, exc):
    from starlette.responses import JSONResponse

    return JSONResponse(ApiError(exc.status_code, exc.detail).body(), status_code=exc.status_code)


async def _server_error(request, exc):
    from starlette.responses import JSONResponse

    log.error("request failed: %s", type(exc).__name__)  # uvicorn logs the traceback
    return JSONResponse(ApiError(500, Msg("The server failed to answer; see its log."), type="server_error").body(),
                        status_code=500)


def create_app(project: Project, recipe_name: str | None = None, version: int | None = None,
               api_key: str | None = None, progress=None, allowed_hosts: frozenset[str] | None = None):
    """The Starlette app serving one recipe version (the latest by default). The model is loaded here, before the
    app accepts a request. With `api_key`, every request needs "Authorization: Bearer <api_key>". Requests must
    name a Host in `allowed_hosts` (default: core.hosts.allowed_hosts(), this machine and $STUDIO_ALLOWED_HOSTS)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from core.serving.guard import RequestGuard

    if api_key:
        check_api_key(api_key)
    hosts = default_allowed_hosts() if allowed_hosts is None else allowed_hosts
    api = _Api(load_served(project, recipe_name, version, progress), api_key)
    app = Starlette(routes=[Route("/v1/models", api.models), Route("/v1/models/{model:path}", api.model),
                            Route("/v1/chat/completions", api.chat, methods=["POST"])],
                    middleware=[Middleware(RequestGuard, allowed_hosts=hosts)],
                    exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error})
    app.state.served = api.served
    return app


# --- running it -----------------------------------------------------------------------------------------------

def api_key_from_env(variable: str | None) -> str | None:
    """The API key named `variable`, from the environment or Streamlit secrets (never from the command line)."""
    if not variable:
        return None
    key = get_secret(variable).strip()
    if not key:
        raise StudioError(Msg("The environment variable {variable} is not set or empty; export the API key in it "
                              "first.", variable=variable))
    return check_api_key(key, variable)


def check_api_key(key: str, variable: str | None = None) -> str:
    """The key, when it is long enough to resist guessing; a clear StudioError otherwise."""
    length = len(key.strip())
    if length >= MIN_API_KEY_LENGTH:
        return key
    make = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
    if variable:
        raise StudioError(Msg("The API key in {variable} has {length} characters; use at least {minimum}, for "
                              "example one made by: {command}", variable=variable, length=length,
                              minimum=MIN_API_KEY_LENGTH, command=make))
    raise StudioError(Msg("The API key has {length} characters; use at least {minimum}, for example one made by: "
                          "{command}", length=length, minimum=MIN_API_KEY_LENGTH, command=make))


def check_host(host: str, api_key: str | None) -> None:
    """Without an API key the server only listens on this machine."""
    if not api_key and not is_loopback(host):
        raise StudioError(Msg("Without an API key the server listens on 127.0.0.1 only; to serve on {host}, export a "
                              "key in an environment variable and pass its name with --api-key-env.", host=host))


def base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/v1"


def serve(app, host: str, port: int) -> None:
    """Run the app with uvicorn until interrupted (one process: the loaded model is shared by all requests). Key
    values sent in a URL (?api_key=...) are *** in the access log."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="info")  # configures uvicorn's loggers
    install_access_log_redaction()
    uvicorn.Server(config).run()
