"""convert: CSV, TSV, XLSX, JSON array and JSONL in, JSONL out, with the optional split."""

from __future__ import annotations

import io
import json
from pathlib import Path

import openpyxl
import pytest

from shared.validation import validate
from shared.validation.convert import ConversionError, convert


def _out(path: Path, **kwargs: object) -> tuple[list[dict[str, object]], object]:
    buf = io.BytesIO()
    result = convert(path, buf, **kwargs)  # type: ignore[arg-type]
    return [json.loads(x) for x in buf.getvalue().splitlines()], result


def test_csv_to_chat(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text('\ufeffPrompt,Completion,System\n"Hi, there",Hello,Be kind\n,,\nQ2,"multi\nline",\n', "utf-8")
    records, result = _out(p)
    assert records[0] == {
        "messages": [
            {"role": "system", "content": "Be kind"},
            {"role": "user", "content": "Hi, there"},
            {"role": "assistant", "content": "Hello"},
        ]
    }
    assert records[1]["messages"][-1] == {"role": "assistant", "content": "multi\nline"}  # type: ignore[index]
    assert (result.written, result.skipped) == (2, 1)  # type: ignore[attr-defined]


def test_tsv_to_completion(tmp_path: Path) -> None:
    p = tmp_path / "d.tsv"
    p.write_text("prompt\tcompletion\nq1 ->\t a1\n", "utf-8")
    records, _ = _out(p, model="babbage-002")
    assert records == [{"prompt": "q1 ->", "completion": " a1"}]


def test_xlsx(tmp_path: Path) -> None:
    p = tmp_path / "d.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["user", "assistant"])
    ws.append(["What is 2+2?", 4])
    ws.append([None, None])
    wb.save(p)
    records, result = _out(p)
    assert records == [
        {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}
    ]
    assert result.skipped == 1  # type: ignore[attr-defined]


def test_json_array_streamed_with_line_numbers(tmp_path: Path) -> None:
    items = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(50)] + [
        {"messages": [{"role": "user", "content": "x"}]}
    ]
    p = tmp_path / "d.json"
    p.write_text(json.dumps(items, indent=2), "utf-8")
    records, result = _out(p)
    assert len(records) == 51 and records[-1] == items[-1]
    p.write_text(json.dumps(items[:2], indent=2)[:-2] + ", 7]", "utf-8")
    with pytest.raises(ConversionError, match="not an object"):
        _out(p)


def test_jsonl_passthrough_and_whole_file_array_converted(tmp_path: Path) -> None:
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(chat) + "\n\n" + json.dumps({"prompt": "p", "completion": "c"}) + "\n", "utf-8")
    records, _ = _out(p)
    assert records[0] == chat and records[1]["messages"][0]["content"] == "p"  # type: ignore[index]


def test_missing_columns_names_the_row(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("question_text,reply\nq,a\n", "utf-8")
    with pytest.raises(ConversionError, match=r"row 2: needs a prompt column \(prompt, user, question, input\)"):
        _out(p)


def test_chat_records_refused_for_completion_model(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"messages": []}\n', "utf-8")
    with pytest.raises(ConversionError, match="completion model"):
        _out(p, model="davinci-002")


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="unsupported"):
        _out(tmp_path / "d.parquet")


