"""Conversion to JSONL (the old `openai tools fine_tunes.prepare_data` job), streamed.

In: CSV, TSV, XLSX (first sheet), a JSON array, or JSONL; by file extension. CSV is read with the dialect
sniffed from its first 64 KB (`,` `;` tab or `|`), in UTF-8 (with or without a BOM) unless another encoding
is given; a byte that does not decode is reported on its own line. Tabular files need a header row naming a
prompt column and a completion column (`COLUMN_NAMES` lists the accepted names, case-insensitive), and may
have a `system` column. JSON records that already hold `messages` (chat) or `input` (preference) pass through
unchanged. XLSX is read in openpyxl's read-only streaming mode within caps (`XLSX_LIMITS`).
Out: JSONL, UTF-8 without a BOM, LF. For a chat model, prompt/completion pairs become
`{"messages": [{"role": "system"}?, {"role": "user"}, {"role": "assistant"}]}`, without the legacy
separators (a prompt ending in `\n\n###\n\n` or ` ->`, a completion starting with a space and ending in
`\n`, ` END` or `###`); `system` adds a system message to each chat record that has none. For babbage-002 and
davinci-002 the pairs stay `{"prompt", "completion"}` as they are. With `fraction`, the output is split as
`split.py` says.
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
from .options import ValidationOptions
from .reading import StreamFacts, iter_chunks, iter_lines
from .split import BinaryWritable, Splitter
from .validator import DEFAULT_MODEL

INPUT_FORMATS = ("csv", "tsv", "xlsx", "json", "jsonl")
_MAX_ITEM_CHARS = 64 << 20  # an array item larger than this is reported, not buffered further
_PROMPT = ("prompt", "user", "question", "input")
_COMPLETION = ("completion", "assistant", "answer", "output")
#: Header names understood in tabular input (first match wins, compared case-insensitively).
COLUMN_NAMES = {"prompt": _PROMPT, "completion": _COMPLETION, "system": ("system",)}
#: XLSX caps: Excel's own row and cell limits, and what the unpacked workbook may hold.
XLSX_LIMITS = {
    "rows": 1_048_576,
    "columns": 256,
    "cell_chars": 32_767,
    "uncompressed_bytes": 512 << 20,
    "shared_strings_bytes": 128 << 20,
    "ratio": 100,  # unpacked / packed, checked above 16 MB unpacked (real workbooks pack 5-20x; bombs far more)
}
_PROMPT_SEPARATORS = ("\n\n###\n\n", "\n\n###\n", "\n###\n", "###", " ->", "->", "\n\n")
_COMPLETION_STOPS = ("\n", " END", "###")
_CSV_DELIMITERS = ",;\t|"


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


def _decoded_lines(f: BinaryIO, encoding: str) -> Iterator[str]:
    """Physical lines decoded one at a time, so an undecodable byte is blamed on its own line."""
    for number, raw in enumerate(f, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            byte = raw[exc.start]
            hint = ""
            if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
                try:
                    raw.decode("cp1252")
                    hint = "; it looks like Windows-1252: save it as UTF-8, or convert with --encoding cp1252"
                except UnicodeDecodeError:
                    hint = "; save the file as UTF-8"
            raise ConversionError(
                f"line {number}: byte 0x{byte:02x} at column {exc.start + 1} is not {encoding}{hint}"
            ) from None


def _sniff(f: BinaryIO, encoding: str, default: str) -> type[csv.Dialect] | csv.Dialect | str:
    sample = f.read(64 << 10)
    f.seek(0)
    try:
        text = sample.decode(encoding, errors="replace")
        return csv.Sniffer().sniff(text, delimiters=_CSV_DELIMITERS)
    except csv.Error:
        return default


def _read_delimited(f: BinaryIO, delimiter: str, encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, Any]]]:
    dialect = _sniff(f, encoding, delimiter) if delimiter == "," else delimiter
    if isinstance(dialect, str):
        reader = csv.reader(_decoded_lines(f, encoding), delimiter=dialect)
    else:
        reader = csv.reader(_decoded_lines(f, encoding), dialect)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ConversionError(f"unreadable header: {exc}", 1) from exc

    def rows() -> Iterator[tuple[int, list[Any]]]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ConversionError(f"unreadable: {exc}", reader.line_num) from exc
            yield reader.line_num, values

    yield from _rows_tabular(header, rows())


def _check_workbook(path: Path) -> None:
    """Refuse a workbook whose unpacked parts exceed XLSX_LIMITS before openpyxl inflates any of it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConversionError(f"not a readable .xlsx workbook: {exc}") from exc
    total = sum(i.file_size for i in infos)
    if total > XLSX_LIMITS["uncompressed_bytes"]:
        raise ConversionError(
            f"the workbook unpacks to {total:,} bytes; at most {XLSX_LIMITS['uncompressed_bytes']:,} are read "
            "(save the sheet as CSV instead)"
        )
    packed = sum(i.compress_size for i in infos) or 1
    if total > 16 << 20 and total / packed > XLSX_LIMITS["ratio"]:
        raise ConversionError(
            f"the workbook unpacks {total / packed:,.0f} times its size ({total:,} bytes): refused as a likely "
            "zip bomb (save the sheet as CSV instead)"
        )
    shared = sum(i.file_size for i in infos if i.filename.lower().endswith("sharedstrings.xml"))
    if shared > XLSX_LIMITS["shared_strings_bytes"]:
        raise ConversionError(
            f"the workbook's shared strings unpack to {shared:,} bytes; at most "
            f"{XLSX_LIMITS['shared_strings_bytes']:,} (save the sheet as CSV instead)"
        )


