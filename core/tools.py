"""Tools a model may call (OpenAI function tools): validation, normalization, merging and a compact text rendering.

A tool is `{"type": "function", "function": {"name", "description", "parameters": <JSON schema>}}`; the bare
`{"name", "description", "parameters"}` form is accepted and normalized to it. Models whose chat template takes
`tools` get them through the template; every other model reads `tools_block()` in its system prompt and is asked
to answer with a JSON call, which the eval metrics parse.
"""

from __future__ import annotations

import json
import re

from core.errors import StudioError
from core.i18n import Msg

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
INSTRUCTION = ('You can call these tools. To call one, answer only with a JSON object: '
               '{"name": "<tool name>", "arguments": {"<argument>": <value>}}. If no tool fits, answer normally.')


def _function_part(tool: dict) -> dict | None:
    """The {"name", "description", "parameters"} part of an OpenAI tool or of a bare one (None if neither)."""
    if "type" in tool or "function" in tool:
        return tool.get("function") if isinstance(tool.get("function"), dict) else None
    return tool


def tool_problems(tools) -> list[Msg]:
    """Why these tools cannot be used, one sentence each; empty when they are fine."""
    if tools is None:
        return []
    if not isinstance(tools, (list, tuple)):
        return [Msg("The tools must be a JSON list of tools.")]
    found, names = [], set()
    for n, tool in enumerate(tools, start=1):
        if not isinstance(tool, dict):
            found.append(Msg("Tool {n} is not a JSON object.", n=n))
            continue
        if ("type" in tool or "function" in tool) and tool.get("type") != "function":
            found.append(Msg("Tool {n} must have \"type\": \"function\".", n=n))
            continue
        function = _function_part(tool)
        if function is None:
            found.append(Msg("Tool {n} has no \"function\" object with its name, description and parameters.", n=n))
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            found.append(Msg("Tool {n} has no name.", n=n))
        elif not NAME_PATTERN.fullmatch(name):
            found.append(Msg("Tool name '{name}' may use only letters, digits, _ and - (at most 64).", name=name))
        elif name in names:
            found.append(Msg("Tool '{name}' is listed twice.", name=name))
        else:
            names.add(name)
        if "description" in function and not isinstance(function["description"], (str, type(None))):
            found.append(Msg("The description of tool {n} must be text.", n=n))
        if "parameters" in function and not isinstance(function["parameters"], (dict, type(None))):
            found.append(Msg("The parameters of tool {n} must be a JSON object (a JSON schema).", n=n))
        try:
            json.dumps(tool)
        except (TypeError, ValueError):
            found.append(Msg("Tool {n} holds values that are not JSON.", n=n))
    return found


def normalize_tools(tools) -> tuple[dict, ...]:
    """Valid tools in the OpenAI shape (copies); raises StudioError with the first problem."""
    problems = tool_problems(tools)
    if problems:
        raise StudioError(problems[0])
    normalized = []
    for tool in tools or ():
        function = json.loads(json.dumps(_function_part(tool)))
        function = {k: v for k, v in function.items() if v is not None}
        normalized.append({"type": "function", "function": function})
    return tuple(normalized)


def tool_names(tools) -> list[str]:
    return [tool["function"]["name"] for tool in normalize_tools(tools)]


def merge_tools(base, extra) -> tuple[dict, ...]:
    """base's tools, then extra's, one per name: a tool in extra replaces base's tool of the same name."""
    merged: dict[str, dict] = {}
    for tool in normalize_tools(base) + normalize_tools(extra):
        merged[tool["function"]["name"]] = tool
    return tuple(merged.values())


def parse_tools_json(text: str) -> tuple[dict, ...]:
    """Tools typed as JSON (a list, or one tool); nothing typed means no tools. Raises StudioError."""
    if not text.strip():
        return ()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StudioError(Msg("The tools are not valid JSON (line {line}, column {column}: {reason}).",
                              line=exc.lineno, column=exc.colno, reason=exc.msg)) from exc
    return normalize_tools([value] if isinstance(value, dict) else value)


def tools_json(tools) -> str:
    """Tools as the indented JSON the Prompt page shows ("" for none)."""
    return json.dumps(list(tools), indent=2, ensure_ascii=False) if tools else ""


def _type_of(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "|".join(str(k) for k in kind)
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type"):
        kind = f"array of {_type_of(schema['items'])}"
    return str(kind) if kind else ""


def _parameter_line(name: str, schema, required: bool) -> str:
    schema = schema if isinstance(schema, dict) else {}
    facts = [fact for fact in (_type_of(schema), "required" if required else "") if fact]
    if isinstance(schema.get("enum"), list):
        facts.append("one of " + json.dumps(schema["enum"], ensure_ascii=False))
    text = f"{name} ({', '.join(facts)})" if facts else name
    # "; " separates the arguments, so a description's own semicolons become commas
    description = " ".join(str(schema.get("description") or "").split()).rstrip(".").replace(";", ",")
    return f"{text}: {description}" if description else text


def tool_line(tool: dict) -> str:
    """One tool in one line: name, description, then each argument with its type, allowed values and whether it
    is required."""
    function = tool["function"]
    description = " ".join(str(function.get("description") or "").split())
    if description and description[-1] not in ".!?":
        description += "."
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") if isinstance(parameters.get("properties"), dict) else {}
    required = set(parameters.get("required") or ())
    if properties:
        arguments = "Arguments: " + "; ".join(_parameter_line(name, schema, name in required)
                                              for name, schema in properties.items()) + "."
    else:
        arguments = "No arguments."
    return f"- {function['name']}: " + " ".join(part for part in (description, arguments) if part)


def tools_block(tools) -> str:
    """The instruction and one line per tool, for prompts whose format has no place for tools."""
    tools = normalize_tools(tools)
    if not tools:
        return ""
    return "\n".join([INSTRUCTION] + [tool_line(tool) for tool in tools])


def with_tools_block(messages: list[dict], tools) -> list[dict]:
    """The messages with the tools block at the end of the system message (one is added when there is none)."""
    block = tools_block(tools)
    if not block:
        return list(messages)
    messages = [dict(m) for m in messages]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{block}".strip()
    else:
        messages.insert(0, {"role": "system", "content": block})
    return messages
