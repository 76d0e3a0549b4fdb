"""The retrieval sweep's pieces: labels of a setting, the ranked table, the heatmap and parallel-coordinates charts,
the winner's settings and the per-question view of what was retrieved. Plain builders over `SweepRun.table()` rows
(flat dicts): the Retrieval optimization page decides where they go."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.evaluate.sweep import METRICS
from core.i18n import Msg
from core.rag.ranking import RERANKERS
from core.rag.retriever import MODES
from studio.ui.i18n import t
from studio.ui.text import where_from

STRATEGY_LABELS = {"recursive": Msg("By structure"), "fixed": Msg("Fixed token windows")}
ORDER_LABELS = {"plain": Msg("The search's own order"), **RERANKERS}
METRIC_HELP = {
    "hit_at_k": Msg("Share of questions with at least one relevant passage among the k retrieved."),
    "recall_at_k": Msg("Share of each question's gold passages or documents found among the k retrieved."),
    "mrr": Msg("1 / the rank of the first relevant passage (1 when it comes first, 0 when it is missing)."),
    "ndcg_at_k": Msg("Rewards relevant passages near the top of the k retrieved (1 = every gold passage first)."),
}
MODE_ORDER = tuple(MODES)   # vector, fts, hybrid
COLORSCALE = "Viridis"


def metric_label(name: str) -> str:
    return t(METRICS[name]) if name in METRICS else name


def mode_label(mode: str) -> str:
    return t(MODES[mode]) if mode in MODES else mode


def ordering(row: dict) -> str:
    """How the passages of a setting are ordered: the fusion (hybrid), the model's scores, or the search's own."""
    if row["reranker"] == "llm" or row["mode"] == "hybrid":
        return row["reranker"]
    return "plain"


def order_label(row: dict) -> str:
    order = ordering(row)
    label = t(ORDER_LABELS[order]) if order in ORDER_LABELS else order
    return f"{label} ({row['rrf_k']})" if order == "rrf" else label


def chunking_label(row: dict) -> str:
    strategy = row["strategy"]
    name = t(STRATEGY_LABELS[strategy]) if strategy in STRATEGY_LABELS else strategy
    return f"{name} {row['chunk_tokens']}/{row['overlap_tokens']}"


def setting_label(row: dict, with_embedder: bool = False) -> str:
    """One line naming a setting: chunking, search, k, ordering, rewriting (and embedder when several)."""
    parts = [chunking_label(row), mode_label(row["mode"]), f"k={row['k']}"]
    if ordering(row) != "plain":
        parts.append(order_label(row))
    if row.get("query_rewrite"):
        parts.append(t("rewritten question"))
    if with_embedder:
        parts.append(row["embedder"])
    return " · ".join(parts)


def varies(rows: list[dict], field: str) -> bool:
    return len({str(r[field]) for r in rows}) > 1


# ---- the winner ---------------------------------------------------------------------------------------------------

def settings_markdown(row: dict) -> str:
    """The setting's values as a short list."""
    lines = [t("**Passages**: {strategy}, {size} tokens, overlap {overlap}",
               strategy=t(STRATEGY_LABELS.get(row["strategy"], row["strategy"])), size=row["chunk_tokens"],
               overlap=row["overlap_tokens"]),
             t("**Search**: {mode}", mode=mode_label(row["mode"])),
             t("**Passages per question (k)**: {k}", k=row["k"]),
             t("**Order**: {order}", order=order_label(row)),
             t("**Question rewriting**: {state}", state=t("on") if row.get("query_rewrite") else t("off")),
             t("**Embedder**: {name}", name=row["embedder"])]
    return "\n".join(f"- {line}" for line in lines)


def show_metrics(row: dict, metric: str) -> None:
    for column, name in zip(st.columns(len(METRICS)), METRICS):
        column.metric(metric_label(name) + (" ★" if name == metric else ""), f"{row[name]:.2f}",
                      help=t(METRIC_HELP[name]))


# ---- table --------------------------------------------------------------------------------------------------------