def _read_xlsx(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import openpyxl

    _check_workbook(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad workbook
        raise ConversionError(f"not a readable .xlsx workbook: {exc}") from exc
    try:
        sheet = book.worksheets[0]
        first = next(sheet.iter_rows(min_row=1, max_row=1, max_col=XLSX_LIMITS["columns"], values_only=True), None)
        if first is None:
            return
        header = list(first)
        while header and (header[-1] is None or str(header[-1]).strip() == ""):
            header.pop()
        if not header:
            return
        width = len(header)

        def rows() -> Iterator[tuple[int, list[Any]]]:
            for number, values in enumerate(sheet.iter_rows(min_row=2, max_col=width, values_only=True), start=2):
                if number > XLSX_LIMITS["rows"]:
                    raise ConversionError(f"more than {XLSX_LIMITS['rows']:,} rows", number)
                for value in values:
                    if isinstance(value, str) and len(value) > XLSX_LIMITS["cell_chars"]:
                        raise ConversionError(
                            f"a cell holds {len(value):,} characters; at most {XLSX_LIMITS['cell_chars']:,}", number
                        )
                yield number, list(values)

        yield from _rows_tabular(header, rows())
    finally:
        book.close()


def _read_jsonl(f: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    facts = StreamFacts()
    max_line = ValidationOptions().max_line_bytes  # the validator's own limit
    for line, raw in iter_lines(iter_chunks(f, 1 << 20), facts, max_bytes=1 << 62, max_line_bytes=max_line):
        if raw is None:
            raise ConversionError(f"the line is longer than {max_line:,} bytes", line)
        if not raw.strip():
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
            except RecursionError:
                raise ConversionError(f"item {index + 1} is nested too deeply", line) from None
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


def _strip_prompt(prompt: str) -> str:
    for separator in _PROMPT_SEPARATORS:
        if prompt.endswith(separator):
            return prompt[: -len(separator)].strip()
    return prompt.strip()


def _strip_completion(completion: str) -> str:
    completion = completion.lstrip()
    for stop in _COMPLETION_STOPS:
        if completion.endswith(stop):
            completion = completion[: -len(stop)]
            break
    return completion.strip()


def _is_passthrough(record: dict[str, Any]) -> bool:
    """A record already in chat (`messages` list) or preference (`input` object) form."""
    return isinstance(record.get("messages"), list) or isinstance(record.get("input"), dict)


def to_record(record: dict[str, Any], row: int, *, chat: bool, system: str | None = None) -> dict[str, Any] | None:
    """The JSONL record for one input record; None for an empty row."""
    if _is_passthrough(record):
        if not chat:
            raise ConversionError("a chat/preference record cannot train a completion model", row)
        messages = record.get("messages")
        if system and isinstance(messages, list):
            first = messages[0] if messages else None
            if not (isinstance(first, dict) and first.get("role") == "system"):
                record = {**record, "messages": [{"role": "system", "content": system}, *messages]}
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
            f"needs a prompt column ({', '.join(_PROMPT)}) and a completion column ({', '.join(_COMPLETION)}); "
            f"found {found}",
            row,
        )
    prompt, completion = _text(record[prompt_key]), _text(record[completion_key])
    if not chat:
        return {"prompt": prompt, "completion": completion}
    messages = []
    own_system = _text(record.get(keys.get("system", ""), None)) if "system" in keys else ""
    system_text = own_system if own_system.strip() else (system or "")
    if system_text.strip():
        messages.append({"role": "system", "content": system_text})
    messages.append({"role": "user", "content": _strip_prompt(prompt)})
    messages.append({"role": "assistant", "content": _strip_completion(completion)})
    return {"messages": messages}


def convert(
    source: str | Path,
    out: BinaryWritable,
    *,
    model: str = DEFAULT_MODEL,
    fraction: float | None = None,
    valid_out: BinaryWritable | None = None,
    system: str | None = None,
    encoding: str = "utf-8",
) -> ConvertResult:
    """Convert the file at `source` to JSONL written to `out` (and split into `valid_out` with `fraction`).

    `system` is added as the system message of chat records that have none; `encoding` is the text encoding
    of CSV/TSV input.
    """
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
            records = _read_delimited(f, "," if fmt == "csv" else "\t", encoding)
        elif fmt == "json":
            records = _read_json_array(f)
        else:
            records = _read_jsonl(f)
        row = 0
        try:
            for row, record in records:
                converted = to_record(record, row, chat=chat, system=system)
                if converted is None:
                    skipped += 1
                    continue
                line = json.dumps(converted, ensure_ascii=False).encode("utf-8")
                if splitter is not None:
                    splitter.add(line)
                else:
                    out.write(line + b"\n")
                written += 1
        except RecursionError:
            raise ConversionError("nested too deeply to convert", row or None) from None
    result = ConvertResult(input_format=fmt, written=written, skipped=skipped)
    if splitter is not None:
        split = splitter.finish()
        result.train_examples, result.valid_examples = split.train_examples, split.valid_examples
    return result
