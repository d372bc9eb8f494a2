"""The fast paths give what the straightforward code gives: the plain-chat lane, run detection, rank loading."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe

import shared.validation.validator as validator_module
from shared.validation import ValidationOptions, ValidationReport, validate
from shared.validation.encodings import read_ranks
from shared.validation.plain_chat import plain_chat_line, role_overheads
from shared.validation.sensitive import RUN_LENGTH, long_runs

from .examples import chat, jsonl

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTIONS = ValidationOptions(min_examples=0, max_listed_errors=1000, max_listed_warnings=1000)
OVERHEADS = role_overheads({"system": 1, "developer": 1, "user": 1, "assistant": 1}.__getitem__)


def general_path_only(data: bytes, **kwargs: Any) -> ValidationReport:
    """The report with the fast lane turned off: every line through stdlib json and `formats.check_chat`."""
    with mock.patch.object(validator_module, "plain_chat_line", lambda data, overheads: None):
        return validate(data, options=OPTIONS, **kwargs)


def assert_same_report(data: bytes, **kwargs: Any) -> ValidationReport:
    report = validate(data, options=OPTIONS, **kwargs)
    assert report == general_path_only(data, **kwargs)
    return report


def _msg(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


S, U, A = _msg("system", "Be brief."), _msg("user", "Hi?"), _msg("assistant", "Hello.")
# Lines that look plain but are not, or only just: each must be reported exactly as the general path does.
TRICKY: list[bytes | dict[str, Any]] = [
    {"messages": [S, U, A]},
    {"messages": [U, _msg("assistant", "a", weight=0), U, _msg("assistant", "b", weight=1)]},
    {"messages": [_msg("developer", "Be brief."), U, A]},
    {"messages": [U, A, U]},
    {"messages": [U, _msg("assistant", "a", weight=0)]},
    {"messages": [U, _msg("assistant", "a", weight=1.0)]},
    {"messages": [U, _msg("assistant", "a", weight=True)]},
    {"messages": [U, _msg("assistant", "a", weight=2)]},
    {"messages": [U, _msg("assistant", "a", weight=-0)]},
    {"messages": [_msg("user", "x", weight=1), A]},
    {"messages": [U, _msg("assistant", "")]},
    {"messages": [_msg("user", ""), A]},
    {"messages": [U]},
    {"messages": []},
    {"messages": "not a list"},
    {"messages": [S, U, A], "tools": [{"type": "function", "function": {"name": "f"}}]},
    {"messages": [S, U, A], "extra": 1},
    {"messages": [U, _msg("assistant", "a", name="bot")]},
    {"messages": [U, _msg("assistant", "<|endoftext|> as text")]},
    {"messages": [U, _msg("assistant", "lone \ud800 surrogate")]},
    {"messages": [U, _msg("assistant", "nul \x00 and emoji 🤖 and 東京")]},
    {"messages": [U, _msg("tool", "x"), A]},
    {"messages": [U, _msg(3, "x"), A]},  # type: ignore[arg-type]
    {"prompt": "p", "completion": "c"},
    b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "a", "weight": 1e400}]}',
    b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "a", "weight": '
    + b"1" * 30
    + b"}]}",
    b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "a", "weight": NaN}]}',
    b'{"messages": [{"role": "user", "content": "a"}], "messages": [{"role": "user", "content": "Hi?"}, '
    b'{"role": "assistant", "content": "b"}]}',
    b'{ "messages" :\t[ {"content":"Hi?","role":"user"} , {"role":"assistant","content":"b"} ] }',
    b'{"messages": [{"role": "user", "content": "\\u00e9\\ud83e\\udd16 escapes"}, '
    b'{"role": "assistant", "content": "b"}]}',
    b'{"messages": [{"role": "user", "content": "raw \x01 control"}, {"role": "assistant", "content": "b"}]}',
    b'{"messages": [{"role": "user", "content": "Caf\xe9"}, {"role": "assistant", "content": "b"}]}',
    b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "b"}]} trailing',
]


def test_plain_lines_take_the_fast_lane() -> None:
    assert plain_chat_line(json.dumps(chat(1)).encode(), OVERHEADS) is not None
    assert plain_chat_line(json.dumps({"messages": [U, A], "x": 1}).encode(), OVERHEADS) is None


def test_tricky_lines_are_reported_as_by_the_general_path() -> None:
    lines = [json.dumps(chat(0)).encode()] + [
        t if isinstance(t, bytes) else json.dumps(t, ensure_ascii=i % 2 == 0).encode("utf-8", "surrogatepass")
        for i, t in enumerate(TRICKY)
    ]
    report = assert_same_report(jsonl(lines + lines, eol=b"\r\n"))
    assert report.tokens is not None and report.tokens.total > 0
    assert {"invalid_weight", "duplicate_example", "invalid_json", "invalid_utf8"} <= set(report.counts)


def test_validation_file_and_other_models() -> None:
    assert_same_report(jsonl([chat(i) for i in range(20)]), validation=jsonl([chat(i) for i in range(15, 30)]))
    assert_same_report(jsonl([chat(i) for i in range(20)]), model="gpt-35-turbo-0125")
    assert_same_report(jsonl([chat(i) for i in range(20)]), model="babbage-002")


ROLE = st.sampled_from(["system", "developer", "user", "assistant", "assistant", "tool", "bot"])
CONTENT = st.text(max_size=12) | st.sampled_from(["", "<|endoftext|>", "\ud800", 7, None])
WEIGHT = st.sampled_from([0, 1, 1, 2, True, 1.0, 10**30, "1"])
MESSAGE = st.builds(
    lambda role, content, weight, extra: {
        "role": role,
        "content": content,
        **({} if weight is None else {"weight": weight}),
        **extra,
    },
    ROLE,
    CONTENT,
    st.none() | WEIGHT,
    st.sampled_from([{}, {}, {}, {"name": "bob"}, {"refusal": None}]),
)
EXAMPLE = st.builds(
    lambda msgs, extra: {"messages": msgs, **extra},
    st.lists(MESSAGE, max_size=5),
    st.sampled_from([{}, {}, {}, {"tools": []}, {"x": 1}]),
)


@FAST
@given(st.lists(EXAMPLE, min_size=1, max_size=12), st.booleans())
def test_random_chat_files_are_reported_as_by_the_general_path(examples: list[Any], ascii_only: bool) -> None:
    data = b"".join(json.dumps(e, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass") + b"\n" for e in examples)
    assert_same_report(data)


def _runs_one_by_one(shape: bytes) -> list[tuple[int, int]]:
    runs, i = [], 0
    while i < len(shape):
        j = i
        while j < len(shape) and shape[j] >= 0x80:
            j += 1
        if j - i >= RUN_LENGTH:
            runs.append((i, j))
        i = max(j, i + 1)
    return runs


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 3)), max_size=12), st.integers(0, 7))
def test_long_runs_match_a_byte_by_byte_scan(pieces: list[tuple[int, int]], skip: int) -> None:
    shape = b"".join(b"\xe1" * run + b" " * gap for run, gap in pieces)[skip:]
    assert long_runs(shape) == _runs_one_by_one(shape)


def test_bulk_rank_reader_matches_tiktoken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the file as it is; write no cache entry
    ranks = {bytes([i]): i for i in range(256)} | {b" the": 256, b"\x00\xff": 257, b"==": 258}
    path = tmp_path / "tiny.tiktoken"
    path.write_bytes(
        b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n" for token, rank in ranks.items())
    )
    assert read_ranks(str(path)) == load_tiktoken_bpe(str(path)) == ranks
    path.write_bytes(path.read_bytes() + b"c3Vy\n")  # a token without a rank
    with pytest.raises(ValueError):
        read_ranks(str(path))
