"""The emulator's clock: wall time plus an offset that tests move forward instead of sleeping.

Every status the emulator derives from time (file processing, job progress, deployments, ARM operations)
reads `now()`. `POST /_emulator/clock {"advance_seconds": N}` moves it forward; it never goes back, so a
status once seen never reverts. `{"frozen": true}` stops it where it is (only `advance_seconds` moves it then),
so a test can look at an in-between state however slow the machine is; `{"frozen": false}` lets it run on
from where it stood.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_offset = 0.0
_frozen_at: float | None = None  # wall time at which the clock was stopped


def now() -> float:
    """Seconds since the epoch, as the emulator sees them."""
    stopped = _frozen_at
    return (time.time() if stopped is None else stopped) + _offset


def advance(seconds: float) -> float:
    """Move the clock forward by `seconds` (>= 0). Returns the total offset."""
    global _offset
    if seconds < 0:
        raise ValueError("the clock only moves forward")
    with _lock:
        _offset += seconds
        return _offset


def freeze(frozen: bool) -> None:
    """Stop the clock (it reads the same until advanced) or let it run on from the time it shows."""
    global _frozen_at, _offset
    with _lock:
        if frozen and _frozen_at is None:
            _frozen_at = time.time()
        elif not frozen and _frozen_at is not None:
            _offset -= time.time() - _frozen_at  # carry on from the reading it stopped at: never back
            _frozen_at = None


def frozen() -> bool:
    return _frozen_at is not None


def offset() -> float:
    return _offset
