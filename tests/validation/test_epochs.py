"""One default-epochs rule: the figures in docs/validation.md, the estimate and the emulator all use shared.epochs."""

from __future__ import annotations

import re
from pathlib import Path

from emulator import state as emulator_state
from shared import epochs
from shared.validation import statistics

DOC = Path(__file__).resolve().parents[2] / "docs" / "validation.md"


def test_the_docs_table_is_the_function() -> None:
    text = DOC.read_text("utf-8")
    head = re.search(r"^\| examples trained on \|(.*)\|$", text, re.MULTILINE)
    row = re.search(r"^\| default epochs \|(.*)\|$", text, re.MULTILINE)
    assert head and row
    examples = [int(c.strip().replace(",", "")) for c in head.group(1).split("|")]
    figures = [int(c.strip()) for c in row.group(1).split("|")]
    assert len(examples) == len(figures) >= 8
    assert [epochs.default_epochs(n) for n in examples] == figures


def test_estimate_and_emulator_use_the_same_function() -> None:
    assert statistics.default_epochs is epochs.default_epochs
    assert emulator_state.default_epochs is epochs.default_epochs
    assert statistics.estimate(12, 1000, n_epochs=None, price_per_million_tokens=None).n_epochs == 8
