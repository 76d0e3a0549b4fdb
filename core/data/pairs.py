"""Datasets of (prompt, response) pairs stored as JSONL in the project; import from CSV/TSV/JSONL."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass, field

from core.errors import DataImportError
from core.workspace import Project
from core.i18n import Msg

PROMPT_ALIASES = ("prompt", "question", "instruction", "input", "query", "user", "cau_hoi", "câu hỏi")
RESPONSE_ALIASES = ("response", "answer", "output", "completion", "assistant", "reference", "tra_loi", "trả lời")
MAX_IMPORT_BYTES = 50 * 1024 * 1024


@dataclass
class ImportReport:
    rows: list[dict]
    problems: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    columns: tuple[str, str] | None = None


def new_id() -> str:
    return uuid.uuid4().hex[:10]


def load_pairs(project: Project, name: str) -> list[dict]:
    """The usable (prompt, response) pairs of a dataset's latest version; rejected records are left out."""
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    if not store.exists(name):
        return []
    records, _ = store.load(name)
    return [{"id": r["id"], "prompt": r["prompt"], "response": r["response"]} for r in records
            if r.get("status") != "rejected" and r.get("prompt") and r.get("response")]


def clean_rows(rows: list[dict]) -> list[dict]:
    """Keep rows with a prompt and a response; give each an id."""
    cleaned = []
    for row in rows:
        prompt, response = str(row.get("prompt") or "").strip(), str(row.get("response") or "").strip()
        if prompt and response:
            cleaned.append({"id": row.get("id") or new_id(), "prompt": prompt, "response": response})
    return cleaned


def save_pairs(project: Project, name: str, rows: list[dict], base_version: int | None = -1,
               note: str = "Edited examples") -> list[dict]:
    """Save pairs as a new version of an SFT dataset (created if needed). Labels of records kept by id stay;
    rejected records, which the pair view hides, are kept. base_version=-1 means "on top of the latest";
    another number makes a concurrent save raise ConflictError."""
    from core.data.records import new_record
    from core.data.store import DatasetStore

    rows = clean_rows(rows)
    store = DatasetStore(project)
    if not store.exists(name):
        store.create(name, "sft", [new_record("sft", **r) for r in rows], note=note)
        return rows
    existing, latest = store.load(name)
    by_id = {r["id"]: r for r in existing}
    records = [{**by_id[r["id"]], "prompt": r["prompt"], "response": r["response"]} if r["id"] in by_id
               else new_record("sft", **r) for r in rows]
    kept = {r["id"] for r in rows}
    records += [r for r in existing if r.get("status") == "rejected" and r["id"] not in kept]
    store.save(name, records, latest if base_version == -1 else base_version, note=note)
    return rows


def decode(data: bytes) -> tuple[str, str]:
    """Text and the encoding used: UTF-8 (with or without BOM), UTF-16 by BOM, else cp1258, else latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    sample = data[:4000]
    if len(sample) >= 4 and sample.count(0) > len(sample) // 4:  # UTF-16 without a byte-order mark
        little = sample[1::2].count(0) > sample[0::2].count(0)
        try:
            return data.decode("utf-16-le" if little else "utf-16-be"), "utf-16"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1258"), "cp1258"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _pick(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[a] for a in aliases if a in lowered), None)


def import_pairs(data: bytes, filename: str) -> ImportReport:
    if len(data) > MAX_IMPORT_BYTES:
        raise DataImportError(Msg("{file} is larger than {size} MB; split it into smaller files.", file=filename,
                                   size=MAX_IMPORT_BYTES // 2**20))
    if not data.strip():
        raise DataImportError(Msg("{file} is empty.", file=filename))
    text, encoding = decode(data)
    lower = filename.lower()
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        report = _import_jsonl(text)
    elif lower.endswith((".csv", ".tsv", ".txt")):
        report = _import_table(text, "\t" if lower.endswith(".tsv") else None)
    else:
        raise DataImportError(Msg("{file}: use a .csv, .tsv or .jsonl file.", file=filename))
    report.encoding = encoding
    if encoding not in ("utf-8", "utf-16"):
        report.problems.insert(0, Msg("The file is not UTF-8; it was read as {encoding}. Check accents in the preview.",
                                       encoding=encoding))
    if not report.rows:
        if report.problems:
            raise DataImportError(Msg("No usable rows were found. {problems}", problems=report.problems[:3]))
        raise DataImportError(Msg("No usable rows were found. Each row needs a prompt/question column and a "
                                  "response/answer column."))
    return report


def _import_table(text: str, delimiter: str | None) -> ImportReport:
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = reader.fieldnames or []
    prompt_col, response_col = _pick(columns, PROMPT_ALIASES), _pick(columns, RESPONSE_ALIASES)
    if not prompt_col or not response_col:
        raise DataImportError(Msg("Columns found: {columns}. Name one column 'prompt' (or question) and one "
                                  "'response' (or answer).", columns=", ".join(columns) or "-"))
    report = ImportReport(rows=[], columns=(prompt_col, response_col))
    for line_no, row in enumerate(reader, start=2):
        prompt, response = (row.get(prompt_col) or "").strip(), (row.get(response_col) or "").strip()
        if not prompt or not response:
            report.problems.append(Msg("Row {row}: empty prompt; skipped.", row=line_no) if not prompt
                                   else Msg("Row {row}: empty response; skipped.", row=line_no))
            continue
        report.rows.append({"id": new_id(), "prompt": prompt, "response": response})
    return report


def _import_jsonl(text: str) -> ImportReport:
    report = ImportReport(rows=[])
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.problems.append(Msg("Line {line}: not valid JSON ({reason}); skipped.", line=line_no, reason=exc.msg))
            continue
        pair = _pair_from_record(record) if isinstance(record, dict) else None
        if pair is None:
            report.problems.append(Msg("Line {line}: no prompt/response (or messages) found; skipped.", line=line_no))
            continue
        report.rows.append({"id": new_id(), "prompt": pair[0], "response": pair[1]})
    return report


def _pair_from_record(record: dict) -> tuple[str, str] | None:
    messages = record.get("messages") or record.get("conversations")
    if isinstance(messages, list):  # OpenAI chat or ShareGPT: first user turn and the assistant reply after it
        roles = [(m.get("role") or m.get("from"), m.get("content") or m.get("value") or "") for m in messages
                 if isinstance(m, dict)]
        for i, (role, content) in enumerate(roles[:-1]):
            if role in ("user", "human") and roles[i + 1][0] in ("assistant", "gpt"):
                if content.strip() and roles[i + 1][1].strip():
                    return content.strip(), roles[i + 1][1].strip()
        return None
    prompt_key, response_key = _pick(list(record), PROMPT_ALIASES), _pick(list(record), RESPONSE_ALIASES)
    if not prompt_key or not response_key:
        return None
    prompt = str(record[prompt_key] or "").strip()
    extra = str(record.get("input") or "").strip() if prompt_key == "instruction" else ""
    prompt = f"{prompt}\n\n{extra}" if extra else prompt
    response = str(record[response_key] or "").strip()
    return (prompt, response) if prompt and response else None


def export_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps({"prompt": r["prompt"], "response": r["response"]}, ensure_ascii=False) + "\n"
                   for r in rows).encode("utf-8")
