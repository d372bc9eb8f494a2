"""counting_process.py: a forked child counts a validation's batches; reports are the same with it, without it,
and when it dies halfway; it is never forked where that is unsafe; it is always reaped."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import tiktoken

from shared.validation import ValidationOptions, counting_process, tokens, validate, validator
from shared.validation.counting_process import CountingProcess, fork_allowed, wanted
from shared.validation.reading import known_size
from shared.validation.tokens import Tokenizer

from .examples import jsonl
from .test_tokens import TRICKY

WORDS = [t for t in TRICKY if t.strip() and "\ud800" not in t]  # the lone surrogate comes in a line of its own
PROMPTS = [
    "You are the support assistant of Contoso. " * 12,
    "Réponds en français, poliment, et cite la documentation Azure. " * 8,
]


def training_file(n: int = 400) -> bytes:
    """Chat lines of every kind the validator counts differently: repeated long system prompts (the cache),
    non-ASCII, an example over the token limit, a general-path line with a lone surrogate, a broken line."""
    objs: list[Any] = []
    for i in range(n):
        messages = [
            {"role": "system", "content": PROMPTS[i % 2]},
            {"role": "user", "content": f"{WORDS[i % len(WORDS)]} question {i}: Zürich 東京 🤖?"},
            {"role": "assistant", "content": f"Answer {i}, " + "word " * (i % 50) + "done."},
        ]
        objs.append({"messages": messages})
    if n < 40:
        return jsonl(objs)
    objs[7]["messages"][1]["content"] = "long " * 3000  # over the limit set below
    objs[11]["messages"][1]["name"] = "alice"  # the general path
    lines = jsonl(objs).split(b"\n")
    lines[20] = b'{"messages": [{"role": "user", "content": "x\\ud800y"}, {"role": "assistant", "content": "ok"}]}'
    lines[30] = b'{"messages": [{"role": "user"'
    return b"\n".join(lines)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens.TokenPipeline, "BATCH_CHARS", 8 * 1024)  # dozens of batches from a small file


class Recorded(CountingProcess):
    """A counting process that keeps note of itself; `kill_after` kills the child after that many batches."""

    made: list[Recorded] = []
    kill_after: int | None = None

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        self.batches = 0
        self.pid_seen = self.pid
        self.usage: resource.struct_rusage | None = None
        Recorded.made.append(self)

    def submit(self, texts: Sequence[str]) -> None:
        super().submit(texts)
        self.batches += 1
        if self.batches == Recorded.kill_after:
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> resource.struct_rusage | None:
        usage = super().close()
        self.usage = self.usage or usage
        return usage


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Recorded]]:
    Recorded.made = []
    Recorded.kill_after = None
    monkeypatch.setattr(validator, "CountingProcess", Recorded)
    yield Recorded
    for made in Recorded.made:
        with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
            os.waitpid(made.pid_seen, os.WNOHANG)


def report(data: bytes, process: bool | None) -> str:
    options = ValidationOptions(counting_process=process, tokens_per_example_limit=2000)
    return validate(data, validation=data[: len(data) // 3], options=options).model_dump_json()


def test_reports_are_the_same_with_the_process(small_batches: None, recorded: type[Recorded]) -> None:
    data = training_file()
    without = report(data, False)
    assert recorded.made == []
    with_process = report(data, True)
    assert with_process == without
    (process,) = recorded.made  # one for the whole validation: the training file, then the validation file
    assert process.batches > 30 and not process.lost
    assert process.usage is not None and process.usage.ru_utime > 0  # the child did the counting
    assert "tokens_over_limit" in without and "lone surrogate" not in without  # the limit, and counted lines


def test_a_child_killed_halfway_loses_nothing(small_batches: None, recorded: type[Recorded]) -> None:
    data = training_file()
    without = report(data, False)
    recorded.kill_after = 5
    assert report(data, True) == without
    assert recorded.made[0].lost  # the parent counted what the child owed, and every batch after


def test_a_child_that_fails_says_why_and_loses_nothing(
    small_batches: None,
    recorded: type[Recorded],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = training_file()
    without = report(data, False)
    calls = {"n": 0}
    real = Tokenizer.count_many

    def failing(self: Tokenizer, texts: Sequence[str]) -> Any:
        calls["n"] += 1
        if calls["n"] == 3 and os.getpid() != parent:
            raise RuntimeError("counting broke in the child")
        return real(self, texts)

    parent = os.getpid()
    monkeypatch.setattr(Tokenizer, "count_many", failing)  # the child is a fork: it has the patch
    with caplog.at_level(logging.INFO, logger="shared.validation.counting_process"):
        assert report(data, True) == without
    (process,) = recorded.made
    assert process.lost and process.error == "RuntimeError: counting broke in the child"
    assert "counting broke in the child" in caplog.text
    assert capfd.readouterr().err == ""  # one line in the log, no traceback on the terminal


def test_answers_larger_than_the_pipes_never_deadlock() -> None:
    """Batches of many tiny texts: answers (8 bytes a text) overflow the answer pipe while the parent is still
    sending; the parent's writes never block, so both ends go on."""
    tokenizer = Tokenizer("o200k_base")
    batch = [f"w{i % 97}" for i in range(200_000)]  # 1.6 MB of answer, 1 MB pipes
    expected = np.array([len(tiktoken.get_encoding("o200k_base").encode_ordinary(t)) for t in batch[:97]])
    process = CountingProcess(tokenizer)
    try:
        for _ in range(4):
            process.submit(batch)
        for _ in range(4):
            counts = process.result()
            assert counts is not None and counts.size == len(batch)
            assert (counts[:97] == expected).all() and (counts.reshape(-1)[97:194] == expected).all()
        assert not process.lost
    finally:
        usage = process.close()
    assert usage is not None


