"""Dataset import/export (core.data.formats): every layout and format, mapping guesses in English and
Vietnamese, bad input with its message, a large streamed file, and the full export -> import round trip."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.data import formats as F
from core.data.records import KINDS, content, new_record
from core.errors import DataImportError

VI = "Thủ đô của Việt Nam là gì? Hà Nội — “ngàn năm văn hiến”."
VI_DECOMPOSED = "Vie\u0302\u0323t Nam"  # not NFC: must come back exactly like this


def jsonl(*objs) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode("utf-8")


def xlsx(rows: list[list], *, title: str = "data") -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def parquet(columns: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table(columns), out)
    return out.getvalue()


def contents(kind, records) -> list[dict]:
    return [content(kind, r) for r in records]


def messages(*turns) -> list[dict]:
    return [{"role": role, "content": text} for role, text in turns]


# ---- layouts: detected, mapped and converted ------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Thời tiết",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
CALL = {"name": "get_weather", "arguments": {"city": "Hà Nội"}}

LAYOUT_CASES = [
    ("openai.jsonl", jsonl({"messages": messages(("system", "Be brief"), ("user", VI), ("assistant", "Hà Nội."))}),
     "openai_messages", "chat", None,
     {"messages": messages(("system", "Be brief"), ("user", VI), ("assistant", "Hà Nội."))}),
    ("openai-as-sft.jsonl", jsonl({"messages": messages(("system", "S"), ("user", "Q"), ("assistant", "A"))}),
     "openai_messages", "chat", "sft", {"system": "S", "prompt": "Q", "response": "A"}),
    ("sharegpt.jsonl", jsonl({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": VI},
                                                {"from": "gpt", "value": "Đáp"}]}),
     "sharegpt", "chat", None, {"messages": messages(("system", "S"), ("user", VI), ("assistant", "Đáp"))}),
    ("sharegpt-system-key.jsonl", jsonl({"system": "S", "conversations": [{"from": "human", "value": "Q"},
                                                                          {"from": "gpt", "value": "A"}]}),
     "sharegpt", "chat", None, {"messages": messages(("system", "S"), ("user", "Q"), ("assistant", "A"))}),
    ("sharegpt-as-sft.jsonl", jsonl({"conversations": [{"from": "human", "value": "Q"},
                                                       {"from": "gpt", "value": "A"}]}),
     "sharegpt", "chat", "sft", {"prompt": "Q", "response": "A"}),
    ("alpaca.json", json.dumps([{"instruction": "Dịch", "input": "Xin chào", "output": "Hello"}],
                               ensure_ascii=False, indent=2).encode(),
     "alpaca", "sft", None, {"prompt": "Dịch", "context": "Xin chào", "response": "Hello"}),
    ("alpaca-empty-input.jsonl", jsonl({"instruction": "Say hi", "input": "", "output": "Hi", "system": "S"}),
     "alpaca", "sft", None, {"prompt": "Say hi", "response": "Hi", "system": "S"}),
    ("pc.jsonl", jsonl({"prompt": "P", "completion": "C"}), "prompt_completion", "sft", None,
     {"prompt": "P", "response": "C"}),
    ("pref.jsonl", jsonl({"prompt": "P", "chosen": "Good", "rejected": "Bad"}), "preference", "preference", None,
     {"prompt": "P", "chosen": "Good", "rejected": "Bad"}),
    ("trl-explicit.jsonl", jsonl({"prompt": messages(("user", "P")), "chosen": messages(("assistant", "Good")),
                                  "rejected": messages(("assistant", "Bad"))}),
     "preference", "preference", None, {"prompt": "P", "chosen": "Good", "rejected": "Bad"}),
    ("trl-implicit.jsonl", jsonl({"chosen": messages(("user", "P"), ("assistant", "Good")),
                                  "rejected": messages(("user", "P"), ("assistant", "Bad"))}),
     "preference", "preference", None, {"prompt": "P", "chosen": "Good", "rejected": "Bad"}),
    ("eval.jsonl", jsonl({"question": VI, "reference": "Hà Nội", "gold_ids": ["doc-1", "doc-7"], "tools": TOOLS,
                          "expected_call": CALL}),
     "eval", "eval", None,
     {"question": VI, "reference": "Hà Nội", "gold_ids": ["doc-1", "doc-7"], "tools": TOOLS, "expected_call": CALL}),
    ("eval.csv", ("question,reference,gold_ids,tools,expected_call\n" + "Q,R,\"[\"\"a\"\", 2]\","
                  + json.dumps(json.dumps(TOOLS, ensure_ascii=False), ensure_ascii=False).replace('\\"', '""') + ","
                  + json.dumps(json.dumps(CALL, ensure_ascii=False), ensure_ascii=False).replace('\\"', '""') + "\n"
                  ).encode(),
     "eval", "eval", None, {"question": "Q", "reference": "R", "gold_ids": ["a", 2], "tools": TOOLS,
                            "expected_call": CALL}),
    ("qa.csv", "question,answer\n\"Hi, there\",\"Line 1\nLine 2\"\n".encode(), "columns", "sft", None,
     {"prompt": "Hi, there", "response": "Line 1\nLine 2"}),
    ("vi.csv", "Câu hỏi,Trả lời,Ngữ cảnh\nXin chào,Chào bạn,Lịch sự\n".encode(), "columns", "sft", None,
     {"prompt": "Xin chào", "response": "Chào bạn", "context": "Lịch sự"}),
    ("vi-eval.tsv", "CÂU_HỎI\tĐáp án đúng\tMã tài liệu\nHỏi gì?\tĐáp\td1; d2\n".encode(), "columns", "eval", None,
     {"question": "Hỏi gì?", "reference": "Đáp", "gold_ids": ["d1", "d2"]}),
    ("sheet.xlsx", xlsx([["Prompt", "Response", "System"], ["1+1 text", "ok", None], [VI, 42, "S"]]),
     "columns", "sft", None, {"prompt": "1+1 text", "response": "ok"}),
    ("chat.parquet", parquet({"messages": [messages(("user", "Q"), ("assistant", VI))]}),
     "openai_messages", "chat", None, {"messages": messages(("user", "Q"), ("assistant", VI))}),
    ("jsonl-named.json", jsonl({"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}), "columns", "sft",
     None, {"prompt": "a", "response": "b"}),
    ("wrapped.json", json.dumps({"version": 2, "data": [{"question": "Q", "answer": "A"}]}).encode(), "columns", "sft",
     None, {"prompt": "Q", "response": "A"}),
    ("one.json", json.dumps({"question": "Q", "reference": "R"}).encode(), "eval", "eval", None,
     {"question": "Q", "reference": "R"}),
    ("chat-columns.csv", b"system,user,assistant\nS,U,A\n", "columns", "sft", "chat",
     {"messages": messages(("system", "S"), ("user", "U"), ("assistant", "A"))}),
]


@pytest.mark.parametrize("name, data, layout, kind, as_kind, first", LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_layouts_are_detected_and_mapped(tmp_path, name, data, layout, kind, as_kind, first):
    table = F.read_source(data, name)
    assert (table.layout, F.detect_kind(table)) == (layout, kind)
    got_kind, result = F.import_file(data, name, as_kind)
    assert got_kind == (as_kind or kind)
    assert content(got_kind, result.records[0]) == first
    assert all(r["status"] == "unlabeled" and r["id"] for r in result.records)
    # reading from disk gives the same table as reading the bytes
    (tmp_path / name).write_bytes(data)
    assert F.read_source(tmp_path / name, name).rows == table.rows


def test_a_multi_turn_conversation_as_sft_keeps_the_first_exchange_and_says_so():
    data = jsonl({"messages": messages(("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"))})
    _, result = F.import_file(data, "chat.jsonl", "sft")
    assert contents("sft", result.records) == [{"prompt": "Q1", "response": "A1"}]
    assert result.problems == ["Conversations with more than one exchange: 1. Only the first question and answer "
                               "of each were kept."]


def test_line_numbers_match_the_file(tmp_path):
    table = F.read_source(b"prompt,response\n\na,b\n\"multi\nline\",c\nd,e\n", "x.csv")
    assert table.line_numbers == [3, 4, 5]  # header is row 1; a quoted cell over two lines is one row
    table = F.read_source(b'[\n  {"prompt": "a", "response": "b"},\n\n  {"prompt": "c",\n "response": "d"}\n]',
                          "x.json")
    assert table.line_numbers == [2, 4]
    table = F.read_source(xlsx([["prompt", "response"], [None, None], ["a", "b"]]), "x.xlsx")
    assert table.line_numbers == [3]


# ---- mapping proposals ------------------------------------------------------------------------------------------

MAPPING_CASES = [
    (["Câu hỏi", "Trả lời"], "sft", {"prompt": "Câu hỏi", "response": "Trả lời", "system": None, "context": None}),
    (["CAU_HOI", "tra-loi", "Ngữ cảnh", "Hệ thống"], "sft",
     {"prompt": "CAU_HOI", "response": "tra-loi", "system": "Hệ thống", "context": "Ngữ cảnh"}),
    (["instruction", "input", "output"], "sft",
     {"prompt": "instruction", "response": "output", "system": None, "context": "input"}),
    (["Query", "Completion", "System Prompt"], "sft",
     {"prompt": "Query", "response": "Completion", "system": "System Prompt", "context": None}),
    (["question", "answer"], "eval",
     {"question": "question", "reference": "answer", "references": None, "gold_ids": None, "tools": None,
      "expected_call": None, "gold_passages": None}),
    (["Câu hỏi", "Đáp án đúng", "Mã tài liệu", "Công cụ", "Lệnh gọi mong đợi", "Gold passages"], "eval",
     {"question": "Câu hỏi", "reference": "Đáp án đúng", "references": None, "gold_ids": "Mã tài liệu",
      "tools": "Công cụ", "expected_call": "Lệnh gọi mong đợi", "gold_passages": "Gold passages"}),
    (["question", "answers", "context"], "eval",  # SQuAD: the answers column holds several accepted answers
     {"question": "question", "reference": None, "references": "answers", "gold_ids": None, "tools": None,
      "expected_call": None, "gold_passages": None}),
    (["prompt", "chosen", "rejected"], "preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}),
    (["Yêu cầu", "Câu trả lời tốt", "Câu trả lời tệ"], "preference",
     {"prompt": "Yêu cầu", "chosen": "Câu trả lời tốt", "rejected": "Câu trả lời tệ"}),
    (["user", "assistant", "system"], "chat",
     {"messages": None, "system": "system", "prompt": "user", "response": "assistant"}),
    (["foo", "bar"], "sft", {"prompt": None, "response": None, "system": None, "context": None}),
]


@pytest.mark.parametrize("columns, kind, expected", MAPPING_CASES, ids=[c[1] + "-" + c[0][0] for c in MAPPING_CASES])
def test_mapping_proposals(columns, kind, expected):
    table = F.SourceTable("csv", "columns", columns, [dict.fromkeys(columns, "x")], [2], [], "utf-8")
    assert F.propose_mapping(table, kind) == expected
    guessed = "sft" if columns in (["question", "answer"], ["user", "assistant", "system"]) else kind
    assert F.detect_kind(table) == guessed


def test_a_mapping_chosen_by_hand_is_used_and_checked():
    data = "Cột A,Cột B,Cột C\nhỏi,đáp,khác\n".encode()
    _, result = F.import_file(data, "x.csv", "sft", {"prompt": "Cột C", "response": "Cột A"})
    assert contents("sft", result.records) == [{"prompt": "khác", "response": "hỏi"}]
    table = F.read_source(data, "x.csv")
    with pytest.raises(DataImportError, match="Column 'Nope' is not in the file"):
        F.apply_mapping(table, "sft", {"prompt": "Nope", "response": "Cột A"})
    with pytest.raises(DataImportError,
                       match=r"No column is chosen for 'prompt'\. Columns in the file: Cột A, Cột B, Cột C\."):
        F.import_file(data, "x.csv", "sft")


# ---- bad input ----------------------------------------------------------------------------------------------------

def _not_a_dataset_folder(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hello")
    return tmp_path / "folder"


BAD_INPUTS = [
    ("empty.csv", b"", "empty.csv is empty."),
    ("blank.jsonl", b"\n  \n\n", "blank.jsonl is empty."),
    ("header.csv", b"prompt,response\r\n", "header.csv has only column names (prompt, response) and no data rows."),
    ("header.xlsx", xlsx([["prompt", "response"]]), "header.xlsx has only column names (prompt, response) and no data"),
    ("empty.xlsx", xlsx([]), "empty.xlsx is empty."),
    ("header.parquet", parquet({"prompt": [], "response": []}),
     "header.parquet has only column names (prompt, response)"),
    ("binary.csv", bytes(range(256)) * 20, "binary.csv is not a text file."),
    ("renamed.csv", xlsx([["a"], ["b"]]), "renamed.csv is not a text file: it looks like an Excel workbook"),
    ("renamed.jsonl", parquet({"a": ["b"]}), "renamed.jsonl is not a text file: it looks like a Parquet file"),
    ("old.xls", b"whatever", "old.xls: use a .csv, .tsv, .jsonl, .json, .xlsx or .parquet file"),
    ("corrupt.xlsx", b"PK\x03\x04 not really a zip", "corrupt.xlsx could not be read as an Excel workbook"),
    ("corrupt.parquet", b"PAR1 nope", "corrupt.parquet could not be read as a Parquet file"),
    ("broken.json", b'[\n {"prompt": "a"},\n {"prompt": }\n]', "broken.json is not valid JSON (line 3, column 13"),
    ("scalar.json", b"42", "scalar.json holds no JSON objects"),
    ("all-broken.jsonl", b'{"prompt": \n{oops}\n', "No usable rows were found. Line 1: not valid JSON"),
    ("no-usable.csv", b"prompt,response\nonly prompt,\n",
     "No usable rows were found. Row 2: 'response' is empty. The row was skipped."),
]


@pytest.mark.parametrize("name, data, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_a_clear_message(name, data, message):
    with pytest.raises(DataImportError) as caught:
        F.import_file(data, name)
    assert message in str(caught.value)


def test_size_is_checked_before_reading(tmp_path):
    with pytest.raises(DataImportError, match=r"big\.csv is larger than the 1 MB limit \(2\.0 MB\)"):
        F.read_source(b"prompt,response\n" + b"a,b\n" * (2**19), "big.csv", max_bytes=2**20)
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as handle:  # sparse: nothing is written, and nothing must be read
        handle.truncate(F.DEFAULT_MAX_BYTES + 1)
    with pytest.raises(DataImportError, match=r"huge\.jsonl is larger than the 256 MB limit"):
        F.read_source(huge, "huge.jsonl")


def test_a_workbook_whose_xml_unpacks_beyond_the_size_limit_is_refused_before_reading(tmp_path):
    """A few kilobytes on disk, megabytes of XML: read row by row it would hold the import for as long as it likes."""
    original = zipfile.ZipFile(io.BytesIO(xlsx([["prompt", "response"], ["a", "b"]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as packed:
        for item in original.infolist():
            data = original.read(item.filename)
            packed.writestr(item, data + b"<!--" + b"A" * 2_100_000 + b"-->" if item.filename == "docProps/app.xml"
                            else data)
    data = out.getvalue()
    assert len(data) < 50_000
    with pytest.raises(DataImportError, match=r"^big\.xlsx unpacks to 2\.\d MB of text and markup, more than the 2 MB "
                                              r"limit\. Split it into smaller files\.$"):
        F.read_source(data, "big.xlsx", max_bytes=2 * 1024 * 1024)
    path = tmp_path / "big.xlsx"
    path.write_bytes(data)
    with pytest.raises(DataImportError, match="unpacks to"):
        F.read_source(path, "big.xlsx", max_bytes=2 * 1024 * 1024)
    assert F.read_source(data, "big.xlsx").rows  # within the default limit it is read


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataImportError, match="gone.csv was not found"):
        F.read_source(tmp_path / "gone.csv", "gone.csv")
    folder = _not_a_dataset_folder(tmp_path)
    with pytest.raises(DataImportError, match="folder is not a saved Hugging Face dataset folder"):
        F.read_source(folder, "folder")


def test_broken_json_lines_are_skipped_with_their_line_numbers():
    data = b'{"prompt": "a", "response": "b"}\n{"prompt": "c", "respo\n[1, 2]\n\n{"prompt": "d", "response": "e"}\n'
    kind, result = F.import_file(data, "x.jsonl")
    assert contents(kind, result.records) == [{"prompt": "a", "response": "b"}, {"prompt": "d", "response": "e"}]
    assert result.problems[0].startswith("Line 2: not valid JSON (")
    assert result.problems[1:] == ["Line 3: not a JSON object; skipped."]
    assert result.problems[0].template == "Line {line}: not valid JSON ({reason}); skipped."


def test_bad_rows_are_reported_and_good_rows_still_import():
    data = ("question,reference,gold_ids,expected_call\n"
            "Q1,R1,,\n"
            "Q2,,,\n"
            "Q3,R3,\"[\"\"x\"\",\",\n"
            "Q4,,,\"{\"\"arguments\"\": {}}\"\n"
            ",R5,,\n"
            "Q6,,,\"{\"\"name\"\": \"\"f\"\", \"\"arguments\"\": {}}\"\n").encode()
    _, result = F.import_file(data, "eval.csv")
    assert contents("eval", result.records) == [{"question": "Q1", "reference": "R1"},
                                                {"question": "Q6", "expected_call": {"name": "f", "arguments": {}}}]
    assert result.problems == [
        "Row 3: An eval question needs a reference answer or an expected tool call. The row was skipped.",
        "Row 4: 'gold_ids' is not valid JSON (Expecting value). The row was skipped.",
        "Row 5: 'expected_call' should be an object with a 'name' (and 'arguments'). The row was skipped.",
        "Row 6: 'question' is empty. The row was skipped."]
    assert result.problems[0].template == "Row {row}: {problems} The row was skipped."


@pytest.mark.parametrize("name, data, columns, notice", [
    ("semi.csv", "câu hỏi;trả lời\nA, b;C, d\n", ["câu hỏi", "trả lời"], "separated by a semicolon"),
    ("comma.tsv", "prompt,response\na;b,c\td\n", ["prompt", "response"], "separated by a comma"),
    ("pipe.csv", "prompt|response\na, b; c|d\n", ["prompt", "response"], "separated by a vertical bar"),
    ("tabs.csv", "prompt\tresponse\na, b\tc; d\n", ["prompt", "response"], "separated by a tab"),
    ("plain.tsv", "prompt\tresponse\na, b\tc; d\n", ["prompt", "response"], None),
    ("excel-hint.csv", "sep=;\r\nprompt;response\r\na, b;c\r\n", ["prompt", "response"], None),
])
def test_the_delimiter_is_sniffed(name, data, columns, notice):
    table = F.read_source(data.encode(), name)
    assert table.columns == columns and table.line_numbers == [2]
    assert len(table.rows[0]) == 2 and all(table.rows[0].values())
    assert (notice in table.problems[0]) if notice else table.problems == []


def test_duplicate_and_blank_column_names():
    table = F.read_source(b"prompt,prompt,response,,\na,b,c,,\n", "dup.csv")
    assert table.columns == ["prompt", "prompt (2)", "response"]
    assert table.rows == [{"prompt": "a", "prompt (2)": "b", "response": "c"}]
    assert table.problems == ["Column 'prompt' appears more than once; the copy is called 'prompt (2)'."]
    table = F.read_source(b"prompt,,response\na,kept,c\n", "blank.csv")
    assert table.columns == ["prompt", "column 2", "response"]


CP1258_TEXT = "Ti\u00ea\u0301ng Vi\u00ea\u0323t; \u0111\u01b0\u01a1\u0300ng; \u0103n ph\u01a1\u0309 20.000\u20ab"
ENCODINGS = [
    ("utf-8", "prompt,response\n{}\n".format(VI + "," + VI_DECOMPOSED).encode("utf-8"), "utf-8", False),
    ("utf-8-bom", "prompt,response\n{}\n".format(VI + "," + VI_DECOMPOSED).encode("utf-8-sig"), "utf-8", False),
    ("utf-16-bom", "prompt,response\n{}\n".format(VI + "," + VI_DECOMPOSED).encode("utf-16"), "utf-16", False),
    ("utf-16-le", "prompt,response\n{}\n".format(VI + "," + VI_DECOMPOSED).encode("utf-16-le"), "utf-16", False),
    ("utf-16-be", "prompt,response\n{}\n".format(VI + "," + VI_DECOMPOSED).encode("utf-16-be"), "utf-16", False),
    ("cp1258", "prompt,response\n{}\n".format(CP1258_TEXT + ",x").encode("cp1258"), "cp1258", True),
    ("latin-1", "prompt,response\ncafé \x8a crème,x\n".encode("latin-1"), "latin-1", True),
    ("late-bad-byte", b"prompt,response\n" + b"a,b\n" * 40000 + "\u0111\u01b0\u01a1\u0300ng,x\n".encode("cp1258"),
     "cp1258", True),
]


@pytest.mark.parametrize("label, data, encoding, notice", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_encodings(label, data, encoding, notice):
    table = F.read_source(data, "enc.csv")
    assert table.encoding == encoding
    assert table.columns == ["prompt", "response"]
    expected = {"utf-8": VI, "cp1258": CP1258_TEXT, "latin-1": "café \x8a crème"}
    first = table.rows[-1 if label == "late-bad-byte" else 0]
    if label == "late-bad-byte":
        assert first["prompt"] == "\u0111\u01b0\u01a1\u0300ng" and len(table.rows) == 40001
    else:
        assert first["prompt"] == expected.get(encoding, VI)
    if encoding in ("utf-8", "utf-16"):
        assert first["response"] == VI_DECOMPOSED  # not normalised to NFC
    has_notice = "The file is not UTF-8; it was read as {}.".format(encoding) in "".join(table.problems)
    assert has_notice == notice


def _with_formula_cells(data: bytes, cached: dict[str, str]) -> bytes:
    """openpyxl saves formulas without a value; give some of them a cached value like Excel would."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            body = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = body.decode()
                for cell, value in cached.items():
                    start = text.index('<c r="{}"'.format(cell))
                    end = text.index("</c>", start)
                    formula = text[text.index("<f>", start):text.index("</f>", start) + 4]
                    text = text[:start] + '<c r="{}" t="str">{}<v>{}</v>'.format(cell, formula, value) + text[end:]
                body = text.encode()
            target.writestr(item, body)
    return out.getvalue()


