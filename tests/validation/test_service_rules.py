"""Rules the service applies to every uploaded file, applied here first (docs/azure-openai-contract.md)."""

from __future__ import annotations

import io
import json

from shared.validation import ValidationOptions, validate
from shared.validation.split import SplitResult, Splitter, estimate_after_split


def _chat(n: int, tag: str = "") -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"question {i}{tag}"},
                          {"role": "assistant", "content": f"answer {i}{tag}"}]} for i in range(n)]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _prefs(n: int) -> bytes:
    rows = [{"input": {"messages": [{"role": "user", "content": f"hi {i}"}]},
             "preferred_output": [{"role": "assistant", "content": f"hello {i}"}],
             "non_preferred_output": [{"role": "assistant", "content": "no"}]} for i in range(n)]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _codes(report: object) -> set[str]:
    return {i.code for i in report.errors}  # type: ignore[attr-defined]


def test_a_validation_file_needs_ten_examples_too() -> None:
    report = validate(_chat(12), validation=_chat(5, " held out"))
    assert not report.valid and "too_few_examples" in _codes(report)
    assert any(e.file == "validation" and e.code == "too_few_examples" for e in report.errors)
    assert validate(_chat(12), validation=_chat(10, " held out")).valid


def test_an_unknown_model_is_an_error_unless_the_service_vouched_for_it() -> None:
    report = validate(_chat(12), model="banana")
    assert not report.valid and _codes(report) == {"model_not_known"}
    vouched = validate(_chat(12), model="banana", options=ValidationOptions(allow_unknown_model=True))
    assert vouched.valid and "unknown_model" in {w.code for w in vouched.warnings}
    assert validate(_chat(12), model="gpt-4o-mini-2024-07-18.ft-0123456789abcdef0123456789abcdef").valid


def test_preference_data_needs_a_dpo_model() -> None:
    refused = validate(_prefs(12), model="gpt-4o-mini-2024-07-18")
    assert not refused.valid and _codes(refused) == {"method_not_supported"}
    for model in ("gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14",
                  "gpt-4.1-mini-2025-04-14.ft-0123456789abcdef0123456789abcdef"):
        assert validate(_prefs(12), model=model).valid, model


def test_split_usable_only_when_both_files_can_be_uploaded() -> None:
    assert SplitResult(10, 10).usable() and not SplitResult(14, 1).usable() and not SplitResult(9, 11).usable()
    train, valid = io.BytesIO(), io.BytesIO()
    splitter = Splitter(train, valid, 0.5)
    for line in _chat(30).splitlines():
        splitter.add(line)
    result = splitter.finish()
    assert result.train_bytes == len(train.getvalue()) and result.valid_bytes == len(valid.getvalue())


def test_estimate_after_split_uses_the_training_side() -> None:
    whole = validate(_chat(30)).estimate
    assert whole is not None and whole.n_epochs == 3
    after = estimate_after_split(whole, 1000, SplitResult(20, 10, 600, 400), n_epochs=None)
    assert after.n_epochs == 5 and after.billed_tokens == 600 * 5
    fixed = estimate_after_split(whole, 1000, SplitResult(20, 10, 600, 400), n_epochs=2)
    assert fixed.n_epochs == 2 and fixed.epochs_source == "option"
