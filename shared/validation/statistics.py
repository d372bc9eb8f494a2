"""Distributions of per-example figures, and the default-epochs rule for the cost estimate."""

from __future__ import annotations

from typing import Any

import numpy as np

from .report import Distribution, Estimate

# The OpenAI cookbook's rule (Chat_finetuning_data_prep.ipynb), which the service's "auto" epochs follow.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def distribution(values: Any) -> Distribution | None:
    """min, mean, median, p10, p90, max; percentiles interpolate linearly between ranks (numpy default)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return None
    p10, median, p90 = np.percentile(arr, [10, 50, 90])
    return Distribution(
        min=float(arr.min()),
        mean=round(float(arr.mean()), 3),
        median=float(median),
        p10=float(p10),
        p90=float(p90),
        max=float(arr.max()),
    )


def default_epochs(n_examples: int) -> int:
    """3 epochs; raised so at least 100 examples are seen (at most 25); lowered so at most 25,000 are.

    Lowering starts once examples x 3 exceeds 25,000 (8,334 examples and up), as in the cookbook.
    """
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def estimate(
    n_examples: int, billed_per_epoch: int, *, n_epochs: int | None, price_per_million_tokens: float | None
) -> Estimate:
    epochs = n_epochs if n_epochs is not None else default_epochs(n_examples)
    billed = billed_per_epoch * epochs
    cost = None if price_per_million_tokens is None else round(billed / 1_000_000 * price_per_million_tokens, 4)
    return Estimate(
        n_epochs=epochs,
        epochs_source="option" if n_epochs is not None else "default",
        billed_tokens=billed,
        price_per_million_tokens=price_per_million_tokens,
        cost=cost,
    )
