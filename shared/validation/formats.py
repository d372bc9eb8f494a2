"""The three training-data formats (chat, completion, preference) checked one example at a time.

A checker turns one parsed line into an `Example`: its problems (code, message) and the strings to
tokenize under the convention in `tokens.py`. Checkers never raise on odd JSON; they report it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .codes import Code
from .report import DataFormat
from .tokens import TOKENS_PER_EXAMPLE, TOKENS_PER_IMAGE, TOKENS_PER_MESSAGE, TOKENS_PER_NAME

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MESSAGE_KEYS = frozenset(
    {"role", "content", "weight", "name", "tool_calls", "tool_call_id", "function_call", "refusal"}
)
CHAT_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
COMPLETION_KEYS = frozenset({"prompt", "completion"})
PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DATA_URL = re.compile(r"data:image/(?:png|jpeg|jpg|gif|webp);base64,[A-Za-z0-9+/=\s]+", re.IGNORECASE)
_SIMPLE_ROLES = frozenset({"system", "user", "assistant"})
_SIMPLE_KEYS = frozenset({"role", "content", "weight"})
_DETAILS = frozenset({"low", "high", "auto"})

RoleTokens = Callable[[str], int]


@dataclass
class Example:
    problems: list[tuple[Code, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    assistant_texts: list[str] = field(default_factory=list)
    fixed: int = 0
    messages: int = 0
    images: int = 0
    has_system: bool = False
    has_user: bool = False
    ends_with_assistant: bool = True

    def problem(self, code: Code, message: str) -> None:
        self.problems.append((code, message))


def detect_format(obj: dict[str, Any]) -> DataFormat | None:
    if "messages" in obj:
        return "chat"
    if "prompt" in obj or "completion" in obj:
        return "completion"
    if "input" in obj or "preferred_output" in obj or "non_preferred_output" in obj:
        return "preference"
    return None


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _unknown_keys(obj: dict[str, Any], allowed: frozenset[str], ex: Example) -> None:
    extra = [k for k in obj if k not in allowed]
    if extra:
        ex.problem(
            Code.UNRECOGNIZED_KEY,
            f"unrecognized top-level key(s) {_names(extra)}; expected only {_names(sorted(allowed))}",
        )


def _names(keys: Any) -> str:
    return ", ".join(repr(str(k))[:40] for k in list(keys)[:6])


def _check_tools(obj: dict[str, Any], ex: Example, role_tokens: RoleTokens) -> None:
    for key in ("tools", "functions"):
        if key not in obj:
            continue
        tools = obj[key]
        if not isinstance(tools, list) or not tools:
            ex.problem(Code.INVALID_TOOLS, f"'{key}' must be a non-empty list of function definitions")
            continue
        for i, tool in enumerate(tools):
            fn = tool.get("function") if key == "tools" and isinstance(tool, dict) else tool
            if key == "tools" and (not isinstance(tool, dict) or tool.get("type", "function") != "function"):
                ex.problem(Code.INVALID_TOOLS, f'tools[{i}] must be {{"type": "function", "function": {{...}}}}')
                break
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                ex.problem(Code.INVALID_TOOLS, f"{key}[{i}] needs a function with a non-empty string 'name'")
                break
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                ex.problem(Code.INVALID_TOOLS, f"{key}[{i}] 'parameters' must be a JSON Schema object")
                break
        ex.texts.append(_compact(tools))


def _check_content(msg: dict[str, Any], i: int, role: str, ex: Example, target: list[str]) -> str | None:
    """Validate `content`; add its text to `target`; return the plain text (for emptiness checks)."""
    content = msg["content"]
    if isinstance(content, str):
        target.append(content)
        return content
    if not isinstance(content, list):
        ex.problem(
            Code.INVALID_CONTENT, f"messages[{i}].content must be a string or a list of parts, not {_kind(content)}"
        )
        return None
    if not content:
        ex.problem(Code.INVALID_CONTENT, f"messages[{i}].content is an empty list")
        return None
    texts: list[str] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if not isinstance(part, dict):
            ex.problem(Code.INVALID_CONTENT_PART, f"{where} must be an object, not {_kind(part)}")
            continue
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                ex.problem(Code.INVALID_CONTENT_PART, f"{where} of type 'text' needs a string 'text'")
                continue
            texts.append(text)
            target.append(text)
        elif kind == "image_url":
            if role != "user":
                ex.problem(
                    Code.IMAGE_NOT_IN_USER_MESSAGE, f"{where}: images are allowed only in user messages, not {role}"
                )
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str):
                ex.problem(
                    Code.INVALID_CONTENT_PART, f'{where} of type \'image_url\' needs {{"image_url": {{"url": ...}}}}'
                )
                continue
            if not (url.startswith("https://") and len(url) > 8) and not _DATA_URL.fullmatch(url):
                shown = url[:40] + ("…" if len(url) > 40 else "")
                ex.problem(
                    Code.INVALID_IMAGE_URL,
                    f"{where}: image url {shown!r} must be https:// or data:image/(png|jpeg|gif|webp);base64,...",
                )
            assert isinstance(image, dict)
            detail = image.get("detail", "auto")
            if detail not in _DETAILS:
                ex.problem(Code.INVALID_IMAGE_DETAIL, f"{where}: detail {str(detail)[:20]!r} must be low, high or auto")
            ex.images += 1
            ex.fixed += TOKENS_PER_IMAGE
        else:
            ex.problem(Code.INVALID_CONTENT_PART, f"{where}: type {str(kind)[:30]!r} must be 'text' or 'image_url'")
    return "".join(texts)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def check_messages(
    messages: Any, ex: Example, role_tokens: RoleTokens, *, require_assistant: bool, where: str = "messages"
) -> None:
    """Check a chat message list, add its token texts; `where` names it in messages."""
    if not isinstance(messages, list) or not messages:
        ex.problem(
            Code.INVALID_MESSAGES,
            f"'{where}' must be a non-empty list of messages, not "
            + (_kind(messages) if messages != [] else "an empty list"),
        )
        return
    pending_calls: list[str] = []
    pending_function = False
    has_assistant = False
    weights: list[int] = []
    last_role = ""
    for i, msg in enumerate(messages):
        # fast path for the common message: {"role": system|user|assistant, "content": str, "weight"?: 0|1}
        if type(msg) is dict and not pending_calls and not pending_function:
            role = msg.get("role")
            content = msg.get("content")
            if type(content) is str and role in _SIMPLE_ROLES and msg.keys() <= _SIMPLE_KEYS:
                weight = msg.get("weight", 1)
                if role == "assistant" and type(weight) is int and (weight == 0 or weight == 1):
                    weights.append(weight)
                    has_assistant = True
                    ex.assistant_texts.append(content)
                    if not content:
                        ex.problem(Code.EMPTY_ASSISTANT_REPLY, f"{where}[{i}] is an assistant reply with empty content")
                elif "weight" not in msg:
                    if role == "user":
                        ex.has_user = True
                    else:
                        ex.has_system = True
                    ex.texts.append(content)
                    if not content:
                        ex.problem(Code.EMPTY_CONTENT, f"{where}[{i}] ({role}) has empty content")
                else:
                    role = None  # weight on a non-assistant message, or a bad weight: the full checks below
                if role is not None:
                    ex.messages += 1
                    ex.fixed += TOKENS_PER_MESSAGE + role_tokens(role)
                    last_role = role
                    continue
        if not isinstance(msg, dict):
            ex.problem(Code.INVALID_MESSAGE, f"{where}[{i}] must be an object, not {_kind(msg)}")
            continue
        ex.messages += 1
        ex.fixed += TOKENS_PER_MESSAGE
        role = msg.get("role")
        if role is None:
            ex.problem(Code.MISSING_ROLE, f"{where}[{i}] has no 'role'")
            continue
        if role not in ROLES:
            ex.problem(
                Code.UNRECOGNIZED_ROLE,
                f"{where}[{i}].role {str(role)[:30]!r} must be system, developer, user, assistant or tool",
            )
            continue
        assert isinstance(role, str)
        last_role = role
        ex.fixed += role_tokens(role)
        for key in msg:
            if key not in MESSAGE_KEYS:
                ex.problem(Code.MESSAGE_UNRECOGNIZED_KEY, f"{where}[{i}] has unrecognized key {str(key)[:40]!r}")
        is_assistant = role == "assistant"
        if role in ("system", "developer"):
            ex.has_system = True
        elif role == "user":
            ex.has_user = True
        # a tool call must be answered before the conversation moves on
        if role not in ("tool", "function") and (pending_calls or pending_function):
            missing = ", ".join(pending_calls[:3]) if pending_calls else "function_call"
            ex.problem(Code.MISSING_TOOL_RESPONSE, f"{where}[{i}] ({role}) comes before the response to {missing}")
            pending_calls, pending_function = [], False
        if "weight" in msg:
            w = msg["weight"]
            if not is_assistant:
                ex.problem(Code.WEIGHT_NOT_ON_ASSISTANT, f"{where}[{i}] has 'weight' but only assistant messages may")
            elif isinstance(w, bool) or w not in (0, 1):
                ex.problem(Code.INVALID_WEIGHT, f"{where}[{i}].weight is {str(w)[:20]}; it must be 0 or 1")
            else:
                weights.append(int(w))
        elif is_assistant:
            weights.append(1)
        if "name" in msg:
            name = msg["name"]
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                ex.problem(Code.INVALID_NAME, f"{where}[{i}].name must be 1-64 letters, digits, '_' or '-'")
            else:
                ex.texts.append(name)
                ex.fixed += TOKENS_PER_NAME
        calls = msg.get("tool_calls")
        has_call = False
        if calls is not None:
            if not is_assistant:
                ex.problem(Code.INVALID_TOOL_CALLS, f"{where}[{i}] has 'tool_calls' but only assistant messages may")
            elif _check_tool_calls(calls, f"{where}[{i}]", ex):
                pending_calls = [c["id"] for c in calls]
                has_call = True
                ex.assistant_texts.append(_compact(calls))
        fcall = msg.get("function_call")
        if fcall is not None:
            if not is_assistant:
                ex.problem(
                    Code.INVALID_FUNCTION_CALL, f"{where}[{i}] has 'function_call' but only assistant messages may"
                )
            elif (
                not isinstance(fcall, dict)
                or not isinstance(fcall.get("name"), str)
                or not isinstance(fcall.get("arguments", ""), str)
            ):
                ex.problem(
                    Code.INVALID_FUNCTION_CALL, f'{where}[{i}].function_call must be {{"name": str, "arguments": str}}'
                )
            else:
                pending_function = True
                has_call = True
                ex.assistant_texts.append(_compact(fcall))
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not pending_calls:
                ex.problem(
                    Code.UNEXPECTED_TOOL_MESSAGE, f"{where}[{i}] is a tool message but no tool call is waiting for it"
                )
            elif call_id != pending_calls[0]:
                ex.problem(
                    Code.TOOL_CALL_ID_MISMATCH,
                    f"{where}[{i}].tool_call_id {str(call_id)[:40]!r} should be {pending_calls[0][:40]!r} "
                    "(calls are answered in order)",
                )
                pending_calls.pop(0)
            else:
                pending_calls.pop(0)
        elif role == "function":
            if not pending_function:
                ex.problem(
                    Code.UNEXPECTED_TOOL_MESSAGE,
                    f"{where}[{i}] is a function message but no function_call is waiting for it",
                )
            pending_function = False
        # content
        if "content" not in msg or msg["content"] is None:
            if not (is_assistant and has_call):
                ex.problem(Code.MISSING_CONTENT, f"{where}[{i}] ({role}) has no 'content'")
            text: str | None = ""
        else:
            text = _check_content(msg, i, role, ex, ex.assistant_texts if is_assistant else ex.texts)
        if is_assistant:
            has_assistant = True
            if text == "" and not has_call:
                ex.problem(Code.EMPTY_ASSISTANT_REPLY, f"{where}[{i}] is an assistant reply with empty content")
        elif text == "" and role in ("system", "developer", "user"):
            ex.problem(Code.EMPTY_CONTENT, f"{where}[{i}] ({role}) has empty content")
    if require_assistant:
        if not has_assistant:
            ex.problem(Code.NO_ASSISTANT_MESSAGE, f"'{where}' has no assistant message: there is nothing to learn")
        elif weights and not any(weights):
            ex.problem(Code.ALL_WEIGHTS_ZERO, "every assistant message has weight 0: the example teaches nothing")
        ex.ends_with_assistant = last_role == "assistant"


def _check_tool_calls(calls: Any, where: str, ex: Example) -> bool:
    if not isinstance(calls, list) or not calls:
        ex.problem(Code.INVALID_TOOL_CALLS, f"{where}.tool_calls must be a non-empty list")
        return False
    seen: set[str] = set()
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(fn, dict):
            ex.problem(
                Code.INVALID_TOOL_CALLS,
                f'{where}.tool_calls[{k}] must be {{"id": str, "type": "function", "function": {{...}}}}',
            )
            return False
        if call.get("type", "function") != "function":
            ex.problem(Code.INVALID_TOOL_CALLS, f"{where}.tool_calls[{k}].type must be 'function'")
            return False
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            ex.problem(Code.INVALID_TOOL_CALLS, f"{where}.tool_calls[{k}].function needs a non-empty string 'name'")
            return False
        args = fn.get("arguments")
        if not isinstance(args, str):
            ex.problem(
                Code.INVALID_TOOL_CALLS, f"{where}.tool_calls[{k}].function.arguments must be a string holding JSON"
            )
            return False
        try:
            json.loads(args)
        except (ValueError, RecursionError):
            ex.problem(Code.INVALID_TOOL_CALLS, f"{where}.tool_calls[{k}].function.arguments is not valid JSON")
            return False
        if call["id"] in seen:
            ex.problem(Code.INVALID_TOOL_CALLS, f"{where}.tool_calls[{k}].id {call['id'][:40]!r} is repeated")
            return False
        seen.add(call["id"])
    return True


def check_chat(obj: dict[str, Any], role_tokens: RoleTokens) -> Example:
    ex = Example(fixed=TOKENS_PER_EXAMPLE)
    _unknown_keys(obj, CHAT_KEYS, ex)
    _check_tools(obj, ex, role_tokens)
    check_messages(obj.get("messages"), ex, role_tokens, require_assistant=True)
    return ex


def check_completion(obj: dict[str, Any], role_tokens: RoleTokens) -> Example:
    ex = Example(has_system=True, has_user=True)
    _unknown_keys(obj, COMPLETION_KEYS, ex)
    prompt = obj.get("prompt")
    completion = obj.get("completion")
    if "prompt" not in obj:
        ex.problem(Code.MISSING_PROMPT, 'no \'prompt\': completion examples are {"prompt": ..., "completion": ...}')
    elif not isinstance(prompt, str):
        ex.problem(Code.INVALID_PROMPT, f"'prompt' must be a string, not {_kind(prompt)}")
    else:
        ex.texts.append(prompt)
    if "completion" not in obj:
        ex.problem(
            Code.MISSING_COMPLETION, 'no \'completion\': completion examples are {"prompt": ..., "completion": ...}'
        )
    elif not isinstance(completion, str):
        ex.problem(Code.INVALID_COMPLETION, f"'completion' must be a string, not {_kind(completion)}")
    else:
        if not completion.strip():
            ex.problem(Code.EMPTY_COMPLETION, "'completion' is empty: nothing to learn")
        ex.assistant_texts.append(completion)
    ex.messages = 2
    return ex


def _check_output(value: Any, key: str, code: Code, ex: Example, role_tokens: RoleTokens) -> str | None:
    if (
        not isinstance(value, list)
        or len(value) != 1
        or not isinstance(value[0], dict)
        or value[0].get("role") != "assistant"
    ):
        ex.problem(code, f"'{key}' must be a list of exactly one assistant message")
        return None
    msg = value[0]
    content = msg.get("content")
    if not isinstance(content, str) and not msg.get("tool_calls"):
        ex.problem(code, f"'{key}'[0].content must be a string")
        return None
    ex.fixed += TOKENS_PER_MESSAGE + role_tokens("assistant")
    ex.messages += 1
    text = content if isinstance(content, str) else _compact(msg.get("tool_calls"))
    if not text.strip():
        ex.problem(Code.EMPTY_ASSISTANT_REPLY, f"'{key}'[0] is an assistant reply with empty content")
    ex.assistant_texts.append(text)
    return text


def check_preference(obj: dict[str, Any], role_tokens: RoleTokens) -> Example:
    ex = Example(fixed=TOKENS_PER_EXAMPLE)
    _unknown_keys(obj, PREFERENCE_KEYS, ex)
    inp = obj.get("input")
    if not isinstance(inp, dict) or "messages" not in inp:
        ex.problem(Code.INVALID_INPUT, "'input' must be an object with a 'messages' list")
    else:
        _check_tools(inp, ex, role_tokens)
        check_messages(inp["messages"], ex, role_tokens, require_assistant=False, where="input.messages")
    preferred = _check_output(
        obj.get("preferred_output"), "preferred_output", Code.INVALID_PREFERRED_OUTPUT, ex, role_tokens
    )
    other = _check_output(
        obj.get("non_preferred_output"), "non_preferred_output", Code.INVALID_NON_PREFERRED_OUTPUT, ex, role_tokens
    )
    if preferred is not None and preferred == other:
        ex.problem(Code.IDENTICAL_PREFERENCE_OUTPUTS, "preferred_output and non_preferred_output are identical")
    ex.ends_with_assistant = True
    return ex


CHECKERS: dict[DataFormat, Callable[[dict[str, Any], RoleTokens], Example]] = {
    "chat": check_chat,
    "completion": check_completion,
    "preference": check_preference,
}
