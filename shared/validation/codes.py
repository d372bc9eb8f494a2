"""Every issue code the validator can report: stable identifiers, their severity and what they mean.

Codes are part of the report contract (stored beside each run, carried by webhooks): never rename one,
only add. `docs/validation.md` has the same table; `tests/validation/test_codes.py` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Severity = Literal["error", "warning"]


class Code(StrEnum):
    """Issue codes. Errors make a file invalid; warnings do not."""

    # file level
    EMPTY_FILE = "empty_file"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_ENCODING = "unsupported_encoding"
    JSON_ARRAY_FILE = "json_array_file"
    TOO_FEW_EXAMPLES = "too_few_examples"
    MODEL_NOT_KNOWN = "model_not_known"
    METHOD_NOT_SUPPORTED = "method_not_supported"
    # line level
    INVALID_UTF8 = "invalid_utf8"
    UNEXPECTED_BOM = "unexpected_bom"
    BLANK_LINE = "blank_line"
    LINE_TOO_LONG = "line_too_long"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_FORMAT = "unknown_format"
    FORMAT_MISMATCH = "format_mismatch"
    FORMAT_NOT_SUPPORTED_BY_MODEL = "format_not_supported_by_model"
    # chat and preference messages
    INVALID_MESSAGES = "invalid_messages"
    INVALID_MESSAGE = "invalid_message"
    MISSING_ROLE = "missing_role"
    UNRECOGNIZED_ROLE = "unrecognized_role"
    MESSAGE_UNRECOGNIZED_KEY = "message_unrecognized_key"
    MISSING_CONTENT = "missing_content"
    INVALID_CONTENT = "invalid_content"
    INVALID_CONTENT_PART = "invalid_content_part"
    INVALID_IMAGE_URL = "invalid_image_url"
    INVALID_IMAGE_DETAIL = "invalid_image_detail"
    IMAGE_NOT_IN_USER_MESSAGE = "image_not_in_user_message"
    INVALID_WEIGHT = "invalid_weight"
    WEIGHT_NOT_ON_ASSISTANT = "weight_not_on_assistant"
    INVALID_NAME = "invalid_name"
    INVALID_TOOL_CALLS = "invalid_tool_calls"
    TOOL_CALL_ID_MISMATCH = "tool_call_id_mismatch"
    UNEXPECTED_TOOL_MESSAGE = "unexpected_tool_message"
    MISSING_TOOL_RESPONSE = "missing_tool_response"
    INVALID_FUNCTION_CALL = "invalid_function_call"
    INVALID_TOOLS = "invalid_tools"
    NO_ASSISTANT_MESSAGE = "no_assistant_message"
    # completion
    MISSING_PROMPT = "missing_prompt"
    MISSING_COMPLETION = "missing_completion"
    INVALID_PROMPT = "invalid_prompt"
    INVALID_COMPLETION = "invalid_completion"
    # preference
    INVALID_INPUT = "invalid_input"
    INVALID_PREFERRED_OUTPUT = "invalid_preferred_output"
    INVALID_NON_PREFERRED_OUTPUT = "invalid_non_preferred_output"
    # reinforcement fine-tuning (method reinforcement; shared/validation/reinforcement.py)
    RFT_FINAL_MESSAGE_NOT_USER = "rft_final_message_not_user"
    RFT_SYSTEM_MESSAGE = "rft_system_message"
    RFT_MISSING_GRADER_FIELD = "rft_missing_grader_field"
    # warnings
    UNKNOWN_MODEL = "unknown_model"
    UNRECOGNIZED_KEY = "unrecognized_key"
    TOKENS_OVER_LIMIT = "tokens_over_limit"
    DUPLICATE_EXAMPLE = "duplicate_example"
    TRAIN_VALIDATION_OVERLAP = "train_validation_overlap"
    NO_SYSTEM_MESSAGE = "no_system_message"
    NO_USER_MESSAGE = "no_user_message"
    ENDS_WITHOUT_ASSISTANT = "ends_without_assistant"
    EMPTY_ASSISTANT_REPLY = "empty_assistant_reply"
    ALL_WEIGHTS_ZERO = "all_weights_zero"
    EMPTY_CONTENT = "empty_content"
    EMPTY_COMPLETION = "empty_completion"
    IDENTICAL_PREFERENCE_OUTPUTS = "identical_preference_outputs"
    POSSIBLE_SECRET = "possible_secret"
    POSSIBLE_PII = "possible_pii"


@dataclass(frozen=True)
class CodeInfo:
    severity: Severity
    line: Literal["line", "first line", "file"]
    """Where `line` points: the offending line, the first of several (aggregated), or null (whole file)."""
    meaning: str


CODES: dict[Code, CodeInfo] = {
    Code.EMPTY_FILE: CodeInfo("error", "file", "The file holds no bytes, or only whitespace and a BOM."),
    Code.FILE_TOO_LARGE: CodeInfo(
        "error", "file", "The file is larger than `max_bytes` (512 MB by default); reading stopped there."
    ),
    Code.UNSUPPORTED_ENCODING: CodeInfo(
        "error", "line", "UTF-16 or UTF-32 (BOM or NUL bytes): re-save the file as UTF-8."
    ),
    Code.JSON_ARRAY_FILE: CodeInfo(
        "error", "line", "The file is one JSON array, not JSON Lines; `python -m shared.cli convert` rewrites it."
    ),
    Code.TOO_FEW_EXAMPLES: CodeInfo(
        "error", "file", "Fewer than `min_examples` (10) examples, in the training or the validation file."
    ),
    Code.INVALID_UTF8: CodeInfo(
        "error", "line", "Bytes that are not UTF-8 (often Latin-1 or Windows-1252); the column is given."
    ),
    Code.UNEXPECTED_BOM: CodeInfo(
        "error", "line", "A byte-order mark at the start of a line other than the first (files concatenated?)."
    ),
    Code.BLANK_LINE: CodeInfo("error", "line", "A blank line between examples (blank lines at the end are fine)."),
    Code.LINE_TOO_LONG: CodeInfo(
        "error", "line", "A line longer than `max_line_bytes` (32 MB by default); skipped unread."
    ),
    Code.INVALID_JSON: CodeInfo(
        "error", "line", "The line is not valid JSON (NaN and Infinity included); the column is given."
    ),
    Code.NOT_AN_OBJECT: CodeInfo("error", "line", "The line is JSON but not an object."),
    Code.UNKNOWN_FORMAT: CodeInfo(
        "error", "line", "An object with none of `messages`, `prompt`/`completion`, `input`/`preferred_output`."
    ),
    Code.FORMAT_MISMATCH: CodeInfo("error", "line", "The line is in another format than the file's first example."),
    Code.FORMAT_NOT_SUPPORTED_BY_MODEL: CodeInfo(
        "error",
        "first line",
        "The format does not suit the target model (completion models take only prompt/completion).",
    ),
    Code.INVALID_MESSAGES: CodeInfo("error", "line", "`messages` missing, not a list, or empty."),
    Code.INVALID_MESSAGE: CodeInfo("error", "line", "A message is not an object."),
    Code.MISSING_ROLE: CodeInfo("error", "line", "A message has no `role`."),
    Code.UNRECOGNIZED_ROLE: CodeInfo(
        "error", "line", "A role other than system, developer, user, assistant, tool (or legacy function)."
    ),
    Code.MESSAGE_UNRECOGNIZED_KEY: CodeInfo(
        "error",
        "line",
        "A message key other than role, content, weight, name, tool_calls, tool_call_id, function_call, refusal.",
    ),
    Code.MISSING_CONTENT: CodeInfo(
        "error", "line", "A message without `content` (allowed only on an assistant message that calls a tool)."
    ),
    Code.INVALID_CONTENT: CodeInfo("error", "line", "`content` that is neither a string nor a list of parts."),
    Code.INVALID_CONTENT_PART: CodeInfo(
        "error", "line", "A content part that is not `{type: text, text}` or `{type: image_url, image_url: {url}}`."
    ),
    Code.INVALID_IMAGE_URL: CodeInfo(
        "error", "line", "An image URL that is neither https:// nor a base64 image data: URL."
    ),
    Code.INVALID_IMAGE_DETAIL: CodeInfo("error", "line", "An image `detail` other than low, high or auto."),
    Code.IMAGE_NOT_IN_USER_MESSAGE: CodeInfo("error", "line", "An image part outside a user message."),
    Code.INVALID_WEIGHT: CodeInfo("error", "line", "A `weight` other than 0 or 1."),
    Code.WEIGHT_NOT_ON_ASSISTANT: CodeInfo("error", "line", "`weight` on a message that is not from the assistant."),
    Code.INVALID_NAME: CodeInfo("error", "line", "`name` not a string of 1-64 letters, digits, `_` or `-`."),
    Code.INVALID_TOOL_CALLS: CodeInfo("error", "line", "`tool_calls` malformed, or not on an assistant message."),
    Code.TOOL_CALL_ID_MISMATCH: CodeInfo(
        "error", "line", "A tool message whose `tool_call_id` is not the next pending call id, in order."
    ),
    Code.UNEXPECTED_TOOL_MESSAGE: CodeInfo(
        "error", "line", "A tool (or function) message with no pending tool call (or function call) before it."
    ),
    Code.MISSING_TOOL_RESPONSE: CodeInfo(
        "error", "line", "A tool call left unanswered before the next user or assistant message."
    ),
    Code.INVALID_FUNCTION_CALL: CodeInfo(
        "error", "line", "Legacy `function_call` malformed, or not on an assistant message."
    ),
    Code.INVALID_TOOLS: CodeInfo(
        "error", "line", "`tools` (or legacy `functions`) is not a list of function definitions."
    ),
    Code.NO_ASSISTANT_MESSAGE: CodeInfo(
        "error", "line", "A chat example without any assistant message: nothing to learn."
    ),
    Code.MISSING_PROMPT: CodeInfo("error", "line", "A completion example without `prompt`."),
    Code.MISSING_COMPLETION: CodeInfo("error", "line", "A completion example without `completion`."),
    Code.INVALID_PROMPT: CodeInfo("error", "line", "`prompt` is not a string."),
    Code.INVALID_COMPLETION: CodeInfo("error", "line", "`completion` is not a string."),
    Code.INVALID_INPUT: CodeInfo(
        "error", "line", "Preference `input` is not an object with a non-empty `messages` list."
    ),
    Code.INVALID_PREFERRED_OUTPUT: CodeInfo(
        "error", "line", "`preferred_output` is not a list of exactly one assistant message."
    ),
    Code.INVALID_NON_PREFERRED_OUTPUT: CodeInfo(
        "error", "line", "`non_preferred_output` is not a list of exactly one assistant message."
    ),
    Code.RFT_FINAL_MESSAGE_NOT_USER: CodeInfo(
        "error", "line", "RFT: the last message is not the user's (the model writes the answer; no assistant reply)."
    ),
    Code.RFT_SYSTEM_MESSAGE: CodeInfo(
        "error", "line", "RFT: a system message, which RFT does not support; put instructions in a developer message."
    ),
    Code.RFT_MISSING_GRADER_FIELD: CodeInfo(
        "error", "line", "RFT: the example lacks a field the grader reads (`{{item.<field>}}`): it would score 0."
    ),
    Code.UNKNOWN_MODEL: CodeInfo(
        "warning", "file", "The model is not in the limits table: o200k_base and 65,536 tokens were assumed."
    ),
    Code.MODEL_NOT_KNOWN: CodeInfo(
        "error",
        "file",
        "The model is not in the limits table (a typo?); with `allow_unknown_model` it is `unknown_model` instead.",
    ),
    Code.METHOD_NOT_SUPPORTED: CodeInfo(
        "error", "file", "Preference (DPO) data for a model that DPO does not support (see the DPO model list)."
    ),
    Code.UNRECOGNIZED_KEY: CodeInfo(
        "warning", "line", "A top-level key the format does not define (ignored by the service or rejected)."
    ),
    Code.TOKENS_OVER_LIMIT: CodeInfo(
        "warning", "line", "The example is longer than the model's tokens-per-example limit: it will be truncated."
    ),
    Code.DUPLICATE_EXAMPLE: CodeInfo(
        "warning", "line", "The line repeats an earlier one byte for byte (after trimming whitespace)."
    ),
    Code.TRAIN_VALIDATION_OVERLAP: CodeInfo(
        "warning", "line", "A validation example that is also in the training file."
    ),
    Code.NO_SYSTEM_MESSAGE: CodeInfo(
        "warning", "first line", "Examples without a system (or developer) message; counted, first lines listed."
    ),
    Code.NO_USER_MESSAGE: CodeInfo(
        "warning", "first line", "Examples without a user message; counted, first lines listed."
    ),
    Code.ENDS_WITHOUT_ASSISTANT: CodeInfo(
        "warning", "first line", "Examples whose last message is not the assistant's: the tail is not trained on."
    ),
    Code.EMPTY_ASSISTANT_REPLY: CodeInfo(
        "warning", "line", "An assistant message with empty content and no tool call."
    ),
    Code.ALL_WEIGHTS_ZERO: CodeInfo(
        "warning", "line", "Every assistant message has weight 0: the example teaches nothing."
    ),
    Code.EMPTY_CONTENT: CodeInfo("warning", "line", "A system, developer or user message with empty content."),
    Code.EMPTY_COMPLETION: CodeInfo("warning", "line", "A completion example with an empty `completion`."),
    Code.IDENTICAL_PREFERENCE_OUTPUTS: CodeInfo(
        "warning", "line", "`preferred_output` and `non_preferred_output` are the same."
    ),
    Code.POSSIBLE_SECRET: CodeInfo(
        "warning",
        "line",
        "Something that looks like an API key, bearer token, private key or connection string (masked).",
    ),
    Code.POSSIBLE_PII: CodeInfo("warning", "line", "Email-like or phone-like text; counts per kind (masked)."),
}


def severity(code: Code) -> Severity:
    return CODES[code].severity
