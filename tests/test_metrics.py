"""shared.metrics: parsing both results.csv column sets, and the summary written as metrics.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.metrics import (
    MetricsSummary,
    ResultRow,
    ResultsParseError,
    ResultsTable,
    assess_divergence,
    parse_results,
    summarize,
)

DATA = Path(__file__).parent / "data" / "results"


def load(name: str) -> ResultsTable:
    return parse_results((DATA / name).read_bytes())


@dataclass
class Checkpoint:
    """Shaped like the client's checkpoint model: only the attributes summarize reads."""

    id: str
    step_number: int
    fine_tuned_model_checkpoint: str


def checkpoints(*steps: int) -> list[Checkpoint]:
    base = "gpt-4o-mini-2024-07-18.ft-0123456789abcdef0123456789abcdef"
    return [Checkpoint(f"ftchkpt-{step:032d}", step, f"{base}:ckpt-step-{step}") for step in steps]


# -- parsing ---------------------------------------------------------------------------------------------------


def test_current_columns_with_gaps_become_none() -> None:
    table = load("current_gaps.csv")
    assert table.columns == "current"
    assert len(table) == 24
    first, second, eleventh = table.rows[0], table.rows[1], table.rows[10]
    assert first == ResultRow(step=1, train_loss=2.41, train_mean_token_accuracy=0.512)
    assert second.valid_loss == 2.30 and second.valid_mean_token_accuracy == 0.521
    assert second.full_valid_loss is None
    assert eleventh.step == 11 and eleventh.train_loss == 1.33 and eleventh.train_mean_token_accuracy is None
    assert table.series("full_valid_loss") == [(8, 1.561), (16, 1.352), (24, 1.338)]
    assert len(table.series("valid_loss")) == 12
    assert table.has_validation


def test_legacy_columns_map_onto_the_same_fields() -> None:
    table = load("legacy.csv")
    assert table.columns == "legacy"
    row = table.rows[2]
    assert row == ResultRow(
        step=3,
        train_loss=1.50,
        train_mean_token_accuracy=0.63,
        valid_loss=1.62,
        valid_mean_token_accuracy=0.60,
        train_sequence_accuracy=0.125,
        valid_sequence_accuracy=0.0,
        elapsed_tokens=6150,
        elapsed_examples=24,
    )
    assert table.series("full_valid_loss") == []


def test_valid_mean_token_accuracy_spelling_blank_lines_and_unknown_extra_columns() -> None:
    table = load("valid_spelling_extra_column.csv")
    assert table.columns == "current"
    assert [r.step for r in table.rows] == [1, 2, 3]
    assert table.rows[2].valid_mean_token_accuracy == 0.70
    assert table.ignored_columns == ("learning_rate",)


def test_bytes_with_bom_crlf_and_str_parse_the_same() -> None:
    text = (DATA / "current_gaps.csv").read_text(encoding="utf-8")
    from_str = parse_results(text)
    from_bom_crlf = parse_results(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert from_str == from_bom_crlf


def test_header_is_case_and_space_insensitive_rows_sorted_and_last_duplicate_wins() -> None:
    table = parse_results("Step, Train_Loss ,train_mean_token_accuracy\n3,0.9,0.7\n1,1.5,0.6\n3,0.8,0.71\n")
    assert [(r.step, r.train_loss) for r in table.rows] == [(1, 1.5), (3, 0.8)]


def test_short_rows_are_padded_and_non_finite_metrics_are_dropped() -> None:
    table = parse_results("step,train_loss,train_mean_token_accuracy,valid_loss\n1,nan,0.5\n2.0,inf,0.6,1.2\n")
    assert table.rows == (
        ResultRow(step=1, train_loss=None, train_mean_token_accuracy=0.5),
        ResultRow(step=2, train_loss=None, train_mean_token_accuracy=0.6, valid_loss=1.2),
    )


@pytest.mark.parametrize(
    ("name", "line", "column", "words"),
    [
        ("malformed_no_step.csv", 1, None, "no 'step' column"),
        ("malformed_unknown_columns.csv", 1, None, "unknown column set"),
        ("malformed_bad_step.csv", 4, "step", "'three' is not a number"),
        ("malformed_bad_value.csv", 3, "train_mean_token_accuracy", "'n/a' is not a number"),
    ],
)
def test_malformed_files_say_which_line_and_what(name: str, line: int, column: str | None, words: str) -> None:
    with pytest.raises(ResultsParseError) as info:
        load(name)
    assert info.value.line == line
    assert info.value.column == column
    assert words in str(info.value)
    assert f"line {line}" in str(info.value)


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b"", 1, "empty"),
        (b"\n\n", 1, "empty"),
        (b"\xff\xfe\x00s", 1, "not UTF-8"),
        ("step,train_loss\n1,0.5\n2.5,0.4\n", 3, "not a whole step number"),
        ("step,train_loss\n1,0.5\n,0.4\n", 3, "step cell is empty"),
        ("step,train_loss\n1,0.5,9\n", 2, "3 cells but the header has 2 columns"),
        ("step,train_loss,train_loss\n1,0.5,0.5\n", 1, "duplicate column(s): train_loss"),
    ],
)
def test_other_unusable_files(data: bytes | str, line: int, words: str) -> None:
    with pytest.raises(ResultsParseError) as info:
        parse_results(data)
    assert info.value.line == line
    assert words in str(info.value)