def test_xlsx_formulas_are_never_run():
    data = xlsx([["prompt", "response"], ["Q1", "=CONCAT(\"A\",\"1\")"], ["Q2", "=1/0+NOW()"], ["Q3", "'=text"]])
    data = _with_formula_cells(data, {"B2": "cached A1"})
    _, result = F.import_file(data, "f.xlsx")
    assert contents("sft", result.records) == [{"prompt": "Q1", "response": "cached A1"},
                                               {"prompt": "Q3", "response": "=text"}]
    assert result.problems[0] == ("Cell B3 holds a formula with no saved value; open the file in Excel, save it "
                                  "and import it again (formulas are never run here).")
    assert result.problems[1] == "Row 3: 'response' is empty. The row was skipped."


def test_xlsx_reads_the_sheet_with_data_and_says_which():
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Empty"
    sheet = book.create_sheet("Dữ liệu")
    sheet.append(["question", "answer"])
    sheet.append(["Q", 3.0])
    out = io.BytesIO()
    book.save(out)
    _, result = F.import_file(out.getvalue(), "two.xlsx")
    assert contents("sft", result.records) == [{"prompt": "Q", "response": "3"}]
    assert result.problems == ["The workbook has 2 sheets; only the sheet 'Dữ liệu' was read."]


def test_hf_dataset_dict_reads_the_train_split(tmp_path):
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"prompt": ["t"], "response": ["T"]}),
                          "train": datasets.Dataset.from_dict({"prompt": ["a"], "response": ["b"]})}
                         ).save_to_disk(str(tmp_path / "dd"))
    _, result = F.import_file(tmp_path / "dd", "dd")
    assert contents("sft", result.records) == [{"prompt": "a", "response": "b"}]
    assert result.problems == ["The dataset has the splits test, train; only 'train' was read."]


