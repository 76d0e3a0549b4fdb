"""The evaluation scoreboard's pieces: variant and metric labels, the score and cost charts, and the tables
(summary, answers side by side, downloads). Plain builders: the Evaluation page decides where they go."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.evaluate import labels
from core.evaluate.metrics import METRICS
from core.evaluate.steps import Step
from core.evaluate.variants import Variant
from core.i18n import Msg
from studio.ui.i18n import language, t
from studio.ui.text import as_written, escape_markdown

COLORS = qualitative.Plotly
COSTS = tuple(name for name, metric in METRICS.items() if metric.kind == "cost")  # latency, tokens, memory
SETUP_PAGES = {"fewshot": "../pages/fewshot.py", "retriever": "../pages/retriever.py",
               "finetune": "../pages/finetune.py"}
SETUP_PAGE_NAMES = {"fewshot": Msg("2 · Few-shot"), "retriever": Msg("3 · Retriever"),
                    "finetune": Msg("4 · Fine-tune")}


def variant_label(variant: Variant) -> str:
    return labels.variant_label(variant, language())


def metric_label(name: str) -> str:
    return labels.metric_label(name, language())


score_metrics = labels.score_metrics
reference_text = labels.reference_text


def setup_link(variant: Variant) -> None:
    """'Rung — not set up: why' with a link to the page that sets it up."""
    reason = t(variant.missing) if variant.missing else ""
    st.markdown(t("**{label}** — not set up: {reason}", label=variant_label(variant), reason=reason))
    page = SETUP_PAGES.get(variant.setup_page or "")
    if page:
        st.page_link(page, label=t("Set it up on the {page} page", page=SETUP_PAGE_NAMES[variant.setup_page]),
                     icon=":material/arrow_forward:")


def missing_setup_links(variants: list[Variant]) -> None:
    """One link per page that sets up a rung this run could not evaluate."""
    pages = list(dict.fromkeys(v.setup_page for v in variants if not v.ready and v.setup_page in SETUP_PAGES))
    for page in pages:
        st.page_link(SETUP_PAGES[page], label=t("Set up what is missing on the {page} page",
                                                page=SETUP_PAGE_NAMES[page]), icon=":material/arrow_forward:")


# ---- charts -----------------------------------------------------------------------------------------------------

def _color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def score_chart(variants: list[Variant], summary: dict[str, dict]) -> go.Figure | None:
    """Grouped bars: one group per metric, one bar per variant (in the run's order), on a 0-1 scale."""
    names = score_metrics(summary)
    if not names:
        return None
    figure = go.Figure()
    for index, variant in enumerate(variants):
        scores = summary.get(variant.key)
        if not scores:
            continue
        figure.add_bar(name=variant_label(variant), x=[metric_label(n) for n in names],
                       y=[scores.get(n) for n in names], marker_color=_color(index),
                       hovertemplate="<b>%{fullData.name}</b><br>%{x}: %{y:.2f}<extra></extra>")
    figure.update_layout(barmode="group", height=380, margin=dict(l=10, r=10, t=40, b=10),
                         yaxis=dict(range=[0, 1], title=t("Score (0 to 1, higher is better)")),
                         legend=dict(orientation="h", y=1.15))
    return figure


def cost_chart(variants: list[Variant], summary: dict[str, dict]) -> go.Figure | None:
    """What each variant costs: seconds and tokens per answer, weights in memory (lower is better)."""
    shown = [(i, v) for i, v in enumerate(variants) if summary.get(v.key)]
    names = [n for n in COSTS if any(n in summary[v.key] for _, v in shown)]
    if not names:
        return None
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=[metric_label(n) for n in names])
    for column, name in enumerate(names, start=1):
        figure.add_bar(x=[variant_label(v) for _, v in shown], y=[summary[v.key].get(name) for _, v in shown],
                       marker_color=[_color(i) for i, _ in shown], showlegend=False, row=1, col=column,
                       hovertemplate="%{x}: %{y:,.2f}<extra></extra>")
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10))
    figure.update_xaxes(showticklabels=False)
    return figure


