"""An OpenAI-compatible chat endpoint (Ollama, vLLM, LM Studio, llama.cpp server) for the rungs without training."""

from __future__ import annotations

import json
import math

import httpx

from core.errors import EndpointError
from core.models.base import CompletionLabels, RenderedPrompt
from core.models.generation import GenerationSettings, GenerationStream
from core.models.source import ModelSource
from core.secrets import redact
from core.tools import normalize_tools, with_tools_block
from core.i18n import Msg

DEFAULT_CONTEXT = 4096
CHARS_PER_TOKEN = 4  # no local tokenizer for a remote model, so counts are estimates and marked so


class EndpointModel:
    approximate_tokens = True
    card = None

    def __init__(self, source: ModelSource, context_length: int = DEFAULT_CONTEXT, timeout: float = 60.0):
        self.source = source
        self.name = source.model_name
        self.base_url = source.location.rstrip("/")
        self.context_length = context_length
        self.timeout = timeout

    def _headers(self) -> dict:
        key = self.source.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def check(self) -> list[str]:
        """List the served models; a clear error when the server is down or the model is not served."""
        try:
            response = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=5.0)
        except httpx.HTTPError as exc:
            raise EndpointError(Msg("Could not reach {url} ({reason}); is the server running and is the base URL right "
                                    "(it usually ends in /v1)?", url=self.base_url, reason=type(exc).__name__)) from exc
        if response.status_code in (401, 403):
            raise EndpointError(Msg("{url} refused the API key; set it in ${variable}.", url=self.base_url,
                                    variable=self.source.api_key_env or "OPENAI_API_KEY"))
        if response.status_code >= 400:
            raise EndpointError(Msg("{url}/models answered HTTP {status}; check the base URL.", url=self.base_url,
                                    status=response.status_code))
        served = [m.get("id", "") for m in response.json().get("data", [])]
        if served and self.name not in served:
            raise EndpointError(Msg("The endpoint does not serve '{name}'; it serves: {served}.", name=self.name,
                                    served=", ".join(served[:10])))
        return served

    def render(self, messages: list[dict], labels: CompletionLabels, tools=None) -> RenderedPrompt:
        # Tools go into the system message as text, not as the request's `tools`: every server reads text, while
        # some refuse `tools` unless started with a tool-call parser (vLLM), and the estimate then counts them.
        tools = normalize_tools(tools)
        messages = with_tools_block(messages, tools)
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return RenderedPrompt(tuple(messages), transcript, False, "endpoint chat", tools=tools)

    def count_tokens(self, prompt: RenderedPrompt | str) -> int:
        text = prompt if isinstance(prompt, str) else prompt.text
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def stream(self, prompt: RenderedPrompt, settings: GenerationSettings) -> GenerationStream:
        body = {
            "model": self.name,
            "messages": list(prompt.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if settings.stop:
            body["stop"] = list(settings.stop)[:4]  # the OpenAI API accepts at most four

        def produce(emit, cancel_event):
            usage, produced = {}, 0
            try:
                with httpx.stream("POST", f"{self.base_url}/chat/completions", json=body,
                                  headers=self._headers(), timeout=self.timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        # detail redacted: a server may quote the key it refused
                        raise EndpointError(Msg("The endpoint answered HTTP {status}: {detail}",
                                                status=response.status_code, detail=redact(response.text[:200])))
                    for line in response.iter_lines():
                        if cancel_event.is_set():
                            break
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        chunk = json.loads(data)
                        usage = chunk.get("usage") or usage
                        for choice in chunk.get("choices", []):
                            piece = (choice.get("delta") or {}).get("content") or ""
                            if piece:
                                produced += 1
                                emit(piece)
            except httpx.HTTPError as exc:
                raise EndpointError(Msg("Could not reach {url} ({reason}); is the server running?", url=self.base_url,
                                        reason=type(exc).__name__)) from exc
            return (usage.get("prompt_tokens") or self.count_tokens(prompt),
                    usage.get("completion_tokens") or produced)

        return GenerationStream(produce, settings.stop, settings.max_new_tokens)
