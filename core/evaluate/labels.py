"""Names of rungs and metrics in a reader's language, and which metrics a scoreboard shows: shared by the
Evaluation page (studio/ui/scoreboard.py) and the stakeholder report (core/report.py)."""

from __future__ import annotations

import json

from core.evaluate.metrics import METRICS
from core.evaluate.variants import RUNG_LABELS, Variant
from core.i18n import translate


def variant_label(variant: Variant, language: str) -> str:
    """A ladder rung in the reader's language (its stored label is English); other variants as saved."""
    base, _, precision = variant.key.partition("|")
    if base in RUNG_LABELS:
        return translate(RUNG_LABELS[base], language) + (f" · {precision}" if precision else "")
    return variant.label


def metric_label(name: str, language: str) -> str:
    return translate(METRICS[name].label, language) if name in METRICS else name


def score_metrics(summary: dict[str, dict]) -> list[str]:
    """Answer and retrieval metrics (registry order) that at least one variant has a score for."""
    return [name for name, metric in METRICS.items()
            if metric.kind != "cost" and any(name in scores for scores in summary.values())]


def reference_text(row: dict) -> str:
    """A result row's reference, or every accepted answer joined with " | " when the question has several; a tool
    call's expected call as JSON."""
    if row.get("references"):
        return " | ".join(row["references"])
    if row.get("reference"):
        return row["reference"]
    return json.dumps(row["expected_call"], ensure_ascii=False) if row.get("expected_call") else ""