def ranked_table(rows: list[dict], metric: str, ranks: list[int]) -> tuple[pd.DataFrame, dict]:
    """One line per setting, best first: its (tied) rank and settings, then the chosen metric (as a bar) and the
    others."""
    others = [m for m in METRICS if m != metric]
    show_embedder, show_rewrite = varies(rows, "embedder"), varies(rows, "query_rewrite")
    table = []
    for rank, row in zip(ranks, rows):
        line = {"rank": rank, "chunking": chunking_label(row), "mode": mode_label(row["mode"]), "k": row["k"],
                "order": order_label(row), "chunks": row["chunks"]}
        if show_rewrite:
            line["rewrite"] = bool(row["query_rewrite"])
        if show_embedder:
            line["embedder"] = row["embedder"]
        line.update({name: row[name] for name in [metric, *others]})
        table.append(line)
    config = {"rank": st.column_config.NumberColumn("#", format="%d", width="small", pinned=True),
              "chunking": st.column_config.TextColumn(t("Passages (size/overlap)")),
              "mode": st.column_config.TextColumn(t("Search")),
              "k": st.column_config.NumberColumn("k", format="%d", width="small"),
              "order": st.column_config.TextColumn(t("Order")),
              "chunks": st.column_config.NumberColumn(t("Passages in the index"), format="%d"),
              "rewrite": st.column_config.CheckboxColumn(t("Rewritten question")),
              "embedder": st.column_config.TextColumn(t("Embedder")),
              metric: st.column_config.ProgressColumn(metric_label(metric), min_value=0.0, max_value=1.0,
                                                      format="%.3f", help=t(METRIC_HELP[metric]))}
    for name in others:
        config[name] = st.column_config.NumberColumn(metric_label(name), format="%.3f", help=t(METRIC_HELP[name]))
    return pd.DataFrame(table), config


# ---- charts -------------------------------------------------------------------------------------------------------

def _chunking_key(row: dict) -> tuple:
    return row["strategy"], row["chunk_tokens"], row["overlap_tokens"]


def heatmap(rows: list[dict], metric: str) -> go.Figure | None:
    """Rows: how documents are cut; columns: search · k; a cell: the best value of `metric` among the settings
    with that chunking, search and k (orderings, fusion constants, rewriting and embedders vary inside a cell)."""
    if not rows:
        return None
    chunkings = sorted({_chunking_key(r): chunking_label(r) for r in rows}.items())
    columns = sorted({(r["mode"], r["k"]) for r in rows}, key=lambda c: (MODE_ORDER.index(c[0]), c[1]))
    best: dict[tuple, float] = {}
    for row in rows:
        cell = (_chunking_key(row), row["mode"], row["k"])
        best[cell] = max(best.get(cell, 0.0), row[metric])
    z = [[best.get((key, mode, k)) for mode, k in columns] for key, _ in chunkings]
    figure = go.Figure(go.Heatmap(
        z=z, x=[f"{mode_label(mode)} · k={k}" for mode, k in columns], y=[label for _, label in chunkings],
        zmin=0.0, zmax=1.0, colorscale=COLORSCALE, colorbar=dict(title=metric_label(metric)),
        text=[[f"{v:.2f}" if v is not None else "" for v in line] for line in z], texttemplate="%{text}",
        hovertemplate="%{y}<br>%{x}<br>" + metric_label(metric) + ": %{z:.3f}<extra></extra>"))
    figure.update_layout(height=max(220, 70 + 48 * len(chunkings)), margin=dict(l=10, r=10, t=20, b=10),
                         xaxis=dict(title=t("Search · passages per question")),
                         yaxis=dict(title=t("Passages (size/overlap)"), type="category"))
    return figure


def _categorical(label: str, values: list[str], labels: dict[str, str]) -> dict:
    """A parallel-coordinates axis for named values, in the order given."""
    order = list(dict.fromkeys(values))
    return dict(label=label, values=[order.index(v) for v in values], tickvals=list(range(len(order))),
                ticktext=[labels.get(v, v) for v in order], range=[-0.25, max(len(order) - 1, 1) + 0.25])


