"""What keeps memory flat at any example count, and what reuses token counts: exact, and bounded.

- `Histogram` distributions are bit-for-bit numpy's on the full array;
- the token-count cache changes no figure of any report, and never holds more than its bounds;
- the duplicate finder is exact below its capacity, and above it reports only real duplicates with their
  true first line, finds every duplicate of the content it samples, and never holds more than its capacity;
- validating 4x the examples does not take more memory (tracemalloc, numpy's buffers included).
"""

from __future__ import annotations

import json
import random
import tracemalloc
from typing import Any

import numpy as np
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.validation import ValidationOptions, chunk_counts, encodings, validate
from shared.validation import duplicates as duplicates_module
from shared.validation import tokens as tokens_module
from shared.validation.duplicates import DuplicateFinder
from shared.validation.statistics import Histogram, distribution
from shared.validation.tokens import TokenCache

from .examples import jsonl

_WORDS = "the support desk answers billing questions about invoices refunds and 東京 café ключ accounts".split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


def _realistic(n: int, *, prompts: int = 3, seed: int = 1) -> bytes:
    """Chat examples that each take one of a few long system prompts (most real datasets look so)."""
    rng = random.Random(seed)
    systems = [f"You are assistant {k}. " + _text(rng, 120) for k in range(prompts)]
    examples = []
    for i in range(n):
        msgs: list[dict[str, Any]] = [{"role": "system", "content": rng.choice(systems)}]
        for _ in range(rng.randint(1, 3)):
            msgs.append({"role": "user", "content": f"{i}: " + _text(rng, rng.randint(3, 90))})
            msgs.append({"role": "assistant", "content": _text(rng, rng.randint(3, 60))})
        examples.append({"messages": msgs})
    return jsonl(examples)


class _SpyCache(TokenCache):
    made: list[_SpyCache] = []

    def __init__(self) -> None:
        super().__init__()
        _SpyCache.made.append(self)


class _NoCache(TokenCache):
    MIN_CHARS = 1 << 60  # no text is long enough: every count comes from tiktoken


# ---- histograms --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 200_000), min_size=1, max_size=400),
    st.integers(1, 6),
)
def test_histogram_distribution_is_numpys(values: list[int], parts: int) -> None:
    h = Histogram()
    for part in np.array_split(np.asarray(values, dtype=np.int64), parts):
        h.add(part)
    assert h.distribution() == distribution(values)


def test_histogram_memory_follows_distinct_values_not_count() -> None:
    h = Histogram()
    for _ in range(50):
        h.add(np.full(100_000, 7, dtype=np.int64))
    values, counts = h.values_and_counts()
    assert values.tolist() == [7] and counts.tolist() == [5_000_000]
    assert h._dense.nbytes <= 8 * Histogram.DENSE


# ---- token-count cache -------------------------------------------------------------------------------


def test_cache_gives_identical_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _realistic(400)
    _SpyCache.made.clear()
    monkeypatch.setattr("shared.validation.validator.TokenCache", _SpyCache)
    cached = validate(data)
    monkeypatch.setattr("shared.validation.validator.TokenCache", _NoCache)
    uncached = validate(data)
    assert cached.model_dump() == uncached.model_dump()
    (cache,) = _SpyCache.made
    assert cache.hits >= 390  # every repeat of a system prompt after its second sighting
    assert len(cache) == 3


def test_cache_counts_equal_tiktoken_per_example() -> None:
    data = _realistic(60)
    enc = tiktoken.get_encoding("o200k_base")
    expected = []
    for raw in data.splitlines():
        msgs = json.loads(raw)["messages"]
        expected.append(3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode_ordinary(m["content"])) for m in msgs))
    report = validate(data)
    assert report.tokens is not None
    assert report.tokens.total == sum(expected)
    assert report.tokens.tokens_per_example == distribution(expected)


