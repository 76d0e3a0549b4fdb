"""Labeling: training pairs drafted from documents, one record at a time (accept / edit / reject / skip), a grid
for bulk edits, drafted answers, and feedback from the Chat page turned into training pairs."""

import getpass
import json

import pandas as pd
import streamlit as st

from core.assistant import draft_answer, example_pool
from core.data import labeling
from core.data.records import FIELDS, STATUSES, new_record, problems
from core.data.store import DatasetStore
from core.feedback import list_feedback, update_feedback
from core.i18n import Msg
from studio.ui.draft_panel import draft_panel
from studio.ui.datasets import conflict_panel, drop_working_copy, edit_record, pick_dataset, save_records, working_copy
from studio.ui.i18n import t
from studio.ui.model_panel import ensure_backend
from studio.ui.state import require_project, saved_recipe, show_error

project = require_project()
slug = project.slug
K = f"labeling.{slug}."
STATUS_LABELS = {"unlabeled": Msg("Unlabeled"), "accepted": Msg("Accepted"), "rejected": Msg("Rejected"),
                 "skipped": Msg("Skipped")}
AUTOSAVE_EVERY = 10

st.title(t("Labeling"))
st.write(t("Review records one by one or in a grid. Every save is a new dataset version, so nothing is ever "
           "lost; two people can label the same dataset at once."))

store = DatasetStore(project)
draft_panel(project, K, expanded=not store.list())
name = pick_dataset(project, key=K + "dataset")
if name is None:
    st.info(t("No dataset yet. Import or create one on the Datasets page."))
    st.page_link("../pages/datasets.py", label=t("Go to Datasets"), icon=":material/dataset:")
    st.stop()
kind = store.kind(name)
copy_key = K + name
work = working_copy(project, name, copy_key)
labeler = st.session_state.setdefault("labeler", getpass.getuser())


def save(note: str) -> None:
    number = save_records(project, name, work["records"], work["base"], note, K + "conflict")
    if number is not None:
        work["base"], work["unsaved"] = number, 0
        work["records"], _ = store.load(name)
        st.toast(t("Saved as dataset version {number}.", number=number), icon=":material/check:")


def reward_ranking(prompt: str, answers: list[str], names: list[str], key: str) -> None:
    """Optional: the candidate answers ordered by a reward model's scores (trained on the Fine-tune page)."""
    from core.finetune.reward import reward_models, score_answers

    models = reward_models(project)
    if not models or not prompt.strip() or not st.toggle(t("Rank with reward model"), key=key + "rank"):
        return
    model_id = st.selectbox(t("Reward model"), [m.id for m in models], key=key + "reward_model",
                            format_func=lambda i: next(m.label for m in models if m.id == i))
    try:
        with st.spinner(t("Scoring the answers…")):
            scores = score_answers(project, model_id, prompt, answers)
    except Exception as exc:
        show_error(exc)
        return
    ranked = labeling.rank_by_score(answers, scores, names)
    st.dataframe(pd.DataFrame([{"rank": n, "score": round(r["score"], 3), "answer": r["name"] + r["answer"]}
                               for n, r in enumerate(ranked, start=1)]), hide_index=True, width="stretch",
                 column_config={"rank": t("Rank"), "score": t("Score"), "answer": t("Answer")})


def record_change(records: list[dict]) -> None:
    work["records"] = records
    work["unsaved"] += 1
    if work["unsaved"] >= AUTOSAVE_EVERY:
        save(note=f"Labeled by {labeler}")


saved_version = conflict_panel(project, K + "conflict")
if saved_version is not None:
    drop_working_copy(copy_key)
    st.rerun()

done = labeling.progress(work["records"])
top = st.columns([3, 1.2, 1.2], vertical_alignment="bottom")
top[0].progress(done.fraction, text=t("{labeled} of {total} labeled · {accepted} accepted · {rejected} rejected",
                                      labeled=done.labeled, total=done.total,
                                      accepted=done.by_status["accepted"], rejected=done.by_status["rejected"]))