def test_parse_error_is_a_value_error_with_the_cause_kept() -> None:
    with pytest.raises(ValueError) as info:
        parse_results("step,train_loss\nx,1\n")
    assert isinstance(info.value.__cause__, ValueError)


# -- summary ---------------------------------------------------------------------------------------------------


def test_summary_of_a_healthy_run() -> None:
    summary = summarize(
        load("current_gaps.csv"),
        checkpoints=checkpoints(8, 16, 24),
        trained_tokens=61_440,
        started_at=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        finished_at=datetime(2025, 3, 1, 10, 47, 30, tzinfo=UTC),
    )
    assert summary.columns == "current"
    assert (summary.steps, summary.rows, summary.evaluation_points) == (24, 24, 12)
    assert summary.final_train_loss == 1.01
    assert summary.final_valid_loss == 1.345
    assert summary.final_full_valid_loss == 1.338
    assert (summary.best_full_valid_loss, summary.best_full_valid_loss_step) == (1.338, 24)
    assert summary.best_checkpoint is not None
    assert summary.best_checkpoint.step_number == 24
    assert summary.best_checkpoint.fine_tuned_model_checkpoint.endswith(":ckpt-step-24")
    assert summary.best_checkpoint_basis == "full_valid_loss"
    assert summary.final_train_token_accuracy == 0.718
    assert summary.final_valid_token_accuracy == 0.655
    assert summary.final_full_valid_token_accuracy == 0.657
    assert summary.overfitting is False
    assert summary.divergence.assessed
    assert summary.divergence.valid_loss_rise == 0.0
    assert summary.tokens_billed == 61_440
    assert summary.duration_seconds == 2850.0


def test_overfitting_run_is_flagged_with_its_figures() -> None:
    summary = summarize(load("overfitting.csv"), checkpoints=checkpoints(10, 20, 30))
    assert summary.overfitting is True
    d = summary.divergence
    assert (d.metric, d.window, d.evaluation_points) == ("valid_loss", 5, 15)
    # Rolling medians of 5 validation points: lowest 1.19 (window ending at step 16), last 1.40.
    assert d.valid_loss_best == 1.19 and d.best_window_end_step == 16
    assert d.valid_loss_recent == 1.40
    assert d.valid_loss_rise == pytest.approx(1.40 / 1.19 - 1)
    # Median training loss over steps 8..16 was 0.85, over steps 22..30 it is 0.39.
    assert (d.train_loss_at_best, d.train_loss_recent) == (0.85, 0.39)
    assert d.train_loss_change == pytest.approx(0.39 / 0.85 - 1)
    assert d.gap_ratio == pytest.approx(1.40 / 0.39)
    assert "rose 17.6%" in d.explanation and "fell 54.1%" in d.explanation
    # The best model was the first epoch's: its checkpoint is the one to deploy.
    assert (summary.best_full_valid_loss, summary.best_full_valid_loss_step) == (1.215, 10)
    assert summary.best_checkpoint is not None and summary.best_checkpoint.step_number == 10
    assert (summary.best_valid_loss, summary.best_valid_loss_step) == (1.17, 14)
    assert summary.final_valid_loss == 1.47
    assert summary.best_valid_token_accuracy == 0.67
    assert summary.best_full_valid_token_accuracy == 0.661


def test_single_noisy_validation_points_do_not_flag_divergence() -> None:
    table = load("noisy_spike.csv")
    summary = summarize(table)
    # The last validation point (1.90) is 64% above the lowest (1.16), and step 12 spiked too,
    # but the windowed medians do not move.
    assert summary.final_valid_loss == 1.90
    assert summary.best_valid_loss == 1.16
    assert summary.overfitting is False
    assert summary.divergence.assessed
    assert summary.divergence.valid_loss_recent == 1.18
    assert summary.divergence.valid_loss_rise == 0.0


