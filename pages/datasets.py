"""Datasets: import with a column-mapping step, versions and restore, pre-flight checks, split and export."""

import hashlib
import time

import pandas as pd
import plotly.express as px
import streamlit as st

from core.data import checks, formats, split
from core.data.records import KIND_LABELS, KINDS, content
from core.data.store import DatasetStore
from core.errors import StudioError
from core.i18n import Msg
from core.rag.folders import allowed_path
from studio.ui.datasets import drop_working_copy, pick_dataset
from studio.ui.i18n import t
from studio.ui.state import next_upload_round, require_project, saved_recipe, show_error, upload_round

project = require_project()
slug = project.slug
K = f"datasets.{slug}."
store = DatasetStore(project)
SEVERITY = {"error": Msg("Error"), "warning": Msg("Warning"), "info": Msg("Note")}
LENGTH_UNITS = {"tokens": Msg("tokens"), "characters": Msg("characters")}

st.title(t("Datasets"))
st.write(t("Training pairs, chat conversations, preference pairs and eval sets. Import them from files, check "
           "them before training or evaluation, split and export them. Every change is a new version."))

# An import ends with a rerun that empties the file field, so the same file cannot be imported twice by a second
# click; its message is kept for that run.
imported_message = st.session_state.pop(K + "imported_message", None)
if imported_message:
    st.success(imported_message)
import_round = upload_round(K)

infos = store.list()
if infos:
    st.dataframe(pd.DataFrame([{
        "name": d.name, "kind": t(KIND_LABELS[d.kind]), "rows": d.latest.rows if d.latest else 0,
        "version": d.latest.number if d.latest else 0, "by": d.latest.author if d.latest else "",
        "saved": time.strftime("%Y-%m-%d %H:%M", time.localtime(d.latest.saved_at)) if d.latest else ""}
        for d in infos]), hide_index=True, width="stretch", column_config={
        "name": t("Name"), "kind": t("Kind"), "rows": t("Rows"), "version": t("Version"), "by": t("By"),
        "saved": t("Saved")})

# ---- import ------------------------------------------------------------------------------------------------------
with st.expander(t("Import a file"), icon=":material/upload_file:", expanded=not infos, key=K + "import_panel"):
    st.caption(t("CSV, TSV, Excel, JSONL (OpenAI chat, Alpaca, ShareGPT, prompt/completion), Parquet, or a "
                 "Hugging Face datasets folder on this machine. You check the column mapping before anything "
                 "is saved."))
    upload = st.file_uploader(t("File"), type=["csv", "tsv", "txt", "jsonl", "json", "ndjson", "xlsx", "parquet"],
                              key=f"{K}upload.{import_round}")
    folder = st.text_input(t("…or a datasets folder path"), key=f"{K}folder.{import_round}",
                           placeholder="/data/my_dataset")
    source = None
    if upload is not None or folder.strip():
        bar = st.progress(0.0, text=t("Reading…"))
        try:
            from pathlib import Path

            if upload is not None:
                data, filename = upload.getvalue(), upload.name
            else:  # typed in a web page: only inside the folders the studio may read (core/rag/folders.py)
                data, filename = allowed_path(folder)[0], Path(folder.strip()).name
            source = formats.read_source(data, filename, progress=lambda f: bar.progress(min(f, 1.0)))
            source_name = Path(filename).stem or "imported"
            bar.empty()
        except Exception as exc:
            bar.empty()
            show_error(exc)
    if source is not None:
        # Widgets keyed by the file: a new file gets its own detected kind, mapping and name, never the choices
        # left from the previous (perhaps broken) one.
        signature = f"{filename}|{len(source.rows)}|{source.columns}".encode()
        F = K + "file." + hashlib.sha1(signature).hexdigest()[:10] + "."
        st.caption(t("{rows} rows · format {format} · layout {layout} · encoding {encoding}", rows=len(source.rows),
                     format=source.format, layout=source.layout, encoding=source.encoding))
        kind = st.selectbox(t("Dataset kind"), KINDS, index=KINDS.index(formats.detect_kind(source)),
                            format_func=lambda k: t(KIND_LABELS[k]), key=F + "kind")
        proposal = formats.propose_mapping(source, kind)
        st.markdown("**" + t("Column mapping") + "**")
        fields = formats.MAPPING_FIELDS[kind]
        columns = st.columns(len(fields))
        mapping = {}
        options = [""] + list(source.columns)
        for slot, field in zip(columns, fields):
            default = proposal.get(field) or ""
            mapping[field] = slot.selectbox(field, options, index=options.index(default) if default in options else 0,
                                            format_func=lambda c: c or "—", key=F + "map." + field) or None
        try:
            result = formats.apply_mapping(source, kind, mapping)
        except StudioError as exc:
            show_error(exc)
            st.stop()
        for problem in result.problems[:20]:
            st.warning(t(problem))
        if len(result.problems) > 20:
            st.warning(t("… and {count} more problems.", count=len(result.problems) - 20))
        st.caption(t("Preview of {shown} of {count} records that will be imported:", shown=min(20, len(result.records)),
                     count=len(result.records)))
        st.dataframe(pd.DataFrame([content(kind, r) for r in result.records[:20]]), hide_index=True, width="stretch")
        same_kind = [d.name for d in infos if d.kind == kind]
        target_cols = st.columns(2)
        mode = target_cols[0].radio(t("Import into"), ["new", "existing"], horizontal=True, key=F + "mode",
                                    format_func=lambda m: t("a new dataset") if m == "new" else t("an existing dataset"),
                                    disabled=not same_kind)
        if mode == "new" or not same_kind:
            target = target_cols[1].text_input(t("New dataset name"), value=source_name, key=F + "target")
        else:
            target = target_cols[1].selectbox(t("Dataset"), same_kind, key=F + "target_existing")
        if st.button(t("Import {count} records", count=len(result.records)), type="primary",
                     disabled=not result.records, icon=":material/download_done:"):
            try:
                if store.exists(target):
                    records, base = store.load(target)
                    number = store.save(target, records + result.records, base, note=f"Imported {len(result.records)}")
                else:
                    number = store.create(target, kind, result.records, note=f"Imported {len(result.records)}")
                drop_working_copy(f"labeling.{slug}.{target}")
            except Exception as exc:
                show_error(exc)
            else:
                st.session_state[K + "imported_message"] = t(
                    "Imported {count} records into '{name}' (version {number}).", count=len(result.records),
                    name=target, number=number)
                next_upload_round(K)
                st.rerun()