# ---- formula guard ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, written", [
    ("=1+1", "'=1+1"), ("+84 912", "'+84 912"), ("-5", "'-5"), ("@SUM(A1)", "'@SUM(A1)"), ("'=x", "''=x"),
    ("''-y", "'''-y"), ("'quoted'", "'quoted'"), ("a=b", "a=b"), ("", ""), ("Việt", "Việt"),
])
def test_formula_guard(text, written):
    assert F.guard_cell(text) == written
    assert F.unguard_cell(written) == text


def test_exports_hold_no_live_formulas():
    import openpyxl

    records = [new_record("sft", prompt="=HYPERLINK(\"http://x\")", response="@cmd|' /C calc'!A0")]
    assert b"'=HYPERLINK" in F.export_records(records, "sft", "csv")
    book = openpyxl.load_workbook(io.BytesIO(F.export_records(records, "sft", "xlsx")))
    cells = [c for row in book.active.iter_rows() for c in row]
    assert [c.value for c in cells[4:6]] == ["'=HYPERLINK(\"http://x\")", "'@cmd|' /C calc'!A0"]
    assert {c.data_type for c in cells if c.value is not None} == {"s"}


# ---- large streamed input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["big.jsonl", "big.csv"])
def test_a_large_file_is_streamed_with_progress(tmp_path, name):
    path, count, row = tmp_path / name, 90_000, "Câu hỏi số {} " + "x" * 150
    with path.open("w", encoding="utf-8", newline="") as handle:
        if name.endswith(".csv"):
            handle.write("prompt,response\r\n")
            handle.writelines('"{}, hỏi",Trả lời {}\r\n'.format(row.format(i), i) for i in range(count))
        else:
            handle.writelines(json.dumps({"prompt": row.format(i), "response": "Trả lời {}".format(i)},
                                         ensure_ascii=False) + "\n" for i in range(count))
    assert path.stat().st_size > 15 * 2**20
    seen = []
    kind, result = F.import_file(path, name, progress=seen.append)
    assert len(result.records) == count and kind == "sft"
    assert result.records[-1]["response"] == "Trả lời {}".format(count - 1)
    assert len(seen) >= 20 and seen == sorted(seen) and seen[-1] == 1.0 and seen[0] < 0.1


