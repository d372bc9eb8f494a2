"""Training files: validate them the way the service does, read their examples, count their tokens.

The service validates a `fine-tune` file after answering the upload; a file that fails ends in status
`error` with `status_details` "Validation of jsonl file failed: ...". The emulator's messages name the
line and the reason (the service's are often vaguer; the prefix is the part clients match on).

Scenario markers: a training file may carry `EMULATOR_SCENARIO:<name>` anywhere in its text (see
`SCENARIO_MARKERS`); the emulator then plays that failure for the file or for jobs trained on it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .catalog import count_tokens

VALIDATION_PREFIX = "Validation of jsonl file failed: "
MIN_EXAMPLES = 10
CHAT_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
INVALID_TOKENS = (
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|endoftext|>",
    "<|endofprompt|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_sep|>",
)
SCENARIO_MARKERS = {
    "file_error": "the file ends in status `error` (validation failure) even though it is well formed",
    "file_import_error": "an import of this content ends in status `error` (import failure)",
    "rai_failure": "a job trained on it fails the pre-training RAI check",
    "job_failure": "a job trained on it fails halfway through training with an internal error",
    "stuck_queued": "a job trained on it stays queued until cancelled",
    "safety_eval_failure": "a job trained on it fails after training: the model failed the post-training safety "
    "evaluation (the how-to's failed job with its message)",
    "worse_model": "a job trained on it succeeds but its model answers worse than its base model (a gate that refuses "
    "it can be shown)",
}
_MARKER_RE = re.compile(r"EMULATOR_SCENARIO:([a-z_]+)")


@dataclass
class Validation:
    ok: bool
    message: str | None = None
    format: str | None = None  # chat | completion | preference | reinforcement
    examples: int = 0
    has_bom: bool = False
    markers: list[str] = field(default_factory=list)


class _Invalid(Exception):
    pass


def markers_in(text: str) -> list[str]:
    return sorted({m for m in _MARKER_RE.findall(text) if m in SCENARIO_MARKERS})


def decode(content: bytes) -> tuple[str, bool]:
    """UTF-8 with or without a BOM (both are accepted; the caller reports which)."""
    has_bom = content.startswith(b"\xef\xbb\xbf")
    return content.decode("utf-8-sig"), has_bom


def example_format(record: dict[str, Any]) -> str | None:
    """chat, completion, preference, or reinforcement: a chat example with no assistant message whose last message
    is the user's (the RFT how-to's data: the model writes the answer, a grader scores it)."""
    if "messages" in record:
        messages = record["messages"]
        if (isinstance(messages, list) and messages and isinstance(messages[-1], dict)
                and messages[-1].get("role") == "user"
                and not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages)):
            return "reinforcement"
        return "chat"
    if "input" in record and "preferred_output" in record and "non_preferred_output" in record:
        return "preference"
    if "prompt" in record and "completion" in record:
        return "completion"
    return None


def validate(content: bytes, purpose: str, max_bytes: int) -> Validation:
    """Validate a file of the given purpose; only `fine-tune` files are checked line by line."""
    try:
        text, has_bom = decode(content)
    except UnicodeDecodeError as exc:
        return Validation(False, f"{VALIDATION_PREFIX}the file is not UTF-8 (invalid byte at offset {exc.start}).")
    result = Validation(True, has_bom=has_bom, markers=markers_in(text))
    if purpose != "fine-tune":
        return result
    if len(content) > max_bytes:
        result.ok = False
        result.message = f"{VALIDATION_PREFIX}the file is {len(content)} bytes; the limit is {max_bytes} bytes."
        return result
    try:
        result.format, result.examples = _check_lines(text)
    except _Invalid as exc:
        result.ok = False
        result.message = VALIDATION_PREFIX + str(exc)
        return result
    if result.examples < MIN_EXAMPLES:
        result.ok = False
        result.message = (
            f"{VALIDATION_PREFIX}the file has {result.examples} example(s); at least {MIN_EXAMPLES} are required."
        )
    return result


def _check_lines(text: str) -> tuple[str, int]:
    first_format: tuple[str, int] | None = None
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        for token in INVALID_TOKENS:
            if token in line:
                raise _Invalid(f"line {number} contains the invalid token '{token}'.")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"line {number} is not valid JSON ({exc.msg} at column {exc.colno}).") from exc
        if not isinstance(record, dict):
            raise _Invalid(f"line {number} is not a JSON object.")
        fmt = example_format(record)
        if fmt is None:
            raise _Invalid(f"line {number} is in none of the chat, completion or preference formats.")
        if first_format is None:
            first_format = (fmt, number)
        elif fmt != first_format[0]:
            raise _Invalid(
                f"line {number} is in {fmt} format but line {first_format[1]} is in {first_format[0]} format."
            )
        if fmt == "chat":
            _check_messages(record.get("messages"), number, need_assistant=True)
        elif fmt == "reinforcement":
            _check_messages(record.get("messages"), number, need_assistant=False)
        elif fmt == "preference":
            _check_preference(record, number)
        else:
            if not isinstance(record.get("prompt"), str) or not isinstance(record.get("completion"), str):
                raise _Invalid(f"line {number}: prompt and completion must be strings.")
            if not record["completion"].strip():
                raise _Invalid(f"line {number}: the completion is empty.")
        count += 1
    if first_format is None:
        raise _Invalid("the file has no examples.")
    return first_format[0], count


def _check_messages(messages: Any, number: int, *, need_assistant: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise _Invalid(f"line {number}: 'messages' must be a non-empty list.")
    has_assistant = False
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise _Invalid(f"line {number}: message {index} is not an object.")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise _Invalid(f"line {number}: message {index} has an unrecognized role {role!r}.")
        content = message.get("content")
        has_calls = bool(message.get("tool_calls") or message.get("function_call"))
        if (content is None or content == "" or content == []) and not has_calls:
            raise _Invalid(f"line {number}: message {index} ({role}) has no content.")
        if content is not None and not isinstance(content, (str, list)):
            raise _Invalid(f"line {number}: message {index} content must be a string or a list of parts.")
        if "weight" in message:
            if role != "assistant":
                raise _Invalid(f"line {number}: message {index}: 'weight' is only allowed on assistant messages.")
            if message["weight"] not in (0, 1):
                raise _Invalid(f"line {number}: message {index}: 'weight' must be 0 or 1.")
        if role == "assistant":
            has_assistant = True
    if need_assistant and not has_assistant:
        raise _Invalid(f"line {number}: the example has no assistant message.")


def _check_preference(record: dict[str, Any], number: int) -> None:
    source = record.get("input")
    if not isinstance(source, dict):
        raise _Invalid(f"line {number}: 'input' must be an object with 'messages'.")
    _check_messages(source.get("messages"), number, need_assistant=False)
    for key in ("preferred_output", "non_preferred_output"):
        output = record.get(key)
        if not isinstance(output, list) or len(output) != 1:
            raise _Invalid(f"line {number}: '{key}' must be a list of exactly one assistant message.")
        _check_messages(output, number, need_assistant=True)


def read_examples(content: bytes) -> list[dict[str, Any]]:
    """The examples of a file that passed validation (blank lines skipped)."""
    text, _ = decode(content)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def content_text(content: Any) -> str:
    """The text of a message's content (a string or a list of parts; images are ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def messages_tokens(messages: list[dict[str, Any]], encoding_name: str) -> int:
    """Tokens of a chat conversation, counted like the OpenAI cookbook (3 per message, 3 to prime the reply)."""
    total = 3
    for message in messages:
        total += 3
        total += count_tokens(str(message.get("role", "")), encoding_name)
        total += count_tokens(content_text(message.get("content")), encoding_name)
        if message.get("name"):
            total += 1 + count_tokens(str(message["name"]), encoding_name)
        for key in ("tool_calls", "function_call"):
            if message.get(key):
                total += count_tokens(json.dumps(message[key]), encoding_name)
    return total


