"""Datasets of (prompt, response) pairs: import from CSV/TSV/JSONL in many shapes and encodings, save, export."""

from __future__ import annotations

import json
import unicodedata

import pytest

from core.data import pairs
from core.errors import DataImportError

VI_ROWS = [
    ("Thủ đô của Việt Nam là gì?", "Hà Nội."),
    ("Làm sao để đặt lại mật khẩu?", "Mở trang Cài đặt → chọn “Đặt lại mật khẩu”."),
    ("Phở bò giá bao nhiêu?", "45.000 ₫ một tô; thêm trứng +5.000 ₫."),
]


def _pairs(report) -> list[tuple[str, str]]:
    return [(row["prompt"], row["response"]) for row in report.rows]


def _jsonl(*records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


# --- formats -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename, data, expected, columns", [
    ("qa.csv", b"prompt,response\nHi,Hello\nBye,See you\n", [("Hi", "Hello"), ("Bye", "See you")],
     ("prompt", "response")),
    ("qa.csv", b"Question,Answer\n\"Hi, there\",\"Hello, you\"\n", [("Hi, there", "Hello, you")],
     ("Question", "Answer")),
    ("qa.csv", b"id;question;answer\n1;Q one;A one\n2;Q two;A two\n", [("Q one", "A one"), ("Q two", "A two")],
     ("question", "answer")),
    ("qa.tsv", b"prompt\tresponse\nA, with comma\tB; with semicolon\n", [("A, with comma", "B; with semicolon")],
     ("prompt", "response")),
    ("qa.txt", b"input,output\nx,y\n", [("x", "y")], ("input", "output")),
    ("qa.csv", "câu hỏi,trả lời\nXin chào,Chào bạn\n".encode(), [("Xin chào", "Chào bạn")], ("câu hỏi", "trả lời")),
    ("qa.csv", b"  PROMPT , Response \n  spaced  ,  out  \n", [("spaced", "out")], ("  PROMPT ", " Response ")),
    ("qa.csv", b'prompt,response\n"multi\nline",ok\n', [("multi\nline", "ok")], ("prompt", "response")),
])
def test_import_tables(filename, data, expected, columns):
    report = pairs.import_pairs(data, filename)
    assert _pairs(report) == expected
    assert report.columns == columns
    assert report.problems == []
    assert report.encoding == "utf-8"
    assert len({row["id"] for row in report.rows}) == len(report.rows)


@pytest.mark.parametrize("record, expected", [
    ({"prompt": "P", "response": "R"}, ("P", "R")),
    ({"question": " Q ", "answer": " A "}, ("Q", "A")),
    ({"query": "Q", "completion": "C", "extra": 1}, ("Q", "C")),
    ({"instruction": "Translate", "input": "Xin chào", "output": "Hello"}, ("Translate\n\nXin chào", "Hello")),
    ({"instruction": "Say hi", "input": "", "output": "Hi"}, ("Say hi", "Hi")),
    ({"messages": [{"role": "system", "content": "Be nice"}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Later"}]},
     ("Hi", "Hello!")),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Câu hỏi?"},
                        {"from": "gpt", "value": "Câu trả lời."}]},
     ("Câu hỏi?", "Câu trả lời.")),
    # an empty first exchange is skipped in favour of the first complete one
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"},
                   {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]},
     ("Q2", "A2")),
])
def test_import_jsonl_shapes(record, expected):
    report = pairs.import_pairs(_jsonl(record), "data.jsonl")
    assert _pairs(report) == [expected]
    assert report.problems == []


@pytest.mark.parametrize("filename", ["data.json", "data.ndjson", "DATA.JSONL"])
def test_jsonl_extensions(filename):
    report = pairs.import_pairs(_jsonl({"prompt": "a", "response": "b"}), filename)
    assert _pairs(report) == [("a", "b")]


def test_bad_jsonl_lines_reported_with_line_numbers_and_good_rows_kept():
    lines = [
        json.dumps({"prompt": "one", "response": "1"}),
        "{this is not json",
        json.dumps({"prompt": "two", "response": "2"}),
        "",
        json.dumps(["a", "list"]),
        json.dumps({"title": "no pair here"}),
        json.dumps({"prompt": "three", "response": "   "}),
        json.dumps({"messages": [{"role": "assistant", "content": "only an answer"}]}),
        json.dumps({"question": "four", "answer": "4"}),
    ]
    report = pairs.import_pairs("\n".join(lines).encode(), "mixed.jsonl")
    assert _pairs(report) == [("one", "1"), ("two", "2"), ("four", "4")]
    assert len(report.problems) == 5
    assert report.problems[0].startswith("Line 2: not valid JSON")
    assert [p.split(":")[0] for p in report.problems[1:]] == ["Line 5", "Line 6", "Line 7", "Line 8"]
    assert all("skipped" in p for p in report.problems)


def test_csv_rows_with_empty_cells_reported():
    data = b"prompt,response\nok,fine\n,no prompt\nno response,\nok2,fine2\n"
    report = pairs.import_pairs(data, "x.csv")
    assert _pairs(report) == [("ok", "fine"), ("ok2", "fine2")]
    assert report.problems == ["Row 3: empty prompt; skipped.", "Row 4: empty response; skipped."]


