"""Cell values as record fields: text, message lists (OpenAI or ShareGPT), answer and id lists, tools, expected
calls.

Lists and objects arrive as Python values (JSON Lines, Parquet, datasets) or as JSON text (CSV and Excel cells);
both are accepted. Each converter returns (value, problem); the problem is None when the value is fine.
"""

from __future__ import annotations

import datetime
import json
import math
import re

from core.i18n import Msg

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "function_call": "assistant",
                  "system": "system", "tool": "tool", "observation": "tool", "function_response": "tool"}


def message_text(message: dict) -> str | None:
    value = message.get("content", message.get("value"))
    if isinstance(value, list):  # OpenAI content parts
        return "".join(str(p.get("text") or "") for p in value if isinstance(p, dict))
    return as_text(value)


def as_messages(value, name: str, drop_nulls: bool = False) -> tuple[list | None, Msg | None]:
    """OpenAI or ShareGPT messages (or their JSON text) -> OpenAI-style message dicts."""
    value, error = _json_value(value, name)
    if error or value is None:
        return None, error
    if isinstance(value, dict) and isinstance(value.get("role"), list):  # columns of a struct list
        value = [dict(zip(value, items)) for items in zip(*value.values())]
    if not isinstance(value, list):
        return None, Msg("'{field}' should be a list of messages.", field=name)
    messages = []
    for m in value:
        if isinstance(m, dict) and "role" not in m and "from" in m:
            role = str(m.get("from") or "").strip()
            m = {"role": SHAREGPT_ROLES.get(role.lower(), role), "content": m.get("value", m.get("content"))}
        elif isinstance(m, dict):
            m = {k: v for k, v in m.items() if v is not None or not drop_nulls or k in ("role", "content")}
        messages.append(m)
    return messages, None


def as_id_list(value, name: str) -> tuple[list | None, Msg | None]:
    """A JSON list, or ids separated by commas, semicolons or new lines."""
    if isinstance(value, str) and not value.lstrip().startswith("["):
        return [p.strip() for p in re.split(r"[,;\n]", value) if p.strip()] or None, None
    value, error = _json_value(value, name)
    if error or value is None:
        return None, error
    if isinstance(value, (list, tuple)):
        return list(value), None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [as_text(value)], None
    return None, Msg("'{field}' should be a list.", field=name)


ANSWER_SEPARATOR = re.compile(r"\s+\|\s+")  # "Paris | the city of Paris": a vertical bar with spaces around


def as_answers(value, name: str) -> tuple[list | None, Msg | None]:
    """Accepted answers (an eval record's 'references') as a list of texts, from any of:

    * a list of texts (JSON Lines, Parquet, datasets), or its JSON text (a CSV or Excel cell: ``["Paris", "Paris,
      France"]``); SQuAD-style answer objects ``{"text": ..., "answer_start": ...}`` in the list give their text;
    * a SQuAD ``answers`` object, ``{"text": ["Paris", "the city"], "answer_start": [0, 4]}``;
    * plain text: answers separated by a vertical bar with spaces around it (``Paris | the city of Paris``), so
      a bar inside a word (``a|b``) stays; one answer when there is no such bar. Numbers are one answer each.

    Blank answers and exact repeats are dropped (SQuAD repeats an answer once per annotator)."""
    if blank(value):
        return None, None
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.lstrip()[:1] in ("[", "{") else None
        except ValueError:
            parsed = None
        value = parsed if isinstance(parsed, (list, dict)) else ANSWER_SEPARATOR.split(value.strip())
    if isinstance(value, dict):
        value = value.get("text", value.get("answer"))
        value = [value] if isinstance(value, str) else value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return None, Msg("'{field}' should be a list of answers (texts).", field=name)
    texts = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("text", item.get("answer"))
        if isinstance(item, bool) or not isinstance(item, (str, int, float)) or \
                (isinstance(item, float) and math.isnan(item)):
            return None, Msg("'{field}' should be a list of answers (texts).", field=name)
        texts.append(as_text(item))
    return list(dict.fromkeys(text for text in texts if text.strip())) or None, None


def as_passages(value, name: str) -> tuple[list | None, Msg | None]:
    """Gold passages: a list of {"source", "text"} objects (a single object is taken as a list of one)."""
    from core.data.records import passages_problem

    value, error = _json_value(value, name)
    if error or value is None:
        return None, error
    value = [value] if isinstance(value, dict) else value
    if passages_problem(value) is not None:
        return None, passages_problem(value)
    return [{"source": str(p.get("source") or ""), "text": p["text"]} for p in value], None


def as_tools(value, name: str) -> tuple[list | None, Msg | None]:
    """Tool definitions in the OpenAI tools schema (a single object is taken as a list of one)."""
    value, error = _json_value(value, name)
    if error or value is None:
        return None, error
    value = [value] if isinstance(value, dict) else value
    if not isinstance(value, list) or not all(isinstance(t, dict) and _tool_name(t) for t in value):
        return None, Msg("'{field}' should be a list of tools, each an object with a name.", field=name)
    return value, None


def _tool_name(tool: dict):
    inner = tool.get("function")
    name = inner.get("name") if isinstance(inner, dict) else tool.get("name")
    return isinstance(name, str) and name.strip()


def as_call(value, name: str) -> tuple[dict | None, Msg | None]:
    """{"name": ..., "arguments": ...}; an OpenAI tool call ({"function": {...}}) is unwrapped."""
    value, error = _json_value(value, name)
    if error or value is None:
        return None, error
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("function"), dict):
        value = {"name": value["function"].get("name"), "arguments": value["function"].get("arguments")}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"].strip():
        return None, Msg("'{field}' should be an object with a 'name' (and 'arguments').", field=name)
    return value, None


def _json_value(value, name: str):
    """Lists and objects as they are; text is parsed as JSON (CSV and Excel cells hold JSON text)."""
    if blank(value):
        return None, None
    if isinstance(value, str):
        try:
            return json.loads(value), None
        except ValueError as exc:
            return None, Msg("'{field}' is not valid JSON ({reason}).", field=name,
                             reason=getattr(exc, "msg", str(exc)))
    return value, None


def as_text(value) -> str | None:
    """A cell as text; numbers keep their shortest exact form (3.0 -> '3'), dates become ISO dates."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def empty(value) -> bool:
    """Empty the way `records.content` sees it (so whitespace-only text is kept, as given)."""
    return value is None or value in ("", [], {}) or (isinstance(value, float) and math.isnan(value))


def blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, (list, dict, tuple)) and not value
