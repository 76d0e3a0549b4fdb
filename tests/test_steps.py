"""Each rung's step with its noise (core.evaluate.steps): the paired bootstrap interval and the ladder's steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.evaluate.steps import Step, bootstrap_interval, ladder_steps


def rows_for(variant: str, scores: dict[str, float | None], metric: str = "token_f1") -> list[dict]:
    return [{"variant": variant, "record_id": rid, "scores": {} if s is None else {metric: s}}
            for rid, s in scores.items()]


def test_no_difference_is_noise_and_a_constant_gain_is_certain():
    assert bootstrap_interval([0.0] * 30) == (0.0, 0.0)
    assert bootstrap_interval([0.25] * 30) == pytest.approx((0.25, 0.25))
    assert Step("b", "a", 30, 0.5, 0.5, 0.0, 0.0, 0.0).verdict == "noise"
    assert Step("b", "a", 30, 0.75, 0.5, 0.25, 0.25, 0.25).verdict == "gain"
    assert Step("b", "a", 30, 0.25, 0.5, -0.25, -0.3, -0.2).verdict == "loss"


def test_the_interval_brackets_the_mean_and_matches_the_normal_width():
    rng = np.random.default_rng(7)
    differences = list(rng.choice([-1.0, 0.0, 1.0], size=200, p=[0.2, 0.5, 0.3]))
    low, high = bootstrap_interval(differences)
    mean = float(np.mean(differences))
    assert low < mean < high
    half_width = 1.96 * np.std(differences) / math.sqrt(len(differences))
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_the_interval_is_the_same_on_every_run_and_refuses_nothing_to_resample():
    differences = [1.0, 0.0, 0.0, -1.0, 1.0, 0.5]
    assert bootstrap_interval(differences) == bootstrap_interval(differences)
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_mixed_small_steps_span_zero():
    low, high = bootstrap_interval([1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 0.5, -0.5])
    assert low < 0 < high


def test_steps_pair_questions_by_id_and_skip_rungs_without_scores():
    rows = (rows_for("prompt", {"q1": 0.0, "q2": 0.0, "q3": 1.0})
            + rows_for("fewshot", {"q1": 1.0, "q2": 1.0, "q3": 1.0, "q4": 0.0})  # q4 has no partner below
            + rows_for("rag", {"q1": None, "q2": None})  # not scored: skipped
            + rows_for("adapter", {"q3": 0.0, "q2": 1.0, "q1": 1.0}))
    steps = ladder_steps(rows, ["prompt", "fewshot", "rag", "adapter"], "token_f1")
    assert [(s.variant, s.below) for s in steps] == [("fewshot", "prompt"), ("adapter", "fewshot")]
    first, second = steps
    assert first.questions == 3 and first.difference == pytest.approx(2 / 3)
    assert first.mean == pytest.approx(1.0) and first.below_mean == pytest.approx(1 / 3)
    assert second.questions == 3 and second.difference == pytest.approx(-1 / 3)  # q4 is not shared
    assert second.low <= second.difference <= second.high
    assert first.to_dict()["verdict"] == first.verdict


def test_nan_is_not_a_score_and_other_metrics_are_ignored():
    rows = rows_for("prompt", {"q1": 0.5, "q2": float("nan")}) + rows_for("fewshot", {"q1": 0.5, "q2": 1.0})
    rows += rows_for("fewshot", {"q3": 1.0}, metric="exact_match")
    (step,) = ladder_steps(rows, ["prompt", "fewshot"], "token_f1")
    assert step.questions == 1 and step.difference == 0.0 and step.verdict == "noise"
    assert ladder_steps(rows, ["prompt", "fewshot"], "bleu") == []
