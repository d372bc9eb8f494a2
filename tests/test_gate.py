"""shared.gate: thresholds from a GateSpec against the summary of real (fixture) results files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.gate import GateResult, GateSpec, evaluate_gate
from shared.metrics import MetricsSummary, parse_results, summarize

DATA = Path(__file__).parent / "data" / "results"


def summary_of(name: str) -> MetricsSummary:
    return summarize(parse_results((DATA / name).read_bytes()))


def test_an_empty_spec_passes_everything() -> None:
    result = evaluate_gate(GateSpec(), summary_of("no_validation_columns.csv"))
    assert result == GateResult(passed=True, reasons=[], checks=[])


def test_healthy_run_passes_its_thresholds_and_says_so_per_check() -> None:
    spec = GateSpec(
        max_full_valid_loss=1.5,
        max_valid_loss=1.4,
        max_train_loss=1.2,
        min_valid_token_accuracy=0.6,
        min_train_token_accuracy=0.7,
        allow_overfitting=False,
    )
    result = evaluate_gate(spec, summary_of("current_gaps.csv"))
    assert result.passed, result.reasons
    assert result.reasons == []
    messages = [c.message for c in result.checks]
    assert messages[:5] == [
        "full_valid_loss 1.34 is within the limit 1.50",
        "valid_loss 1.34 is within the limit 1.40",
        "train_loss 1.01 is within the limit 1.20",
        "full_valid_mean_token_accuracy 0.66 meets the minimum 0.60",
        "train_mean_token_accuracy 0.72 meets the minimum 0.70",
    ]
    assert messages[5].startswith("no overfitting: valid_loss is within 5% of its best")


def test_thresholds_missed_give_one_readable_reason_each() -> None:
    spec = GateSpec(max_full_valid_loss=0.5, min_valid_token_accuracy=0.8, max_train_loss=2.0)
    result = evaluate_gate(spec, summary_of("current_gaps.csv"))
    assert result.passed is False
    assert result.reasons == [
        "full_valid_loss 1.34 is above the limit 0.50",
        "full_valid_mean_token_accuracy 0.66 is below the minimum 0.80",
    ]
    failed = [c.check for c in result.checks if not c.passed]
    assert failed == ["max_full_valid_loss", "min_valid_token_accuracy"]
    check = result.checks[0]
    assert (check.metric, check.value, check.limit) == ("full_valid_loss", 1.338, 0.5)


def test_close_values_get_enough_decimals_to_tell_them_apart() -> None:
    result = evaluate_gate(GateSpec(max_full_valid_loss=1.337), summary_of("current_gaps.csv"))
    assert result.reasons == ["full_valid_loss 1.338 is above the limit 1.337"]
    at_limit = evaluate_gate(GateSpec(max_full_valid_loss=1.338), summary_of("current_gaps.csv"))
    assert at_limit.passed


def test_overfitting_fails_only_when_not_allowed() -> None:
    summary = summary_of("overfitting.csv")
    assert evaluate_gate(GateSpec(), summary).passed  # allow_overfitting defaults to True
    result = evaluate_gate(GateSpec(allow_overfitting=False), summary)
    assert result.passed is False
    assert result.reasons == [
        "the model overfits: valid_loss (median of 5 evaluation points) rose 17.6% from its best at step 16 "
        "while training loss fell 54.1% (validation/training loss ratio 3.59)"
    ]


def test_a_noisy_but_healthy_run_is_not_called_overfitting() -> None:
    result = evaluate_gate(GateSpec(allow_overfitting=False), summary_of("noisy_spike.csv"))
    assert result.passed, result.reasons


def test_metrics_absent_without_a_validation_file_fail_and_say_why() -> None:
    spec = GateSpec(
        max_full_valid_loss=1.0,
        max_valid_loss=1.0,
        min_valid_token_accuracy=0.5,
        max_train_loss=1.5,
        allow_overfitting=False,
    )
    result = evaluate_gate(spec, summary_of("no_validation_columns.csv"))
    assert result.passed is False
    assert result.reasons == [
        "full_valid_loss is absent (no validation file, or a results file without full validation), "
        "so the limit 1.00 cannot be checked",
        "valid_loss is absent (no validation file), so the limit 1.00 cannot be checked",
        "valid_mean_token_accuracy is absent (no validation file), so the minimum 0.50 cannot be checked",
        "overfitting cannot be ruled out: no validation data",
    ]
    assert [c.passed for c in result.checks if c.check == "max_train_loss"] == [True]


def test_legacy_file_falls_back_to_validation_token_accuracy_and_lacks_full_valid_loss() -> None:
    summary = summary_of("legacy.csv")
    result = evaluate_gate(GateSpec(min_valid_token_accuracy=0.75, max_full_valid_loss=2.0), summary)
    assert result.reasons == [
        "full_valid_loss is absent (no validation file, or a results file without full validation), "
        "so the limit 2.00 cannot be checked",
        "valid_mean_token_accuracy 0.71 is below the minimum 0.75",
    ]
    too_short = evaluate_gate(GateSpec(allow_overfitting=False), summary)
    assert too_short.reasons == [
        "overfitting cannot be ruled out: only 4 evaluation point(s); at least 6 are needed to see a trend"
    ]


def test_spec_validation() -> None:
    with pytest.raises(ValidationError):
        GateSpec(min_valid_token_accuracy=1.5)
    with pytest.raises(ValidationError):
        GateSpec(max_valid_loss=-1)
    with pytest.raises(ValidationError):
        GateSpec.model_validate({"max_full_valid_los": 0.5})  # a typo must not silently disable a gate
    spec = GateSpec.model_validate_json('{"max_full_valid_loss": 0.5, "allow_overfitting": false}')
    assert spec.max_full_valid_loss == 0.5 and spec.allow_overfitting is False


def test_result_is_json_serialisable() -> None:
    result = evaluate_gate(GateSpec(max_train_loss=0.1), summary_of("overfitting.csv"))
    assert GateResult.model_validate_json(result.model_dump_json()) == result
