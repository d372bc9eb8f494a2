"""Test-wide set-up: offline tiktoken, and the real local services as session fixtures.

Fixtures live in `tests/harness/` (one module per service) and are loaded as pytest plugins here.
"""
from __future__ import annotations

import os
from pathlib import Path

_TIKTOKEN = Path(__file__).resolve().parents[1].parent / "shared" / "tiktoken"
if _TIKTOKEN.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN))

pytest_plugins = [
    "tests.harness.azurite",
    "tests.harness.emulator",
]
