"""Export records of one kind to a file format (or a Hugging Face dataset folder).

Only content fields are written (`records.content`): labels, ids and comments stay in the studio. Formats and
what they keep:

* ``openai_chat`` / ``sharegpt`` (sft): system -> system message, prompt -> user, response -> assistant.
  These formats have no place for 'context', so it is left out (`export_notes` says so). ShareGPT turns are
  ``{"from": "system"|"human"|"gpt"|"observation", "value": text}``.
* ``alpaca``: ``{"instruction": prompt, "input": context, "output": response}`` plus ``"system"`` when set.
* ``prompt_completion``: ``{"prompt", "completion"}`` plus ``"system"`` and ``"context"`` when set.
* ``jsonl``: the content fields themselves, one object per line.
* ``csv`` / ``xlsx``: one column per content field; lists and objects as JSON text; UTF-8 with a byte-order
  mark for CSV so Excel shows Vietnamese correctly. Formula guard: see `table.guard_cell`. In XLSX, control
  characters (carriage return included) are written as OOXML ``_xHHHH_`` escapes, which Excel reads back
  as the character, and are unescaped on import, so text round-trips exactly.
* ``parquet`` / ``hf_folder``: chat messages as a list of {role, content} structs and gold_ids as a list of
  strings when every record fits that shape (else JSON text); tools, expected_call and gold_passages always as
  JSON text, because their inner shapes differ from row to row.

All the JSON-lines formats use the .jsonl extension (`EXPORT_EXTENSIONS`).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import uuid
from pathlib import Path

from core import atomic
from core.data.records import FIELDS, STRUCTURED_FIELDS, content
from core.errors import StudioError
from core.i18n import Msg

from .table import excel_escape, guard_cell
from .values import message_text

EXPORT_FORMATS = {
    "sft": ("openai_chat", "alpaca", "sharegpt", "prompt_completion", "csv", "xlsx", "parquet", "hf_folder"),
    "chat": ("openai_chat", "sharegpt", "jsonl", "parquet", "hf_folder"),
    "preference": ("jsonl", "csv", "xlsx", "parquet", "hf_folder"),
    "eval": ("jsonl", "csv", "xlsx", "parquet", "hf_folder"),
}
EXPORT_EXTENSIONS = {"openai_chat": ".jsonl", "alpaca": ".jsonl", "sharegpt": ".jsonl", "prompt_completion": ".jsonl",
                     "jsonl": ".jsonl", "csv": ".csv", "xlsx": ".xlsx", "parquet": ".parquet", "hf_folder": ""}
TO_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
EXCEL_CELL_LIMIT = 32767


def export_records(records: list[dict], kind: str, fmt: str, target: Path | None = None) -> bytes | Path:
    """The file's bytes; with `target`, they are also written there atomically and the path is returned.
    ``hf_folder`` needs `target`: the dataset is saved there with `Dataset.save_to_disk` (replacing it)."""
    if fmt not in EXPORT_FORMATS.get(kind, ()):
        raise ValueError(f"{kind} records cannot be exported as {fmt}")
    if fmt == "hf_folder":
        if target is None:
            raise ValueError("hf_folder export needs a target folder")
        return _save_hf(records, kind, Path(target))
    if fmt == "csv":
        data = _csv(records, kind)
    elif fmt == "xlsx":
        data = _xlsx(records, kind)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(arrow_table(records, kind), sink)
        data = sink.getvalue()
    else:
        data = "".join(json.dumps(json_line(r, kind, fmt), ensure_ascii=False) + "\n" for r in records).encode()
    if target is None:
        return data
    atomic.write_bytes(Path(target), data)
    return Path(target)


def export_folder(project, name: str, version: int | None) -> Path:
    """Where a dataset version is written as a folder (``hf_folder``) inside the project: exports/<name>-v<version>.
    The name goes through Project.child, so an export never lands outside the project's exports/ folder."""
    from core.workspace import check_name

    check_name(Msg("dataset"), name)  # the dataset's own name first: '' or '..' would make a plausible file name
    return project.child("exports", f"{name}-v{version}", Msg("export"))


