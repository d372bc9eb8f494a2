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
    with pytest.raises(ConversionError, match=r"row 2: needs 'prompt' and 'completion'"):
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