def test_cache_never_confuses_strings_of_one_length_and_the_same_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission looks at length and ends only; a count is reused only for the very same string."""
    head, tail = "x" * 40, "y" * 40
    middles = ["hello world again " * 10, "billing refund now " * 10, "日本語のテキストです" * 18]
    width = max(len(m) for m in middles)
    texts = [head + m.ljust(width, ".")[:width] + tail for m in middles]
    assert len({len(t) for t in texts}) == 1
    examples = [
        {
            "messages": [
                {"role": "system", "content": texts[i % 3]},
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": "a"},
            ]
        }
        for i in range(30)
    ]
    data = jsonl(examples)
    cached = validate(data)
    monkeypatch.setattr("shared.validation.validator.TokenCache", _NoCache)
    assert cached.model_dump() == validate(data).model_dump()


def test_cache_bounds() -> None:
    cache = TokenCache()
    for i in range(3 * TokenCache.MAX_ENTRIES):
        text = f"{i:08d}" + "z" * TokenCache.MIN_CHARS
        cache.put(text, i)
        assert len(cache) <= TokenCache.MAX_ENTRIES
        assert cache.chars <= TokenCache.MAX_CHARS
    last = f"{3 * TokenCache.MAX_ENTRIES - 1:08d}" + "z" * TokenCache.MIN_CHARS
    assert cache.get(last) == 3 * TokenCache.MAX_ENTRIES - 1
    assert cache.get("00000000" + "z" * TokenCache.MIN_CHARS) is None  # the oldest left first
    big = "w" * (TokenCache.MAX_CHARS // 2 + 1)
    cache.put(big, 1)
    cache.put(big.replace("w", "v"), 2)
    assert cache.chars <= TokenCache.MAX_CHARS
    assert cache.get(big) is None and cache.get(big.replace("w", "v")) == 2
    for i in range(2 * TokenCache.MAX_SEEN):
        cache.wanted(f"{i}" + "q" * TokenCache.MIN_CHARS)
    assert len(cache._seen) <= TokenCache.MAX_SEEN


# ---- duplicates --------------------------------------------------------------------------------------


def _brute_force(keys: list[int], threshold: int = 1 << 64) -> tuple[list[tuple[int, int]], int]:
    first: dict[int, int] = {}
    found = []
    for line, key in enumerate(keys, start=1):
        if key >= threshold:
            continue
        if key in first:
            found.append((line, first[key]))
        else:
            first[key] = line
    return found, len(found)


def _feed(finder: DuplicateFinder, keys: list[int]) -> None:
    for line, key in enumerate(keys, start=1):
        finder.add(key, line)
    finder.finish()


def test_duplicates_exact_below_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DuplicateFinder, "PENDING", 64)
    rng = random.Random(3)
    keys = [rng.getrandbits(64) if rng.random() < 0.6 else rng.choice([11, 12, 13]) for _ in range(5000)]
    finder = DuplicateFinder(keep=10**6)
    _feed(finder, keys)
    expected, count = _brute_force(keys)
    assert finder.sampled_fraction == 1.0
    assert finder.found == count
    assert finder.first == expected


def test_duplicates_sampled_above_capacity_are_real_and_complete_for_the_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DuplicateFinder, "PENDING", 50)
    capacity = 256
    rng = random.Random(4)
    pool = [rng.getrandbits(64) for _ in range(300)]  # repeated content
    keys = [rng.getrandbits(64) if rng.random() < 0.5 else rng.choice(pool) for _ in range(6000)]
    finder = DuplicateFinder(keep=10**6, capacity=capacity)
    for line, key in enumerate(keys, start=1):
        finder.add(key, line)
        assert finder.keys.size <= capacity
    finder.finish()
    assert finder.keys.size <= capacity
    assert finder.sampled_fraction < 1.0
    truth, _ = _brute_force(keys)
    true_pairs = set(truth)
    assert set(finder.first) <= true_pairs  # nothing invented, first lines right
    in_sample, _ = _brute_force(keys, threshold=finder.threshold)
    assert set(in_sample) <= set(finder.first)  # every duplicate of sampled content found
    assert finder.first == sorted(finder.first)


def test_overlap_against_the_training_finder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DuplicateFinder, "PENDING", 16)
    train = DuplicateFinder(keep=100)
    _feed(train, [10, 20, 30, 20])
    valid = DuplicateFinder(keep=100, reference=train)
    _feed(valid, [5, 30, 30, 10, 7])
    assert valid.overlaps == 3
    assert valid.first_overlaps == [(2, 3), (3, 3), (4, 1)]
    assert valid.found == 1 and valid.first == [(3, 2)]


def test_duplicate_report_keeps_counting_past_the_listing() -> None:
    line = {"messages": [{"role": "user", "content": "same"}, {"role": "assistant", "content": "same"}]}
    report = validate(jsonl([line] * 500), options=ValidationOptions(max_listed_warnings=5))
    assert report.counts["duplicate_example"] == 499
    listed = [w for w in report.warnings if w.code == "duplicate_example"]
    assert [w.line for w in listed][:3] == [2, 3, 4]
    assert all(w.message == "duplicate of line 1" for w in listed)


def test_sampling_is_said_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duplicates_module.DuplicateFinder, "CAPACITY", 64)
    monkeypatch.setattr(duplicates_module.DuplicateFinder, "PENDING", 32)
    lines = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(400)
    ]
    report = validate(jsonl(lines + lines))
    dups = [w for w in report.warnings if w.code == "duplicate_example"]
    assert 0 < report.counts["duplicate_example"] < 400
    assert all("sample" in w.message for w in dups)
    for w in dups:
        assert w.line is not None and w.message.startswith(f"duplicate of line {w.line - 400} ")


# ---- memory at any example count ---------------------------------------------------------------------


def _peak(data: bytes, process: bool) -> int:
    tracemalloc.start()
    try:
        validate(data, options=ValidationOptions(threads=1, counting_process=process))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("process", [False, True], ids=["threads", "counting process"])
def test_memory_does_not_grow_with_the_example_count(monkeypatch: pytest.MonkeyPatch, process: bool) -> None:
    # every bounded buffer small, so that both runs fill them: what is left to grow is per-example state
    monkeypatch.setattr(DuplicateFinder, "CAPACITY", 4096)
    monkeypatch.setattr(DuplicateFinder, "PENDING", 2048)
    monkeypatch.setattr(Histogram, "BUFFER", 2048)
    monkeypatch.setattr(tokens_module.TokenPipeline, "BATCH_CHARS", 64 * 1024)
    monkeypatch.setattr(chunk_counts, "MAX_BITS", chunk_counts.MIN_BITS)  # the chunk table at its bound too
    monkeypatch.setattr(chunk_counts, "MAX_ENTRIES", (1 << chunk_counts.MIN_BITS) // 2)
    monkeypatch.setattr(encodings.encoding("o200k_base"), "chunk_counts", chunk_counts.ChunkCounts())

    def tiny(n: int) -> bytes:
        return b"".join(
            b'{"messages":[{"role":"user","content":"q %d"},{"role":"assistant","content":"ok"}]}\n' % i
            for i in range(n)
        )

    validate(tiny(10))  # tokenizer loaded and cached before measuring
    small, large = _peak(tiny(20_000), process), _peak(tiny(100_000), process)
    # per-example state of the old kind (a hash, a line and four counts) would add 28 bytes x 80,000 = 2.2 MB;
    # what may differ between two runs is which batches are in flight at the peak (well under 1 MB)
    assert large - small < 1_000_000, (small, large)


def test_overlap_stays_exact_when_the_validation_file_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DuplicateFinder, "PENDING", 16)
    rng = random.Random(5)
    train_keys = [rng.getrandbits(64) for _ in range(100)]
    train = DuplicateFinder(keep=10**6, capacity=120)
    _feed(train, train_keys)
    assert train.sampled_fraction == 1.0
    shared = rng.sample(train_keys, 50)
    valid_keys = [rng.getrandbits(64) for _ in range(450)] + shared
    rng.shuffle(valid_keys)
    valid = DuplicateFinder(keep=10**6, reference=train, capacity=120)
    _feed(valid, valid_keys)
    assert valid.sampled_fraction < 1.0  # its own duplicates are sampled...
    assert valid.overlaps == 50  # ...its overlap with the training file is not
    where = {k: i for i, k in enumerate(train_keys, start=1)}
    assert valid.first_overlaps == [(i, where[k]) for i, k in enumerate(valid_keys, start=1) if k in where]


def _merged_by_insert(keys: np.ndarray, lines: np.ndarray, new_keys: np.ndarray, new_lines: np.ndarray) -> tuple:
    """What the in-place merge must give: numpy's own insert (the finder's previous way, two copies at once)."""
    at = np.searchsorted(keys, new_keys)
    return np.insert(keys, at, new_keys), np.insert(lines, at, new_lines)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 5000), st.integers(1, 3000), st.sampled_from([7, 64, 1 << 16]))
def test_the_in_place_merge_is_numpys_insert(seed: int, n: int, m: int, step: int) -> None:
    """Slices smaller and larger than the array, new keys before, between and after the present ones."""
    rng = np.random.default_rng(seed)
    pool = rng.choice(np.arange(1, 4 * (n + m), dtype=np.uint64), size=n + m, replace=False)
    old, new = np.sort(pool[:n]), np.sort(pool[n:])
    old_lines = rng.integers(1, 10**6, size=n).astype(np.uint32)
    new_lines = rng.integers(1, 10**6, size=m).astype(np.uint32)
    finder = DuplicateFinder(10, capacity=n + m)
    finder._keys[:n], finder._lines[:n], finder._n = old, old_lines, n
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DuplicateFinder, "_STEP", step)
        finder._insert(new, new_lines)
        keys, lines = _merged_by_insert(old, old_lines, new, new_lines)
        assert finder.keys.tolist() == keys.tolist() and finder.lines.tolist() == lines.tolist()
        threshold = np.uint64(int(keys[len(keys) // 2]))
        finder._keep_below(threshold)
        kept = keys < threshold
        assert finder.keys.tolist() == keys[kept].tolist() and finder.lines.tolist() == lines[kept].tolist()


def test_duplicates_are_found_as_with_numpys_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many flushes into a small capacity (the threshold halves several times), in slices smaller than the
    array: duplicates, first lines, the sample and the kept hashes are those of the same finder merging with
    `np.insert` and compacting with a mask (its previous way)."""
    monkeypatch.setattr(DuplicateFinder, "PENDING", 97)
    monkeypatch.setattr(DuplicateFinder, "_STEP", 50)
    rng = random.Random(11)
    distinct = [rng.getrandbits(64) for _ in range(3000)]
    keys = [rng.choice(distinct) if rng.random() < 0.4 else rng.getrandbits(64) for _ in range(6000)]

    class ByInsert(DuplicateFinder):
        def _insert(self, new_keys: Any, new_lines: Any) -> None:
            merged = _merged_by_insert(self.keys, self.lines, new_keys, new_lines)
            self._keys, self._lines, self._n = merged[0], merged[1], merged[0].size

        def _keep_below(self, threshold: Any) -> None:
            kept = self.keys < threshold
            self._keys, self._lines = self.keys[kept], self.lines[kept]
            self._n = self._keys.size

    finder, oracle = DuplicateFinder(keep=10**6, capacity=700), ByInsert(keep=10**6, capacity=700)
    _feed(finder, keys)
    _feed(oracle, keys)
    assert finder.sampled_fraction < 0.25  # halved at least twice
    assert (finder.found, finder.first, finder.threshold) == (oracle.found, oracle.first, oracle.threshold)
    assert finder.found > 100
    assert finder.keys.tolist() == oracle.keys.tolist() and finder.lines.tolist() == oracle.lines.tolist()
