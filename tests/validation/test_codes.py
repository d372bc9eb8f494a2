"""Every code is documented in docs/validation.md, with its severity."""

from __future__ import annotations

import re
from pathlib import Path

from shared.validation import CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "validation.md"


def test_every_code_is_in_the_docs_table() -> None:
    rows = dict(re.findall(r"^\| `([a-z0-9_]+)` \| (error|warning) \|", DOC.read_text("utf-8"), re.MULTILINE))
    assert rows == {code.value: info.severity for code, info in CODES.items()}
