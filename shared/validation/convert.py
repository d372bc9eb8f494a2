"""Conversion to JSONL (the old `openai tools fine_tunes.prepare_data` job), streamed.

In: CSV, TSV, XLSX (first sheet), a JSON array, or JSONL; by file extension. Tabular files need a header
row with `prompt` and `completion` columns (or `user` and `assistant`), and may have a `system` column.
JSON records that already hold `messages` (chat) or `input` (preference) pass through unchanged.
Out: JSONL, UTF-8 without a BOM, LF. For a chat model, prompt/completion pairs become
`{"messages": [{"role": "system"}?, {"role": "user"}, {"role": "assistant"}]}`; for babbage-002 and
davinci-002 they stay `{"prompt", "completion"}`. With `fraction`, the output is split as `split.py` says.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .model_limits import profile_for
from .reading import StreamFacts, iter_chunks, iter_lines
from .split import BinaryWritable, Splitter
from .validator import DEFAULT_MODEL

INPUT_FORMATS = ("csv", "tsv", "xlsx", "json", "jsonl")
_MAX_ITEM_CHARS = 64 << 20  # an array item larger than this is reported, not buffered further
_PROMPT = ("prompt", "user", "question", "input")
_COMPLETION = ("completion", "assistant", "answer", "output")


class ConversionError(ValueError):
    """The input cannot be converted; `row` is the 1-based line or row (header = row 1) when known."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(f"row {row}: {message}" if row is not None else message)
        self.row = row


@dataclass
class ConvertResult:
    input_format: str
    written: int
    skipped: int
    train_examples: int | None = None
    valid_examples: int | None = None


def _input_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("txt",):
        return "jsonl"
    if suffix not in INPUT_FORMATS:
        raise ConversionError(f"unsupported input {path.name!r}: expected one of .{', .'.join(INPUT_FORMATS)}")
    return suffix


def _rows_tabular(header: list[Any], rows: Iterator[tuple[int, list[Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
    names = [str(h).strip().lower() if h is not None else "" for h in header]
    for row, values in rows:
        record = {n: v for n, v in zip(names, values, strict=False) if n}
        yield row, record


def _read_delimited(f: BinaryIO, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConversionError(f"unreadable header: {exc}", 1) from exc

    def rows() -> Iterator[tuple[int, list[Any]]]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ConversionError(f"unreadable: {exc}", reader.line_num) from exc
            yield reader.line_num, values

    yield from _rows_tabular(header, rows())


def _read_xlsx(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad workbook
        raise ConversionError(f"not a readable .xlsx workbook: {exc}") from exc
    try:
        sheet = book.worksheets[0]
        it = sheet.iter_rows(values_only=True)
        header = next(it, None)
        if header is None:
            return
        yield from _rows_tabular(list(header), ((i, list(v)) for i, v in enumerate(it, start=2)))
    finally:
        book.close()


def _read_jsonl(f: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    facts = StreamFacts()
    for line, raw in iter_lines(iter_chunks(f, 1 << 20), facts, max_bytes=1 << 62, max_line_bytes=1 << 62):
        if raw is None or not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ConversionError(f"invalid JSON: {exc}", line) from exc
        if not isinstance(obj, dict):
            raise ConversionError("each line must be a JSON object", line)
        yield line, obj


def _read_json_array(f: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    """Objects of a top-level JSON array, one at a time (the array is never held whole)."""
    decoder = json.JSONDecoder()
    text = io.TextIOWrapper(f, encoding="utf-8-sig")
    buf = ""
    pos = 0
    line = 1
    eof = False

    def fill() -> bool:
        nonlocal buf, pos, eof
        more = text.read(1 << 20)
        if not more:
            eof = True
            return False
        buf = buf[pos:] + more
        pos = 0
        return True

    def skip_ws() -> None:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or not fill():
                return

    fill()
    skip_ws()
    if pos >= len(buf):
        return
    if buf[pos] == "{":
        raise ConversionError("the file holds JSON objects, not an array: if one per line, name it .jsonl", line)
    if buf[pos] != "[":
        raise ConversionError("expected a JSON array of objects", line)
    pos += 1
    index = 0
    while True:
        skip_ws()
        if pos >= len(buf):
            raise ConversionError("the JSON array is not closed", line)
        if buf[pos] == "]":
            return
        if index:
            if buf[pos] != ",":
                raise ConversionError(f"expected ',' between array items, found {buf[pos]!r}", line)
            pos += 1
            skip_ws()
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if len(buf) - pos > _MAX_ITEM_CHARS or eof or not fill():
                    raise ConversionError(f"invalid JSON in item {index + 1}: {exc.msg}", line) from exc
        start_line = line
        line += buf.count("\n", pos, end)
        pos = end
        index += 1
        if not isinstance(obj, dict):
            raise ConversionError(f"array item {index} is not an object", start_line)
        yield start_line, obj


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_record(record: dict[str, Any], row: int, *, chat: bool) -> dict[str, Any] | None:
    """The JSONL record for one input record; None for an empty row."""
    if "messages" in record or "input" in record:
        if not chat:
            raise ConversionError("a chat/preference record cannot train a completion model", row)
        return record
    keys = {str(k).strip().lower(): k for k in record}
    prompt_key = next((keys[k] for k in _PROMPT if k in keys), None)
    completion_key = next((keys[k] for k in _COMPLETION if k in keys), None)
    values = [v for v in record.values() if _text(v).strip()]
    if not values:
        return None
    if prompt_key is None or completion_key is None:
        found = ", ".join(repr(str(k)) for k in list(record)[:8]) or "none"
        raise ConversionError(
            f"needs 'prompt' and 'completion' (or 'user' and 'assistant') columns; found {found}", row
        )
    prompt, completion = _text(record[prompt_key]), _text(record[completion_key])
    if not chat:
        return {"prompt": prompt, "completion": completion}
    messages = []
    system = _text(record.get(keys.get("system", ""), None)) if "system" in keys else ""
    if system.strip():
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": completion})
    return {"messages": messages}


def convert(
    source: str | Path,
    out: BinaryWritable,
    *,
    model: str = DEFAULT_MODEL,
    fraction: float | None = None,
    valid_out: BinaryWritable | None = None,
) -> ConvertResult:
    """Convert the file at `source` to JSONL written to `out` (and split into `valid_out` with `fraction`)."""
    path = Path(source)
    fmt = _input_format(path)
    chat = profile_for(model).is_chat
    splitter = None
    if fraction is not None:
        if valid_out is None:
            raise ValueError("a split needs valid_out")
        splitter = Splitter(out, valid_out, fraction)
    written = skipped = 0
    with open(path, "rb") as f:
        records: Iterator[tuple[int, dict[str, Any]]]
        if fmt == "xlsx":
            records = _read_xlsx(path)
        elif fmt in ("csv", "tsv"):
            records = _read_delimited(f, "," if fmt == "csv" else "\t")
        elif fmt == "json":
            records = _read_json_array(f)
        else:
            records = _read_jsonl(f)
        for row, record in records:
            converted = to_record(record, row, chat=chat)
            if converted is None:
                skipped += 1
                continue
            line = json.dumps(converted, ensure_ascii=False).encode("utf-8")
            if splitter is not None:
                splitter.add(line)
            else:
                out.write(line + b"\n")
            written += 1
    result = ConvertResult(input_format=fmt, written=written, skipped=skipped)
    if splitter is not None:
        result.train_examples, result.valid_examples = splitter.finish()
    return result
