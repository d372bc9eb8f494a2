"""encodings.py: the cached ranks are tiktoken's, and a small core counts exactly as the full one."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.validation import ValidationOptions, encodings, validate

from .examples import jsonl

NAMES = ["o200k_base", "cl100k_base"]
# Texts where pieces meet whitespace, punctuation, digits, contractions and non-ASCII in every way.
TEXTS = [
    "",
    " ",
    "  ",
    "hello world",
    "trailing spaces   ",
    "   leading",
    "a  b   c    d",
    "line\nbreaks\r\n\n  indented\n\tand tabs \t x",
    "punct... !? (a) [b] {c} -- /path/to/x.py:12",
    ".\n\n  x",
    "it's they'RE we'll I'd O'Neil's",
    "numbers 1234567890 384,400 3.14159 1e10",
    "emoji 🤖🚀 and CJK 東京 and ключ",
    "café naïve Zürich\u00a0nbsp\u2003em\u3000ideographic",
    "<|endoftext|> is text here",
    "x\ud800y lone surrogate",
    "\x1c\x1d\x1e\x1f separators . \x1c a",
    "don't   stop",
    "   \n\n   ",
    "CamelCaseWords and ALLCAPS and mIxEd",
]


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No encoding built yet in this process (as in a new one), ranks cached under tmp_path."""
    monkeypatch.setattr(encodings, "RANKS_CACHE_DIR", tmp_path / "ranks")
    monkeypatch.setattr(encodings, "_ENCODINGS", {})
    yield tmp_path / "ranks"


@pytest.mark.parametrize("name", NAMES)
def test_cached_ranks_are_tiktokens(fresh: Path, name: str) -> None:
    expected = tiktoken.get_encoding(name)._mergeable_ranks
    first = encodings._load_spec(name).ranks  # parsed, then written
    assert first == expected
    assert len(list(fresh.glob("*.ranks"))) == 1
    with mock.patch.object(encodings, "_parse_ranks", side_effect=AssertionError("not from the cache")):
        assert encodings._load_spec(name).ranks == expected


def test_a_damaged_cache_file_is_ignored_and_rewritten(fresh: Path) -> None:
    expected = encodings._load_spec("cl100k_base").ranks
    (cached,) = fresh.glob("*.ranks")
    blob = bytearray(cached.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cached.write_bytes(bytes(blob))
    parse = mock.Mock(wraps=encodings._parse_ranks)
    with mock.patch.object(encodings, "_parse_ranks", parse):
        assert encodings._load_spec("cl100k_base").ranks == expected
    assert parse.call_count == 1
    assert encodings._cached_ranks(cached) == expected  # rewritten whole


def test_no_cache_folder_means_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings, "RANKS_CACHE_DIR", None)
    parse = mock.Mock(wraps=encodings._parse_ranks)
    with mock.patch.object(encodings, "_parse_ranks", parse):
        encodings._load_spec("cl100k_base")
        encodings._load_spec("cl100k_base")
    assert parse.call_count == 2


def test_regex_whitespace_is_python_whitespace() -> None:
    """The chunk cut relies on it: every character tiktoken's regex calls whitespace, str.isspace() does too.

    A core with one token per byte and the pattern \\s keeps exactly the whitespace characters of a text.
    """
    from tiktoken import _tiktoken  # type: ignore[attr-defined]

    core = _tiktoken.CoreBPE({bytes([i]): i for i in range(256)}, {}, r"\s")
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    kept = bytes(core.encode_ordinary(every)).decode("utf-8")
    assert kept and all(c.isspace() for c in kept)
    assert " " in kept and "\u3000" in kept


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\n\r\u00a0\u3000\x1cab'Z9.,!東🤖")), max_size=40))
def test_chunks_rejoin_and_cut_only_before_spaces(text: str) -> None:
    parts = encodings.chunks(text)
    assert "".join(parts) == text
    for part in parts[1:]:
        assert part.startswith(" ")