def trade_off_chart(variants: list[Variant], summary: dict[str, dict], metric: str,
                    target: float) -> go.Figure | None:
    """One dot per variant: the chosen score against latency, sized by the model's memory when known (the
    accuracy / latency / memory picture of a precision comparison), with the target as a line."""
    shown = [(i, v) for i, v in enumerate(variants)
             if metric in summary.get(v.key, {}) and "latency_s" in summary.get(v.key, {})]
    if len(shown) < 2:
        return None
    memory = [summary[v.key].get("weights_mb") for _, v in shown]
    largest = max((m for m in memory if m), default=None)
    figure = go.Figure()
    for (index, variant), megabytes in zip(shown, memory):
        size = 14 + 26 * (megabytes / largest) if megabytes and largest else 16
        figure.add_scatter(x=[summary[variant.key]["latency_s"]], y=[summary[variant.key][metric]],
                           mode="markers+text", text=[variant_label(variant)], textposition="top center",
                           marker=dict(size=size, color=_color(index)), name=variant_label(variant),
                           showlegend=False,
                           hovertemplate=("<b>%{text}</b><br>%{y:.2f} in %{x:.2f} s"
                                          + (f"<br>{megabytes:,.0f} MB" if megabytes else "") + "<extra></extra>"))
    figure.add_hline(y=target, line_dash="dot", line_color="#888")
    figure.update_layout(height=340, margin=dict(l=10, r=10, t=20, b=10),
                         xaxis=dict(title=metric_label("latency_s"), rangemode="tozero"),
                         yaxis=dict(title=metric_label(metric), range=[0, 1.05]))
    return figure


# ---- tables -----------------------------------------------------------------------------------------------------

def summary_table(variants: list[Variant], summary: dict[str, dict],
                  engines: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per variant: how many answers, each metric's mean, the costs, the engine that answered (when
    known); a rung not set up says so."""
    names = score_metrics(summary) + [n for n in COSTS if any(n in s for s in summary.values())]
    engines = engines or {}
    rows = []
    for variant in variants:
        scores = summary.get(variant.key, {})
        status = t("not set up: {reason}", reason=t(variant.missing) if variant.missing else "") \
            if not variant.ready else ""
        rows.append({"variant": variant_label(variant), "status": status, "answered": scores.get("answered"),
                     "engine": engines.get(variant.key) or "", **{n: scores.get(n) for n in names}})
    config = {"variant": st.column_config.TextColumn(t("Variant"), pinned=True),
              "status": st.column_config.TextColumn(t("Status")),
              "answered": st.column_config.NumberColumn(t("Answers"), format="%d"),
              "engine": st.column_config.TextColumn(t("Engine"), help=t("What answered: transformers or llama.cpp "
                                                                        "(Model page), or the endpoint."))}
    for name in names:
        metric = METRICS[name]
        config[name] = st.column_config.NumberColumn(metric_label(name), help=t(metric.help),
                                                     format=_number_format(name))
    frame = pd.DataFrame(rows, columns=["variant", "status", "answered", "engine", *names])
    for optional in ("status", "engine"):
        if not frame[optional].any():
            frame = frame.drop(columns=optional)
    return frame, config


STEP_READINGS = {"gain": Msg("a real gain"), "loss": Msg("a real loss"), "noise": Msg("could be noise")}


def steps_table(steps: list[Step], variants: list[Variant]) -> tuple[pd.DataFrame, dict]:
    """One row per rung above the first: its score, the step over the rung below with a 95% interval, and whether
    the interval says the step is real."""
    by_key = {v.key: v for v in variants}
    rows = [{"variant": variant_label(by_key[s.variant]), "below": variant_label(by_key[s.below]),
             "score": s.mean, "step": s.difference,
             "interval": f"{s.low:+.2f} … {s.high:+.2f}", "reading": t(STEP_READINGS[s.verdict]),
             "questions": s.questions} for s in steps if s.variant in by_key and s.below in by_key]
    config = {"variant": st.column_config.TextColumn(t("Variant"), pinned=True),
              "below": st.column_config.TextColumn(t("Compared with")),
              "score": st.column_config.NumberColumn(t("Score"), format="%.2f"),
              "step": st.column_config.NumberColumn(t("Step"), format="%+.2f",
                                                    help=t("This variant's average minus the one below it, on "
                                                           "the questions both answered.")),
              "interval": st.column_config.TextColumn(t("95% interval"),
                                                      help=t("Where the step lies in 95 of 100 resamplings of the "
                                                             "questions (paired bootstrap). When it spans zero, "
                                                             "this eval set is too small to tell.")),
              "reading": st.column_config.TextColumn(t("Reading")),
              "questions": st.column_config.NumberColumn(t("Questions"), format="%d")}
    return pd.DataFrame(rows, columns=list(config)), config


def _number_format(name: str) -> str:
    """Scores with two decimals; costs with their unit."""
    if name == "latency_s":
        return "%.2f s"
    if name == "weights_mb":
        return "%.0f MB"
    if name.endswith("_tokens"):
        return "%.0f " + t("tokens")
    return "%.2f"


def examples_table(rows: list[dict], variants: list[Variant], record_ids: list[str], metric: str,
                   only: set[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per question: the question, the reference (or expected call), then each variant's answer and its
    score on `metric`. `only`: keep just these record ids."""
    by_cell = {(r["variant"], r["record_id"]): r for r in rows}
    answered = [v for v in variants if any((v.key, i) in by_cell for i in record_ids)]
    config = {"question": st.column_config.TextColumn(t("Question"), width="medium", pinned=True),
              "reference": st.column_config.TextColumn(t("Reference"), width="medium")}
    for index, variant in enumerate(answered):
        label = variant_label(variant)
        config[f"answer{index}"] = st.column_config.TextColumn(t("Answer") + " · " + label, width="large")
        config[f"score{index}"] = st.column_config.NumberColumn(metric_label(metric) + " · " + label, format="%.2f",
                                                                width="small")
    table = []
    for record_id in record_ids:
        if only is not None and record_id not in only:
            continue
        cells = [by_cell.get((v.key, record_id)) for v in answered]
        first = next((c for c in cells if c), None)
        if first is None:
            continue
        line = {"question": first["question"], "reference": reference_text(first)}
        for index, cell in enumerate(cells):
            line[f"answer{index}"] = cell["answer"] if cell else None
            line[f"score{index}"] = cell["scores"].get(metric) if cell else None
        table.append(line)
    return pd.DataFrame(table, columns=list(config)), config


