"""The corpus of bad and tricky files: each asserts the verdict, the code and the line it points at."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.validation import ValidationOptions, validate

from .examples import ASSISTANT, SYS, USER, chat, completion, file_with, jsonl, messages, preference

GOOD = jsonl([chat(i) for i in range(12)])
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CALL2 = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _image(url: str, detail: str = "low") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def _user_parts(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": "What is this?"}, *parts]}


# (id, file bytes, validate() keyword arguments, valid?, code, line the code points at (None: whole file))
CASES: list[tuple[str, bytes, dict[str, Any], bool, str, int | None]] = [
    # --- file level ---
    ("empty", b"", {}, False, "empty_file", None),
    ("only-blank-lines", b"\n  \n\r\n", {}, False, "empty_file", None),
    ("bom-only", b"\xef\xbb\xbf", {}, False, "empty_file", None),
    ("utf16-bom", GOOD.decode().encode("utf-16"), {}, False, "unsupported_encoding", 1),
    ("utf16-no-bom", GOOD.decode().encode("utf-16-le"), {}, False, "unsupported_encoding", 1),
    ("json-array", json.dumps([chat(i) for i in range(12)]).encode(), {}, False, "json_array_file", 1),
    (
        "json-array-pretty",
        b"\n" + json.dumps([chat(i) for i in range(12)], indent=2).encode(),
        {},
        False,
        "json_array_file",
        2,
    ),
    ("nine-examples", jsonl([chat(i) for i in range(9)]), {}, False, "too_few_examples", None),
    ("latin1-byte", file_with("Caf\xe9 au lait".encode("latin-1")), {}, False, "invalid_utf8", 5),
    (
        "windows-1252-in-string",
        file_with(b'{"messages": [{"role": "user", "content": "\x93quoted\x94"}]}'),
        {},
        False,
        "invalid_utf8",
        5,
    ),
    ("bom-mid-file", file_with(b"\xef\xbb\xbf" + json.dumps(chat(99)).encode()), {}, False, "unexpected_bom", 5),
    ("blank-line-between", GOOD.replace(b"\n", b"\n\n", 1), {}, False, "blank_line", 2),
    ("whitespace-line-between", GOOD.replace(b"\n", b"\n   \t\n", 1), {}, False, "blank_line", 2),
    (
        "file-too-large",
        GOOD,
        {"options": ValidationOptions(max_bytes=100, chunk_size=64)},
        False,
        "file_too_large",
        None,
    ),
    (
        "line-too-long",
        file_with(chat(4, padding="x" * 5000)),
        {"options": ValidationOptions(max_line_bytes=1000)},
        False,
        "line_too_long",
        5,
    ),
    # --- line level ---
    ("truncated-json", file_with(b'{"messages": [{"role": "user", "content": "Hi'), {}, False, "invalid_json", 5),
    ("trailing-comma", file_with(b'{"messages": [],}'), {}, False, "invalid_json", 5),
    (
        "nan",
        file_with(b'{"messages": [{"role": "user", "content": "x", "weight": NaN}]}'),
        {},
        False,
        "invalid_json",
        5,
    ),
    ("single-quotes", file_with(b"{'messages': []}"), {}, False, "invalid_json", 5),
    (
        "two-objects-one-line",
        file_with(json.dumps(chat(1)).encode() + b" " + json.dumps(chat(2)).encode()),
        {},
        False,
        "invalid_json",
        5,
    ),
    ("array-line", file_with([1, 2]), {}, False, "not_an_object", 5),
    ("string-line", file_with("just text"), {}, False, "not_an_object", 5),
    ("unknown-format", file_with({"text": "hello"}), {}, False, "unknown_format", 5),
    ("format-mismatch", file_with(completion(4)), {}, False, "format_mismatch", 5),
    ("chat-for-babbage", GOOD, {"model": "babbage-002"}, False, "format_not_supported_by_model", 1),
    (
        "completion-for-gpt-4o",
        jsonl([completion(i) for i in range(12)]),
        {"model": "gpt-4o-2024-08-06"},
        False,
        "format_not_supported_by_model",
        1,
    ),
    # --- chat messages ---
    ("messages-not-list", file_with({"messages": {"role": "user"}}), {}, False, "invalid_messages", 5),
    ("messages-empty", file_with({"messages": []}), {}, False, "invalid_messages", 5),
    ("message-not-object", file_with(messages(USER, "hello", ASSISTANT)), {}, False, "invalid_message", 5),
    ("missing-role", file_with(messages({"content": "hi"}, ASSISTANT)), {}, False, "missing_role", 5),
    (
        "unknown-role",
        file_with(messages({"role": "bot", "content": "hi"}, ASSISTANT)),
        {},
        False,
        "unrecognized_role",
        5,
    ),
    (
        "message-extra-key",
        file_with(messages({**USER, "lang": "en"}, ASSISTANT)),
        {},
        False,
        "message_unrecognized_key",
        5,
    ),
    ("missing-content", file_with(messages({"role": "user"}, ASSISTANT)), {}, False, "missing_content", 5),
    (
        "null-content-user",
        file_with(messages({"role": "user", "content": None}, ASSISTANT)),
        {},
        False,
        "missing_content",
        5,
    ),
    (
        "numeric-content",
        file_with(messages({"role": "user", "content": 42}, ASSISTANT)),
        {},
        False,
        "invalid_content",
        5,
    ),
    (
        "bad-part-type",
        file_with(messages(_user_parts({"type": "audio", "data": "x"}), ASSISTANT)),
        {},
        False,
        "invalid_content_part",
        5,
    ),
    (
        "image-http",
        file_with(messages(_user_parts(_image("http://example.com/a.png")), ASSISTANT)),
        {},
        False,
        "invalid_image_url",
        5,
    ),
    (
        "image-data-not-image",
        file_with(messages(_user_parts(_image("data:text/plain;base64,aGk=")), ASSISTANT)),
        {},
        False,
        "invalid_image_url",
        5,
    ),
    (
        "image-detail",
        file_with(messages(_user_parts(_image("https://example.com/a.png", "medium")), ASSISTANT)),
        {},
        False,
        "invalid_image_detail",
        5,
    ),
    (
        "image-in-assistant",
        file_with(messages(USER, {"role": "assistant", "content": [_image(DATA_URL)]})),
        {},
        False,
        "image_not_in_user_message",
        5,
    ),
    ("weight-2", file_with(messages(USER, {**ASSISTANT, "weight": 2})), {}, False, "invalid_weight", 5),
    ("weight-true", file_with(messages(USER, {**ASSISTANT, "weight": True})), {}, False, "invalid_weight", 5),
    ("weight-on-user", file_with(messages({**USER, "weight": 1}, ASSISTANT)), {}, False, "weight_not_on_assistant", 5),
    ("bad-name", file_with(messages({**USER, "name": "John Smith"}, ASSISTANT)), {}, False, "invalid_name", 5),
    (
        "tool-args-not-json",
        file_with(
            messages(
                USER,
                {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{city: Paris"}}]},
            )
        ),
        {},
        False,
        "invalid_tool_calls",
        5,
    ),
    (
        "tool-calls-on-user",
        file_with(messages({**USER, "tool_calls": [CALL]}, ASSISTANT)),
        {},
        False,
        "invalid_tool_calls",
        5,
    ),
    (
        "tool-id-order",
        file_with(
            messages(
                USER,
                {"role": "assistant", "tool_calls": [CALL, CALL2]},
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                ASSISTANT,
            )
        ),
        {},
        False,
        "tool_call_id_mismatch",
        5,
    ),
    (
        "tool-without-call",
        file_with(messages(USER, {"role": "tool", "tool_call_id": "x", "content": "r"}, ASSISTANT)),
        {},
        False,
        "unexpected_tool_message",
        5,
    ),
    (
        "tool-unanswered",
        file_with(messages(USER, {"role": "assistant", "tool_calls": [CALL]}, USER, ASSISTANT)),
        {},
        False,
        "missing_tool_response",
        5,
    ),
    (
        "function-call-bad",
        file_with(messages(USER, {"role": "assistant", "function_call": {"name": 3}})),
        {},
        False,
        "invalid_function_call",
        5,
    ),
    ("tools-not-list", file_with(messages(USER, ASSISTANT, tools={"type": "function"})), {}, False, "invalid_tools", 5),
    ("no-assistant", file_with(messages(SYS, USER)), {}, False, "no_assistant_message", 5),
    # --- completion and preference ---
    (
        "completion-missing-prompt",
        file_with({"completion": "x"}, make=completion),
        {"model": "davinci-002"},
        False,
        "missing_prompt",
        5,
    ),
    (
        "completion-not-string",
        file_with({"prompt": "p", "completion": ["x"]}, make=completion),
        {"model": "babbage-002"},
        False,
        "invalid_completion",
        5,
    ),
    (
        "preference-bad-input",
        file_with({**preference(4), "input": {"text": "x"}}, make=preference),
        {},
        False,
        "invalid_input",
        5,
    ),
    (
        "preference-two-outputs",
        file_with({**preference(4), "preferred_output": [ASSISTANT, ASSISTANT]}, make=preference),
        {},
        False,
        "invalid_preferred_output",
        5,
    ),
    (
        "preference-user-output",
        file_with({**preference(4), "non_preferred_output": [USER]}, make=preference),
        {},
        False,
        "invalid_non_preferred_output",
        5,
    ),
    # --- valid files, and warnings ---
    ("crlf", jsonl([chat(i) for i in range(12)], eol=b"\r\n"), {}, True, "", None),
    ("bom", b"\xef\xbb\xbf" + GOOD, {}, True, "", None),
    ("trailing-blank-lines", GOOD + b"\n\n  \n", {}, True, "", None),
    ("no-final-newline", GOOD.rstrip(b"\n"), {}, True, "", None),
    ("completion-davinci", jsonl([completion(i) for i in range(12)]), {"model": "davinci-002"}, True, "", None),
    ("preference", jsonl([preference(i) for i in range(12)]), {"model": "gpt-4.1-mini"}, True, "", None),
    ("vision-data-url", file_with(messages(SYS, _user_parts(_image(DATA_URL)), ASSISTANT)), {}, True, "", None),
    (
        "tools-multi-turn",
        file_with(
            messages(
                SYS,
                USER,
                {"role": "assistant", "content": None, "tool_calls": [CALL, CALL2]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
                {**ASSISTANT, "weight": 1},
                USER,
                {**ASSISTANT, "weight": 0},
                tools=TOOLS,
            )
        ),
        {},
        True,
        "",
        None,
    ),
    (
        "legacy-function-call",
        file_with(
            messages(
                SYS,
                USER,
                {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}},
                {"role": "function", "name": "get_weather", "content": "sunny"},
                ASSISTANT,
                functions=[{"name": "get_weather"}],
            )
        ),
        {},
        True,
        "",
        None,
    ),
    (
        "developer-role",
        file_with(messages({"role": "developer", "content": "Be terse."}, USER, ASSISTANT)),
        {},
        True,
        "",
        None,
    ),
    ("unrecognized-top-key", file_with(chat(4, metadata={"id": 4})), {}, True, "unrecognized_key", 5),
    ("duplicate", file_with(chat(1)), {}, True, "duplicate_example", 5),
    ("no-system", jsonl([chat(i, system=False) for i in range(12)]), {}, True, "no_system_message", 1),
    ("no-user", file_with(messages(SYS, ASSISTANT)), {}, True, "no_user_message", 5),
    ("ends-with-user", file_with(messages(SYS, USER, ASSISTANT, USER)), {}, True, "ends_without_assistant", 5),
    (
        "empty-assistant",
        file_with(messages(SYS, USER, {"role": "assistant", "content": ""})),
        {},
        True,
        "empty_assistant_reply",
        5,
    ),
    ("empty-user", file_with(messages(SYS, {"role": "user", "content": ""}, ASSISTANT)), {}, True, "empty_content", 5),
    ("all-weights-zero", file_with(messages(SYS, USER, {**ASSISTANT, "weight": 0})), {}, True, "all_weights_zero", 5),
    (
        "empty-completion",
        file_with({"prompt": "p", "completion": " "}, make=completion),
        {"model": "babbage-002"},
        True,
        "empty_completion",
        5,
    ),
    (
        "identical-preference",
        file_with(
            {**preference(4), "non_preferred_output": [{"role": "assistant", "content": "Good answer 4."}]},
            make=preference,
        ),
        {"model": "gpt-4.1-mini-2025-04-14"},  # a DPO model (preference data on gpt-4o-mini is refused)
        True,
        "identical_preference_outputs",
        5,
    ),
    (
        "openai-key",
        file_with(
            messages(SYS, {"role": "user", "content": "my key is sk-proj-abcdefghijklmnop1234567890"}, ASSISTANT)
        ),
        {},
        True,
        "possible_secret",
        5,
    ),
    (
        "private-key",
        file_with(
            messages(
                SYS, USER, {"role": "assistant", "content": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAz3nL8\n"}
            )
        ),
        {},
        True,
        "possible_secret",
        5,
    ),
    (
        "bearer",
        file_with(
            messages(
                SYS,
                {"role": "user", "content": "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abcdefghijklmnop'"},
                ASSISTANT,
            )
        ),
        {},
        True,
        "possible_secret",
        5,
    ),
    (
        "email",
        file_with(messages(SYS, {"role": "user", "content": "write to jane.doe@contoso.com"}, ASSISTANT)),
        {},
        True,
        "possible_pii",
        5,
    ),
    (
        "phone",
        file_with(messages(SYS, {"role": "user", "content": "call me at +1 (425) 555-0100"}, ASSISTANT)),
        {},
        True,
        "possible_pii",
        5,
    ),
    (
        "over-token-limit",
        file_with(chat(4) | {"messages": [USER, {"role": "assistant", "content": "word " * 300}]}),
        {"options": ValidationOptions(tokens_per_example_limit=200)},
        True,
        "tokens_over_limit",
        5,
    ),
    ("unknown-model", GOOD, {"model": "my-own-model"}, False, "model_not_known", None),
    (
        "unknown-model-vouched",
        GOOD,
        {"model": "my-own-model", "options": ValidationOptions(allow_unknown_model=True)},
        True,
        "unknown_model",
        None,
    ),
]


@pytest.mark.parametrize(("data", "kwargs", "valid", "code", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_corpus(data: bytes, kwargs: dict[str, Any], valid: bool, code: str, line: int | None) -> None:
    report = validate(data, **kwargs)
    assert report.valid is valid, report.errors
    if not code:
        assert report.error_count == 0 and report.warning_count == 0, report.errors + report.warnings
        return
    assert report.counts.get(code, 0) >= 1, report.counts
    issues = [i for i in report.errors + report.warnings if i.code == code]
    assert issues, "a counted code must be listed at least once"
    assert issues[0].line == line
    assert all(i.message for i in issues)


def test_corpus_is_big_enough() -> None:
    assert len([c for c in CASES if c[4]]) >= 40


def test_errors_stop_listing_at_cap_but_counting_goes_on() -> None:
    data = jsonl([{"text": i} for i in range(250)])
    report = validate(data, options=ValidationOptions(max_listed_errors=100))
    assert report.counts["unknown_format"] == 250
    assert report.error_count == 250
    assert len(report.errors) == 100
    assert [i.line for i in report.errors] == list(range(1, 101))


def test_every_code_present_is_listed_even_past_the_cap() -> None:
    data = jsonl([{"text": i} for i in range(30)] + [[1]])
    report = validate(data, options=ValidationOptions(max_listed_errors=5))
    assert {i.code for i in report.errors} == {"unknown_format", "not_an_object"}


def test_secret_is_never_echoed_whole() -> None:
    key = "sk-proj-" + "Ab3" * 15
    report = validate(file_with(messages(SYS, {"role": "user", "content": f"key={key}"}, ASSISTANT)))
    text = report.model_dump_json()
    assert key not in text and key[:20] not in text
    assert "possible_secret" in report.counts


def test_bom_and_line_endings_reported() -> None:
    report = validate(b"\xef\xbb\xbf" + jsonl([chat(i) for i in range(12)], eol=b"\r\n"))
    assert (report.encoding, report.line_endings, report.valid) == ("utf-8-bom", "crlf", True)
    assert validate(GOOD).encoding == "utf-8"
