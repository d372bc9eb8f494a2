"""A deterministic train/validation split, streamed: nothing but 20 held-back lines is kept in memory.

Rule: each example line (trimmed, BOM and CR removed) goes to validation when the first 8 bytes of its
BLAKE2b hash, read as a fraction of 2**64, fall below `fraction`; to training otherwise. The same line
always lands on the same side, on any machine, whatever the order of the file.

So that both sides end up with at least 10 examples when the file has 20 or more, the 10 training lines
closest to the boundary (smallest hash) and the 10 validation lines closest to it (largest hash) are held
back until the end; if one side has fewer than 10, held-back lines of the other side move across, nearest
the boundary first, never taking the other side below 10. Held-back lines are written last.
Blank lines are dropped; lines are otherwise copied byte for byte (validate first).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import NamedTuple, Protocol

from .reading import Source, StreamFacts, iter_chunks, iter_lines
from .report import Estimate

MIN_PER_SIDE = 10
_SCALE = float(1 << 64)


class BinaryWritable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class SplitResult(NamedTuple):
    train_examples: int
    valid_examples: int
    train_bytes: int = 0
    valid_bytes: int = 0

    def usable(self, min_examples: int = MIN_PER_SIDE) -> bool:
        """Both sides may be uploaded: the service wants `min_examples` in *every* file, the validation one too.

        The same file-level rule as the validator's `too_few_examples`; per-line rules hold on both sides already
        (lines are copied byte for byte from a validated file).
        """
        return self.train_examples >= min_examples and self.valid_examples >= min_examples


def estimate_after_split(
    whole: Estimate, billed_per_epoch: int, result: SplitResult, *, n_epochs: int | None
) -> Estimate:
    """The estimate of the whole file redone for the examples actually trained on (the split's training side).

    Epochs follow the default-epochs rule on the training side's examples (unless `n_epochs` is given); billed
    tokens per epoch are the whole file's scaled by the training side's share of the bytes (the split does not
    re-tokenize).
    """
    from .statistics import estimate  # numpy is imported on first use (see shared.validation)

    total = result.train_bytes + result.valid_bytes
    share = result.train_bytes / total if total else 1.0
    return estimate(
        result.train_examples,
        round(billed_per_epoch * share),
        n_epochs=n_epochs,
        price_per_million_tokens=whole.price_per_million_tokens,
    )


def split_position(line: bytes) -> float:
    """Where a line falls in [0, 1): below `fraction` means validation."""
    return int.from_bytes(blake2b(line, digest_size=8).digest(), "big") / _SCALE


@dataclass
class Splitter:
    """Feed example lines (without end-of-line) to `add`; call `finish` once."""

    train_out: BinaryWritable
    valid_out: BinaryWritable
    fraction: float = 0.1
    salt: bytes = b""
    """Prefixed to every line before hashing: a second split with another salt is independent of the first
    (the test split uses b"test:", so it takes no more of the validation side than of the training side)."""
    train_written: int = 0
    valid_written: int = 0
    train_bytes: int = 0
    valid_bytes: int = 0
    _seq: int = 0
    # training lines nearest the boundary: max-heap on position (stored negated)
    _train_hold: list[tuple[float, int, bytes]] = field(default_factory=list)
    # validation lines nearest the boundary: min-heap on negated position = max position first out
    _valid_hold: list[tuple[float, int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be between 0 and 1 (exclusive), not {self.fraction}")

    def add(self, line: bytes) -> None:
        self._seq += 1
        pos = split_position(self.salt + line)
        if pos < self.fraction:
            # keep the 10 largest positions: min-heap on pos, evict the smallest
            item = (pos, self._seq, line)
            if len(self._valid_hold) < MIN_PER_SIDE:
                heapq.heappush(self._valid_hold, item)
                return
            evicted = heapq.heappushpop(self._valid_hold, item)
            self._write(self.valid_out, evicted[2], valid=True)
        else:
            # keep the 10 smallest positions: max-heap via negation, evict the largest
            item = (-pos, self._seq, line)
            if len(self._train_hold) < MIN_PER_SIDE:
                heapq.heappush(self._train_hold, item)
                return
            evicted = heapq.heappushpop(self._train_hold, item)
            self._write(self.train_out, evicted[2], valid=False)

    def _write(self, out: BinaryWritable, line: bytes, *, valid: bool) -> None:
        out.write(line + b"\n")
        if valid:
            self.valid_written += 1
            self.valid_bytes += len(line) + 1
        else:
            self.train_written += 1
            self.train_bytes += len(line) + 1

    def finish(self) -> SplitResult:
        train = self.train_written + len(self._train_hold)
        valid = self.valid_written + len(self._valid_hold)
        to_valid: list[tuple[float, int, bytes]] = []
        to_train: list[tuple[float, int, bytes]] = []
        if valid < MIN_PER_SIDE < train:
            k = min(MIN_PER_SIDE - valid, train - MIN_PER_SIDE, len(self._train_hold))
            nearest = sorted(self._train_hold, reverse=True)[:k]  # largest -pos = smallest pos
            to_valid = nearest
            self._train_hold = [x for x in self._train_hold if x not in nearest]
        elif train < MIN_PER_SIDE < valid:
            k = min(MIN_PER_SIDE - train, valid - MIN_PER_SIDE, len(self._valid_hold))
            nearest = sorted(self._valid_hold, reverse=True)[:k]  # largest pos
            to_train = nearest
            self._valid_hold = [x for x in self._valid_hold if x not in nearest]
        for _, _, line in sorted(self._train_hold + to_train, key=lambda x: x[1]):
            self._write(self.train_out, line, valid=False)
        for _, _, line in sorted(self._valid_hold + to_valid, key=lambda x: x[1]):
            self._write(self.valid_out, line, valid=True)
        self._train_hold, self._valid_hold = [], []
        return SplitResult(self.train_written, self.valid_written, self.train_bytes, self.valid_bytes)


def split_examples(
    source: Source,
    train_out: BinaryWritable,
    valid_out: BinaryWritable,
    *,
    fraction: float = 0.1,
    chunk_size: int = 1 << 20,
    salt: bytes = b"",
) -> SplitResult:
    """Split a JSONL stream into training and validation JSONL (see the module docstring for the rule)."""
    splitter = Splitter(train_out, valid_out, fraction, salt)
    facts = StreamFacts()
    for _, raw in iter_lines(iter_chunks(source, chunk_size), facts, max_bytes=1 << 62, max_line_bytes=1 << 62):
        if raw is None:
            continue
        line = raw.strip()
        if line:
            splitter.add(line)
    return splitter.finish()
