"""Distributions of per-example figures, and the default-epochs rule for the cost estimate.

Per-example figures are integers, so a distribution is kept as a histogram (`Histogram`): memory grows with
the number of distinct values, not with the number of examples, and the summary is exactly what numpy gives
on the full array (`np.percentile`'s default linear method, reproduced step for step in `_percentile`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from shared.epochs import default_epochs

if TYPE_CHECKING:  # the report's pydantic models load where a report is made: tokens.py forks before that
    from .report import Distribution, Estimate

# The service's default-epochs rule lives in shared.epochs (the emulator uses the same function).
__all__ = ["default_epochs", "distribution", "estimate"]


def distribution(values: Any) -> Distribution | None:
    """min, mean, median, p10, p90, max; percentiles interpolate linearly between ranks (numpy default)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return None
    p10, median, p90 = np.percentile(arr, [10, 50, 90])
    from .report import Distribution

    return Distribution(
        min=float(arr.min()),
        mean=round(float(arr.mean()), 3),
        median=float(median),
        p10=float(p10),
        p90=float(p90),
        max=float(arr.max()),
    )


class Histogram:
    """Counts of non-negative integer values: a dense array below `DENSE` and a dict above (rare values).

    Values wait in a buffer of at most `BUFFER` and are counted in one `np.bincount` when it fills.
    """

    DENSE = 1 << 16
    BUFFER = 1 << 16

    def __init__(self) -> None:
        self._dense = np.zeros(0, dtype=np.int64)
        self._sparse: dict[int, int] = {}
        self._buffer: list[npt.NDArray[Any]] = []
        self._buffered = 0
        self.count = 0

    def add(self, values: npt.NDArray[Any]) -> None:
        """Count every value of an integer array (negative values are not expected and raise)."""
        if not values.size:
            return
        self.count += int(values.size)
        self._buffer.append(values)
        self._buffered += int(values.size)
        if self._buffered >= self.BUFFER:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        values = np.concatenate(self._buffer)
        self._buffer, self._buffered = [], 0
        high = values >= self.DENSE
        if high.any():
            for v in values[high].tolist():
                self._sparse[v] = self._sparse.get(v, 0) + 1
            values = values[~high]
        counts = np.bincount(values)
        if counts.size > self._dense.size:
            grown = np.zeros(counts.size, dtype=np.int64)
            grown[: self._dense.size] = self._dense
            self._dense = grown
        self._dense[: counts.size] += counts

    def values_and_counts(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The distinct values in increasing order, and how often each occurs."""
        self._flush()
        present = np.flatnonzero(self._dense).astype(np.int64)
        high = sorted(self._sparse)
        values = np.concatenate((present, np.asarray(high, dtype=np.int64)))
        counts = np.concatenate((self._dense[present], np.asarray([self._sparse[v] for v in high], dtype=np.int64)))
        return values, counts

    def distribution(self) -> Distribution | None:
        """What `distribution` gives on the array of every value counted, computed from the counts alone."""
        if not self.count:
            return None
        values, counts = self.values_and_counts()
        cumulative = np.cumsum(counts)
        n = int(cumulative[-1])

        def at(rank: int) -> float:  # the value at 0-based position `rank` of the sorted array
            return float(values[int(np.searchsorted(cumulative, rank, side="right"))])

        p10, median, p90 = (_percentile(at, n, q) for q in (10, 50, 90))
        total = float(int(np.dot(values, counts)))  # exact below 2**53, as numpy's float64 sum of the array
        from .report import Distribution

        return Distribution(
            min=float(values[0]),
            mean=round(total / n, 3),
            median=median,
            p10=p10,
            p90=p90,
            max=float(values[-1]),
        )


def _percentile(at: Callable[[int], float], n: int, q: float) -> float:
    """numpy's linear percentile of a sorted array of `n` values, read through `at(rank)`.

    The same float64 steps as `numpy.percentile` (quantile q / 100, virtual index (n - 1) * quantile, gamma
    its fractional part, then `_lerp`), so results are bit-for-bit numpy's.
    """
    virtual = np.float64(n - 1) * (np.float64(q) / np.float64(100))
    if virtual >= n - 1:
        return at(n - 1)
    previous = np.floor(virtual)
    gamma = virtual - previous
    a = np.float64(at(int(previous)))
    b = np.float64(at(int(previous) + 1))
    diff = b - a
    result = b - diff * (np.float64(1) - gamma) if gamma >= 0.5 else a + diff * gamma
    return float(result)


def estimate(
    n_examples: int, billed_per_epoch: int, *, n_epochs: int | None, price_per_million_tokens: float | None
) -> Estimate:
    epochs = n_epochs if n_epochs is not None else default_epochs(n_examples)
    billed = billed_per_epoch * epochs
    cost = None if price_per_million_tokens is None else round(billed / 1_000_000 * price_per_million_tokens, 4)
    from .report import Estimate

    return Estimate(
        n_epochs=epochs,
        epochs_source="option" if n_epochs is not None else "default",
        billed_tokens=billed,
        price_per_million_tokens=price_per_million_tokens,
        cost=cost,
    )
