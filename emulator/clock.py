"""The emulator's clock: wall time plus an offset that tests move forward instead of sleeping.

Every status the emulator derives from time (file processing, job progress, deployments, ARM operations)
reads `now()`. `POST /_emulator/clock {"advance_seconds": N}` moves it forward; it never goes back, so a
status once seen never reverts.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_offset = 0.0


def now() -> float:
    """Seconds since the epoch, as the emulator sees them."""
    return time.time() + _offset


def advance(seconds: float) -> float:
    """Move the clock forward by `seconds` (>= 0). Returns the total offset."""
    global _offset
    if seconds < 0:
        raise ValueError("the clock only moves forward")
    with _lock:
        _offset += seconds
        return _offset


def offset() -> float:
    return _offset
