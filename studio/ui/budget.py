"""The context-window budget bar: system prompt, examples, question and the answer's reserve vs the window."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.fewshot import Budget
from core.i18n import Msg
from studio.ui.i18n import t

COLORS = {Msg("System prompt"): "#6c8ebf", Msg("Context"): "#9673a6", Msg("Examples"): "#82b366",
          Msg("Question"): "#d6b656", Msg("Answer reserve"): "#b85450", Msg("Free"): "#e6e6e6"}


def budget_bar(budget: Budget, key: str) -> None:
    parts = {
        "System prompt": budget.system_tokens,
        "Context": budget.context_tokens,
        "Examples": sum(budget.example_tokens),
        "Question": budget.question_tokens,
        "Answer reserve": budget.answer_reserve,
        "Free": max(budget.free, 0),
    }
    figure = go.Figure()
    for part, tokens in parts.items():
        label = t(part)
        figure.add_trace(go.Bar(y=[""], x=[tokens], name=f"{label} ({tokens:,})", orientation="h",
                                marker_color=COLORS[part],
                                hovertemplate=f"{label}: %{{x:,}} {t('tokens')}<extra></extra>"))
    figure.update_layout(barmode="stack", height=150, margin=dict(l=0, r=0, t=10, b=0),
                         xaxis=dict(range=[0, budget.context_window], title=t("tokens")), yaxis=dict(visible=False),
                         legend=dict(orientation="h", y=-0.6, traceorder="normal"))
    st.plotly_chart(figure, key=key, config={"displayModeBar": False})
    share = budget.total / budget.context_window
    st.caption(t("{total} of {window} tokens planned ({share}): {used} in the prompt, {reserve} kept for the answer.",
                 total=f"{budget.total:,}", window=f"{budget.context_window:,}", share=f"{share:.0%}",
                 used=f"{budget.used:,}", reserve=f"{budget.answer_reserve:,}"))
    if budget.approximate:
        st.caption(t("Token counts are estimates: the endpoint's tokenizer is not available here."))
    if budget.dropped:
        st.warning(t("{count} example(s) did not fit in the context window and were left out. "
                     "Use fewer or shorter examples, or lower max new tokens.", count=budget.dropped))
    if budget.passages_dropped:
        st.warning(t("{count} retrieved passage(s) did not fit in the context window and were left out.",
                     count=budget.passages_dropped))
    if share > 0.85 and not budget.dropped:
        st.warning(t("The prompt is close to the context window; longer questions may push examples out."))
