"""Scores for one answer of an assistant against one eval record, and the registry the evaluation page reads.

Every score is a float in [0, 1] except the cost metrics (measured elsewhere). Text metrics compare normalized
text (SQuAD style, but Unicode-aware so Vietnamese diacritics are kept); a record with several accepted answers
('reference' and 'references', see records.accepted_answers) scores the best of them, as the official SQuAD
script takes the max over the ground truths. Tool-call metrics parse what a small model writes; retrieval metrics
(core.rag.metrics) take ranked lists of ids. Nothing here loads a model: semantic similarity is given an `embed`
function.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from core.data.records import accepted_answers
from core.i18n import Msg
from core.rag.metrics import Retrieved, hit_at_k, reciprocal_rank
from core.text import answer_tokens as _tokens, normalize_answer, token_f1  # noqa: F401 (token_f1 re-exported)

# ---- text (normalization and word F1 live in core.text) ----

def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def contains_reference(prediction: str, reference: str) -> float:
    """1 when the reference's tokens appear, in order and adjacent, in the prediction ("9" is not in "19")."""
    predicted, expected = _tokens(prediction), _tokens(reference)
    if not expected:
        return 0.0
    n = len(expected)
    return float(any(predicted[i:i + n] == expected for i in range(len(predicted) - n + 1)))


class _NormalizedTokenizer:
    """rouge-score's default tokenizer keeps only [a-z0-9], which would erase Vietnamese words."""

    def tokenize(self, text: str) -> list[str]:
        return _tokens(text)


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer  # imported late: it pulls in nltk

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_NormalizedTokenizer())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common token subsequence) on normalized tokens."""
    return float(_rouge_scorer().score(reference or "", prediction or "")["rougeL"].fmeasure)


def best_over(metric: Callable[[str, str], float], prediction: str, references: list[str]) -> float:
    """The best score of `prediction` against any accepted answer (0 when there is none)."""
    return max((metric(prediction, reference) for reference in references), default=0.0)


# ---- JSON and tool calls ----

_FENCE = re.compile(r"```[ \t]*(?:json[c5]?)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_TOOL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


def _loads(text: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def valid_json(prediction: str) -> float:
    """1 when the whole answer, or a fenced block that is the whole answer, is a JSON object or array."""
    text = (prediction or "").strip()
    fenced = _FENCE.fullmatch(text)
    value = _loads(fenced.group(1) if fenced else text)
    return float(isinstance(value, (dict, list)))


def _call(obj: dict) -> dict | None:
    """One {"name", "arguments"} call, or None; arguments stay a string only when it is not valid JSON."""
    if isinstance(obj.get("function"), dict):  # an OpenAI tool_calls item
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = obj.get("arguments", obj.get("parameters"))
    if isinstance(arguments, str):
        decoded = _loads(arguments) if arguments.strip() else {}
        arguments = decoded if decoded is not None else arguments
    return {"name": name.strip(), "arguments": {} if arguments is None else arguments}


def _calls_in(value) -> list[dict]:
    if isinstance(value, list):
        return [call for item in value for call in _calls_in(item)]
    if not isinstance(value, dict):
        return []
    for key in ("tool_calls", "function_call"):  # OpenAI message shapes, current and legacy
        if key in value:
            return _calls_in(value[key])
    call = _call(value)
    return [call] if call else []


def _embedded_calls(text: str) -> list[dict]:
    """The first JSON value that starts at a '{' or '[' in prose and holds a call; raw_decode balances braces
    and respects strings, so no hand-written matcher is needed."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        calls = _calls_in(value)
        if calls:
            return calls
    return []


def parse_tool_calls(text: str) -> list[dict]:
    """Calls {"name", "arguments"} a model wrote: <tool_call> tags, fenced JSON, bare JSON (one call, a list,
    or OpenAI's {"tool_calls": [...]}) or JSON inside prose. [] when nothing parses."""
    text = text or ""
    sources = [m.group(1) for m in _TOOL_TAG.finditer(text)] or [m.group(1) for m in _FENCE.finditer(text)]
    calls = [call for source in sources for call in _calls_in(_loads(source.strip()))]
    return calls or _calls_in(_loads(text.strip())) or _embedded_calls(text)