@functools.cache
def _spec_and_full(name: str) -> tuple[encodings._Spec, encodings.Core]:
    spec = encodings._load_spec(name)
    return spec, encodings._core(spec, spec.ranks)


def _small_and_full(name: str, texts: list[str]) -> tuple[list[int], list[int]]:
    """Counts of each text by a small core built for them, and by the full core."""
    spec, full = _spec_and_full(name)
    subset = encodings.Encoding._subset(spec, texts)
    assert subset is not None and len(subset) < len(spec.ranks)
    small = encodings._core(spec, subset)
    texts = [encodings._tiktoken_text(t) for t in texts]
    return [len(small.bpe.encode_ordinary(t)) for t in texts], [len(full.bpe.encode_ordinary(t)) for t in texts]


@pytest.mark.parametrize("name", NAMES)
def test_small_core_counts_the_tricky_texts_as_the_full_one(fresh: Path, name: str) -> None:
    small, full = _small_and_full(name, TEXTS)
    assert small == full
    enc = tiktoken.get_encoding(name)
    assert full == [len(enc.encode_ordinary(t)) for t in TEXTS]


_ALPHABET = st.sampled_from(
    list(" \t\n\r\u00a0\u2003\u3000\x1c\x85abcXYZ'sdtlmvre0123456789.,!?-/()[]_:;\"") + ["東京", "ключ", "🤖", "é"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_ALPHABET, max_size=30).map("".join), min_size=1, max_size=8))
def test_small_core_counts_like_the_full_one(texts: list[str]) -> None:
    for name in NAMES:
        small, full = _small_and_full(name, texts)
        assert small == full


def _chat_lines(n: int) -> bytes:
    rows = []
    for i in range(n):
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": f"You are assistant {i}.  Answer in  two\n\nparagraphs."},
                    {"role": "user", "content": f"What's 384,400 km / {i + 3}? It's for O'Neil's café (東京)."},
                    {"role": "assistant", "content": f"About {384400 // (i + 3):,} km.\n  - rounded\n\tdone!"},
                ]
            }
        )
    return jsonl(rows)


MODELS = [("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-35-turbo-0125", "cl100k_base")]


@pytest.mark.parametrize(("model", "name"), MODELS)
def test_report_is_the_same_with_small_cores_or_the_full_one(fresh: Path, model: str, name: str) -> None:
    data, valid = _chat_lines(12), _chat_lines(11)
    options = ValidationOptions(max_listed_warnings=1000)
    small = validate(data, validation=valid, model=model, options=options)
    assert encodings.encoding(name).small_cores >= 2 and encodings.encoding(name)._full is None
    encodings._ENCODINGS.clear()
    with mock.patch.object(encodings, "SMALL_CORE_LOOKUPS", 0):  # always the full core
        full = validate(data, validation=valid, model=model, options=options)
    assert encodings.encoding(name).small_cores == 0 and encodings.encoding(name)._full is not None
    assert small == full
    enc = tiktoken.get_encoding(name)
    expected = sum(
        3 + sum(3 + len(enc.encode_ordinary(m["role"])) + len(enc.encode_ordinary(m["content"])) for m in messages)
        for messages in (json.loads(line)["messages"] for line in data.splitlines())
    )
    assert small.tokens is not None and small.tokens.total == expected