with st.expander(t("New empty dataset"), icon=":material/add:", key=K + "new_panel"):
    with st.form(K + "create"):
        new_name = st.text_input(t("Name"))
        new_kind = st.selectbox(t("Dataset kind"), KINDS, format_func=lambda k: t(KIND_LABELS[k]))
        if st.form_submit_button(t("Create dataset")):
            try:
                store.create(new_name, new_kind)
                st.rerun()
            except StudioError as exc:
                show_error(exc)

# ---- one dataset -------------------------------------------------------------------------------------------------
name = pick_dataset(project, key=K + "current")
if name is None:
    st.stop()
kind = store.kind(name)
records, version = store.load(name)
versions_tab, checks_tab, split_tab, export_tab = st.tabs([t("Versions"), t("Pre-flight checks"), t("Split"),
                                                          t("Export")])

with versions_tab:
    history = list(reversed(store.versions(name)))
    st.dataframe(pd.DataFrame([{"version": v.number, "rows": v.rows, "by": v.author, "note": v.note,
                                "saved": time.strftime("%Y-%m-%d %H:%M", time.localtime(v.saved_at))}
                               for v in history]), hide_index=True, width="stretch", column_config={
        "version": t("Version"), "rows": t("Rows"), "by": t("By"), "note": t("Note"), "saved": t("Saved")})
    older = [v.number for v in history[1:]]
    if older:
        chosen = st.selectbox(t("Restore version"), older, key=K + "restore")
        if st.button(t("Restore version {number} as the latest", number=chosen), icon=":material/history:"):
            try:
                store.restore(name, chosen)
                drop_working_copy(f"labeling.{slug}.{name}")
                st.rerun()
            except Exception as exc:
                show_error(exc)
    with st.popover(t("Delete dataset"), icon=":material/delete:"):
        confirm = st.text_input(t("Type **{name}** to confirm", name=name), key=K + "delete_confirm")
        if st.button(t("Delete"), type="primary", disabled=confirm != name):
            store.delete(name)
            st.rerun()

