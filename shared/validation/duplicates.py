"""Duplicate lines, and validation lines found in the training file, in memory with a fixed bound.

Each line is known by a 64-bit hash of its bytes (stripped). Hashes wait in a small buffer; every
`PENDING` lines the buffer is sorted and looked up (numpy, in bulk) in a sorted array of the distinct
hashes seen so far, each with the first line it came from, and the new ones are merged in. A line whose
hash is already there is a duplicate of that first line.

Memory is bounded whatever the number of lines: the sorted array holds at most `CAPACITY` hashes (12 bytes
each: 12 MB), in buffers allocated once and merged into in place (a merge holds about 1 MB more, not a
second copy). A file with more distinct lines than that switches to
a sample chosen by hash value: only hashes below a threshold are kept, and the threshold halves each time
the array fills again. A line is in the sample or not by its content alone, so every copy of a sampled line
is seen and its duplicates are reported exactly, with the right first line; copies of unsampled lines are
not looked for. `sampled_fraction` says which fraction was looked at (1.0: every line; the report says so
when it is less). Reported duplicates are real up to a collision of 64-bit hashes (probability below
n^2 / 2^65: under 1e-7 for a million distinct lines).
"""

from __future__ import annotations

from array import array

import numpy as np
import numpy.typing as npt

_U64 = npt.NDArray[np.uint64]
_U32 = npt.NDArray[np.uint32]
_ALL = 1 << 64


class DuplicateFinder:
    """Feed (hash, line) in line order with `add`; `finish` once. Then `found` duplicates were seen, the
    first `keep` of them in `first` as (line, first line); with a `reference` (the training file's finder),
    lines whose hash is in the reference are also counted in `overlaps` / `first_overlaps`."""

    CAPACITY = 1 << 20
    PENDING = 1 << 16

    def __init__(self, keep: int, *, reference: DuplicateFinder | None = None, capacity: int | None = None) -> None:
        self.keep = keep
        self.capacity = capacity or self.CAPACITY
        self.reference = reference
        self.threshold: int = _ALL
        if reference is not None:  # one budget for both files; the same sample, or a smaller one
            self.threshold = reference.threshold
            self.capacity = max(self.PENDING, self.capacity - len(reference.keys))
        # The sorted hashes and their first lines: the first `_n` slots of buffers allocated once (pages are
        # only committed as they fill), merged into in place, so a merge holds no second copy of them.
        self._keys: _U64 = np.zeros(self.capacity + self.PENDING, dtype=np.uint64)
        self._lines: _U32 = np.zeros(self.capacity + self.PENDING, dtype=np.uint32)
        self._n = 0
        self._pending_keys = array("Q")
        self._pending_lines = array("I")
        self.found = 0
        self.first: list[tuple[int, int]] = []
        self.overlaps = 0
        self.first_overlaps: list[tuple[int, int]] = []

    @property
    def keys(self) -> _U64:
        return self._keys[: self._n]

    @property
    def lines(self) -> _U32:
        return self._lines[: self._n]

    @property
    def sampled_fraction(self) -> float:
        return self.threshold / _ALL

    def add(self, key: int, line: int) -> None:
        self._pending_keys.append(key)
        self._pending_lines.append(line)
        if len(self._pending_keys) >= self.PENDING:
            self.flush()

    def finish(self) -> None:
        self.flush()

    def flush(self) -> None:
        if not self._pending_keys:
            return
        keys = np.array(self._pending_keys, dtype=np.uint64)
        lines = np.array(self._pending_lines, dtype=np.uint32)
        self._pending_keys = array("Q")
        self._pending_lines = array("I")
        if self.reference is not None:  # against the reference's sample, whatever this finder's own
            hit, their_lines = self.reference.lookup(keys)
            self.overlaps += int(hit.sum())
            _keep_first(self.first_overlaps, self.keep, lines[hit], their_lines[hit])
        if self.threshold < _ALL:
            sampled = keys < np.uint64(self.threshold)
            keys, lines = keys[sampled], lines[sampled]
        if not keys.size:
            return
        order = np.argsort(keys, kind="stable")  # equal hashes stay in line order
        keys, lines = keys[order], lines[order]
        run_start = np.empty(keys.size, dtype=bool)
        run_start[0] = True
        np.not_equal(keys[1:], keys[:-1], out=run_start[1:])
        run = np.cumsum(run_start) - 1
        run_keys, run_lines = keys[run_start], lines[run_start]
        known, known_lines = self.lookup(run_keys)
        first_line = np.where(known, known_lines, run_lines)
        duplicate = ~run_start | known[run]
        dup_lines = lines[duplicate]
        if dup_lines.size:
            self.found += int(dup_lines.size)
            order = np.argsort(dup_lines, kind="stable")
            _keep_first(self.first, self.keep, dup_lines[order], first_line[run][duplicate][order])
        new = ~known
        if new.any():
            self._insert(run_keys[new], run_lines[new])
        while self._n > self.capacity:
            self.threshold //= 2
            self._keep_below(np.uint64(self.threshold))

    _STEP = 1 << 16  # elements moved per numpy call in the in-place merge and compaction

    def _insert(self, new_keys: _U64, new_lines: _U32) -> None:
        """Merge sorted keys none of which is present yet into the sorted buffer, in place: the present ones
        move up from the back, a slice at a time (each lands at or above where it was, above every slice not
        yet moved), then the new ones go into the gaps left for them."""
        n, m = self._n, int(new_keys.size)
        keys, lines = self._keys, self._lines
        at = np.searchsorted(keys[:n], new_keys) + np.arange(m)  # where each new key ends up
        for hi in range(n, 0, -self._STEP):
            lo = max(0, hi - self._STEP)
            moving = keys[lo:hi].copy()
            dest = np.searchsorted(new_keys, moving, side="right") + np.arange(lo, hi)
            lines[dest] = lines[lo:hi].copy()
            keys[dest] = moving
        keys[at] = new_keys
        lines[at] = new_lines
        self._n = n + m

    def _keep_below(self, threshold: np.uint64) -> None:
        """Drop the keys at or above `threshold`, in place, a slice at a time from the front."""
        keys, lines = self._keys, self._lines
        kept = 0
        for lo in range(0, self._n, self._STEP):
            hi = min(self._n, lo + self._STEP)
            below = keys[lo:hi] < threshold
            count = int(below.sum())
            keys[kept : kept + count] = keys[lo:hi][below]
            lines[kept : kept + count] = lines[lo:hi][below]
            kept += count
        self._n = kept

    def lookup(self, keys: _U64) -> tuple[npt.NDArray[np.bool_], _U32]:
        """For each hash: whether it is known, and the first line it came from (meaningless where not)."""
        if not self.keys.size:
            return np.zeros(keys.size, dtype=bool), np.zeros(keys.size, dtype=np.uint32)
        at = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return self.keys[at] == keys, self.lines[at]


def _keep_first(kept: list[tuple[int, int]], keep: int, lines: _U32, firsts: _U32) -> None:
    room = keep - len(kept)
    if room > 0 and lines.size:
        kept += zip(lines[:room].tolist(), firsts[:room].tolist(), strict=True)
