"""From a `SourceTable` to records: which column feeds which field, and the conversion of every row.

Column names are matched to fields without regard to case, accents, spaces, '_' or '-', so 'Câu hỏi',
'CAU_HOI' and 'cau hoi' are the same name. A column of message lists (OpenAI `messages`, ShareGPT
`conversations`, TRL `chosen`/`rejected` lists) can feed several text fields: the system message goes to
'system', the first user turn to 'prompt'/'question', the assistant turn after it to 'response'/'reference',
and for 'chosen'/'rejected' the last assistant turn. Text is taken exactly as it is in the file: it is not
stripped and not Unicode-normalised.

An eval set's 'references' (further accepted answers) come from a column such as 'references', 'answers' or
'accepted answers' holding a list of texts, its JSON text, SQuAD's {"text": [...], "answer_start": [...]} or
answers separated by " | " (see values.as_answers); a record may have them instead of a 'reference'.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field

from core.data import records as rec
from core.errors import DataImportError
from core.i18n import Msg

from .table import ROW_FORMATS, Problems, SourceTable
from .values import (as_answers, as_call, as_id_list, as_messages, as_passages, as_text, as_tools, blank, empty,
                     message_text)

MAPPING_FIELDS = {
    "sft": ("prompt", "response", "system", "context"),
    "chat": ("messages", "system", "prompt", "response"),  # prompt/response build a two-turn chat from a table
    "preference": ("prompt", "chosen", "rejected"),
    "eval": ("question", "reference", "references", "gold_ids", "tools", "expected_call", "gold_passages"),
}
_PROMPT = ("prompt", "question", "instruction", "query", "user", "user message", "human", "q", "input",
           "câu hỏi", "hỏi", "yêu cầu", "lời nhắc", "câu lệnh", "chỉ dẫn", "hướng dẫn", "đầu vào")
_ANSWER = ("response", "answer", "output", "completion", "assistant", "reply", "target", "gpt", "bot", "a",
           "trả lời", "câu trả lời", "đáp án", "phản hồi", "đầu ra", "kết quả")
_ALIASES = {
    "prompt": _PROMPT,
    "response": _ANSWER,
    "system": ("system", "system prompt", "system message", "hệ thống", "lời nhắc hệ thống", "chỉ thị hệ thống"),
    "context": ("context", "input", "passage", "document", "background", "ngữ cảnh", "bối cảnh", "tài liệu",
                "đoạn văn", "đầu vào"),
    "chosen": ("chosen", "chosen response", "preferred", "better", "good", "được chọn", "câu trả lời tốt", "tốt",
               "ưu tiên"),
    "rejected": ("rejected", "rejected response", "dispreferred", "worse", "bad", "bị loại", "câu trả lời tệ",
                 "tệ", "bị từ chối"),
    "question": _PROMPT,
    "reference": ("reference", "expected answer", "expected output", "ground truth", "gold answer", "gold",
                  "expected", "tham chiếu", "đáp án đúng", "câu trả lời mẫu", "kết quả mong đợi") + _ANSWER,
    "references": ("references", "answers", "accepted answers", "reference answers", "alternative answers",
                   "ground truths", "gold answers", "các đáp án", "các câu trả lời", "đáp án chấp nhận"),
    "gold_ids": ("gold ids", "gold id", "gold", "doc ids", "document ids", "relevant ids", "source ids",
                 "mã tài liệu", "id tài liệu"),
    "gold_passages": ("gold passages", "gold passage", "relevant passages", "supporting passages",
                      "đoạn văn liên quan"),
    "tools": ("tools", "functions", "tool list", "công cụ"),
    "expected_call": ("expected call", "expected tool call", "tool call", "function call", "lệnh gọi mong đợi",
                      "lời gọi mong đợi"),
    "messages": ("messages", "conversations", "conversation", "dialog", "dialogue", "chat", "hội thoại",
                 "cuộc hội thoại", "tin nhắn"),
}
LAYOUT_KINDS = {"openai_messages": "chat", "sharegpt": "chat", "alpaca": "sft", "prompt_completion": "sft",
                "preference": "preference", "eval": "eval"}
_EVAL_SIGNS = ("reference", "expected answer", "expected output", "ground truth", "gold answer", "gold ids",
               "gold passages", "references", "answers", "accepted answers", "reference answers", "ground truths",
               "gold answers",
               "expected call", "expected tool call", "tham chiếu", "đáp án đúng", "kết quả mong đợi")

def match_key(name) -> str:
    """A column name as compared with aliases: no case, no accents (đ -> d), one space for _ - . : and spaces."""
    text = unicodedata.normalize("NFD", str(name).replace("đ", "d").replace("Đ", "D"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[\s_\-.:]+", " ", text).strip().casefold()


ALIASES = {f: tuple(dict.fromkeys(match_key(a) for a in names)) for f, names in _ALIASES.items()}
EVAL_SIGNS = {match_key(a) for a in _EVAL_SIGNS}


@dataclass
class ImportResult:
    """Records ready to store, and what was wrong: the table's problems first, then one per skipped row."""

    records: list[dict]
    problems: list[Msg] = field(default_factory=list)


