"""The few-shot pair view of a dataset: save as versions, load, export; Vietnamese exact. (Importing files
is tested in test_formats.py.)"""

from __future__ import annotations

import json
import unicodedata

from core.data import pairs
from core.data.formats import import_file

VI_ROWS = [
    ("Thủ đô của Việt Nam là gì?", "Hà Nội."),
    ("Làm sao để đặt lại mật khẩu?", "Mở trang Cài đặt → chọn “Đặt lại mật khẩu”."),
    ("Phở bò giá bao nhiêu?", "45.000 ₫ một tô; thêm trứng +5.000 ₫."),
]


VI_CSV = "prompt,response\n" + "".join(f'"{p}","{r}"\n' for p, r in VI_ROWS)


# --- storage -------------------------------------------------------------------------------------------------

def test_vietnamese_round_trip_exact(project):
    rows = [{"prompt": p, "response": r} for p, r in VI_ROWS]
    saved = pairs.save_pairs(project, "vi", rows)
    assert [(r["prompt"], r["response"]) for r in saved] == VI_ROWS
    assert all(r["id"] for r in saved)
    loaded = pairs.load_pairs(project, "vi")
    assert loaded == saved
    raw = (project.path / "datasets" / "vi" / "v0001.jsonl").read_bytes()
    assert "Thủ đô của Việt Nam".encode("utf-8") in raw  # stored readable, not \u-escaped
    exported = pairs.export_jsonl(loaded)
    assert [json.loads(line) for line in exported.decode("utf-8").splitlines()] == \
        [{"prompt": p, "response": r} for p, r in VI_ROWS]
    assert "₫".encode("utf-8") in exported
    _, reimported = import_file(exported, "export.jsonl", "sft")
    assert [(r["prompt"], r["response"]) for r in reimported.records] == VI_ROWS
    # composed characters stay composed (no silent normalisation)
    assert all(unicodedata.is_normalized("NFC", r["prompt"]) for r in loaded)


def test_decomposed_text_is_kept_byte_exact(project):
    decomposed = unicodedata.normalize("NFD", "Tiếng Việt")
    saved = pairs.save_pairs(project, "nfd", [{"prompt": decomposed, "response": "ok"}])
    assert pairs.load_pairs(project, "nfd")[0]["prompt"] == decomposed == saved[0]["prompt"]


def test_save_pairs_cleans_rows_and_keeps_ids(project):
    rows = [
        {"id": "keep-me", "prompt": "  a  ", "response": " b "},
        {"prompt": "", "response": "no prompt"},
        {"prompt": "no response", "response": None},
        {"prompt": 42, "response": 3.5},
        {"response": "missing prompt key"},
    ]
    saved = pairs.save_pairs(project, "clean", rows)
    assert [(r["prompt"], r["response"]) for r in saved] == [("a", "b"), ("42", "3.5")]
    assert saved[0]["id"] == "keep-me"
    assert saved[1]["id"] and saved[1]["id"] != "keep-me"
    assert pairs.load_pairs(project, "clean") == saved


def test_load_missing_dataset_is_empty(project):
    assert pairs.load_pairs(project, "nothing-here") == []


def test_each_save_is_a_new_version_and_old_ones_stay(project):
    from core.data.store import DatasetStore

    pairs.save_pairs(project, "d", [{"prompt": "a", "response": "b"}])
    pairs.save_pairs(project, "d", [{"prompt": "c", "response": "d"}])
    assert [(r["prompt"], r["response"]) for r in pairs.load_pairs(project, "d")] == [("c", "d")]
    store = DatasetStore(project)
    assert [v.number for v in store.versions("d")] == [1, 2]
    assert [r["prompt"] for r in store.load("d", 1)[0]] == ["a"]
    assert not [p.name for p in (project.path / "datasets" / "d").iterdir() if p.name.endswith(".tmp")]


def test_import_then_save_then_load(project):
    _, report = import_file(VI_CSV.encode("utf-8-sig"), "vi.csv", "sft")
    pairs.save_pairs(project, "examples", report.records)
    assert [(r["prompt"], r["response"]) for r in pairs.load_pairs(project, "examples")] == VI_ROWS


def test_the_pair_view_hides_rejected_records_and_unreviewed_suggestions_and_saving_keeps_them(project):
    from core.data.records import label, new_record
    from core.data.store import DatasetStore

    good = new_record("sft", prompt="Do you ship abroad?", response="Yes, to the EU.")
    refused = label(new_record("sft", prompt="Free pizza?", response="Always."), "rejected", "ana")
    drafted = {**new_record("sft", prompt="When does the shop open?", response="9:00"), "suggestion": True}
    approved = label({**new_record("sft", prompt="When does it close?", response="18:00"), "suggestion": True},
                     "accepted", "ana")
    DatasetStore(project).create("examples", "sft", [good, refused, drafted, approved])

    shown = pairs.load_pairs(project, "examples")
    assert [row["prompt"] for row in shown] == ["Do you ship abroad?", "When does it close?"]

    pairs.save_pairs(project, "examples", [{**shown[0], "response": "Yes, to the EU and the UK."}])
    records, _ = DatasetStore(project).load("examples")
    by_prompt = {record["prompt"]: record for record in records}
    assert by_prompt["Do you ship abroad?"]["response"] == "Yes, to the EU and the UK."
    assert by_prompt["Free pizza?"]["status"] == "rejected"
    assert by_prompt["When does the shop open?"]["suggestion"] is True  # still waiting in the labeling queue
    assert "When does it close?" not in by_prompt  # an accepted pair deleted in the editor is gone
