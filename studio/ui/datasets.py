"""Dataset widgets shared by the Datasets and Labeling pages: picking, editing a record, saving safely."""

from __future__ import annotations

import json

import streamlit as st

from core.data.records import KIND_LABELS
from core.data.store import ConflictError, DatasetStore
from core.workspace import Project
from studio.ui.i18n import t
from studio.ui.state import show_error


def pick_dataset(project: Project, key: str, kinds: tuple[str, ...] | None = None, label: str | None = None) -> str | None:
    store = DatasetStore(project)
    infos = [d for d in store.list() if kinds is None or d.kind in kinds]
    if not infos:
        return None
    names = [d.name for d in infos]
    kinds_by_name = {d.name: d.kind for d in infos}
    return st.selectbox(label or t("Dataset"), names, key=key,
                        format_func=lambda n: f"{n} · {t(KIND_LABELS[kinds_by_name[n]])}")


def working_copy(project: Project, name: str, key: str) -> dict:
    """Records being labeled in this session and the version they came from (kept across page changes)."""
    copies = st.session_state.setdefault("working_copies", {})
    wanted = f"{project.slug}/{name}"
    if key not in copies or copies[key]["dataset"] != wanted:
        records, version = DatasetStore(project).load(name)
        copies[key] = {"dataset": wanted, "records": records, "base": version, "unsaved": 0}
    return copies[key]


def drop_working_copy(key: str) -> None:
    st.session_state.setdefault("working_copies", {}).pop(key, None)


def save_records(project: Project, name: str, records: list[dict], base_version: int | None, note: str,
                 conflict_key: str) -> int | None:
    """Save a new version. If someone saved meanwhile, both edits are merged; records both changed
    differently are put to the user (see conflict_panel) instead of being overwritten."""
    store = DatasetStore(project)
    try:
        return store.save(name, records, base_version, note=note)
    except ConflictError as exc:
        merged = store.merge(name, records, base_version)
        if not merged.conflicts:
            number = store.save(name, merged.records, exc.latest, note=note)
            st.info(t("Someone else saved this dataset while you were working; both sets of edits were kept."))
            return number
        st.session_state[conflict_key] = {"name": name, "merged": merged.records, "conflicts": merged.conflicts,
                                          "latest": exc.latest, "note": note}
        return None
    except Exception as exc:
        show_error(exc)
        return None


def conflict_panel(project: Project, conflict_key: str) -> int | None:
    """Ask which side wins for records two people changed differently. Returns the saved version, if any."""
    pending = st.session_state.get(conflict_key)
    if not pending:
        return None
    st.warning(t("Someone else changed {count} of the records you edited. Choose which version to keep.",
                 count=len(pending["conflicts"])))
    for mine, theirs in pending["conflicts"][:20]:
        left, right = st.columns(2)
        left.caption(t("Yours"))
        left.json(mine or {}, expanded=False)
        right.caption(t("Theirs"))
        right.json(theirs or {}, expanded=False)
    keep_mine, keep_theirs = st.columns(2)
    choice = "mine" if keep_mine.button(t("Keep mine"), type="primary") else \
        "theirs" if keep_theirs.button(t("Keep theirs")) else None
    if choice is None:
        return None
    records = pending["merged"]
    if choice == "theirs":
        replacements = {(m or t_)["id"]: t_ for m, t_ in pending["conflicts"]}
        records = [replacements.get(r["id"], r) for r in records if replacements.get(r["id"], r) is not None]
        known = {r["id"] for r in records}
        records += [t_ for _, t_ in pending["conflicts"] if t_ is not None and t_["id"] not in known]
    st.session_state.pop(conflict_key)
    return save_records(project, pending["name"], records, pending["latest"], pending["note"], conflict_key)


def edit_record(kind: str, record: dict, key: str) -> dict | None:
    """Editable fields of one record; returns the edited content, or None when it is not valid (message shown)."""
    if kind == "sft":
        edits = {"prompt": st.text_area(t("Prompt"), record.get("prompt", ""), key=key + "prompt", height=100),
                 "response": st.text_area(t("Response"), record.get("response", ""), key=key + "response", height=140)}
        with st.expander(t("System prompt and context (optional)")):
            edits["system"] = st.text_area(t("System prompt"), record.get("system") or "", key=key + "system")
            edits["context"] = st.text_area(t("Context"), record.get("context") or "", key=key + "context")
        return edits
    if kind == "preference":
        edits = {"prompt": st.text_area(t("Prompt"), record.get("prompt", ""), key=key + "prompt", height=90)}
        left, right = st.columns(2)
        edits["chosen"] = left.text_area(t("Chosen (better)"), record.get("chosen", ""), key=key + "chosen", height=160)
        edits["rejected"] = right.text_area(t("Rejected (worse)"), record.get("rejected", ""), key=key + "rejected",
                                            height=160)
        return edits
    if kind == "eval":
        edits = {"question": st.text_area(t("Question"), record.get("question", ""), key=key + "question"),
                 "reference": st.text_area(t("Reference answer"), record.get("reference") or "", key=key + "reference")}
        with st.expander(t("Gold documents and tool call (optional)")):
            gold = st.text_input(t("Gold chunk or document ids, comma-separated"),
                                 ", ".join(record.get("gold_ids") or []), key=key + "gold")
            edits["gold_ids"] = [g.strip() for g in gold.split(",") if g.strip()]
            call = st.text_area(t("Expected tool call (JSON)"), json.dumps(record.get("expected_call"), ensure_ascii=False)
                                if record.get("expected_call") else "", key=key + "call")
            try:
                edits["expected_call"] = json.loads(call) if call.strip() else None
            except json.JSONDecodeError as exc:
                st.error(t("The tool call is not valid JSON ({reason}).", reason=exc.msg))
                return None
        return edits
    text = st.text_area(t("Messages (JSON list of role/content)"),
                        json.dumps(record.get("messages") or [], ensure_ascii=False, indent=1), key=key + "messages",
                        height=240)
    try:
        messages = json.loads(text)
    except json.JSONDecodeError as exc:
        st.error(t("The messages are not valid JSON ({reason}).", reason=exc.msg))
        return None
    return {"messages": messages}
