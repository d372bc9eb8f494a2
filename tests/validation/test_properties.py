"""Property-based: random bytes and random JSON never crash the validator or lose the line number."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.validation import CODES, Code, ValidationOptions, validate

from .examples import chat, jsonl

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTIONS = ValidationOptions(min_examples=0)


def _check_lines(report: Any, n_lines: int) -> None:
    for issue in report.errors + report.warnings:
        info = CODES[Code(issue.code)]
        if info.line == "file":
            assert issue.line is None, issue
        else:
            assert isinstance(issue.line, int) and 1 <= issue.line <= max(n_lines, 1), (issue, n_lines)
        assert issue.message
    assert report.valid == (report.error_count == 0)
    assert sum(report.counts.values()) == report.error_count + report.warning_count


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    report = validate(data, options=OPTIONS)
    _check_lines(report, data.count(b"\n") + 1)


@FAST
@given(st.lists(st.binary(max_size=120), max_size=20))
def test_random_byte_lines(lines: list[bytes]) -> None:
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    report = validate(data, options=OPTIONS)
    _check_lines(report, len(lines))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
ROLE = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "bot", None, 3])
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE},
    optional={
        "content": st.text(max_size=30) | JSON,
        "weight": st.sampled_from([0, 1, 2, True, "1", None]),
        "name": st.text(max_size=10),
        "tool_calls": JSON,
        "tool_call_id": st.text(max_size=5),
        "function_call": JSON,
    },
)
EXAMPLE = (
    st.fixed_dictionaries({"messages": st.lists(MESSAGE | JSON, max_size=6)}, optional={"tools": JSON, "x": JSON})
    | st.fixed_dictionaries({}, optional={"prompt": JSON, "completion": JSON})
    | st.fixed_dictionaries({}, optional={"input": JSON, "preferred_output": JSON, "non_preferred_output": JSON})
    | JSON
)


@FAST
@given(st.lists(EXAMPLE, min_size=1, max_size=15))
def test_random_json_examples(examples: list[Any]) -> None:
    data = b"".join(json.dumps(e).encode() + b"\n" for e in examples)
    report = validate(data, options=OPTIONS)
    _check_lines(report, len(examples))


@FAST
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=40))
def test_chunking_never_changes_the_report(data: bytes, cuts: list[int]) -> None:
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        size = cuts[i % len(cuts)]
        chunks.append(data[pos : pos + size])
        pos, i = pos + size, i + 1
    assert validate(iter(chunks), options=OPTIONS) == validate(data, options=OPTIONS)


@FAST
@given(st.integers(min_value=1, max_value=40))
def test_good_file_in_tiny_chunks(chunk: int) -> None:
    data = b"\xef\xbb\xbf" + jsonl([chat(i) for i in range(12)], eol=b"\r\n")
    report = validate(iter([data[i : i + chunk] for i in range(0, len(data), chunk)]))
    assert report.valid and report.encoding == "utf-8-bom" and report.examples == 12


def test_deep_nesting_is_an_error_on_its_line() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    data = jsonl([chat(i) for i in range(12)]) + deep + b"\n"
    report = validate(data)
    assert [(i.code, i.line) for i in report.errors] == [("invalid_json", 13)]
