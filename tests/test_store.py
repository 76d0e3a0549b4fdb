"""Versioned datasets: every save a version, restore, conflicts between two editors, crash safety."""

from __future__ import annotations

import pytest

from core.data import labeling
from core.data.records import new_record, problems
from core.data.store import ConflictError, DatasetStore, merge_records
from core.errors import ProjectNotFoundError, StudioError


def sft(prompt, response, **extra):
    return {**new_record("sft", prompt=prompt, response=response), **extra}


@pytest.fixture
def store(project):
    return DatasetStore(project)


def test_create_save_load_and_history(store):
    assert store.create("faq", "sft", [sft("a", "b")], note="first") == 1
    records, number = store.load("faq")
    store.save("faq", records + [sft("c", "d")], base_version=number, note="more", author="lan")
    versions = store.versions("faq")
    assert [(v.number, v.rows, v.note, v.parent) for v in versions] == [(1, 1, "first", None), (2, 2, "more", 1)]
    assert versions[1].author == "lan"
    assert [r["prompt"] for r in store.load("faq", 1)[0]] == ["a"]
    assert store.info("faq").kind == "sft" and store.names() == ["faq"]


@pytest.mark.parametrize("name, kind, fragment", [
    ("", "sft", "dataset name"), ("../escape", "sft", "dataset name"), (".hidden", "sft", "dataset name"),
    ("ok", "tweets", "Unknown dataset kind"),
])
def test_create_refuses_bad_names_and_kinds(store, name, kind, fragment):
    with pytest.raises(StudioError, match=fragment):
        store.create(name, kind)


def test_duplicate_and_missing_datasets(store):
    store.create("faq", "sft")
    with pytest.raises(StudioError, match="already exists"):
        store.create("faq", "sft")
    with pytest.raises(StudioError, match="no dataset called 'nope'"):
        store.load("nope")


def test_restore_makes_an_old_version_the_latest_without_rewriting_history(store):
    store.create("faq", "sft", [sft("a", "b")])
    store.save("faq", [sft("x", "y")], base_version=1)
    assert store.restore("faq", 1) == 3
    assert [r["prompt"] for r in store.load("faq")[0]] == ["a"]
    assert [v.number for v in store.versions("faq")] == [1, 2, 3]
    assert store.versions("faq")[-1].note == "Restored version 1"


def test_two_editors_never_overwrite_each_other(store):
    first = sft("q1", "a1")
    second = sft("q2", "a2")
    store.create("faq", "sft", [first, second])
    mine = [{**first, "response": "mine"}, second]
    theirs = [first, {**second, "response": "theirs"}]
    store.save("faq", theirs, base_version=1)          # the other tab saves first
    with pytest.raises(ConflictError) as info:
        store.save("faq", mine, base_version=1)        # my save from the same base is refused
    assert info.value.latest == 2
    merged = store.merge("faq", mine, base_version=1)  # both edits kept: different records
    assert not merged.conflicts
    assert [r["response"] for r in merged.records] == ["mine", "theirs"]
    store.save("faq", merged.records, base_version=2, note="merged")
    assert [r["response"] for r in store.load("faq")[0]] == ["mine", "theirs"]


def test_merge_reports_records_changed_differently_on_both_sides():
    base = [sft("q", "a", id="1"), sft("q2", "a2", id="2"), sft("q3", "a3", id="3")]
    mine = [{**base[0], "response": "mine"}, base[1]]                         # edit 1, delete 3
    theirs = [{**base[0], "response": "theirs"}, base[1], base[2], sft("new", "n", id="4")]  # edit 1, add 4
    result = merge_records(base, mine, theirs)
    assert [(m["response"], t["response"]) for m, t in result.conflicts] == [("mine", "theirs")]
    assert [r["id"] for r in result.records] == ["1", "2", "4"]  # 3 deleted by me, 4 added by them


def test_a_crash_mid_save_leaves_the_previous_version_intact(store, project):
    store.create("faq", "sft", [sft("a", "b")])
    folder = project.path / "datasets" / "faq"
    (folder / "v0002.jsonl").write_text('{"id": "half"', encoding="utf-8")  # data written, metadata never
    assert store.latest_version("faq") == 1
    assert [r["prompt"] for r in store.load("faq")[0]] == ["a"]
    assert store.save("faq", [sft("c", "d")], base_version=1) == 2    # the next save replaces the debris
    assert [r["prompt"] for r in store.load("faq")[0]] == ["c"]


def test_saving_into_a_deleted_project_is_refused(workspace, project, store):
    store.create("faq", "sft")
    workspace.delete(project, project.name)
    with pytest.raises(ProjectNotFoundError):
        store.save("faq", [], base_version=1)


def test_delete_dataset(store):
    store.create("faq", "sft")
    store.delete("faq")
    assert store.names() == []


# ---- labeling -------------------------------------------------------------------------------------------------

def test_label_edit_comment_tags_and_progress():
    records = [sft("q1", "a1", id="1"), sft("q2", "a2", id="2"), sft("q3", "a3", id="3")]
    records = labeling.apply(records, "1", "accepted", "lan", edits={"response": "better", "status": "x"},
                             comment="fixed typo", tags=["billing", " ", "billing"])
    records = labeling.apply(records, "2", "rejected", "minh")
    first = records[0]
    assert (first["status"], first["response"], first["labeler"], first["comment"], first["tags"]) == \
        ("accepted", "better", "lan", "fixed typo", ["billing"])
    assert first["labeled_at"] > 0 and records[2]["status"] == "unlabeled"
    done = labeling.progress(records)
    assert (done.total, done.labeled, done.by_status["unlabeled"]) == (3, 2, 1)
    assert [r["id"] for r in labeling.filtered(records, {"unlabeled"})] == ["3"]
    assert [r["id"] for r in labeling.filtered(records, tag="billing")] == ["1"]
    assert labeling.all_tags(records) == ["billing"]


def test_bulk_status_and_skip_moves_on():
    records = [sft(f"q{i}", "a", id=str(i)) for i in range(4)]
    records = labeling.bulk_status(records, {"1", "2"}, "accepted", "lan")
    assert [r["status"] for r in records] == ["unlabeled", "accepted", "accepted", "unlabeled"]
    assert labeling.next_index(records, "3") == 0 and labeling.next_index(records, "1") == 2


def test_feedback_becomes_training_and_preference_pairs():
    down = {"id": "f1", "question": "Giờ mở cửa?", "answer": "Cả ngày.", "rating": -1, "correction": "8–18 giờ."}
    up = {"id": "f2", "question": "Có giao hàng?", "answer": "Có.", "rating": 1, "correction": ""}
    assert (labeling.feedback_to_sft(down)["response"], labeling.feedback_to_sft(up)["response"]) == ("8–18 giờ.", "Có.")
    pair = labeling.feedback_to_preference(down)
    assert (pair["chosen"], pair["rejected"]) == ("8–18 giờ.", "Cả ngày.") and not problems("preference", pair)
    assert labeling.feedback_to_preference(up) is None


def test_drafted_answers_stay_suggestions_until_accepted(tiny_backend):
    from core.assistant import draft_answer
    from core.recipe import Recipe

    record = new_record("sft", prompt="Do you ship?")
    text = draft_answer(Recipe(), tiny_backend("llama"), "Do you ship?", [])
    drafted = labeling.with_suggestion(record, "response", text or "…")
    assert drafted["suggestion"] is True and drafted["status"] == "unlabeled"
    accepted = labeling.apply([drafted], drafted["id"], "accepted", "lan")[0]
    assert accepted["suggestion"] is False