def _as_number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _as_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(normalize_answer(value)) if isinstance(value, str) else None


def same_arguments(got, want) -> bool:
    """Equal after normalization: exact keys, normalized strings, numbers by value ("2" == 2 == 2.0)."""
    if isinstance(got, dict) or isinstance(want, dict):
        return isinstance(got, dict) and isinstance(want, dict) and got.keys() == want.keys() and \
            all(same_arguments(got[key], want[key]) for key in want)
    if isinstance(got, (list, tuple)) or isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)) and len(got) == len(want) and \
            all(same_arguments(g, w) for g, w in zip(got, want))
    if isinstance(got, bool) or isinstance(want, bool):
        return _as_bool(got) is not None and _as_bool(got) == _as_bool(want)
    if isinstance(got, str) and isinstance(want, str):
        # Two strings stay strings: "007" is an id, not 7.
        return normalize_answer(got) == normalize_answer(want)
    got_number, want_number = _as_number(got), _as_number(want)
    if got_number is not None and want_number is not None:
        return math.isclose(got_number, want_number, rel_tol=1e-9, abs_tol=1e-12)
    return got == want


def tool_call_scores(prediction: str, expected_call: dict) -> dict[str, float]:
    """tool_name: the first call has the expected name; tool_args: the name and all arguments match."""
    calls = parse_tool_calls(prediction)
    if not calls or calls[0]["name"] != str(expected_call.get("name") or "").strip():
        return {"tool_name": 0.0, "tool_args": 0.0}
    arguments_match = same_arguments(calls[0]["arguments"], expected_call.get("arguments") or {})
    return {"tool_name": 1.0, "tool_args": float(arguments_match)}


# ---- meaning ----

def semantic_similarity(predictions: list[str], references: list[str | list[str]],
                        embed: Callable[[list[str]], "object"]) -> list[float]:
    """Cosine similarity of each prediction's embedding with its reference's, clipped to [0, 1]; a reference may
    be a list of accepted answers, and the most similar one counts. A pair with an empty text scores 0.
    One `embed` call for the whole batch, so a model embeds it at once."""
    import numpy as np

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scores = [0.0] * len(predictions)
    pairs = [(i, r) for i, (p, accepted) in enumerate(zip(predictions, references)) if (p or "").strip()
             for r in ([accepted] if isinstance(accepted, str) or accepted is None else accepted) if (r or "").strip()]
    if not pairs:
        return scores
    vectors = np.asarray(embed([predictions[i] for i, _ in pairs] + [r for _, r in pairs]), dtype=float)
    left, right = vectors[:len(pairs)], vectors[len(pairs):]
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    cosines = np.divide((left * right).sum(axis=1), norms, out=np.zeros(len(pairs)), where=norms > 0)
    for (i, _), cosine in zip(pairs, np.clip(cosines, 0.0, 1.0)):
        scores[i] = max(scores[i], float(cosine))
    return scores


# ---- registry ----