def reference_answer(example: dict[str, Any]) -> str:
    """An RFT example's reference: the first field beside `messages` and `tools` (what a grader compares with)."""
    for key, value in example.items():
        if key not in ("messages", "tools", "parallel_tool_calls"):
            return value if isinstance(value, str) else json.dumps(value)
    return ""


def example_tokens(example: dict[str, Any], fmt: str, encoding_name: str) -> int:
    if fmt in ("chat", "reinforcement"):
        total = messages_tokens(example["messages"], encoding_name)
        if example.get("tools"):
            total += count_tokens(json.dumps(example["tools"]), encoding_name)
        return total
    if fmt == "preference":
        messages = list(example["input"]["messages"])
        return messages_tokens(messages + example["preferred_output"], encoding_name) + messages_tokens(
            example["non_preferred_output"], encoding_name
        )
    return count_tokens(example.get("prompt", ""), encoding_name) + count_tokens(
        example.get("completion", ""), encoding_name
    )


def prompt_and_answer(example: dict[str, Any], fmt: str) -> tuple[str, str]:
    """What a user asked and what the model learned to answer, for the inference endpoints."""
    if fmt == "completion":
        return str(example.get("prompt", "")), str(example.get("completion", ""))
    if fmt == "preference":
        messages = example["input"]["messages"]
        answer = content_text(example["preferred_output"][0].get("content"))
    elif fmt == "reinforcement":
        messages = example["messages"]
        answer = reference_answer(example)
    else:
        messages = example["messages"]
        assistants = [m for m in messages if m.get("role") == "assistant"]
        answer = content_text(assistants[-1].get("content")) if assistants else ""
        last_assistant = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
        messages = messages[:last_assistant]
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return (users[-1] if users else ""), answer
