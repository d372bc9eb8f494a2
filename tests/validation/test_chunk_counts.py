"""chunk_counts.py: counts looked up from the chunk table are tiktoken's, cold or warm, full or not, on threads."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from unittest import mock

import numpy as np
import numpy.typing as npt
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.validation import ValidationOptions, chunk_counts, encodings, validate
from shared.validation.chunk_counts import ChunkCounts, _chunked
from shared.validation.tokens import Tokenizer

from .examples import jsonl
from .test_encodings import NAMES, TEXTS

# The 29 code points str.isspace holds: a cut never follows one of them.
SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
# Characters around which chunks are cut, or not: every kind of whitespace, letters, digits, marks, non-ASCII.
ALPHABET = st.sampled_from(
    [*SPACES, "a", "Z", "é", "東", "ключ", "🤖", "'", "s", "'s", "1", "23", ".", ",", "!", "-", "/", "\u0301", "\x00"]
)
CHAT_TEXTS = st.lists(ALPHABET, max_size=40).map("".join)


def exact(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


CountExact = Callable[[Sequence[str]], npt.NDArray[np.int64]]


def counter(name: str) -> tuple[ChunkCounts, list[list[str]], CountExact]:
    """A fresh table, the lists of chunks tiktoken was asked to count, and the function that counts them."""
    enc = exact(name)
    asked: list[list[str]] = []

    def count_exact(texts: Sequence[str]) -> npt.NDArray[np.int64]:
        asked.append(list(texts))
        return np.array([len(enc.encode_ordinary(t)) for t in texts], dtype=np.int64)

    return ChunkCounts(), asked, count_exact


def cut_offsets(text: str) -> list[int]:
    """Where `_chunked` starts chunks, as character offsets."""
    data = text.encode("utf-8")
    starts = _chunked([text]).starts.tolist()
    return [len(data[:s].decode("utf-8")) for s in starts]


def expected_offsets(text: str) -> list[int]:
    offsets, at = [], 0
    for chunk in encodings.chunks(text):
        if chunk:
            offsets.append(at)
        at += len(chunk)
    return offsets


@given(CHAT_TEXTS)
@settings(max_examples=300, deadline=None)
def test_chunks_are_cut_on_bytes_where_the_string_is_cut(text: str) -> None:
    assert cut_offsets(text) == expected_offsets(text)


def test_a_cut_follows_every_code_point_but_the_whitespace_ones() -> None:
    code_points = [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"{chr(c)} b" for c in code_points]
    batch = _chunked(texts)
    chunks_per_text = np.diff(np.searchsorted(batch.starts, batch.text_ends), prepend=0)
    cut_after = chunks_per_text == 2
    assert cut_after.tolist() == [not chr(c).isspace() for c in code_points]


@pytest.mark.parametrize("name", NAMES)
@given(st.lists(CHAT_TEXTS, min_size=1, max_size=12))
@settings(max_examples=150, deadline=None)
def test_a_text_counts_as_the_sum_of_its_chunks_alone(name: str, texts: list[str]) -> None:
    """The claim the table rests on, against tiktoken itself."""
    enc = exact(name)
    for text in texts:
        assert len(enc.encode_ordinary(text)) == sum(len(enc.encode_ordinary(c)) for c in encodings.chunks(text))


@pytest.mark.parametrize("name", NAMES)
@given(st.lists(CHAT_TEXTS, max_size=12))
@settings(max_examples=150, deadline=None)
def test_counts_are_tiktokens_cold_and_warm(name: str, texts: list[str]) -> None:
    table, asked, count_exact = counter(name)
    enc = exact(name)
    expected = [len(enc.encode_ordinary(t)) for t in texts]
    assert table.count(texts, count_exact).tolist() == expected
    asked.clear()
    assert table.count(texts, count_exact).tolist() == expected
    long = [c for t in texts for c in encodings.chunks(t) if len(c.encode("utf-8")) > chunk_counts.MAX_CHUNK_BYTES]
    assert sorted(c for call in asked for c in call) == sorted(set(long))  # warm: only what is never kept


@pytest.mark.parametrize("name", NAMES)
def test_the_tricky_texts_count_as_tiktoken_counts_them(name: str) -> None:
    table, _, count_exact = counter(name)
    texts = [t for t in TEXTS if "\ud800" not in t]
    expected = [len(exact(name).encode_ordinary(t)) for t in texts]
    for _ in range(2):
        assert table.count(texts, count_exact).tolist() == expected


def test_keys_are_the_bytes_themselves() -> None:
    """Chunks that share a prefix, differ only in a NUL or in length, or run past 15 bytes, each count alone."""
    table, asked, count_exact = counter("o200k_base")
    texts = ["a", "a\x00", "a\x00\x00", " abcdefghijklmn", " abcdefghijklmno", " abcdefghijklmnop", "b a", "b a\x00"]
    expected = [len(exact("o200k_base").encode_ordinary(t)) for t in texts]
    assert table.count(texts, count_exact).tolist() == expected
    asked.clear()
    assert table.count(texts, count_exact).tolist() == expected
    assert asked == [[" abcdefghijklmno", " abcdefghijklmnop"]]  # 16 and 17 bytes: never kept
    assert len(table) == 7  # a, a\0, a\0\0, the 15-byte chunk, b, " a", " a\0"


def test_a_lone_surrogate_is_left_to_the_caller() -> None:
    table, asked, count_exact = counter("o200k_base")
    assert table.count(["fine", "x\ud800y"], count_exact) is None
    assert asked == []
    row = {"messages": [{"role": "user", "content": "x\ud800y"}, {"role": "assistant", "content": "ok"}]}
    report = validate(jsonl([json.dumps(row).encode("ascii")]))  # JSON's \ud800 escape: a lone surrogate
    enc = exact("o200k_base")
    fixed = "x\ud800y".encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert report.tokens is not None
    assert report.tokens.total == 3 + 3 + 1 + len(enc.encode_ordinary(fixed)) + 3 + 1 + len(enc.encode_ordinary("ok"))


def test_the_table_grows_then_stops_at_its_bound() -> None:
    enc = exact("o200k_base")
    words = [f" w{i}" for i in range(400)]
    with mock.patch.object(chunk_counts, "MIN_BITS", 4), mock.patch.object(chunk_counts, "MAX_BITS", 8):
        with mock.patch.object(chunk_counts, "MAX_ENTRIES", 100):
            table, asked, count_exact = counter("o200k_base")
            sizes = []
            for start in range(0, 400, 20):
                text = "x" + "".join(words[start : start + 20])
                assert table.count([text], count_exact).tolist() == [len(enc.encode_ordinary(text))]
                sizes.append(table._table.words1.size)
            assert len(table) == 100  # full: kept as it is
            assert sizes[0] == 128 and sizes[-1] == 256  # doubled while more than a quarter full, up to 2**8
            asked.clear()
            text = "x" + "".join(words)
            assert table.count([text], count_exact).tolist() == [len(enc.encode_ordinary(text))]
            assert len(asked[0]) == 401 - 100  # what did not fit is counted by tiktoken each time


def test_threads_sharing_a_table_count_exactly() -> None:
    enc = exact("o200k_base")
    texts = [f"Thread {i % 7} says: the {i}th word is w{i % 97}, again w{i % 89}." for i in range(3000)]
    expected = [len(enc.encode_ordinary(t)) for t in texts]
    table, _, count_exact = counter("o200k_base")
    results: dict[int, list[int]] = {}

    def work(k: int) -> None:
        part = texts[k::4]
        results[k] = table.count(part, count_exact).tolist()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert results[k] == expected[k::4]


@pytest.mark.parametrize(
    ("model", "name"), [("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-35-turbo-0125", "cl100k_base")]
)
def test_reports_are_the_same_with_and_without_the_table(model: str, name: str) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": f"You are assistant {i}.  Answer in  two\n\nparagraphs."},
                {"role": "user", "content": f"What's 384,400 km / {i + 3}? It's for O'Neil's café (東京)."},
                {
                    "role": "assistant",
                    "content": f"About {384400 // (i + 3):,} km.\n  - rounded\n\tdone!" * (i % 3 + 1),
                },
            ]
        }
        for i in range(300)
    ]
    data = jsonl(rows)
    options = ValidationOptions(max_listed_warnings=1000)
    table = encodings.encoding(name).chunk_counts
    found = table.found
    cold = validate(data, model=model, options=options)  # this table may have been filled by other tests
    warm = validate(data, model=model, options=options)
    assert table.found > found  # the second one at least found its chunks
    with mock.patch.object(Tokenizer, "__init__", _without_table):
        without = validate(data, model=model, options=options)
    assert cold == warm == without


_plain_init = Tokenizer.__init__


def _without_table(self: Tokenizer, encoding_name: str, *, reuse_chunks: bool = True) -> None:
    _plain_init(self, encoding_name, reuse_chunks=False)


def test_large_batches_go_through_in_slices_with_the_same_counts() -> None:
    enc = exact("o200k_base")
    texts = [f"slice {i}: " + "word " * (i % 50) + "東京 ключ café" * (i % 3) for i in range(2000)]
    expected = [len(enc.encode_ordinary(t)) for t in texts]
    table, _, count_exact = counter("o200k_base")
    assert table.count([], count_exact).tolist() == []
    with mock.patch.object(chunk_counts, "SLICE_CHARS", 1000):  # about 140 slices, one text may be over it
        assert table.count(texts, count_exact).tolist() == expected
        assert table.count(["x" * 5000, "y"], count_exact).tolist() == [len(enc.encode_ordinary("x" * 5000)), 1]