# ---- guessing ---------------------------------------------------------------------------------------------------

def is_message_column(table: SourceTable, column: str) -> bool:
    """The column holds message lists (or their JSON text), judged by its first non-empty value."""
    for row in table.rows[:50]:
        value = row.get(column)
        if blank(value):
            continue
        if isinstance(value, str):
            if not value.lstrip().startswith("["):
                return False
            try:
                value = json.loads(value)
            except ValueError:
                return False
        if isinstance(value, dict) and isinstance(value.get("role"), list):
            return True
        return isinstance(value, list) and bool(value) and all(
            isinstance(m, dict) and ("role" in m or "from" in m) for m in value)
    return False


def detect_kind(table: SourceTable) -> str:
    """The best guess for the kind of dataset the table holds."""
    if table.layout in LAYOUT_KINDS:
        return LAYOUT_KINDS[table.layout]
    keys = {match_key(c) for c in table.columns}
    if keys & set(ALIASES["chosen"]) and keys & set(ALIASES["rejected"]):
        return "preference"
    if keys & EVAL_SIGNS:
        return "eval"
    has_pair = keys & set(ALIASES["prompt"]) and keys & set(ALIASES["response"])
    if not has_pair and any(is_message_column(table, c) for c in table.columns):
        return "chat"
    return "sft"


def propose_mapping(table: SourceTable, kind: str) -> dict[str, str | None]:
    """Field -> column (None where nothing fits); each column is used once, except a message-list column."""
    mapping: dict[str, str | None] = dict.fromkeys(MAPPING_FIELDS[kind])
    keys = {c: match_key(c) for c in table.columns}
    chats = [c for c in table.columns if is_message_column(table, c)]
    used: set[str] = set()

    def take(name: str, allow_chats: bool = False) -> None:
        for alias in ALIASES[name]:
            for column in table.columns:
                if keys[column] == alias and column not in used and (allow_chats or column not in chats):
                    used.add(column)
                    mapping[name] = column
                    return

    chat = next((c for c in chats if keys[c] in ALIASES["messages"]), None)
    if kind == "preference":
        for name in ("prompt", "chosen", "rejected"):
            take(name, allow_chats=True)
        if mapping["prompt"] is None and mapping["chosen"] in chats:
            mapping["prompt"] = mapping["chosen"]  # TRL's implicit prompt: it opens the chosen conversation
    elif chat is None:
        for name in MAPPING_FIELDS[kind]:
            if name != "messages":
                take(name)
    elif kind == "chat":
        mapping["messages"] = chat
        take("system")
    else:
        first, answer = ("prompt", "response") if kind == "sft" else ("question", "reference")
        mapping[first] = mapping[answer] = chat
        for name in MAPPING_FIELDS[kind][2:]:
            take(name)
        if kind == "sft" and mapping["system"] is None:
            mapping["system"] = chat
    return mapping


# ---- converting ---------------------------------------------------------------------------------------------------