st.session_state["labeler"] = top[1].text_input(t("Your name"), value=labeler, key=K + "labeler") or labeler
if top[2].button(t("Save ({count})", count=work["unsaved"]), disabled=not work["unsaved"], type="primary",
                 icon=":material/save:", shortcut="Mod+S", width="stretch",
                 help=t("{count} change(s) not saved yet", count=work["unsaved"])):
    save(note=f"Labeled by {labeler}")
    st.rerun()
st.caption(t("Version {number} · changes are saved automatically every {every} labels.", number=work["base"],
             every=AUTOSAVE_EVERY))

queue_tab, grid_tab, drafts_tab, chat_tab = st.tabs([t("Queue"), t("Grid"), t("Drafts"), t("From chat")])

with queue_tab:
    filters = st.columns([2, 1, 1])
    statuses = filters[0].multiselect(t("Show"), list(STATUSES), default=["unlabeled", "skipped"],
                                      format_func=lambda s: t(STATUS_LABELS[s]), key=K + "statuses")
    tags = labeling.all_tags(work["records"])
    tag = filters[1].selectbox(t("Tag"), [""] + tags, format_func=lambda x: x or t("Any tag"), key=K + "tag")
    only_drafts = filters[2].toggle(t("Drafts only"), key=K + "drafts_only")
    items = labeling.filtered(work["records"], set(statuses), tag or None, only_drafts)
    if not items:
        st.success(t("Nothing left to label with these filters."))
    else:
        position = min(st.session_state.get(K + "position", 0), len(items) - 1)
        item = items[position]
        st.caption(t("Item {n} of {count} · status: {status}", n=position + 1, count=len(items),
                     status=t(STATUS_LABELS[item.get("status", "unlabeled")]))
                   + (" · " + t("drafted by the model, not yet accepted") if item.get("suggestion") else ""))
        item_key = f"{K}item.{item['id']}."
        edits = edit_record(kind, item, item_key)
        if kind == "preference" and edits:
            reward_ranking(edits["prompt"], [edits["chosen"], edits["rejected"]],
                           [t("Chosen:") + " ", t("Rejected:") + " "], K + "queue.")
        meta = st.columns(2)
        comment = meta[0].text_input(t("Comment"), item.get("comment", ""), key=item_key + "comment")
        tag_text = meta[1].text_input(t("Tags, comma-separated"), ", ".join(item.get("tags") or []),
                                      key=item_key + "tags")
        buttons = st.columns(4)
        action = None
        if buttons[0].button(t("Accept"), type="primary", icon=":material/check:", shortcut="Mod+Enter",
                             disabled=edits is None):
            action = "accepted"
        if buttons[1].button(t("Reject"), icon=":material/close:", shortcut="Alt+X"):
            action = "rejected"
        if buttons[2].button(t("Skip"), icon=":material/skip_next:", shortcut="Alt+S"):
            action = "skipped"
        if buttons[3].button(t("Next"), icon=":material/arrow_forward:", shortcut="Alt+Right"):
            st.session_state[K + "position"] = (position + 1) % len(items)
            st.rerun()
        st.caption(t("Keyboard: Ctrl/Cmd+Enter accept · Alt+X reject · Alt+S skip · Alt+→ next · Ctrl/Cmd+S save"))
        if action:
            candidate = {**item, **(edits or {})}
            issues = problems(kind, candidate) if action == "accepted" else []
            if issues:
                for issue in issues:
                    st.error(t(issue))
            else:
                record_change(labeling.apply(work["records"], item["id"], action, labeler,
                                             edits=edits if action == "accepted" else None, comment=comment,
                                             tags=tag_text.split(","), kind=kind))
                # The labeled item leaves the filtered list, so the same position shows the next one.
                if action not in statuses:
                    st.session_state[K + "position"] = position
                else:
                    st.session_state[K + "position"] = (position + 1) % len(items)
                st.rerun()