def parallel_chart(rows: list[dict], metric: str) -> go.Figure | None:
    """One line per setting across its settings' axes (chunk size, search, k, fusion constant, ordering, and
    strategy, rewriting or embedder when they vary), ending at the metric; the colour is the metric too."""
    if not rows:
        return None
    modes = sorted({r["mode"] for r in rows}, key=MODE_ORDER.index)
    orders = [ordering(r) for r in rows]
    dimensions = []
    if varies(rows, "strategy"):
        dimensions.append(_categorical(t("Strategy"), [r["strategy"] for r in rows],
                                       {s: t(label) for s, label in STRATEGY_LABELS.items()}))
    dimensions += [
        dict(label=t("Passage size"), values=[r["chunk_tokens"] for r in rows]),
        dict(label=t("Search"), values=[modes.index(r["mode"]) for r in rows], tickvals=list(range(len(modes))),
             ticktext=[mode_label(m) for m in modes], range=[-0.25, max(len(modes) - 1, 1) + 0.25]),
        dict(label="k", values=[r["k"] for r in rows]),
        dict(label=t("Fusion constant"), values=[r["rrf_k"] for r in rows]),
        _categorical(t("Order"), orders, {o: t(label) for o, label in ORDER_LABELS.items()}),
    ]
    if varies(rows, "query_rewrite"):
        dimensions.append(_categorical(t("Rewritten question"), [str(r["query_rewrite"]) for r in rows],
                                       {"True": t("on"), "False": t("off")}))
    if varies(rows, "embedder"):
        dimensions.append(_categorical(t("Embedder"), [r["embedder"] for r in rows], {}))
    scores = [r[metric] for r in rows]
    dimensions.append(dict(label=metric_label(metric), values=scores, range=[0.0, 1.0]))
    figure = go.Figure(go.Parcoords(line=dict(color=scores, colorscale=COLORSCALE, cmin=0.0, cmax=1.0,
                                              showscale=True), dimensions=dimensions))
    figure.update_layout(height=380, margin=dict(l=60, r=60, t=50, b=20))
    return figure


# ---- per question -------------------------------------------------------------------------------------------------

def escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>$~" else c for c in text)


def looked_for(spec: dict) -> dict[str, list[str]]:
    """Per question id of a sweep, the reference answers a passage had to hold (questions judged by answers)."""
    return {item["id"]: [line for unit in item["gold"] if unit.get("kind") == "answer"
                         for line in unit.get("text", "").splitlines()]
            for item in spec["queries"]["items"] if any(u.get("kind") == "answer" for u in item["gold"])}


def show_questions(queries: list[dict], k: int, limit: int = 30, answers: dict[str, list[str]] | None = None) -> None:
    """Each question with the rank of its first relevant passage (or "missed") and what was retrieved; `answers`
    (see `looked_for`) names what a passage had to hold."""
    for query in queries[:limit]:
        rank = query.get("rank")
        status = t("missed") if rank is None else t("first relevant at rank {rank}", rank=rank)
        with st.expander(f"{query['question']} — {status}", icon=":material/close:" if rank is None
                         else ":material/check:", expanded=len(queries) <= 3):
            if query.get("query"):
                st.caption(t("Searched for: {query}", query=query["query"]))
            if (answers or {}).get(query.get("id")):
                st.caption(t("A passage counts when it holds: {answers}",
                             answers=" · ".join(answers[query["id"]])))
            if rank is None:
                st.markdown(t("No relevant passage among the {k} retrieved. Retrieved instead:", k=k))
            if not query.get("retrieved"):
                st.caption(t("Nothing was retrieved: every passage was less similar to the question than the "
                             "minimum similarity."))
            for number, hit in enumerate(query.get("retrieved") or [], start=1):
                where = where_from(hit.get("source"), hit.get("page"), hit.get("heading"))
                mark = ":green[:material/check:] " if hit.get("relevant") else ""
                st.markdown(f"{number}. {mark}**{escape(where)}**  \n{escape(hit.get('text', ''))}…")
    if len(queries) > limit:
        st.caption(t("{shown} of {count} questions shown.", shown=limit, count=len(queries)))
