"""Fine-tune page widgets for preference tuning: the objective, its settings, the pre-flight checks and the reward
margin / accuracy curves of a run."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.finetune.config import OBJECTIVES, TrainConfig
from core.i18n import Msg
from studio.ui.i18n import t

SEVERITY = {"error": Msg("Error"), "warning": Msg("Warning"), "info": Msg("Note")}
PAIR_OBJECTIVES = ("dpo", "orpo", "kto", "reward")


def pick_objective(source: str, key: str) -> str:
    """The objective for a preference dataset ("preference") or the Chat page's ratings ("feedback": KTO only)."""
    choices = list(PAIR_OBJECTIVES) if source == "preference" else ["kto"]
    st.subheader(t("Preference tuning"))
    st.caption(t("Preference data says which answer is better, not what the answer is: the model learns to lean "
                 "towards the better answers. Start from a model that already answers in the right format (a tuned "
                 "or instruction model)."))
    return st.radio(t("Objective"), choices, key=key + "objective." + source, format_func=lambda o: t(OBJECTIVES[o]),
                    label_visibility="collapsed")


def settings(objective: str, key: str) -> dict:
    """Objective-specific TrainConfig fields (beta, KTO weights)."""
    defaults = TrainConfig()
    chosen: dict = {}
    if objective in ("dpo", "kto"):
        chosen["beta"] = st.number_input(
            t("Beta"), 0.01, 10.0, defaults.beta, 0.05, key=key + "beta",
            help=t("How far the tuned model may move away from the original: lower lets it move further. 0.1 is "
                   "usual; raise it if answers get worse in ways the pairs do not cover."))
    elif objective == "orpo":
        chosen["beta"] = st.number_input(
            t("Preference weight"), 0.01, 10.0, defaults.beta, 0.05, key=key + "orpo_weight",
            help=t("Weight of the preference term against learning the chosen answers; 0.1 is usual."))
    if objective == "kto":
        cols = st.columns(2)
        chosen["desirable_weight"] = cols[0].number_input(
            t("Weight of good answers"), 0.01, 100.0, defaults.desirable_weight, 0.1, key=key + "desirable_weight",
            help=t("Raise it when good answers are fewer than bad ones (and the other way round)."))
        chosen["undesirable_weight"] = cols[1].number_input(
            t("Weight of bad answers"), 0.01, 100.0, defaults.undesirable_weight, 0.1,
            key=key + "undesirable_weight")
    return chosen


def show_checks(findings: list) -> None:
    """The preference pre-flight findings as a table, with a sentence when none."""
    st.markdown("#### " + t("Preference checks"))
    if not findings:
        st.success(t("No problems found in the preference data."))
        return
    for finding in findings:
        (st.error if finding.severity == "error" else st.warning)(t(finding.message))
    listed = [f for f in findings if f.record_ids]
    if listed:
        st.dataframe([{t("Severity"): t(SEVERITY[f.severity]), t("Finding"): t(f.message),
                       t("Records"): ", ".join(f.record_ids[:5])} for f in listed], hide_index=True, width="stretch")


def has_rewards(events: list[dict]) -> bool:
    return any("reward_margin" in e for e in events if e.get("type") == "step")


def metrics(steps: list[dict], evals: list[dict]) -> None:
    """Reward margin and chosen-over-rejected accuracy, from the eval set when there is one."""
    source, prefix = (evals[-1], "eval_") if evals and "eval_reward_margin" in evals[-1] else (steps[-1], "")
    cols = st.columns(4)
    cols[0].metric(t("Reward margin"), f"{source[prefix + 'reward_margin']:+.3f}",
                   help=t("How much more the model prefers the chosen answer than the rejected one (or the good "
                          "answers than the bad ones); it should rise."))
    if prefix + "reward_accuracy" in source:
        cols[1].metric(t("Chosen preferred"), f"{source[prefix + 'reward_accuracy']:.0%}",
                       help=t("Share of pairs in which the model prefers the chosen answer."))
    if prefix + "kl" in source:
        cols[2].metric(t("Drift (KL)"), f"{source[prefix + 'kl']:.3f}",
                       help=t("How far the model has moved from where it started."))


def reward_chart(events: list[dict]) -> go.Figure:
    """Reward margin (left axis) and chosen-over-rejected accuracy (right axis) over the steps."""
    steps = [e for e in events if e.get("type") == "step" and "reward_margin" in e]
    evals = [e for e in events if e.get("type") == "eval" and "eval_reward_margin" in e]
    figure = go.Figure()
    figure.add_scatter(x=[e["step"] for e in steps], y=[e["reward_margin"] for e in steps], mode="lines",
                       name=t("Reward margin"))
    if evals:
        figure.add_scatter(x=[e["step"] for e in evals], y=[e["eval_reward_margin"] for e in evals],
                           mode="lines+markers", name=t("Eval reward margin"))
    if any("reward_accuracy" in e for e in steps):
        figure.add_scatter(x=[e["step"] for e in steps], y=[e.get("reward_accuracy") for e in steps], mode="lines",
                           name=t("Chosen preferred"), yaxis="y2", line=dict(dash="dot"))
        if evals and "eval_reward_accuracy" in evals[-1]:
            figure.add_scatter(x=[e["step"] for e in evals], y=[e.get("eval_reward_accuracy") for e in evals],
                               mode="lines+markers", name=t("Eval chosen preferred"), yaxis="y2",
                               line=dict(dash="dot"))
        figure.update_layout(yaxis2=dict(title=t("Accuracy"), overlaying="y", side="right", range=[0, 1],
                                         tickformat=".0%"))
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=t("Step"),
                         yaxis_title=t("Reward margin"), legend=dict(orientation="h", y=1.15))
    return figure