with grid_tab:
    st.caption(t("Edit cells, add or delete rows, or tick rows and change their status together. "
                 "Press Save above to keep the changes as a new version."))
    columns = ["select", "status", *[f for f in FIELDS[kind] if f != "messages"], "tags", "comment", "id"]
    grid_base_key = K + "grid_base." + str(work["base"])
    if grid_base_key not in st.session_state:
        rows = []
        for record in work["records"]:
            row = {c: record.get(c) for c in columns if c not in ("select", "tags")}
            row.update(select=False, tags=", ".join(record.get("tags") or []))
            for field in ("gold_ids", "tools", "expected_call"):
                if field in row and row[field] is not None and not isinstance(row[field], str):
                    row[field] = json.dumps(row[field], ensure_ascii=False)
            rows.append(row)
        st.session_state[grid_base_key] = pd.DataFrame(rows, columns=columns)
    edited = st.data_editor(
        st.session_state[grid_base_key], num_rows="dynamic", hide_index=True, key=K + "grid", width="stretch",
        disabled=["id"], column_config={
            "select": st.column_config.CheckboxColumn("✓", width="small"),
            "status": st.column_config.SelectboxColumn(t("Status"), options=list(STATUSES), required=True),
            "tags": st.column_config.TextColumn(t("Tags")), "comment": st.column_config.TextColumn(t("Comment")),
            "id": st.column_config.TextColumn("ID", width="small")})
    bulk = st.columns([2, 1, 1])
    new_status = bulk[0].selectbox(t("Set the status of ticked rows to"), list(STATUSES),
                                   format_func=lambda s: t(STATUS_LABELS[s]), key=K + "bulk_status")
    ticked = int(edited["select"].fillna(False).sum()) if len(edited) else 0
    if bulk[1].button(t("Apply to {count} rows", count=ticked), disabled=not ticked):
        edited.loc[edited["select"].fillna(False), "status"] = new_status
        edited["select"] = False
        st.session_state[grid_base_key] = edited
        st.session_state.pop(K + "grid", None)
        st.rerun()
    if bulk[2].button(t("Use grid edits"), type="primary", help=t("Copies the grid into your working copy.")):
        by_id = {r["id"]: r for r in work["records"]}
        updated = []
        for row in edited.to_dict("records"):
            old = by_id.get(row.get("id")) or new_record(kind)
            content = {f: row.get(f) for f in FIELDS[kind] if f in row}
            for field in ("gold_ids", "tools", "expected_call"):
                if isinstance(content.get(field), str) and content[field].strip():
                    try:
                        content[field] = json.loads(content[field])
                    except json.JSONDecodeError:
                        content[field] = [x.strip() for x in content[field].split(",")] if field == "gold_ids" else None
            record = {**old, **{k: (v if v == v else None) for k, v in content.items()}}  # NaN from new rows -> None
            if row.get("status") != old.get("status"):
                record = labeling.label(record, row.get("status") or "unlabeled", labeler)
            record["tags"] = sorted({x.strip() for x in str(row.get("tags") or "").split(",") if x.strip()})
            record["comment"] = row.get("comment") or ""
            updated.append(record)
        record_change(updated)
        st.session_state.pop(grid_base_key, None)
        st.rerun()