def test_report_is_the_same_with_and_without_the_ranks_cache(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _chat_lines(20)
    cold = validate(data)  # parses the .tiktoken file and writes the cache
    encodings._ENCODINGS.clear()
    with mock.patch.object(encodings, "_parse_ranks", side_effect=AssertionError("not from the cache")):
        warm = validate(data)
    encodings._ENCODINGS.clear()
    monkeypatch.setattr(encodings, "RANKS_CACHE_DIR", None)
    uncached = validate(data)
    assert cold == warm == uncached


def test_a_large_input_gets_the_full_core_and_keeps_it(fresh: Path) -> None:
    enc = encodings.Encoding("o200k_base")
    big = ["word" * 100_000]  # one chunk of 400,000 bytes: far too many substrings for a small core
    assert enc.core_for(big) is enc.full()
    assert enc._spec is None  # the Python ranks are let go once the Rust core has them
    assert enc.core_for(["tiny"]) is enc.full() and enc.small_cores == 0


# ---- counting a warm table's misses in Python (Encoding.count_in_python) ------------------------------------

SIMPLE = [chr(c) for c in range(0x110000) if encodings._SIMPLE.fullmatch(chr(c))]
SIMPLE_TEXTS = st.lists(
    st.sampled_from([*SIMPLE, "'s", "'T", "123", "  ", "... ", "https://", "e.g."]), min_size=1, max_size=12
).map(lambda parts: "".join(parts)[: encodings.PYTHON_BPE_CHARS])


@functools.cache
def _encoding(name: str) -> encodings.Encoding:
    return encodings.Encoding(name)  # never given a full core: count_in_python always answers


@pytest.mark.parametrize("name", NAMES)
def test_python_counts_every_simple_character_as_tiktoken_does(name: str) -> None:
    """Every character `count_in_python` takes, alone and where pieces meet it (before and after letters,
    digits, spaces, punctuation and an apostrophe), against tiktoken."""
    enc, exact = _encoding(name), tiktoken.get_encoding(name)
    assert len(SIMPLE) == 95 + 190 + 96  # printable ASCII, Latin-1 and Extended-A letters, basic Cyrillic
    texts = [t for c in SIMPLE for t in (c, f" {c}", f"{c}!", f"a{c}b", f"1{c}2", f"{c}{c}'s", f"X{c} {c}y")]
    for start in range(0, len(texts), encodings.PYTHON_BPE_TEXTS):
        batch = texts[start : start + encodings.PYTHON_BPE_TEXTS]
        assert enc.count_in_python(batch) == [len(exact.encode_ordinary(t)) for t in batch]


@settings(max_examples=300, deadline=None)
@given(st.lists(SIMPLE_TEXTS, min_size=1, max_size=20))
def test_python_counts_like_tiktoken(texts: list[str]) -> None:
    for name in NAMES:
        exact = tiktoken.get_encoding(name)
        assert _encoding(name).count_in_python(texts) == [len(exact.encode_ordinary(t)) for t in texts]


def test_python_counts_only_what_it_can_vouch_for(fresh: Path) -> None:
    enc = encodings.Encoding("o200k_base")
    exact = tiktoken.get_encoding("o200k_base")
    assert enc.count_in_python(["Zürich!", " Ключ?"]) == [len(exact.encode_ordinary(t)) for t in ("Zürich!", " Ключ?")]
    assert enc.count_in_python(["東京"]) is None  # outside the characters checked above
    assert enc.count_in_python(["x" * (encodings.PYTHON_BPE_CHARS + 1)]) is None  # long: a core is cheaper
    assert enc.count_in_python(["a"] * (encodings.PYTHON_BPE_TEXTS + 1)) is None  # many: a small core is cheaper
    assert enc.count_in_python(["tab\there"]) is None  # control characters: not vouched for
    enc.full()
    assert enc.count_in_python(["hello"]) is None  # once the full core exists, it counts


def test_bpe_count_merges_as_tiktoken() -> None:
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"bc": 4, b"abc": 5}
    assert encodings.bpe_count(ranks, b"abc") == 1  # the piece's own rank
    del ranks[b"abc"]
    assert encodings.bpe_count(ranks, b"abc") == 2  # ab (rank 3) before bc (rank 4): "ab" + "c"
    assert encodings.bpe_count(ranks, b"abab") == 2  # equal pairs: the leftmost merges first
    assert encodings.bpe_count({b"a": 0}, b"aaa") == 3  # nothing to merge