@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    help: str
    # "reference" | "short_reference" (an answer short enough to look for in passages) | "expected_call" |
    # "gold_ids" | "judge" / "win" (only when the run's options set that judge) | "nothing"
    needs: str
    higher_is_better: bool = True
    kind: str = "answer"  # "answer" | "retrieval" | "cost"


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("exact_match", Msg("Exact match"), Msg("Share of answers identical to the reference once case, "
           "punctuation and articles are ignored."), "reference"),
    Metric("token_f1", Msg("Word overlap (F1)"), Msg("How many words the answer and the reference share, "
           "balancing missing and extra words."), "reference"),
    Metric("rouge_l", Msg("ROUGE-L"), Msg("Longest run of reference words the answer repeats in order, as an "
           "F-measure."), "reference"),
    Metric("semantic_similarity", Msg("Meaning similarity"), Msg("How close the answer's meaning is to the "
           "reference's, by cosine similarity of their embeddings."), "reference"),
    Metric("contains_reference", Msg("Contains reference"), Msg("Share of answers that include the whole "
           "reference text somewhere."), "reference"),
    Metric("valid_json", Msg("Valid JSON"), Msg("Share of answers that are well-formed JSON, offered when the "
           "reference is JSON or a tool call is expected."), "reference"),
    Metric("tool_name", Msg("Right tool"), Msg("Share of answers whose first tool call names the expected "
           "tool."), "expected_call"),
    Metric("tool_args", Msg("Right tool and arguments"), Msg("Share of answers that call the expected tool "
           "with exactly the expected arguments."), "expected_call"),
    Metric("hit_at_k", Msg("Hit@k"), Msg("Share of questions for which a gold passage or document is among "
           "the first k retrieved."), "gold_ids", kind="retrieval"),
    Metric("mrr", Msg("MRR"), Msg("Mean of 1/rank of the first gold passage retrieved: 1 when it comes first, "
           "0.5 when second."), "gold_ids", kind="retrieval"),
    Metric("answer_in_passages", Msg("Answer in passages"), Msg("Share of questions whose passages in the prompt "
           "hold one of the reference answers word for word (short answers only): whether retrieval gave the model "
           "the answer to read."), "short_reference", kind="retrieval"),
    Metric("judge", Msg("Judge grade"), Msg("Grade an LLM judge gave with your rubric, from 1 (wrong) to 5 "
           "(correct and complete), shown from 0 to 1."), "judge"),
    Metric("win_rate", Msg("Win rate"), Msg("Share of questions on which this variant's answer beats the compared "
           "variant's, as a reward model or the LLM judge sees it (ties count half; the compared variant shows "
           "0.5)."), "win"),
    Metric("latency_s", Msg("Latency (s)"), Msg("Seconds from sending the question to the end of the "
           "answer."), "nothing", higher_is_better=False, kind="cost"),
    Metric("prompt_tokens", Msg("Prompt tokens"), Msg("Tokens the model reads per question, including "
           "examples and passages."), "nothing", higher_is_better=False, kind="cost"),
    Metric("output_tokens", Msg("Output tokens"), Msg("Tokens the model writes per answer."), "nothing",
           higher_is_better=False, kind="cost"),
    Metric("weights_mb", Msg("Model memory (MB)"), Msg("Memory the model's weights take at this precision "
           "(with the adapter merged)."), "nothing", higher_is_better=False, kind="cost"),
]}


def _applies(metric: Metric, record: dict) -> bool:
    if metric.name == "valid_json":
        return bool(record.get("expected_call")) or any(valid_json(r) for r in accepted_answers(record))
    if metric.needs == "reference":
        return bool(accepted_answers(record))
    if metric.needs == "short_reference":
        from core.rag.queries import answer_targets

        return bool(answer_targets(record))
    if metric.needs == "nothing":
        return True
    if metric.needs in ("judge", "win"):
        return False  # offered by the run's options, not by the records
    return bool(record.get(metric.needs))


def applicable_metrics(records: Iterable[dict]) -> list[str]:
    """Names (registry order) of the metrics that apply to at least one record of an eval set."""
    records = list(records)
    return [name for name, metric in METRICS.items() if any(_applies(metric, r) for r in records)]


def score_answer(record: dict, answer: str, retrieved: Retrieved | None = None, k: int = 5) -> dict[str, float]:
    """Every per-answer metric that applies to this record, the text metrics as the best over its accepted
    answers. Semantic similarity (batched) and cost metrics (measured while generating) are computed elsewhere."""
    applies = {name for name, metric in METRICS.items() if _applies(metric, record)}
    references = accepted_answers(record)
    scores: dict[str, float] = {}
    for name, function in (("exact_match", exact_match), ("token_f1", token_f1), ("rouge_l", rouge_l),
                           ("contains_reference", contains_reference)):
        if name in applies:
            scores[name] = best_over(function, answer, references)
    if "valid_json" in applies:
        scores["valid_json"] = valid_json(answer)
    if "tool_name" in applies:
        scores.update(tool_call_scores(answer, record["expected_call"]))
    if "hit_at_k" in applies and retrieved is not None:
        scores["hit_at_k"] = hit_at_k(retrieved, record["gold_ids"], k)
        scores["mrr"] = reciprocal_rank(retrieved, record["gold_ids"])
    return scores


def aggregate(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the rows that have it: a missing (or None/NaN) score is not a zero."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for name, value in row.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                values.setdefault(name, []).append(float(value))
    return {name: sum(found) / len(found) for name, found in values.items()}