# ---- export shapes ------------------------------------------------------------------------------------------------

def test_export_shapes():
    record = new_record("sft", prompt="P", response="R", system="S", context="C")
    line = lambda fmt: json.loads(F.export_records([record], "sft", fmt))  # noqa: E731
    assert line("openai_chat") == {"messages": messages(("system", "S"), ("user", "P"), ("assistant", "R"))}
    assert line("sharegpt") == {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "P"},
                                                  {"from": "gpt", "value": "R"}]}
    assert line("alpaca") == {"instruction": "P", "input": "C", "output": "R", "system": "S"}
    assert line("prompt_completion") == {"prompt": "P", "completion": "R", "system": "S", "context": "C"}
    assert F.export_records([record], "sft", "csv") == "\ufeffprompt,response,system,context\r\nP,R,S,C\r\n".encode()
    assert F.export_notes([record], "sft", "openai_chat")[0].startswith("Records with a context: 1. This format")
    assert F.export_notes([record], "sft", "alpaca") == []


def test_export_to_a_target_and_bad_requests(tmp_path):
    record = new_record("preference", prompt="P", chosen="C", rejected="R")
    path = F.export_records([record], "preference", "jsonl", tmp_path / "out" / "p.jsonl")
    assert path.read_bytes() == jsonl({"prompt": "P", "chosen": "C", "rejected": "R"})
    with pytest.raises(ValueError):
        F.export_records([record], "preference", "alpaca")
    with pytest.raises(ValueError):
        F.export_records([record], "preference", "hf_folder")
    first = F.export_records([record], "preference", "hf_folder", tmp_path / "ds")
    second = F.export_records([record, record], "preference", "hf_folder", tmp_path / "ds")
    assert first == second and len(F.import_file(second, "ds")[1].records) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_chat_tool_calls_round_trip_where_the_format_has_room(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}
    chat = [new_record("chat", messages=[{"role": "user", "content": "Q"},
                                         {"role": "assistant", "content": None, "tool_calls": [call]},
                                         {"role": "tool", "tool_call_id": "c1", "content": "42"},
                                         {"role": "assistant", "content": "A"}])]
    for fmt in ("openai_chat", "jsonl", "parquet", "hf_folder"):
        data = F.export_records(chat, "chat", fmt, tmp_path / "ds" if fmt == "hf_folder" else None)
        _, result = F.import_file(data, "x" + F.EXPORT_EXTENSIONS[fmt] if fmt != "hf_folder" else "ds", "chat")
        assert contents("chat", result.records) == contents("chat", chat), fmt
    assert F.export_notes(chat, "chat", "sharegpt")[0].startswith(
        "Messages with tool calls or other details that ShareGPT cannot hold: 2.")


