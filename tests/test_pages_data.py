"""AppTest of the Datasets and Labeling pages: import with mapping, checks, split, queue and grid labeling."""

from __future__ import annotations

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.feedback import record_feedback
from tests.apptest_helpers import button, open_page


@pytest.fixture
def opened(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_ALLOWED_FOLDERS", str(tmp_path))  # the files these tests type in live here
    project = workspace.create("Labels")
    return project


def mapping(at, field: str):
    return next(s for s in at.selectbox if s.label == field)


@pytest.fixture
def faq(opened):
    store = DatasetStore(opened)
    store.create("faq", "sft", [new_record("sft", id=f"r{i}", prompt=f"Câu hỏi {i}?", response=f"Trả lời {i}.")
                                for i in range(3)])
    return store


def test_import_a_csv_with_the_mapping_step(opened, tmp_path):
    path = tmp_path / "hỏi đáp.csv"
    path.write_text("câu hỏi;trả lời\nMấy giờ mở cửa?;8 giờ.\nCó giao hàng không?;Có.\n", encoding="utf-8")
    at = open_page("datasets")
    at.text_input(key=f"datasets.{opened.slug}.folder.0").set_value(str(path)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert mapping(at, "prompt").value == "câu hỏi"
    assert mapping(at, "response").value == "trả lời"
    button(at, "Import 2 records").click().run()
    store = DatasetStore(opened)
    records, version = store.load("hỏi đáp")
    assert version == 1 and [r["prompt"] for r in records] == ["Mấy giờ mở cửa?", "Có giao hàng không?"]
    # The field is emptied, so a second click cannot import the same rows again; the message stays for that run.
    assert any("Imported 2 records into 'hỏi đáp' (version 1)" in s.value for s in at.success)
    assert not any(b.label.startswith("Import ") for b in at.button)
    assert next(i for i in at.text_input if i.label == "…or a datasets folder path").value == ""
    assert "hỏi đáp" in at.dataframe[0].value["name"].tolist()  # the list at the top shows the new dataset


def test_a_broken_file_shows_a_message_and_saves_nothing(opened, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(b"\x00\x01\x02binary\x00" * 100)
    at = open_page("datasets")
    at.text_input(key=f"datasets.{opened.slug}.folder.0").set_value(str(path)).run()
    assert not at.exception
    assert at.error and DatasetStore(opened).names() == []


def test_a_good_file_after_a_bad_one_gets_its_own_column_mapping(opened, tmp_path):
    """The mapping stayed empty ("No column is chosen for 'prompt'") until a reload."""
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("title,body\nA,B\n", encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text("question,answer\nWhen do you open?,At nine.\nDo you ship?,Yes.\n", encoding="utf-8")
    at = open_page("datasets")
    at.text_input(key=f"datasets.{opened.slug}.folder.0").set_value(str(wrong)).run()
    assert mapping(at, "prompt").value in (None, "")
    at.text_input(key=f"datasets.{opened.slug}.folder.0").set_value(str(good)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert (mapping(at, "prompt").value, mapping(at, "response").value) == ("question", "answer")
    assert not any("No column is chosen" in e.value for e in at.error)
    assert button(at, "Import 2 records")
    assert next(i for i in at.text_input if i.label == "New dataset name").value == "good"


@pytest.mark.parametrize("typed", ["/etc/passwd", "/proc/self/environ"])
def test_a_typed_path_outside_the_allowed_folders_is_not_read(opened, typed):
    at = open_page("datasets")
    at.text_input(key=f"datasets.{opened.slug}.folder.0").set_value(typed).run()
    assert not at.exception
    assert any("system folder" in e.value or "outside the folders" in e.value for e in at.error)
    assert not any(s.label == "prompt" for s in at.selectbox)


def test_checks_split_and_restore(faq, opened):
    at = open_page("datasets")
    button(at, "Run checks").click().run()
    assert not at.exception, [e.value for e in at.exception]
    findings = [df.value for df in at.dataframe if "finding" in df.value.columns]
    assert findings and any("example" in text for text in findings[0]["finding"])  # 3 rows: too few to train
    button(at, "Split and save as a new version").click().run()
    records, version = faq.load("faq")
    assert version == 2 and {r["split"] for r in records} == {"train", "eval"}
    at.run()
    button(at, "Restore version 1 as the latest").click().run()
    records, version = faq.load("faq")
    assert version == 3 and {r["split"] for r in records} == {None}


def test_queue_accept_with_edit_reject_and_save(faq, opened):
    at = open_page("labeling")
    key = f"labeling.{opened.slug}.item.r0."
    at.text_area(key=key + "response").set_value("Trả lời đã sửa.").run()
    button(at, "Accept").click().run()
    assert not at.exception, [e.value for e in at.exception]
    button(at, "Reject").click().run()          # the next item, r1
    button(at, "Save (2)").click().run()
    records, version = faq.load("faq")
    by_id = {r["id"]: r for r in records}
    assert version == 2
    assert (by_id["r0"]["status"], by_id["r0"]["response"]) == ("accepted", "Trả lời đã sửa.")
    assert by_id["r1"]["status"] == "rejected" and by_id["r2"]["status"] == "unlabeled"
    assert by_id["r0"]["labeler"]


def test_accepting_an_empty_answer_is_refused(faq, opened):
    at = open_page("labeling")
    at.text_area(key=f"labeling.{opened.slug}.item.r0.response").set_value("   ").run()
    button(at, "Accept").click().run()
    assert any("empty" in e.value for e in at.error)
    assert faq.load("faq")[1] == 1


def test_two_sessions_label_the_same_dataset(faq, opened):
    first, second = open_page("labeling"), open_page("labeling")
    button(first, "Accept").click().run()
    button(second, "Reject").click().run()
    button(first, "Save (1)").click().run()
    button(second, "Save (1)").click().run()   # r0 changed by both: asks
    assert any("changed" in w.value for w in second.warning)
    button(second, "Keep mine").click().run()
    records, _ = faq.load("faq")
    assert {r["id"]: r["status"] for r in records}["r0"] == "rejected"


def test_feedback_from_chat_becomes_a_training_pair(faq, opened):
    record_feedback(opened, question="Mở cửa Chủ nhật không?", answer="Có.", rating=-1, correction="Không, đóng cửa.")
    at = open_page("labeling")
    button(at, "Add as training pair").click().run()
    assert not at.exception
    button(at, "Save (1)").click().run()
    records, _ = faq.load("faq")
    assert records[-1]["prompt"] == "Mở cửa Chủ nhật không?" and records[-1]["response"] == "Không, đóng cửa."
    assert records[-1]["status"] == "accepted"


def test_drafts_fill_missing_answers_as_suggestions(opened, tiny_model_dir):
    from core.models.generation import GenerationSettings
    from core.models.source import ModelSource
    from core.recipe import Recipe, RecipeStore

    RecipeStore(opened).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))),
                                    generation=GenerationSettings(max_new_tokens=6)))
    store = DatasetStore(opened)
    store.create("questions", "sft", [new_record("sft", id=f"q{i}", prompt=f"Question {i}?") for i in range(2)])
    at = open_page("labeling")
    button(at, "Draft 2 answer(s)").click().run()
    assert not at.exception, [e.value for e in at.exception]
    button(at, "Save (1)").click().run()
    records, _ = store.load("questions")
    assert all(r["suggestion"] and r["status"] == "unlabeled" and "response" in r for r in records)


def test_queue_ranks_a_preference_pair_with_a_reward_model(opened, tiny_model_dir):
    from core.finetune import runs
    from core.finetune.config import TrainConfig
    from core.models.source import ModelSource
    from core.recipe import Recipe, RecipeStore

    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))))
    RecipeStore(opened).save(recipe)
    DatasetStore(opened).create("prefs", "preference", [
        new_record("preference", id=f"p{i}", prompt=f"When does order {i} ship?", chosen=f"In {i % 4 + 1} days.",
                   rejected="I do not know, sorry.") for i in range(12)])
    run = runs.create_run(opened, TrainConfig(dataset="prefs", objective="reward", epochs=3, lora_rank=4,
                                              learning_rate=5e-3, max_length=64, precision="fp32",
                                              eval_fraction=0.0), recipe)
    runs.execute(opened, run.id, lambda **e: None)
    at = open_page("labeling")
    at.toggle(key=f"labeling.{opened.slug}.queue.rank").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    [ranking] = [df.value for df in at.dataframe if "score" in df.value.columns]
    assert ranking["answer"].tolist()[0].startswith("Chosen:")  # the trained model prefers the chosen answer
    assert ranking["score"].tolist() == sorted(ranking["score"].tolist(), reverse=True)
