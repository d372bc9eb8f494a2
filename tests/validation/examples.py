"""Builders for small training files used across the validation tests."""

from __future__ import annotations

import json
from typing import Any


def chat(i: int = 0, *, system: bool = True, **extra: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": "You are terse."})
    messages.append({"role": "user", "content": f"Question number {i}?"})
    messages.append({"role": "assistant", "content": f"Answer number {i}."})
    return {"messages": messages, **extra}


def completion(i: int = 0) -> dict[str, Any]:
    return {"prompt": f"Question number {i} ->", "completion": f" Answer number {i}."}


def preference(i: int = 0) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": f"Question number {i}?"}]},
        "preferred_output": [{"role": "assistant", "content": f"Good answer {i}."}],
        "non_preferred_output": [{"role": "assistant", "content": f"Bad answer {i}."}],
    }


def line(obj: Any) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode("utf-8")


def jsonl(objs: list[Any], *, eol: bytes = b"\n") -> bytes:
    return b"".join(line(o) + eol for o in objs)


def file_with(bad: Any, *, at: int = 5, n: int = 12, make: Any = chat) -> bytes:
    """`n` good examples, line `at` (1-based) replaced by `bad` (an object, or raw bytes)."""
    objs: list[Any] = [make(i) for i in range(n)]
    objs[at - 1] = bad
    return jsonl(objs)


def messages(*msgs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(msgs), **extra}


SYS = {"role": "system", "content": "You are terse."}
USER = {"role": "user", "content": "Hi there?"}
ASSISTANT = {"role": "assistant", "content": "Hello."}