def test_validation_rising_while_training_loss_is_flat_is_not_divergence() -> None:
    lines = ["step,train_loss,valid_loss"]
    valid = [1.0, 0.9, 0.8, 0.8, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    lines += [f"{i + 1},0.7,{v}" for i, v in enumerate(valid)]
    signal = assess_divergence(parse_results("\n".join(lines)))
    assert signal.assessed and signal.valid_loss_rise is not None and signal.valid_loss_rise > 0.05
    assert signal.train_loss_change == 0.0
    assert signal.overfitting is False
    assert "did not fall" in signal.explanation


def test_divergence_tolerance_and_window_are_parameters() -> None:
    table = load("overfitting.csv")
    assert summarize(table, divergence_tolerance=0.25).overfitting is False
    assert summarize(table, divergence_window=3).divergence.window == 3
    with pytest.raises(ValueError):
        assess_divergence(table, window=2)


def test_legacy_summary_uses_valid_loss_for_the_checkpoint_and_elapsed_tokens_for_billing() -> None:
    summary = summarize(load("legacy.csv"), checkpoints=checkpoints(4, 8, 12))
    assert summary.columns == "legacy"
    assert summary.final_full_valid_loss is None and summary.best_full_valid_loss is None
    assert (summary.best_valid_loss, summary.best_valid_loss_step) == (1.16, 12)
    assert summary.best_checkpoint is not None and summary.best_checkpoint.step_number == 12
    assert summary.best_checkpoint_basis == "valid_loss"
    assert summary.tokens_billed == 24_577
    assert summary.final_train_token_accuracy == 0.78
    assert summary.final_valid_token_accuracy == 0.71
    # Four evaluation points are too few to see a trend: not assessed, and said so.
    assert summary.divergence.assessed is False
    assert "only 4 evaluation point(s)" in summary.divergence.explanation
    # The job's own figure wins over the file's.
    assert summarize(load("legacy.csv"), trained_tokens=30_000).tokens_billed == 30_000


def test_no_validation_columns() -> None:
    summary = summarize(load("no_validation_columns.csv"), checkpoints=checkpoints(10))
    assert summary.has_validation is False
    assert summary.evaluation_points == 0
    assert summary.final_train_loss == 1.02
    assert summary.final_valid_loss is None and summary.best_full_valid_loss is None
    assert summary.best_checkpoint is None and summary.best_checkpoint_basis is None
    assert summary.overfitting is False
    assert summary.divergence.assessed is False
    assert summary.divergence.explanation == "no validation data"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ((10, 20, 30), 10),  # exact match
        ((9, 11, 20), 11),  # nearest one after the best step
        ((3, 6, 9), None),  # every checkpoint is before it
        ((), None),
    ],
)
def test_best_checkpoint_matching(steps: tuple[int, ...], expected: int | None) -> None:
    summary = summarize(load("overfitting.csv"), checkpoints=checkpoints(*steps))
    got = summary.best_checkpoint.step_number if summary.best_checkpoint else None
    assert got == expected


def test_checkpoints_as_plain_dicts_from_the_api() -> None:
    raw = {
        "object": "fine_tuning.job.checkpoint",
        "id": "ftchkpt-abc",
        "created_at": 1_700_000_000,
        "fine_tuned_model_checkpoint": "gpt-4o-mini-2024-07-18.ft-abc:ckpt-step-10",
        "step_number": 10,
        "metrics": {"full_valid_loss": 1.215},
        "fine_tuning_job_id": "ftjob-abc",
    }
    summary = summarize(load("overfitting.csv"), checkpoints=[raw])
    assert summary.best_checkpoint is not None and summary.best_checkpoint.id == "ftchkpt-abc"


def test_duration_from_unix_seconds_and_missing_or_backwards_times() -> None:
    table = load("no_validation_columns.csv")
    assert summarize(table, started_at=1_700_000_000, finished_at=1_700_003_600).duration_seconds == 3600.0
    assert summarize(table, started_at=1_700_000_000).duration_seconds is None
    assert summarize(table, started_at=1_700_000_100, finished_at=1_700_000_000).duration_seconds is None


def test_empty_results_summarize_to_nothing() -> None:
    summary = summarize(parse_results("step,train_loss\n"))
    assert (summary.steps, summary.rows, summary.final_train_loss, summary.overfitting) == (0, 0, None, False)


def test_summary_round_trips_through_json() -> None:
    summary = summarize(load("overfitting.csv"), checkpoints=checkpoints(10, 20, 30), trained_tokens=1234)
    payload = json.loads(summary.model_dump_json())
    assert payload["columns"] == "current"
    assert payload["overfitting"] is True
    assert payload["best_checkpoint"]["step_number"] == 10
    assert MetricsSummary.model_validate(payload) == summary


def test_best_checkpoint_is_the_best_of_those_kept_not_the_one_after_the_best_step() -> None:
    """The service keeps the last three epochs: when the best epoch is older, pick the best that still exists."""
    text = "step,train_loss,full_valid_loss\n10,1.0,1.00\n20,0.8,1.50\n30,0.6,1.20\n40,0.5,1.30\n"
    summary = summarize(parse_results(text), checkpoints=checkpoints(20, 30, 40))
    assert summary.best_full_valid_loss_step == 10  # no checkpoint any more
    assert summary.best_checkpoint is not None and summary.best_checkpoint.step_number == 30  # not 20 (next after)
    assert summary.best_checkpoint_basis == "full_valid_loss"