def results_csv(rows: list[dict], variants: list[Variant]) -> str:
    labels = {v.key: v.label for v in variants}
    flat = []
    for row in rows:
        line = {"variant": row["variant"], "variant_label": labels.get(row["variant"], row["variant"]),
                "record_id": row["record_id"], "question": row["question"], "reference": row.get("reference", ""),
                "expected_call": json.dumps(row["expected_call"], ensure_ascii=False) if row.get("expected_call")
                else "", "answer": row["answer"], "cached": row.get("cached", False),
                "retrieved": json.dumps(row.get("retrieved") or [], ensure_ascii=False)}
        line.update(row["scores"])
        flat.append(line)
    return pd.DataFrame(flat).to_csv(index=False)


def summary_json(run, variants: list[Variant], summary: dict[str, dict]) -> str:
    spec = run.spec
    return json.dumps({"run": run.id, "dataset": spec["dataset"], "dataset_version": spec["dataset_version"],
                       "questions": spec["questions"], "options": spec.get("options"),
                       "variants": [{"key": v.key, "label": v.label, "ready": v.ready,
                                     "missing": str(v.missing) if v.missing else None,
                                     "scores": summary.get(v.key, {})} for v in variants]},
                      ensure_ascii=False, indent=2)


def one_question_in_full(rows: list[dict], variants: list[Variant], record_ids: list[str], metric: str,
                         key: str) -> None:
    """Every variant's whole answer to one chosen question, side by side and wrapped: the table cuts long text."""
    by_cell = {(r["variant"], r["record_id"]): r for r in rows}
    answered = [v for v in variants if any((v.key, i) in by_cell for i in record_ids)]
    questions = {i: next(by_cell[(v.key, i)] for v in answered if (v.key, i) in by_cell)
                 for i in record_ids if any((v.key, i) in by_cell for v in answered)}
    if not questions:
        return
    chosen = st.selectbox(t("Read one question's answers in full"), list(questions), key=key,
                          format_func=lambda i: questions[i]["question"][:120])
    first = questions[chosen]
    st.markdown(f"**{t('Question')}:** {escape_markdown(first['question'])}")
    reference = reference_text(first)
    if reference:
        st.markdown(f"**{t('Reference')}:** {escape_markdown(reference)}")
    for start in range(0, len(answered), 3):
        for column, variant in zip(st.columns(3), answered[start:start + 3]):
            cell = by_cell.get((variant.key, chosen))
            with column.container(border=True):
                st.markdown(f"**{escape_markdown(variant_label(variant))}**")
                if cell is None:
                    st.caption(t("not answered"))
                    continue
                score = cell["scores"].get(metric)
                st.caption(metric_label(metric) + (f" {score:.2f}" if score is not None else " –"))
                st.markdown(as_written(cell["answer"] or ""))