def test_convert_with_split_then_validate(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion\n" + "".join(f"question {i},answer {i}\n" for i in range(100)), "utf-8")
    train, valid = io.BytesIO(), io.BytesIO()
    result = convert(p, train, fraction=0.2, valid_out=valid)
    assert result.train_examples + result.valid_examples == 100  # type: ignore[operator]
    report = validate(train.getvalue(), validation=valid.getvalue())
    assert report.valid and report.validation is not None
    assert report.counts.get("train_validation_overlap", 0) == 0


# ---- hardening: careless and hostile input ---------------------------------------------------------------


def test_cp1252_byte_is_blamed_on_its_own_line_and_the_encoding_option_reads_it(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_bytes(b"prompt,completion\nfine,ok\nit\x92s,here\n")
    with pytest.raises(ConversionError, match=r"line 3: byte 0x92 at column 3 .*Windows-1252"):
        _out(p)
    records, _ = _out(p, encoding="cp1252")
    assert records[1]["messages"][0]["content"] == "it\u2019s"  # type: ignore[index]


def test_semicolon_and_pipe_csv_are_sniffed(tmp_path: Path) -> None:
    for sep in (";", "|", "\t"):
        p = tmp_path / "d.csv"
        p.write_text(f'prompt{sep}completion\n"a, b"{sep}c\nd{sep}"e; f"\n', "utf-8")
        records, _ = _out(p)
        assert [r["messages"][0]["content"] for r in records] == ["a, b", "d"]  # type: ignore[index]
        assert records[1]["messages"][1]["content"] == "e; f"  # type: ignore[index]


def test_legacy_separators_are_stripped_for_chat_only(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    lines = [
        {"prompt": "Summarise this ->", "completion": " Short. END"},
        {"prompt": "Question?\n\n###\n\n", "completion": " Answer.\n"},
        {"prompt": "Plain", "completion": "kept###"},
    ]
    p.write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    records, _ = _out(p)
    pairs = [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records]  # type: ignore[index]
    assert pairs == [("Summarise this", "Short."), ("Question?", "Answer."), ("Plain", "kept")]
    legacy, _ = _out(p, model="babbage-002")
    assert legacy[0] == lines[0]


def test_system_option_adds_a_system_message_where_there_is_none(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    has = {"messages": [{"role": "system", "content": "own"}, {"role": "user", "content": "q"}]}
    p.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n" + json.dumps(has) + "\n", "utf-8")
    records, _ = _out(p, system="Be brief.")
    assert records[0]["messages"][0] == {"role": "system", "content": "Be brief."}  # type: ignore[index]
    assert records[1] == has


def test_input_output_columns_are_a_pair_not_a_preference_record(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("input,output\nq,a\n", "utf-8")
    records, _ = _out(p)
    assert records == [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]


def test_deep_nesting_is_a_conversion_error(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    p = tmp_path / "d.jsonl"
    p.write_text('{"messages": ' + deep + "}\n", "utf-8")
    with pytest.raises(ConversionError, match="row 1"):
        _out(p)
    p = tmp_path / "d.json"
    p.write_text('[{"messages": ' + deep + "}]", "utf-8")
    with pytest.raises(ConversionError, match="nested too deeply"):
        _out(p)


def test_jsonl_lines_are_capped_like_the_validator(tmp_path: Path) -> None:
    from shared.validation import ValidationOptions

    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"prompt": "' + b"x" * (ValidationOptions().max_line_bytes + 1) + b'", "completion": "c"}\n')
    with pytest.raises(ConversionError, match="row 1: the line is longer than"):
        _out(p)


def test_xlsx_caps_rows_cells_width_and_unpacked_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.validation import convert as module

    p = tmp_path / "d.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["prompt", "completion"])
    for i in range(20):
        ws.append([f"q{i}", f"a{i}"])
    ws.cell(row=3, column=16000, value="far away")  # a stray cell must not widen every row to 16,000 columns
    ws.cell(row=5, column=1, value="y" * 40)
    wb.save(p)
    records, _ = _out(p)
    assert len(records) == 20
    monkeypatch.setitem(module.XLSX_LIMITS, "cell_chars", 30)
    with pytest.raises(ConversionError, match="row 5: a cell holds 40 characters"):
        _out(p)
    monkeypatch.setitem(module.XLSX_LIMITS, "cell_chars", 32_767)
    monkeypatch.setitem(module.XLSX_LIMITS, "rows", 10)
    with pytest.raises(ConversionError, match="row 11: more than 10 rows"):
        _out(p)
    monkeypatch.setitem(module.XLSX_LIMITS, "uncompressed_bytes", 1000)
    with pytest.raises(ConversionError, match="unpacks to .* bytes; at most 1,000"):
        _out(p)


def test_xlsx_that_unpacks_far_beyond_its_size_is_refused_before_parsing(tmp_path: Path) -> None:
    import zipfile

    p = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "<row/>" * (4 << 20))  # 24 MB of one repeated tag
    assert p.stat().st_size < 1 << 20
    with pytest.raises(ConversionError, match="likely zip bomb"):
        _out(p)
