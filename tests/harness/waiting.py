"""Waiting on a condition, never on the clock: poll until it holds, fail with what was awaited after a timeout.

The timeout only bounds a test that would otherwise hang; how soon the condition holds does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 20.0, every: float = 0.1, *, between: Callable[[], Any]
    | None = None
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout`` seconds.

    ``between`` runs between polls (e.g. moving the emulator's clock on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        if between is not None:
            between()
        time.sleep(every)
