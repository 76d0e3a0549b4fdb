"""What every model backend offers: rendering a conversation, counting tokens, streaming an answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.i18n import Msg
from core.models.generation import GenerationSettings, GenerationStream


@dataclass(frozen=True)
class CompletionLabels:
    """Plain completion template for base models, which have no chat template."""
    user: str = "Question"
    assistant: str = "Answer"

    @property
    def stop(self) -> str:
        return f"\n{self.user}:"

    @property
    def stops(self) -> tuple[str, str]:
        """A new question ends the answer, and so does a new "Answer:" line: a base model without examples often
        answers, then writes that label and answers again, and again."""
        return self.stop, f"\n{self.assistant}:"


PROMPT_FORMATS = (Msg("chat template"), Msg("completion"), Msg("endpoint chat"))  # listed for translation


# How the passage block (core.rag.retriever.context_block) starts in a prompt: a model backend finds it there to
# keep an answer from copying the passages' labels.
PASSAGES_START = "Context:\n[1] ("


@dataclass(frozen=True)
class RenderedPrompt:
    messages: tuple[dict, ...]
    text: str  # exactly what the model reads (for an endpoint, a transcript used for counting)
    add_special_tokens: bool
    format: str  # PROMPT_FORMATS: "chat template" | "completion" | "endpoint chat"
    stop: tuple[str, ...] = ()  # stops implied by the format
    tools: tuple[dict, ...] = ()  # tools the model was offered (in the chat template, or as a block in the text)


def render_completion(messages: list[dict], labels: CompletionLabels) -> str:
    parts, system = [], [m["content"] for m in messages if m["role"] == "system"]
    if system and system[0].strip():
        parts.append(system[0].strip() + "\n\n")
    for message in messages:
        if message["role"] == "user":
            parts.append(f"{labels.user}: {message['content'].strip()}\n{labels.assistant}:")
        elif message["role"] == "assistant":
            parts.append(f" {message['content'].strip()}\n\n")
    return "".join(parts)


class ModelBackend(Protocol):
    name: str
    context_length: int
    approximate_tokens: bool  # True when counts are estimates (no local tokenizer)

    def render(self, messages: list[dict], labels: CompletionLabels, tools=None) -> RenderedPrompt:
        """The prompt the model reads; `tools` (OpenAI function tools) go through the chat template when it takes
        them, else as a text block at the end of the system message (core.tools.with_tools_block)."""
        ...

    def count_tokens(self, prompt: RenderedPrompt | str) -> int: ...

    def stream(self, prompt: RenderedPrompt, settings: GenerationSettings) -> GenerationStream: ...