@pytest.mark.parametrize("data, columns", [
    (b"foo,bar\n1,2\n", ["foo", "bar"]),
    (b"prompt,text\n1,2\n", ["prompt", "text"]),
    (b"title,answer\n1,2\n", ["title", "answer"]),
])
def test_wrong_columns_named_in_error(data, columns):
    with pytest.raises(DataImportError) as info:
        pairs.import_pairs(data, "x.csv")
    message = str(info.value)
    assert f"Columns found: {', '.join(columns)}" in message
    assert "prompt" in message and "response" in message


def test_jsonl_without_any_usable_row_explains_why():
    data = b'{"title": "a"}\n{broken\n'
    with pytest.raises(DataImportError, match="No usable rows") as info:
        pairs.import_pairs(data, "x.jsonl")
    assert "Line 1" in str(info.value) and "Line 2" in str(info.value)


def test_csv_with_header_only_has_no_rows():
    with pytest.raises(DataImportError, match="No usable rows"):
        pairs.import_pairs(b"prompt,response\n", "x.csv")


@pytest.mark.parametrize("data", [b"", b"   \n\n\t", "\ufeff".encode("utf-8") + b"\n"])
def test_empty_file(data):
    with pytest.raises(DataImportError):
        pairs.import_pairs(data, "empty.csv")


def test_empty_file_message():
    with pytest.raises(DataImportError, match="empty.csv is empty"):
        pairs.import_pairs(b"", "empty.csv")


@pytest.mark.parametrize("filename", ["data.xlsx", "data.parquet", "noextension"])
def test_unsupported_extension(filename):
    with pytest.raises(DataImportError, match=r"\.csv, \.tsv or \.jsonl"):
        pairs.import_pairs(b"prompt,response\na,b\n", filename)


def test_too_large_file(monkeypatch):
    monkeypatch.setattr(pairs, "MAX_IMPORT_BYTES", 2 * 1024 * 1024)
    row = b"a,b\n"
    at_limit = b"prompt,response\n" + row * ((2 * 1024 * 1024 - 16) // len(row))
    assert len(at_limit) <= 2 * 1024 * 1024
    assert len(pairs.import_pairs(at_limit, "big.csv").rows) > 500_000 // 2
    with pytest.raises(DataImportError, match="larger than 2 MB"):
        pairs.import_pairs(at_limit + b"x" * (2 * 1024 * 1024), "big.csv")


def test_default_size_limit_is_50_mb():
    with pytest.raises(DataImportError, match="larger than 50 MB"):
        pairs.import_pairs(b"x" * (50 * 1024 * 1024 + 1), "huge.csv")


# --- encodings -----------------------------------------------------------------------------------------------

VI_CSV = "prompt,response\n" + "".join(f'"{p}","{r}"\n' for p, r in VI_ROWS)


@pytest.mark.parametrize("label, data, reported", [
    ("utf-8", VI_CSV.encode("utf-8"), "utf-8"),
    ("utf-8 with BOM", VI_CSV.encode("utf-8-sig"), "utf-8"),
    ("utf-16 (BOM, native order)", VI_CSV.encode("utf-16"), "utf-16"),
    ("utf-16 little endian with BOM", b"\xff\xfe" + VI_CSV.encode("utf-16-le"), "utf-16"),
    ("utf-16 big endian with BOM", b"\xfe\xff" + VI_CSV.encode("utf-16-be"), "utf-16"),
])
def test_unicode_encodings(label, data, reported):
    report = pairs.import_pairs(data, "vi.csv")
    assert report.encoding == reported
    assert report.columns == ("prompt", "response")  # the BOM did not stick to the first column name
    assert _pairs(report) == VI_ROWS
    assert report.problems == []


def test_cp1258_fallback_with_notice():
    # Windows-1258 writes Vietnamese as base letters plus combining tone marks.
    text = "prompt,response\nTrươ\u0300ng ho\u0323c ơ\u0309 đâu?,Đa\u0300 Nă\u0303ng\n"
    data = text.encode("cp1258")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    report = pairs.import_pairs(data, "vi.csv")
    assert report.encoding == "cp1258"
    assert report.problems[0].startswith("The file is not UTF-8; it was read as cp1258")
    [(prompt, response)] = _pairs(report)
    assert unicodedata.normalize("NFC", prompt) == "Trường học ở đâu?"
    assert unicodedata.normalize("NFC", response) == "Đà Nẵng"


def test_latin1_last_resort():
    data = b"prompt,response\nabc\x81,d\xe9f\n"  # 0x81 is undefined in cp1258
    report = pairs.import_pairs(data, "x.csv")
    assert report.encoding == "latin-1"
    assert "read as latin-1" in report.problems[0]
    assert _pairs(report) == [("abc\x81", "déf")]


@pytest.mark.parametrize("data, expected", [
    (b"plain ascii", ("plain ascii", "utf-8")),
    ("\ufeffTiếng Việt".encode("utf-8"), ("Tiếng Việt", "utf-8")),
    ("Tiếng Việt".encode("utf-16"), ("Tiếng Việt", "utf-16")),
])
def test_decode(data, expected):
    assert pairs.decode(data) == expected


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
    reimported = pairs.import_pairs(exported, "export.jsonl")
    assert _pairs(reimported) == VI_ROWS
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
    report = pairs.import_pairs(VI_CSV.encode("utf-8-sig"), "vi.csv")
    pairs.save_pairs(project, "examples", report.rows)
    assert [(r["prompt"], r["response"]) for r in pairs.load_pairs(project, "examples")] == VI_ROWS
