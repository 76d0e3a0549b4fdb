"""Several accepted answers per eval question ('reference' and 'references'): every answer metric takes the best
score over them (SQuAD's max over ground truths), a single reference scores exactly as before, files with answer
lists import, and an eval run scores and shows them."""

from __future__ import annotations

import json

import pytest

from core.data import formats as F
from core.data.checks import run_checks
from core.data.records import accepted_answers, content, new_record, problems
from core.evaluate import metrics

TEXT_METRICS = {"exact_match": metrics.exact_match, "token_f1": metrics.token_f1, "rouge_l": metrics.rouge_l,
                "contains_reference": metrics.contains_reference}

PAIRS = [("Paris", "Paris."), ("The capital is Paris", "Paris"), ("Hà Nội", "Hà Nội."), ("Ha Noi", "Hà Nội"),
         ("within two business days", "Within 2 business days."), ("", "Paris"), ("19", "9"), ("1,000", "1000")]


@pytest.mark.parametrize("answer, reference", PAIRS)
def test_a_single_reference_scores_exactly_as_before(answer, reference):
    expected = {name: function(answer, reference.strip()) for name, function in TEXT_METRICS.items()}
    assert metrics.score_answer({"reference": reference}, answer) == expected
    # the same answer given as a one-item list, or repeated in the list, scores the same
    assert metrics.score_answer({"references": [reference]}, answer) == expected
    assert metrics.score_answer({"reference": reference, "references": [reference, " "]}, answer) == expected


MAX_CASES = [
    # (answer, reference, references, metric, best)
    ("Broncos", "Denver Broncos", ["Broncos"], "exact_match", 1.0),
    ("Broncos", "Denver Broncos", ["Denver"], "exact_match", 0.0),
    ("Paris", "the city of Paris in France", ["Paris, France", "Paris"], "token_f1", 1.0),
    ("Paris France", "Paris", ["France Paris"], "token_f1", 1.0),
    ("in Paris", "", ["the city of Paris", "Paris, France"], "token_f1", 2 * 0.5 * 0.5 / (0.5 + 0.5)),
    ("two business days", "Within two business days.", ["two days"], "rouge_l",
     metrics.rouge_l("two business days", "Within two business days.")),
    ("It ships in 2 days", "two business days", ["2 days"], "contains_reference", 1.0),
    ("Thủ đô là Hà Nội", "Hồ Chí Minh", ["Hà Nội"], "contains_reference", 1.0),
    ("Hà Nội", None, ["Hà Nội.", "Hanoi"], "exact_match", 1.0),
]


@pytest.mark.parametrize("answer, reference, references, metric, best", MAX_CASES)
def test_the_best_accepted_answer_counts(answer, reference, references, metric, best):
    record = {"reference": reference, "references": references}
    assert metrics.score_answer(record, answer)[metric] == pytest.approx(best)
    each = [TEXT_METRICS[metric](answer, r) for r in accepted_answers(record)]
    assert metrics.score_answer(record, answer)[metric] == pytest.approx(max(each))


@pytest.mark.parametrize("record, answers", [
    ({"reference": " A ", "references": ["B", "A", "", "  ", "B "]}, ["A", "B"]),
    ({"references": ["x"]}, ["x"]),
    ({"reference": "", "references": None}, []),
    ({"reference": "R", "references": "not a list"}, ["R"]),
    ({}, []),
])
def test_accepted_answers(record, answers):
    assert accepted_answers(record) == answers


def test_metrics_apply_to_a_record_with_only_references():
    assert metrics.applicable_metrics([{"question": "Q", "references": ["Paris"]}]) == \
        metrics.applicable_metrics([{"question": "Q", "reference": "Paris"}])
    assert "valid_json" in metrics.applicable_metrics([{"reference": "no", "references": ['{"a": 1}']}])
    assert metrics.score_answer({"references": []}, "x") == {}


def test_semantic_similarity_takes_the_most_similar_reference(hash_embedder):
    single = metrics.semantic_similarity(["Paris", "Hà Nội", ""], ["Paris France", "Hà Nội", "x"], hash_embedder)
    assert metrics.semantic_similarity(["Paris", "Hà Nội", ""], [["Paris France"], ["Hà Nội"], ["x"]],
                                       hash_embedder) == single
    several = metrics.semantic_similarity(["Paris", "Hà Nội"], [["Rome", "Paris"], "Hà Nội"], hash_embedder)
    assert several == pytest.approx([1.0, 1.0]) and single[0] < 1.0
    assert metrics.semantic_similarity(["a"], [["", " "]], hash_embedder) == [0.0]
    assert len(hash_embedder.calls) == 3  # one embed call per batch, the empty one not even that


# ---- records and checks -------------------------------------------------------------------------------------------

def test_a_record_with_references_and_no_reference_is_valid():
    record = new_record("eval", question="Capital of France?", reference="", references=["Paris", "Paris, France"])
    assert problems("eval", record) == []
    assert content("eval", record) == {"question": "Capital of France?", "references": ["Paris", "Paris, France"]}
    assert problems("eval", new_record("eval", question="Q", references=[]))  # nothing accepted: still a problem
    assert [str(p) for p in problems("eval", new_record("eval", question="Q", references=[1, 2]))] == [
        "'references' should be a list of answers (texts)."]
    report = run_checks([record, new_record("eval", question="Q2", reference="R")], "eval", purpose="eval")
    assert not [f for f in report.findings if f.code in ("empty_field", "invalid")]
    assert report.usable == 2 and report.output_lengths == [len("Paris"), 1]


