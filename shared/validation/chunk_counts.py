r"""Exact token counts of short chunks, kept in a bounded table and looked up a whole batch at a time.

Most of a file's tokens are the same few thousand words again and again. tiktoken cuts every text with its
regex and looks every piece up anew; this table remembers the count of each short *chunk* it has seen, so a
batch's counts become a few numpy passes over its bytes, and tiktoken sees only chunks not seen before.

**Why a chunk's count can be reused (exactness).** `encodings.chunks` cuts a text before every space that
follows a non-whitespace character, and in both chunkable patterns (o200k_base, cl100k_base) a piece never
holds such a space, so each chunk holds whole pieces (the proof is in encodings.py). Each chunk is also cut
into the same pieces alone as inside its text: neither pattern looks behind, so from a cut on the regex sees
the same characters; before a cut, a match sees the same characters except at the chunk's end, and the only
assertions behave the same there: `(?!\S)` holds both before the space that follows inside the text and at
the end alone, and cl100k's `\s++$` cannot match at the end alone because the chunk's last character is not
whitespace. The matches tried in the text that would have run past the cut all failed (no piece crosses a
cut), so alone the same match is found. tiktoken then encodes piece by piece (lib.rs: the whole piece's rank,
else `byte_pair_encode` over its bytes). So tokens(text) = the sum of tokens(chunk) over its chunks, and a
chunk's count depends on the chunk alone. Hypothesis checks both against tiktoken
(tests/validation/test_chunk_counts.py).

**Keys are the bytes, never a hash.** A chunk of 1-15 UTF-8 bytes is kept as two little-endian 64-bit words,
the second with the length in its top byte, so two keys are equal only for the same bytes. The hash only
picks the slot (open addressing, linear probing). A longer chunk gets length 16 in its key, which no kept key
has, so it is never found and tiktoken counts it each time.

**Bounded.** At most `MAX_ENTRIES` (65,536) chunks, in a table grown by doubling while it is more than a
quarter full, up to 2**18 slots (4.5 MB). Chunks are added until it is full and then it is kept as it is,
as Hugging Face tokenizers' BPE word cache does (tokenizers/src/utils/cache.rs: 10,000 words, no insert
past capacity): the words seen first in a file are its frequent ones. Inserting copies the table and swaps
it in whole, so a thread reading it never sees half an entry. One table per encoding serves every
validation in the process.

**Where it runs.** All of the numpy work runs on the parsing thread: on a worker thread each numpy call, which
releases the GIL, would then wait for the parsing thread to hand it back (a CPU-bound thread keeps it for the
switch interval, 5 ms). `look_up` finds what it can, a worker counts `Pending.missing()` with one tiktoken
call (which releases the GIL for all of it), and `Pending.fill`, back on the parsing thread, adds those
counts up and keeps them. Cuts are found on the UTF-8 bytes exactly
as `encodings.chunks` finds them on the string (the character before the space is whitespace to
`str.isspace`: ASCII by a table, the 19 other code points by their 2- or 3-byte encodings); a test checks
that over every code point.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

_I64 = npt.NDArray[np.int64]
_U64 = npt.NDArray[np.uint64]

MAX_CHUNK_BYTES = 15  # 8 + 7 bytes in two words, the length in the top byte of the second
MIN_BITS = 12  # the table starts with 2**12 slots and doubles while it is more than a quarter full ...
MAX_BITS = 18  # ... up to 2**18 slots (4.5 MB)
MAX_ENTRIES = (1 << MAX_BITS) // 4  # a table at most a quarter full finds most keys at the first probe
_M1 = np.uint64(0x9E3779B97F4A7C15)  # an odd multiplier (2**64 / the golden ratio): Fibonacci hashing
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_LENGTH_SHIFT = np.uint64(56)

# str.isspace over bytes: the ASCII whitespace by a table, the other 19 code points by their encodings.
_ASCII_SPACE = np.zeros(256, dtype=np.bool_)
_ASCII_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True
_SPACE_2 = np.array([0xC285, 0xC2A0], dtype=np.uint32)  # U+0085, U+00A0
_SPACE_3 = np.array(  # U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000
    [0xE19A80, *range(0xE28080, 0xE2808B), 0xE280A8, 0xE280A9, 0xE280AF, 0xE2819F, 0xE38080], dtype=np.uint32
)
SLICE_CHARS = 128 * 1024  # characters counted per numpy pass
_LAST_OF_SPACE = np.zeros(256, dtype=np.bool_)  # the last bytes of those 19 encodings
_LAST_OF_SPACE[[c & 0xFF for c in (*_SPACE_2.tolist(), *_SPACE_3.tolist())]] = True
_FRONT = 3  # zero bytes before the data: the 3-byte look-back at a space near the start
_BACK = 16  # zero bytes after it: two 8-byte reads at the last chunk


@dataclass(frozen=True)
class _Table:
    words1: _U64
    words2: _U64  # 0 marks an empty slot (a key's second word holds its length, never 0)
    counts: npt.NDArray[np.uint8]
    entries: int
    probes: int  # the longest probe sequence in the table: how many rounds a lookup needs at most

    @classmethod
    def empty(cls, bits: int | None = None) -> _Table:
        size = 1 << (MIN_BITS if bits is None else bits)
        zeros = np.zeros(size, dtype=np.uint64)
        return cls(zeros, zeros.copy(), np.zeros(size, dtype=np.uint8), 0, 1)

    @property
    def bits(self) -> int:
        return self.words1.size.bit_length() - 1

    def slots(self, words1: _U64, words2: _U64) -> _I64:
        shift = np.uint64(64 - self.bits)
        return (((words1 ^ words2) * _M1) >> shift).astype(np.int64)


@dataclass
class _Chunked:
    """A batch as UTF-8 bytes cut into chunks: where each chunk starts and how long it is."""

    data: bytes  # the padded bytes
    starts: _I64  # chunk starts, offsets into the unpadded bytes
    lengths: _I64
    text_starts: _I64
    text_ends: _I64


def _chunked(texts: Sequence[str], ends: _I64 | None = None) -> _Chunked:
    """`ends`: where each text ends, in characters from the first (the caller's, when it has them). Raises
    UnicodeEncodeError for a text with a lone surrogate."""
    if ends is None:
        ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    joined = "".join(texts)
    encoded = joined.encode("utf-8")
    n = len(encoded)
    data = bytes(_FRONT) + encoded + bytes(_BACK)
    del encoded
    raw = np.frombuffer(data, dtype=np.uint8)
    body = raw[_FRONT : _FRONT + n]
    if n != len(joined):  # not all ASCII: a character ends where the next one's first byte is
        ends = np.flatnonzero(np.append((body & 0xC0) != 0x80, True))[ends]  # True: the end, after the last
    del joined
    text_starts = np.concatenate((np.zeros(1, dtype=np.int64), ends[:-1]))
    is_start = np.zeros(n + 1, dtype=np.bool_)
    spaces = np.flatnonzero(body[1:] == 0x20) + 1  # a space at offset 0 is a text start anyway
    before = body[spaces - 1]
    cut = ~_ASCII_SPACE[before]
    wide = np.flatnonzero(_LAST_OF_SPACE[before])
    if wide.size:  # the byte before ends a character that may be one of the 19: compare its 2 or 3 bytes
        at = spaces[wide] + _FRONT
        two = (raw[at - 2].astype(np.uint32) << 8) | raw[at - 1]
        three = (raw[at - 3].astype(np.uint32) << 16) | two
        cut[wide] = ~(np.isin(two, _SPACE_2) | np.isin(three, _SPACE_3))
    is_start[spaces[cut]] = True
    is_start[text_starts] = True  # a cut before a space that starts a text would use the previous text
    starts = np.flatnonzero(is_start[:n])
    lengths = np.diff(starts, append=n)
    return _Chunked(data, starts, lengths, text_starts, ends)


@dataclass
class _Waiting:
    """One slice of a batch after its look-up: each chunk's count (-1: missing), each text's chunks, and for
    the missing ones the distinct texts to count and where their counts go."""

    start: int  # the slice's first text in the batch
    counts: npt.NDArray[np.int32] | _I64  # int32 while kept waiting
    first: npt.NDArray[np.int32] | _I64  # each text's chunks: counts[first[i]:last[i]]
    last: npt.NDArray[np.int32] | _I64
    missing: _I64
    texts: list[str] = field(default_factory=list)  # distinct chunks to count
    todo: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # chunks counted
    todo_text: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # their texts
    short: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # missing, short
    again: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # short -> todo
    distinct: int = 0  # todo[:distinct] are the short chunks, one per key; the rest are long
    new: tuple[_U64, _U64] = field(default_factory=lambda: (np.zeros(0, np.uint64), np.zeros(0, np.uint64)))

    def per_text(self) -> _I64:
        cumulative = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(self.counts, dtype=np.int64)))
        result: _I64 = cumulative[self.last] - cumulative[self.first]
        return result


@dataclass
class Pending:
    """A batch's counts after the look-up: complete for the slices that had every chunk, the rest waiting."""

    counts: _I64
    waiting: list[_Waiting]
    owner: ChunkCounts

    def missing(self) -> list[str]:
        """The distinct chunks the table did not have, to be counted (each as alone) for `fill`."""
        return [t for w in self.waiting for t in w.texts]

    def fill(self, counted: _I64) -> _I64:
        """Every text's count, given the counts of `missing()`; the short ones go into the table."""
        at = 0
        for w in self.waiting:
            mine = counted[at : at + len(w.texts)]
            at += len(w.texts)
            w.counts[w.todo] = mine[w.todo_text]
            distinct = w.todo[: w.distinct]
            w.counts[w.short] = w.counts[distinct][w.again]
            self.owner._add(*w.new, w.counts[distinct].astype(np.int64))
            self.counts[w.start : w.start + w.first.size] = w.per_text()
        self.waiting = []
        return self.counts

    def complete(self, count_exact: Callable[[Sequence[str]], _I64]) -> _I64:
        """`fill` with `count_exact(missing())`: every text's count."""
        return self.fill(count_exact(self.missing())) if self.waiting else self.counts


class ChunkCounts:
    """Token counts of short chunks for one encoding; thread-safe (see the module's docstring)."""

    def __init__(self) -> None:
        self._table = _Table.empty()
        self._lock = threading.Lock()
        self.chunks = 0  # looked up so far, and found: for the benchmark (updated without a lock)
        self.found = 0

    def __len__(self) -> int:
        return self._table.entries

    def count(self, texts: Sequence[str], count_exact: Callable[[Sequence[str]], _I64]) -> _I64 | None:
        """Token count of each text, as `count_exact` would give it; `count_exact` counts the chunks not in
        the table (each as alone). None when a text cannot be UTF-8 encoded (a lone surrogate)."""
        pending = self.look_up(texts)
        return None if pending is None else pending.complete(count_exact)

    def look_up(self, texts: Sequence[str]) -> Pending | None:
        """Every text's chunks looked up; what is missing is counted by `Pending.complete`, which may run on
        another thread (it calls tiktoken, which releases the GIL, and puts the new counts in the table).
        None when a text cannot be UTF-8 encoded (a lone surrogate).

        Texts go through in slices of about `SLICE_CHARS`, which bounds the numpy arrays a call holds."""
        result = np.zeros(len(texts), dtype=np.int64)
        pending = Pending(result, [], self)
        if not texts:
            return pending
        ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
        cuts = np.searchsorted(ends, np.arange(SLICE_CHARS, int(ends[-1]), SLICE_CHARS)) + 1
        bounds = [0, *sorted(set(cuts.tolist()) - {0, len(texts)}), len(texts)]
        for start, stop in itertools.pairwise(bounds):
            try:
                batch = _chunked(texts[start:stop], ends[start:stop] - (ends[start - 1] if start else 0))
            except UnicodeEncodeError:
                return None
            waiting = self._look_up_slice(batch, start)
            if waiting.missing.size:
                pending.waiting.append(waiting)
            else:
                result[start:stop] = waiting.per_text()
        return pending

    def _look_up_slice(self, batch: _Chunked, start: int) -> _Waiting:
        starts, lengths = batch.starts, batch.lengths
        words1, words2 = self._keys(batch.data, starts, lengths)
        counts = self._lookup(self._table, words1, words2)
        missing = np.flatnonzero(counts < 0)
        self.chunks += int(starts.size)
        self.found += int(starts.size - missing.size)
        first = np.searchsorted(starts, batch.text_starts)
        last = np.searchsorted(starts, batch.text_ends)
        if not missing.size:
            return _Waiting(start, counts, first, last, missing)
        waiting = _Waiting(start, counts.astype(np.int32), first.astype(np.int32), last.astype(np.int32), missing)
        long = lengths[missing] > MAX_CHUNK_BYTES
        short = missing[~long]
        _, firsts, again = np.unique(_pairs(words1[short], words2[short]), return_index=True, return_inverse=True)
        distinct = short[firsts]  # one chunk per key: the others are the same bytes
        todo = np.concatenate((distinct, missing[long]))
        data = batch.data
        texts = [
            data[_FRONT + s : _FRONT + s + n].decode("utf-8")
            for s, n in zip(starts[todo].tolist(), lengths[todo].tolist(), strict=True)
        ]
        unique = dict.fromkeys(texts)  # a long chunk may repeat
        waiting.texts = list(unique)
        where = {t: i for i, t in enumerate(waiting.texts)}
        waiting.todo = todo.astype(np.int32)
        waiting.todo_text = np.fromiter((where[t] for t in texts), dtype=np.int32, count=len(texts))
        waiting.short = short.astype(np.int32)
        waiting.again = again.ravel().astype(np.int32)
        waiting.new = (words1[distinct], words2[distinct])
        waiting.distinct = int(distinct.size)
        return waiting

    @staticmethod
    def _keys(data: bytes, starts: _I64, lengths: _I64) -> tuple[_U64, _U64]:
        """Each chunk's bytes as two words, its length in the top byte of the second; a chunk over 15 bytes
        gets length 16 there (its first 15 bytes' key otherwise), which no kept key has: never found."""
        words = np.ndarray(shape=(len(data) - _FRONT - 7,), dtype="<u8", buffer=data, offset=_FRONT, strides=(1,))
        clipped = np.minimum(lengths, MAX_CHUNK_BYTES + 1)
        first = words[starts] & _LOW_BYTES[np.minimum(clipped, 8)]
        second = words[starts + 8] & _LOW_BYTES[np.minimum(np.maximum(clipped - 8, 0), 7)]
        return first, second | (clipped.astype(np.uint64) << _LENGTH_SHIFT)

    @staticmethod
    def _lookup(table: _Table, words1: _U64, words2: _U64) -> _I64:
        """Each key's count, -1 where it is not in the table."""
        slots = table.slots(words1, words2)
        kept = table.words2[slots]
        hit = (kept == words2) & (table.words1[slots] == words1)
        found = np.where(hit, table.counts[slots], np.int64(-1))
        todo = np.flatnonzero(~hit & (kept != 0))  # a different key in the slot: probe on
        mask = table.words1.size - 1
        for _ in range(table.probes - 1):
            if not todo.size:
                break
            at = slots[todo] = (slots[todo] + 1) & mask
            kept = table.words2[at]
            hit = (kept == words2[todo]) & (table.words1[at] == words1[todo])
            found[todo[hit]] = table.counts[at[hit]]
            todo = todo[~hit & (kept != 0)]
        return found

    def _add(self, words1: _U64, words2: _U64, counts: _I64) -> None:
        """Put the counts of short chunks just counted (one per key) into a copy of the table, then swap it in."""
        if not words1.size or self._table.entries >= MAX_ENTRIES:
            return
        with self._lock:
            table = self._table
            new = np.flatnonzero(self._lookup(table, words1, words2) < 0)  # not put in by another thread since
            new = new[: max(MAX_ENTRIES - table.entries, 0)]
            if not new.size:
                return
            entries = table.entries + int(new.size)
            bits = table.bits
            while (1 << bits) < 4 * entries and bits < MAX_BITS:
                bits += 1
            if bits == table.bits:
                grown = _Table(table.words1.copy(), table.words2.copy(), table.counts.copy(), 0, table.probes)
                keys = (words1[new], words2[new], counts[new])
            else:  # grow: every entry again, into the larger table
                grown = _Table.empty(bits)
                kept = np.flatnonzero(table.words2)
                keys = (
                    np.concatenate((table.words1[kept], words1[new])),
                    np.concatenate((table.words2[kept], words2[new])),
                    np.concatenate((table.counts[kept], counts[new])),
                )
            self._table = _place(grown, *keys, entries)


def _pairs(words1: _U64, words2: _U64) -> npt.NDArray[np.void]:
    """Two words per key as one 16-byte value, for `np.unique`."""
    return np.ascontiguousarray(np.stack((words1, words2), axis=1)).view(np.dtype((np.void, 16))).ravel()


def _place(table: _Table, words1: _U64, words2: _U64, counts: _I64 | npt.NDArray[np.uint8], entries: int) -> _Table:
    """Distinct keys, none in `table` yet, put into its (writable) arrays by linear probing, all keys at once:
    in each round every key not yet placed tries its next slot, and of the keys that try the same free slot
    the first takes it. So the slots before a key's, from its hash slot on, were taken when it passed them, as
    a lookup expects; the rounds needed are the table's new longest probe."""
    mask = table.words1.size - 1
    slots = table.slots(words1, words2)
    todo = np.arange(words1.size)
    probes, round_ = table.probes, 0
    while todo.size:
        round_ += 1
        at = slots[todo]
        free = table.words2[at] == 0
        taken, first = np.unique(at[free], return_index=True)
        winners = todo[free][first]
        table.words1[taken] = words1[winners]
        table.words2[taken] = words2[winners]
        table.counts[taken] = counts[winners]
        probes = max(probes, round_)
        placed = np.zeros(todo.size, dtype=np.bool_)
        placed[np.flatnonzero(free)[first]] = True
        todo = todo[~placed]
        slots[todo] = (slots[todo] + 1) & mask
    return _Table(table.words1, table.words2, table.counts, entries, probes)