# ---- the round-trip matrix ----------------------------------------------------------------------------------------

NASTY = ["=1+1", "+84 912 345 678", "-5", "@mention", "'=already quoted", "'apostrophe", "a, b; c\td | e",
         "He said \"hi\" and 'bye'", "line 1\nline 2\r\nline 3\rend", "  padded  ", "_x000D_ literal", "emoji 🚲",
         "sep\u2028arator", VI, VI_DECOMPOSED, "00123", "3.10", "TRUE", "null", "[1, 2]", "{\"a\": 1}"]


def sample_records(kind: str) -> list[dict]:
    if kind == "sft":
        rows = [new_record("sft", prompt=text, response=NASTY[-1 - i], system=(NASTY[i // 2] if i % 3 else ""),
                           context=("" if i % 2 else NASTY[(i + 5) % len(NASTY)])) for i, text in enumerate(NASTY)]
        return rows
    if kind == "chat":
        return [new_record("chat", messages=messages(("user", text), ("assistant", NASTY[-1 - i])))
                for i, text in enumerate(NASTY)] + [
            new_record("chat", messages=messages(("system", VI), ("user", "Q1"), ("assistant", "A1"), ("user", "Q2"),
                                                 ("tool", "=42"), ("assistant", "A2")))]
    if kind == "preference":
        return [new_record("preference", prompt=text, chosen=NASTY[-1 - i], rejected=NASTY[(i + 3) % len(NASTY)])
                for i, text in enumerate(NASTY)]
    rows = [new_record("eval", question=text, reference=NASTY[-1 - i]) for i, text in enumerate(NASTY)]
    rows += [new_record("eval", question="Thời tiết Hà Nội?", expected_call=CALL, tools=TOOLS),
             new_record("eval", question="Q gold", reference="=A", gold_ids=["doc-1", "tài-liệu 2"]),
             # several accepted answers, with and without a reference
             new_record("eval", question="Q answers", reference="Paris", references=["=Paris", "a | b", VI]),
             new_record("eval", question="Q answers only", references=["Hà Nội", "thủ đô"]),
             new_record("eval", question="Q ints", reference="R", gold_ids=[1, 2, "3"], tools=TOOLS,
                        expected_call={"name": "f", "arguments": "{\"raw\": \"json text\"}"}),
             # a retrieval query: gold passages and no reference
             new_record("eval", question="Giờ mở cửa?", gold_ids=["c0ffee"],
                        gold_passages=[{"source": "giờ.md", "text": "=Mở cửa lúc 9 giờ,\n\"đóng\" lúc 18 giờ."},
                                       {"source": "", "text": "Second passage"}])]
    return rows


MATRIX = [(kind, fmt) for kind in KINDS for fmt in F.EXPORT_FORMATS[kind]]


@pytest.mark.parametrize("kind, fmt", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_round_trip(tmp_path, kind, fmt):
    originals = sample_records(kind)
    if fmt == "hf_folder":
        data, name = F.export_records(originals, kind, fmt, tmp_path / "dataset"), "dataset"
        assert data == tmp_path / "dataset" and (data / "dataset_info.json").exists()
    else:
        data, name = F.export_records(originals, kind, fmt), "export" + F.EXPORT_EXTENSIONS[fmt]
        assert isinstance(data, bytes)
    got_kind, result = F.import_file(data, name, kind)
    expected = contents(kind, originals)
    if kind == "sft" and fmt in ("openai_chat", "sharegpt"):  # these formats have no place for context
        expected = [{k: v for k, v in e.items() if k != "context"} for e in expected]
    assert result.problems == []
    assert contents(kind, result.records) == expected
    guessed = "chat" if (kind, fmt) in (("sft", "openai_chat"), ("sft", "sharegpt")) else kind
    assert F.detect_kind(F.read_source(data, name)) == guessed


def test_core_formats_loads_no_heavy_library():
    code = ("import sys, core.data.formats\n"
            "heavy = ('pandas', 'pyarrow', 'openpyxl', 'datasets', 'streamlit', 'torch')\n"
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind, data, question_field", [
    ("sft", b"prompt\nWhat are your hours?\nDo you ship?\n", "prompt"),
    ("eval", b"question\nWhat are your hours?\nDo you ship?\n", "question"),
])
def test_questions_without_answers_import_for_drafting(kind, data, question_field):
    from core.data.records import DRAFTABLE, problems

    _, result = F.import_file(data, "questions.csv", kind)
    assert [r[question_field] for r in result.records] == ["What are your hours?", "Do you ship?"]
    assert all(DRAFTABLE[kind] not in r for r in result.records)
    assert any("without answers" in str(p) for p in result.problems)
    assert problems(kind, result.records[0])  # still not usable for training or scoring until answered


def test_a_mapped_answer_column_with_an_empty_cell_still_skips_that_row():
    _, result = F.import_file(b"prompt,response\nq1,a1\nq2,\n", "pairs.csv", "sft")
    assert [r["prompt"] for r in result.records] == ["q1"]
    assert any("Row 3" in str(p) for p in result.problems)


def test_retrieval_queries_import_with_gold_and_no_reference():
    data = ("question,gold_ids,gold_passages\n"
            "Q1,a.md,\n"
            "Q2,,\"[{\"\"source\"\": \"\"b.md\"\", \"\"text\"\": \"\"Open at nine.\"\"}]\"\n"
            "Q3,,\"[{\"\"source\"\": \"\"b.md\"\"}]\"\n"
            "Q4,,\n").encode()
    kind, result = F.import_file(data, "queries.csv", "eval")
    assert contents(kind, result.records) == [
        {"question": "Q1", "gold_ids": ["a.md"]},
        {"question": "Q2", "gold_passages": [{"source": "b.md", "text": "Open at nine."}]},
        {"question": "Q4"}]   # a question alone waits for a drafted answer, as before
    assert any("Row 4" in p and "'gold_passages' should be a list of passages" in p for p in result.problems)