def apply_mapping(table: SourceTable, kind: str, mapping: dict) -> ImportResult:
    """Records from the table's rows; a row that cannot be used is skipped and reported with its number."""
    if kind not in rec.KINDS:
        raise ValueError(f"unknown kind {kind}")
    mapping = {f: c for f, c in mapping.items() if f in MAPPING_FIELDS[kind] and c}
    for column in mapping.values():
        if column not in table.columns:
            raise DataImportError(Msg("Column '{column}' is not in the file.", column=column))
    chats = {c for c in set(mapping.values()) if is_message_column(table, c)}
    _check_required(table, kind, mapping, chats)
    questions_only = kind in rec.DRAFTABLE and rec.DRAFTABLE[kind] not in mapping and "references" not in mapping
    is_chat = {f: c in chats for f, c in mapping.items()}
    drop_nulls = table.format in ("parquet", "hf_folder")
    found, problems, longer = [], Problems(), 0
    for row, number in zip(table.rows, table.line_numbers):
        raw = {f: row.get(c) for f, c in mapping.items()}
        if all(blank(v) for v in raw.values()):
            continue
        content, errors, more = convert_row(kind, raw, is_chat, drop_nulls)
        record = rec.new_record(kind, **content)
        errors = errors or rec.problems(kind, record, answer_optional=questions_only)
        if errors:
            problems.add(Msg("Row {row}: {problems} The row was skipped.", row=number, problems=errors)
                         if table.format in ROW_FORMATS else
                         Msg("Line {line}: {problems} The line was skipped.", line=number, problems=errors))
            continue
        longer += more
        found.append(record)
    notes = [Msg("Conversations with more than one exchange: {count}. Only the first question and answer of each "
                 "were kept.", count=longer)] if longer else []
    if questions_only and found:
        notes.append(Msg("No answer column was chosen: {count} questions come in without answers, ready for "
                         "drafted answers on the Labeling page.", count=len(found)))
    return ImportResult(found, list(table.problems) + notes + problems.done())


def _check_required(table: SourceTable, kind: str, mapping: dict, chats: set) -> None:
    if kind == "chat":
        needed = () if "messages" in mapping else ("prompt", "response")
    elif kind == "preference":
        needed = ("chosen", "rejected") if mapping.get("chosen") in chats else ("prompt", "chosen", "rejected")
    else:
        needed = tuple(f for f in rec.REQUIRED[kind] if f != rec.DRAFTABLE.get(kind))
    for name in needed:
        if name not in mapping:
            if kind == "chat" and not mapping:
                name = "messages"
            raise DataImportError(Msg("No column is chosen for '{field}'. Columns in the file: {columns}.",
                                      field=name, columns=", ".join(table.columns)))


def convert_row(kind: str, raw: dict, is_chat: dict, drop_nulls: bool) -> tuple[dict, list[Msg], bool]:
    """(content fields, problems, whether a conversation had more than one exchange) for one row."""
    content, errors, more = {}, [], False
    parsed = {}
    for name, value in raw.items():
        if name == "messages" or is_chat.get(name):
            parsed[name], error = as_messages(value, name, drop_nulls)
        elif name == "references":
            content[name], error = as_answers(value, name)
        elif name == "gold_ids":
            content[name], error = as_id_list(value, name)
        elif name == "tools":
            content[name], error = as_tools(value, name)
        elif name == "expected_call":
            content[name], error = as_call(value, name)
        elif name == "gold_passages":
            content[name], error = as_passages(value, name)
        else:
            content[name], error = as_text(value), None
        if error:
            errors.append(error)
    for name, messages in parsed.items():
        if name == "messages":
            continue
        content[name] = pick_turn(kind, name, messages or [])
        if name in ("prompt", "question") and kind != "preference":
            more = sum(1 for m in messages or [] if isinstance(m, dict) and m.get("role") == "user") > 1
    if kind == "chat":
        system, prompt, response = (content.pop(name, None) for name in ("system", "prompt", "response"))
        if "messages" in parsed:
            messages = parsed["messages"] or []
        else:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        has_system = bool(messages) and isinstance(messages[0], dict) and messages[0].get("role") == "system"
        if not blank(system) and not has_system:
            messages = [{"role": "system", "content": system}] + messages
        content["messages"] = messages
    return {k: v for k, v in content.items() if not empty(v)}, errors, more


def pick_turn(kind: str, name: str, messages: list) -> str | None:
    """The text one field takes from a message list (see the module docstring)."""
    turns = [(m.get("role"), message_text(m)) for m in messages if isinstance(m, dict)]
    roles = [r for r, _ in turns]
    if name == "system":
        return next((t for r, t in turns if r == "system"), None)
    if name in ("chosen", "rejected"):
        return next((t for r, t in reversed(turns) if r == "assistant"), None)
    if name == "prompt" and kind == "preference":
        last = len(roles) - 1 - roles[::-1].index("assistant") if "assistant" in roles else len(roles)
        return next((t for r, t in reversed(turns[:last]) if r == "user"), None)
    first_user = roles.index("user") if "user" in roles else None
    if first_user is None:
        return None
    if name in ("prompt", "question"):
        return turns[first_user][1]
    return next((t for r, t in turns[first_user + 1:] if r == "assistant"), None)