with drafts_tab:
    recipe, version = saved_recipe(project)
    field = {"sft": "response", "eval": "reference"}.get(kind)
    if field is None:
        st.info(t("Drafts are available for training pairs and eval sets."))
    else:
        question_field = "prompt" if kind == "sft" else "question"
        missing = [r for r in work["records"] if r.get(question_field) and not (r.get(field) or "").strip()]
        st.write(t("{count} record(s) have a question but no answer yet. The current recipe (version {version}) "
                   "can draft answers; drafts stay suggestions until someone accepts them in the queue.",
                   count=len(missing), version=version or "-"))
        if st.button(t("Draft {count} answer(s)", count=len(missing)), disabled=not missing, type="primary",
                     icon=":material/edit_note:"):
            backend = ensure_backend(recipe.model, key=K + "draft_model")
            if backend is not None:
                pool, drafted = example_pool(project, recipe), dict()
                bar = st.progress(0.0)
                for i, record in enumerate(missing, start=1):
                    try:
                        drafted[record["id"]] = draft_answer(recipe, backend, record[question_field], pool,
                                                             project=project)
                    except Exception as exc:
                        show_error(exc)
                        break
                    bar.progress(i / len(missing), text=t("Drafted {done} of {total}", done=i, total=len(missing)))
                record_change([labeling.with_suggestion(r, field, drafted[r["id"]]) if r["id"] in drafted else r
                               for r in work["records"]])
                st.rerun()
    if kind == "sft":
        st.divider()
        st.subheader(t("Two drafts → a preference pair"))
        candidates = [r for r in work["records"] if r.get("prompt")]
        if candidates:
            chosen_prompt = st.selectbox(t("Prompt"), range(len(candidates)), key=K + "pair_prompt",
                                         format_func=lambda i: candidates[i]["prompt"][:120])
            if st.button(t("Draft two answers"), icon=":material/compare_arrows:"):
                backend = ensure_backend(recipe.model, key=K + "pair_model")
                if backend is not None:
                    prompt = candidates[chosen_prompt]["prompt"]
                    pool = example_pool(project, recipe)
                    st.session_state[K + "pair"] = {"prompt": prompt, "drafts": [
                        draft_answer(recipe, backend, prompt, pool, temperature=0.9, project=project)
                        for _ in range(2)]}
            pair = st.session_state.get(K + "pair")
            if pair:
                left, right = st.columns(2)
                left.markdown(pair["drafts"][0] or "…")
                right.markdown(pair["drafts"][1] or "…")
                reward_ranking(pair["prompt"], pair["drafts"], [t("Left:") + " ", t("Right:") + " "], K + "pair.")
                default_target = "preferences"  # a dataset name, the same in every language
                target = st.text_input(t("Preference dataset"), value=default_target, key=K + "pair_target")
                better = left.button(t("Left is better")), right.button(t("Right is better"))
                if any(better):
                    winner = 0 if better[0] else 1
                    record = new_record("preference", prompt=pair["prompt"], chosen=pair["drafts"][winner],
                                        rejected=pair["drafts"][1 - winner])
                    record = labeling.label(record, "accepted", labeler)
                    try:
                        if not store.exists(target):
                            store.create(target, "preference", [record], note="Preference from two drafts")
                        else:
                            records, base = store.load(target)
                            store.save(target, records + [record], base, note="Preference from two drafts")
                        st.session_state.pop(K + "pair")
                        st.toast(t("Preference pair added to '{name}'.", name=target), icon=":material/check:")
                    except Exception as exc:
                        show_error(exc)

with chat_tab:
    entries = [e for e in list_feedback(project) if e.get("status", "new") == "new"]
    if not entries:
        st.info(t("No new feedback from the Chat page."))
    for entry in entries[:20]:
        with st.container(border=True):
            st.markdown(f"**{t('Question')}:** {entry['question']}")
            st.markdown(f"**{t('Answer')}:** {entry['answer']}")
            if entry.get("correction"):
                st.markdown(f"**{t('Correction')}:** {entry['correction']}")
            st.caption(t("Thumbs up") if entry["rating"] > 0 else t("Thumbs down"))
            actions = st.columns(3)
            as_pair = actions[0].button(t("Add as training pair"), key=K + "fb_sft." + entry["id"],
                                        disabled=kind != "sft" or (entry["rating"] < 0 and not entry.get("correction")))
            as_preference = actions[1].button(t("Add as preference pair"), key=K + "fb_pref." + entry["id"],
                                              disabled=kind != "preference" or not entry.get("correction"))
            if actions[2].button(t("Dismiss"), key=K + "fb_drop." + entry["id"]):
                update_feedback(project, entry["id"], status="dismissed")
                st.rerun()
            if as_pair or as_preference:
                record = labeling.feedback_to_sft(entry) if as_pair else labeling.feedback_to_preference(entry)
                record_change(work["records"] + [labeling.label(record, "accepted", labeler)])
                update_feedback(project, entry["id"], status="accepted", dataset=name)
                st.rerun()
    if entries:
        st.caption(t("Pick a training-pair dataset to add training pairs, or a preference dataset to add "
                     "preference pairs."))