def test_the_process_is_forked_only_where_it_is_safe_and_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert fork_allowed(2)
    assert not fork_allowed(1)  # one core: nothing to gain
    monkeypatch.setattr(threading, "active_count", lambda: 3)
    assert not fork_allowed(8)  # another thread might hold a lock the child would inherit held
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not fork_allowed(8)  # macOS: system libraries are not fork-safe
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delattr(os, "fork")
    assert not fork_allowed(8)


def test_auto_forks_for_a_source_known_to_be_larger_than_one_batch(tmp_path: Any) -> None:
    big, small = training_file(), training_file(3)
    path = tmp_path / "train.jsonl"
    path.write_bytes(big)
    with open(path, "rb") as f:
        f.read(100)
        assert known_size(f) == len(big) - 100  # what is left to read
    assert known_size(big) == len(big) and known_size(iter([big])) is None  # a blob's chunks: unknown
    batch = 8 * 1024
    assert wanted(None, len(big), batch, 2) == fork_allowed(2)
    assert not wanted(None, len(small), batch, 2)  # one batch: nothing to overlap
    assert not wanted(None, None, batch, 2)  # unknown size: threads
    assert wanted(True, None, batch, 1) and not wanted(False, len(big), batch, 8)  # the option decides


def test_the_parent_never_loads_the_encoding(small_batches: None, recorded: type[Recorded]) -> None:
    """The child counts the role names too, so the validating process builds no core, small or full."""
    built: list[int] = []
    real = validator.Tokenizer

    class Watched(real):  # type: ignore[misc, valid-type]
        def count_many(self, texts: Sequence[str]) -> Any:
            built.append(os.getpid())
            return super().count_many(texts)

    parent = os.getpid()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validator, "Tokenizer", Watched)
        validate(training_file(), options=ValidationOptions(counting_process=True))
    assert parent not in built


def test_the_cli_forks_before_loading_the_validator_and_prints_the_same_report(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.cli import main

    big = training_file(2000)
    assert len(big) > tokens.TokenPipeline.BATCH_CHARS
    path = tmp_path / "train.jsonl"
    path.write_bytes(big)
    made: list[CountingProcess] = []

    class Counted(CountingProcess):
        def __init__(self, tokenizer: Tokenizer) -> None:
            super().__init__(tokenizer)
            made.append(self)

    monkeypatch.setattr(counting_process, "fork_allowed", lambda cpus: True)
    monkeypatch.setattr(counting_process, "CountingProcess", Counted)
    assert main(["validate", str(path), "--json"]) == 1  # the over-limit line and the broken lines
    printed = json.loads(capsys.readouterr().out)
    expected = validate(big, options=ValidationOptions(counting_process=False))
    assert printed == json.loads(expected.model_dump_json())
    (process,) = made
    assert not process.lost and process.pid == 0  # it served the run, and was reaped