# ---- import -------------------------------------------------------------------------------------------------------

def test_a_jsonl_with_lists_of_answers_imports_them():
    lines = [{"question": "Who won Super Bowl 50?", "answers": ["Denver Broncos", "Broncos", "Denver Broncos"]},
             {"question": "Capital of Vietnam?", "answers": "Hà Nội"},
             {"question": "Where?", "answers": {"text": ["Santa Clara", "Levi's Stadium"], "answer_start": [3, 9]}},
             {"question": "Bad", "answers": [["nested"]]}]
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    kind, result = F.import_file(data, "squad.jsonl")
    assert kind == "eval"
    assert content(kind, result.records[0]) == {"question": "Who won Super Bowl 50?",
                                                "references": ["Denver Broncos", "Broncos"]}
    assert [r["references"] for r in result.records[1:]] == [["Hà Nội"], ["Santa Clara", "Levi's Stadium"]]
    assert result.problems == ["Line 4: 'references' should be a list of answers (texts). The line was skipped."]


@pytest.mark.parametrize("cell, references", [
    ("Paris | Paris, France", ["Paris", "Paris, France"]),
    ("a|b", ["a|b"]),                                     # a bar without spaces is part of the answer
    ('["x | y", "z"]', ["x | y", "z"]),                   # JSON text wins
    ("[1] footnote", ["[1] footnote"]),                   # not JSON: plain text
    ("42", ["42"]),
])
def test_a_csv_references_column(cell, references):
    data = ("question,reference,references\nQ,R," + json.dumps(cell).replace('\\"', '""') + "\n").encode()
    kind, result = F.import_file(data, "eval.csv")
    assert kind == "eval" and result.problems == []
    assert content(kind, result.records[0]) == {"question": "Q", "reference": "R", "references": references}


def test_a_references_column_alone_is_not_a_file_of_questions_to_draft():
    _, result = F.import_file(b"question,accepted answers\nQ,A | B\n", "eval.csv", "eval")
    assert [r["references"] for r in result.records] == [["A", "B"]]
    assert not any("without answers" in str(p) for p in result.problems)


# ---- an eval run --------------------------------------------------------------------------------------------------

ANSWERS = {"Who won Super Bowl 50?": "Broncos", "Capital of France?": "Paris, France.",
           "When do orders ship?": "In two days."}


@pytest.fixture
def references_project(project, tiny_model_dir, monkeypatch, hash_embedder):
    """An eval set with several accepted answers; the model's answers are fixed (no model loads), the embedder is a
    bag of words."""
    from core.data.store import DatasetStore
    from core.evaluate import runs
    from core.models import embedder
    from core.models.source import ModelSource
    from core.recipe import Recipe, RecipeStore

    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    DatasetStore(project).create("eval", "eval", [
        new_record("eval", question="Who won Super Bowl 50?", reference="Denver Broncos",
                   references=["Broncos", "the Denver Broncos"]),
        new_record("eval", question="Capital of France?", references=["Paris", "Paris, France"]),
        new_record("eval", question="When do orders ship?", reference="Within two business days.")])
    monkeypatch.setattr(runs, "_backend", lambda project, variant: object())
    monkeypatch.setattr(runs, "_answer", lambda project, variant, records, backend, pool, should_stop=None: [
        {"answer": ANSWERS[r["question"]], "latency_s": 0.1, "prompt_tokens": 5, "output_tokens": 2, "retrieved": []}
        for r in records])
    monkeypatch.setattr(embedder, "embed", hash_embedder)
    return project


def test_an_eval_run_scores_the_best_accepted_answer(references_project):
    from core.evaluate import runs
    from core.evaluate.variants import Variant
    from core.recipe import RecipeStore

    run = runs.create_eval_run(references_project, "eval",
                               [Variant("prompt", "Prompt", RecipeStore(references_project).load())])
    assert runs.execute(references_project, run.id, lambda **event: None)["finished"]
    rows = {row["question"]: row for row in run.results()}
    won, capital, ship = rows["Who won Super Bowl 50?"], rows["Capital of France?"], rows["When do orders ship?"]
    assert won["reference"] == "Denver Broncos"
    assert won["references"] == ["Denver Broncos", "Broncos", "the Denver Broncos"]
    assert (capital["reference"], capital["references"]) == ("Paris", ["Paris", "Paris, France"])
    assert "references" not in ship  # one reference: the row is as it always was
    for row in (won, capital):
        assert row["scores"]["exact_match"] == 1.0 and row["scores"]["token_f1"] == 1.0
        assert row["scores"]["semantic_similarity"] == pytest.approx(1.0)
    assert ship["scores"]["exact_match"] == 0.0
    assert ship["scores"]["token_f1"] == pytest.approx(metrics.token_f1("In two days.", "Within two business days."))
    assert run.summary()["prompt"]["exact_match"] == pytest.approx(2 / 3)


def test_the_results_table_shows_every_accepted_answer():
    from studio.ui.scoreboard import reference_text

    assert reference_text({"reference": "Paris", "references": ["Paris", "Paris, France"]}) == "Paris | Paris, France"
    assert reference_text({"reference": "Paris"}) == "Paris"
    assert reference_text({"reference": "", "expected_call": {"name": "f"}}) == '{"name": "f"}'
