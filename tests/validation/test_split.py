"""split_examples: deterministic, streamed, both sides at least 10 examples when the file allows it."""

from __future__ import annotations

import io
import random

import pytest

from shared.validation import split_examples

from .examples import chat, jsonl


def _split(data: bytes, fraction: float = 0.1) -> tuple[list[bytes], list[bytes]]:
    train, valid = io.BytesIO(), io.BytesIO()
    result = split_examples(io.BytesIO(data), train, valid, fraction=fraction)
    t, v = train.getvalue().splitlines(), valid.getvalue().splitlines()
    assert (result.train_examples, result.valid_examples) == (len(t), len(v))
    return t, v


@pytest.mark.parametrize("n", [1, 5, 19, 20, 25, 60, 200, 2000])
def test_sides_and_totals(n: int) -> None:
    lines = jsonl([chat(i) for i in range(n)]).splitlines()
    train, valid = _split(b"\n".join(lines))
    assert sorted(train + valid) == sorted(lines)
    if n >= 20:
        assert len(train) >= 10 and len(valid) >= 10


def test_large_file_follows_the_fraction() -> None:
    train, valid = _split(jsonl([chat(i) for i in range(5000)]), 0.2)
    assert 0.17 < len(valid) / 5000 < 0.23


def test_deterministic_and_order_independent() -> None:
    lines = jsonl([chat(i) for i in range(500)]).splitlines()
    t1, v1 = _split(b"\n".join(lines))
    shuffled = lines[:]
    random.Random(3).shuffle(shuffled)
    t2, v2 = _split(b"\n".join(shuffled))
    assert set(v1) == set(v2) and set(t1) == set(t2)


def test_bom_crlf_and_blank_lines_are_normalised() -> None:
    data = b"\xef\xbb\xbf" + jsonl([chat(i) for i in range(30)], eol=b"\r\n") + b"\r\n\r\n"
    train, valid = _split(data)
    assert len(train) + len(valid) == 30
    assert all(not x.startswith(b"\xef") and not x.endswith(b"\r") for x in train + valid)


def test_large_fraction_keeps_ten_for_training() -> None:
    train, valid = _split(jsonl([chat(i) for i in range(40)]), 0.95)
    assert len(train) >= 10 and len(valid) >= 10


def test_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_examples(io.BytesIO(b"{}\n"), io.BytesIO(), io.BytesIO(), fraction=1.0)
