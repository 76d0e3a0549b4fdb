"""The context-window budget bar: system prompt, examples, question and the answer's reserve vs the window."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.fewshot import Budget

COLORS = {"System prompt": "#6c8ebf", "Examples": "#82b366", "Question": "#d6b656",
          "Answer reserve": "#b85450", "Free": "#e6e6e6"}


def budget_bar(budget: Budget, key: str) -> None:
    parts = {
        "System prompt": budget.system_tokens,
        "Examples": sum(budget.example_tokens),
        "Question": budget.question_tokens,
        "Answer reserve": budget.answer_reserve,
        "Free": max(budget.free, 0),
    }
    figure = go.Figure()
    for label, tokens in parts.items():
        figure.add_trace(go.Bar(y=["tokens"], x=[tokens], name=f"{label} ({tokens:,})", orientation="h",
                                marker_color=COLORS[label], hovertemplate=f"{label}: %{{x:,}} tokens<extra></extra>"))
    figure.update_layout(barmode="stack", height=150, margin=dict(l=0, r=0, t=10, b=0),
                         xaxis=dict(range=[0, budget.context_window], title="tokens"), yaxis=dict(visible=False),
                         legend=dict(orientation="h", y=-0.6, traceorder="normal"))
    st.plotly_chart(figure, key=key, config={"displayModeBar": False})
    share = budget.total / budget.context_window
    approx = " (estimated: the endpoint's tokenizer is not available here)" if budget.approximate else ""
    st.caption(f"{budget.total:,} of {budget.context_window:,} tokens planned ({share:.0%}){approx}: "
               f"{budget.used:,} in the prompt, {budget.answer_reserve:,} kept for the answer.")
    if budget.dropped:
        st.warning(f"{budget.dropped} example(s) did not fit in the context window and were left out. "
                   "Use fewer or shorter examples, or lower max new tokens.")
    elif share > 0.85:
        st.warning("The prompt is close to the context window; longer questions may push examples out.")
