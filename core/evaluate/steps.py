"""Each rung's step over the rung below, with its noise: a paired bootstrap interval on the difference of the
means, over the questions both rungs answered. On 40 questions a step of a few hundredths is often noise; the
interval says which steps are real."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Step:
    variant: str
    below: str
    questions: int  # answered by both rungs and scored on the metric
    mean: float
    below_mean: float
    difference: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """'gain' or 'loss' when the whole interval is on one side of zero, else 'noise'."""
        if self.low > 0:
            return "gain"
        if self.high < 0:
            return "loss"
        return "noise"

    def to_dict(self) -> dict:
        return {"variant": self.variant, "below": self.below, "questions": self.questions,
                "mean": round(self.mean, 4), "below_mean": round(self.below_mean, 4),
                "difference": round(self.difference, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "verdict": self.verdict}


def bootstrap_interval(differences: list[float], resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of `differences`, resampling questions with replacement (fixed seed, so the
    same run always shows the same interval)."""
    values = np.asarray(differences, dtype=float)
    if values.size == 0:
        raise ValueError("no differences to resample")
    picks = np.random.default_rng(seed).integers(0, values.size, size=(resamples, values.size))
    means = values[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _scores(rows: list[dict], variant: str, metric: str) -> dict[str, float]:
    found = {}
    for row in rows:
        value = row.get("scores", {}).get(metric)
        if row["variant"] == variant and value is not None and value == value:  # NaN is not a score
            found[row["record_id"]] = float(value)
    return found


def ladder_steps(rows: list[dict], variant_keys: list[str], metric: str, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE) -> list[Step]:
    """The step of each variant over the one before it in `variant_keys` that has scores, paired by question.
    Variants without scores are skipped; a pair with no question in common gives no step."""
    steps, below, below_scores = [], None, {}
    for key in variant_keys:
        scores = _scores(rows, key, metric)
        if not scores:
            continue
        shared = sorted(scores.keys() & below_scores.keys())
        if below is not None and shared:
            differences = [scores[i] - below_scores[i] for i in shared]
            low, high = bootstrap_interval(differences, resamples, confidence)
            mean = sum(scores[i] for i in shared) / len(shared)
            below_mean = sum(below_scores[i] for i in shared) / len(shared)
            steps.append(Step(key, below, len(shared), mean, below_mean, mean - below_mean, low, high))
        below, below_scores = key, scores
    return steps