def export_notes(records: list[dict], kind: str, fmt: str) -> list[Msg]:
    """What an export would leave out, to show before the download."""
    if kind == "sft" and fmt in ("openai_chat", "sharegpt"):
        count = sum(1 for r in records if content(kind, r).get("context"))
        if count:
            return [Msg("Records with a context: {count}. This format has no place for it, so it is left out; use "
                        "Alpaca, prompt/completion, CSV, Excel, Parquet or a dataset folder to keep it.", count=count)]
    if kind == "chat" and fmt == "sharegpt":
        count = sum(1 for r in records for m in content(kind, r).get("messages", [])
                    if isinstance(m, dict) and set(m) - {"role", "content"})
        if count:
            return [Msg("Messages with tool calls or other details that ShareGPT cannot hold: {count}. Only their "
                        "text is kept.", count=count)]
    return []


def json_line(record: dict, kind: str, fmt: str) -> dict:
    fields = content(kind, record)
    if kind == "sft" and fmt in ("openai_chat", "sharegpt"):
        turns = [("system", fields.get("system")), ("user", fields.get("prompt")),
                 ("assistant", fields.get("response"))]
        messages = [{"role": role, "content": text} for role, text in turns if text is not None or role != "system"]
        return {"messages": messages} if fmt == "openai_chat" else {"conversations": _sharegpt(messages)}
    if kind == "sft" and fmt == "alpaca":
        line = {"instruction": fields.get("prompt", ""), "input": fields.get("context", ""),
                "output": fields.get("response", "")}
        return {**line, "system": fields["system"]} if "system" in fields else line
    if kind == "sft" and fmt == "prompt_completion":
        line = {"prompt": fields.get("prompt", ""), "completion": fields.get("response", "")}
        return {**line, **{k: fields[k] for k in ("system", "context") if k in fields}}
    if kind == "chat":
        messages = fields.get("messages", [])
        return {"conversations": _sharegpt(messages)} if fmt == "sharegpt" else {"messages": messages}
    return fields


def _sharegpt(messages: list) -> list[dict]:
    return [{"from": TO_SHAREGPT.get(m.get("role"), m.get("role")), "value": message_text(m)} for m in messages
            if isinstance(m, dict)]


# ---- spreadsheets -------------------------------------------------------------------------------------------

def _cell(value) -> str:
    if value is None:
        return ""
    return guard_cell(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def _csv(records: list[dict], kind: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS[kind])
    for record in records:
        fields = content(kind, record)
        writer.writerow([_cell(fields.get(f)) for f in FIELDS[kind]])
    return out.getvalue().encode("utf-8-sig")


def _xlsx(records: list[dict], kind: str) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(kind)
    sheet.append(list(FIELDS[kind]))
    for number, record in enumerate(records, start=2):
        fields = content(kind, record)
        cells = [excel_escape(_cell(fields.get(f))) or None for f in FIELDS[kind]]
        for name, cell in zip(FIELDS[kind], cells):
            if cell and len(cell) > EXCEL_CELL_LIMIT:
                raise StudioError(Msg("Row {row}: '{field}' is longer than the {limit} characters an Excel cell "
                                      "can hold; export as CSV or JSON Lines instead.", row=number, field=name,
                                      limit=EXCEL_CELL_LIMIT))
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---- Arrow: Parquet and Hugging Face datasets ---------------------------------------------------------------

def arrow_table(records: list[dict], kind: str):
    import pyarrow as pa

    message_type = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    columns = {}
    for name in FIELDS[kind]:
        values = [content(kind, r).get(name) for r in records]
        if name == "messages" and all(v is None or _plain_messages(v) for v in values):
            columns[name] = pa.array(values, type=message_type)
        elif name == "gold_ids" and all(v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                                        for v in values):
            columns[name] = pa.array(values, type=pa.list_(pa.string()))
        elif name in STRUCTURED_FIELDS:
            columns[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
                                     type=pa.string())
        else:
            columns[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return pa.table(columns)


def _plain_messages(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and set(m) == {"role", "content"} and all(isinstance(v, str) for v in m.values())
        for m in value)


def _save_hf(records: list[dict], kind: str, target: Path) -> Path:
    """Save to a fresh folder beside `target`, then swap it in, so a failed save leaves the old one intact."""
    import datasets

    from .binary import quiet_datasets

    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.parent / ".{}.{}.tmp".format(target.name, uuid.uuid4().hex[:8])
    try:
        with quiet_datasets():
            datasets.Dataset(arrow_table(records, kind)).save_to_disk(str(fresh))
        if target.exists():
            old = target.parent / ".{}.{}.old".format(target.name, uuid.uuid4().hex[:8])
            target.rename(old)
            fresh.rename(target)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            fresh.rename(target)
    finally:
        if fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)
    return target
