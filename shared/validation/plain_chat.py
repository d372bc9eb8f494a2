"""The validator's fast lane: a plain chat line, parsed by orjson and checked in one tight loop.

Most lines of a chat file are `{"messages": [...]}` whose messages are system, developer, user or assistant,
with non-empty string content and, on assistant messages, a `weight` of 0 or 1; nothing else, and at least
one assistant message with weight 1. For such a line `plain_chat_line` returns what `formats.check_chat`
would (no problems, the texts to count, the fixed token overhead, the flags behind the aggregated warnings)
without a decode step, an `Example` or the general checks.

Anything else returns None and the line takes the general path (stdlib json, `formats.check_chat`), which
reports it exactly as before: an invalid line, another key or role, a problem to report. That also keeps
the two parsers' differences out of the report: orjson refuses what stdlib json reads leniently (NaN, lone
surrogates, numbers that overflow a double) and reads integers past 64 bits as floats, but a plain line
holds no number other than an int weight of 0 or 1, so the two decode it to equal objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import orjson

from .tokens import TOKENS_PER_EXAMPLE, TOKENS_PER_MESSAGE

PLAIN_ROLES = ("system", "developer", "user", "assistant")


class PlainChat(NamedTuple):
    messages: int
    fixed: int
    texts: list[str]
    assistant_texts: list[str]
    has_system: bool
    has_user: bool
    ends_with_assistant: bool


def role_overheads(role_tokens: Callable[[str], int]) -> dict[str, int]:
    """The fixed tokens of a message for each plain role: 3 + tokens(role)."""
    return {role: TOKENS_PER_MESSAGE + role_tokens(role) for role in PLAIN_ROLES}


def plain_chat_line(data: bytes, overheads: Mapping[str, int]) -> PlainChat | None:
    """The figures of a plain chat line (stripped, no BOM), or None when it needs the general path.

    `overheads`: `role_overheads(...)`, the fixed tokens of a message for each plain role.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or len(obj) != 1:
        return None
    messages = obj.get("messages")
    if type(messages) is not list or not messages:
        return None
    texts: list[str] = []
    assistant_texts: list[str] = []
    fixed = TOKENS_PER_EXAMPLE
    has_system = has_user = learns = False
    role = None
    for msg in messages:
        if type(msg) is not dict:
            return None
        content = msg.get("content")
        if type(content) is not str or not content:
            return None
        role = msg.get("role")
        keys = len(msg)
        if role == "assistant":
            if keys == 3:  # role, content and a weight (if the third key is not `weight`, get gives None)
                weight = msg.get("weight")
                if type(weight) is not int or (weight != 0 and weight != 1):
                    return None
                learns = learns or weight == 1
            elif keys == 2:
                learns = True
            else:
                return None
            assistant_texts.append(content)
        elif keys != 2:
            return None
        elif role == "user":
            has_user = True
            texts.append(content)
        elif role == "system" or role == "developer":
            has_system = True
            texts.append(content)
        else:
            return None
        fixed += overheads[role]
    if not learns:  # no assistant message, or every weight 0: problems to report
        return None
    return PlainChat(len(messages), fixed, texts, assistant_texts, has_system, has_user, role == "assistant")