with checks_tab:
    purpose = st.segmented_control(t("Checked for"), ["training", "fewshot", "eval"],
                                   default="eval" if kind == "eval" else "training", key=K + "purpose." + name, format_func=lambda p: t({"training": Msg("Training"),
                                   "fewshot": Msg("Few-shot examples"), "eval": Msg("Evaluation")}[p])) or "training"
    others = [d.name for d in infos if d.name != name]
    leak_from = st.selectbox(t("Check for leakage against"), [""] + others, key=K + "leak",
                             format_func=lambda n: n or t("nothing"))
    use_model = st.toggle(t("Count tokens with the recipe's model and find near duplicates (slower)"),
                          key=K + "deep")
    if st.button(t("Run checks"), type="primary", icon=":material/fact_check:"):
        kwargs = {}
        if use_model:
            from core.models.embedder import embed
            from studio.ui.model_panel import ensure_backend

            recipe, _ = saved_recipe(project)
            backend = ensure_backend(recipe.model, key=K + "check_model")
            if backend is not None:
                from core.assistant import context_window

                kwargs.update(count_tokens=backend.count_tokens, context_window=context_window(recipe, backend))
            kwargs["embed"] = embed
        if leak_from:
            kwargs.update(eval_records=store.load(leak_from)[0], eval_kind=store.kind(leak_from))
        with st.spinner(t("Checking {count} records…", count=len(records))):
            try:
                st.session_state[K + "report"] = (name, version, checks.run_checks(records, kind, purpose=purpose,
                                                                                  **kwargs))
            except Exception as exc:
                show_error(exc)
    stored = st.session_state.get(K + "report")
    if stored and stored[0] == name:
        _, checked_version, report = stored
        if checked_version != version:
            st.caption(t("These results are for version {number}; run the checks again.", number=checked_version))
        if report.ok and not report.findings:
            st.success(t("No problems found."))
        for advice in report.advice:
            st.info(t(advice))
        if report.findings:
            st.dataframe(pd.DataFrame([{"severity": t(SEVERITY[f.severity]), "finding": t(f.message),
                                        "records": ", ".join(f.record_ids[:5])} for f in report.findings]),
                         hide_index=True, width="stretch", column_config={
                "severity": t("Severity"), "finding": t("Finding"), "records": t("Records")})
        unit = t(LENGTH_UNITS[report.length_unit])
        lengths = pd.DataFrame({t("Length ({unit})", unit=unit): report.input_lengths + report.output_lengths,
                                t("Part"): [t("input")] * len(report.input_lengths) +
                                [t("output")] * len(report.output_lengths)})
        if len(lengths):
            st.plotly_chart(px.histogram(lengths, x=lengths.columns[0], color=lengths.columns[1], barmode="overlay",
                                         nbins=40, title=t("Length distribution")), key=K + "lengths")
        if report.label_counts:
            labels = pd.DataFrame({t("Label"): list(report.label_counts), t("Count"): list(report.label_counts.values())})
            st.plotly_chart(px.bar(labels, x=t("Label"), y=t("Count"), title=t("Label balance")), key=K + "labels")

with split_tab:
    counts = split.split_summary(records)
    st.caption(t("Now: {train} train · {eval} eval · {none} not assigned", train=counts.get("train", 0),
                 eval=counts.get("eval", 0), none=counts.get("unassigned", 0)))
    cols = st.columns(3)
    fraction = cols[0].slider(t("Eval share"), 0.05, 0.5, 0.2, 0.05, key=K + "fraction")
    seed = cols[1].number_input(t("Seed"), 0, 1_000_000, 42, key=K + "seed")
    stratify = cols[2].toggle(t("Keep label proportions (stratified)"), key=K + "stratify")
    if st.button(t("Split and save as a new version"), icon=":material/call_split:"):
        try:
            number = store.save(name, split.split_records(records, fraction, int(seed), stratify, kind), version,
                                note=f"Split {1 - fraction:.0%}/{fraction:.0%}, seed {seed}")
            drop_working_copy(f"labeling.{slug}.{name}")
            st.success(t("Saved as version {number}.", number=number))
        except Exception as exc:
            show_error(exc)

with export_tab:
    fmt = st.selectbox(t("Format"), formats.EXPORT_FORMATS[kind], key=K + "format")
    only_accepted = st.toggle(t("Only accepted records"), key=K + "accepted_only")
    chosen_records = [r for r in records if r.get("status") == "accepted"] if only_accepted else \
        [r for r in records if r.get("status") != "rejected"]
    if fmt == "hf_folder":
        target = formats.export_folder(project, name, version)
        if st.button(t("Write the datasets folder"), icon=":material/folder:"):
            try:
                formats.export_records(chosen_records, kind, fmt, target)
                st.success(t("Written to {path}", path=str(target)))
            except Exception as exc:
                show_error(exc)
    else:
        extension = formats.EXPORT_EXTENSIONS[fmt]
        for note in formats.export_notes(chosen_records, kind, fmt):
            st.caption(t(note))
        try:
            payload = formats.export_records(chosen_records, kind, fmt)
            st.download_button(t("Download {count} records", count=len(chosen_records)), payload,
                               file_name=f"{name}-v{version}-{fmt}{extension}", icon=":material/download:",
                               type="primary")
        except Exception as exc:
            show_error(exc)
