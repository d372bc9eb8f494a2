"""Training metrics: read a fine-tuning `results.csv` and sum it up as the content of `metrics.json`.

Azure OpenAI writes the results file (purpose `fine-tune-results`, `result_files[0]` of a job) in one of two
column sets, both accepted here and normalised to one row model, `ResultRow`:

==============================  ==============================  ===============================
`ResultRow` field               current column                  legacy column
==============================  ==============================  ===============================
step                            step                            step
train_loss                      train_loss                      training_loss
train_mean_token_accuracy       train_mean_token_accuracy       training_token_accuracy
valid_loss                      valid_loss                      validation_loss
valid_mean_token_accuracy       validation_mean_token_accuracy  validation_token_accuracy
                                (or valid_mean_token_accuracy)
full_valid_loss                 full_valid_loss                 --
full_valid_mean_token_accuracy  full_valid_mean_token_accuracy  --
train_sequence_accuracy         --                              training_sequence_accuracy
valid_sequence_accuracy         --                              validation_sequence_accuracy
elapsed_tokens                  --                              elapsed_tokens
elapsed_examples                --                              elapsed_examples
==============================  ==============================  ===============================

Reinforcement fine-tuning adds reward columns (the RFT how-to names `train_reward_mean`, `valid_reward_mean`,
`train_reasoning_tokens_mean`, `valid_reasoning_tokens_mean`; Microsoft's fine-tuning skill names
`train_mean_reward`, `full_valid_mean_reward`, `reasoning_tokens_mean`, `train_sample_parse_error_count`,
`train_other_error_count`): both spellings are read into the same fields, and a file with reward columns but
no loss column is still the current set. `MetricsSummary.reward` sums them up.

Empty cells are normal (validation columns are only filled on evaluation steps, `full_valid_*` only at the end
of an epoch) and become `None`. So do `nan`/`inf` cells: a metric that is not a finite number says nothing a
reader can use, and `metrics.json` must stay valid JSON. Columns outside the two sets are ignored and listed in
`ResultsTable.ignored_columns`, so that a column added by a later service version does not break a run.

A file is unusable (`ResultsParseError`, with the line number) when it is empty, has no `step` column, has
neither `train_loss` nor `training_loss` (so it is neither column set), or has a step or metric cell that is
not a number.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

ColumnSet = Literal["current", "legacy"]

# Column name in the file -> ResultRow field, per column set.
_CURRENT_COLUMNS: dict[str, str] = {
    "step": "step",
    "train_loss": "train_loss",
    "train_mean_token_accuracy": "train_mean_token_accuracy",
    "valid_loss": "valid_loss",
    "validation_mean_token_accuracy": "valid_mean_token_accuracy",
    "valid_mean_token_accuracy": "valid_mean_token_accuracy",
    "full_valid_loss": "full_valid_loss",
    "full_valid_mean_token_accuracy": "full_valid_mean_token_accuracy",
    # reinforcement fine-tuning: the how-to's spelling, then the fine-tuning skill's
    "train_reward_mean": "train_reward_mean",
    "train_mean_reward": "train_reward_mean",
    "valid_reward_mean": "valid_reward_mean",
    "valid_mean_reward": "valid_reward_mean",
    "full_valid_reward_mean": "full_valid_reward_mean",
    "full_valid_mean_reward": "full_valid_reward_mean",
    "train_reasoning_tokens_mean": "train_reasoning_tokens_mean",
    "reasoning_tokens_mean": "train_reasoning_tokens_mean",
    "valid_reasoning_tokens_mean": "valid_reasoning_tokens_mean",
    "train_sample_parse_error_count": "train_sample_parse_error_count",
    "sample_parse_error_count": "train_sample_parse_error_count",
    "train_other_error_count": "train_other_error_count",
    "other_error_count": "train_other_error_count",
}
REWARD_COLUMNS = frozenset(name for name, target in _CURRENT_COLUMNS.items() if "reward" in target)
_LEGACY_COLUMNS: dict[str, str] = {
    "step": "step",
    "elapsed_tokens": "elapsed_tokens",
    "elapsed_examples": "elapsed_examples",
    "training_loss": "train_loss",
    "training_sequence_accuracy": "train_sequence_accuracy",
    "training_token_accuracy": "train_mean_token_accuracy",
    "validation_loss": "valid_loss",
    "validation_sequence_accuracy": "valid_sequence_accuracy",
    "validation_token_accuracy": "valid_mean_token_accuracy",
}
_INT_FIELDS = frozenset({"step", "elapsed_tokens", "elapsed_examples"})

DEFAULT_DIVERGENCE_WINDOW = 5
DEFAULT_DIVERGENCE_TOLERANCE = 0.05


class ResultsParseError(ValueError):
    """The results file cannot be used. `line` is 1-based (line 1 is the header); `column` names the cell."""

    def __init__(self, message: str, *, line: int, column: str | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"results.csv {where}: {message}")


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One step of a results file, in the current column names; a metric absent at that step is `None`."""

    step: int
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    # Legacy files only.
    train_sequence_accuracy: float | None = None
    valid_sequence_accuracy: float | None = None
    elapsed_tokens: int | None = None
    elapsed_examples: int | None = None
    # Reinforcement fine-tuning only.
    train_reward_mean: float | None = None
    valid_reward_mean: float | None = None
    full_valid_reward_mean: float | None = None
    train_reasoning_tokens_mean: float | None = None
    valid_reasoning_tokens_mean: float | None = None
    train_sample_parse_error_count: float | None = None
    train_other_error_count: float | None = None


_ROW_FIELDS = frozenset(f.name for f in fields(ResultRow))


@dataclass(frozen=True, slots=True)
class ResultsTable:
    """A parsed results file: rows sorted by step (one row per step), and which column set the file used."""

    columns: ColumnSet
    rows: tuple[ResultRow, ...]
    ignored_columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def series(self, name: str) -> list[tuple[int, float]]:
        """`(step, value)` for every row where the metric `name` (a `ResultRow` field) has a value."""
        if name not in _ROW_FIELDS or name == "step":
            raise KeyError(name)
        out: list[tuple[int, float]] = []
        for row in self.rows:
            value = getattr(row, name)
            if value is not None:
                out.append((row.step, float(value)))
        return out

    @property
    def has_validation(self) -> bool:
        """True when any validation metric (mini-batch or full) has a value."""
        return any(
            r.valid_loss is not None
            or r.valid_mean_token_accuracy is not None
            or r.full_valid_loss is not None
            or r.full_valid_mean_token_accuracy is not None
            for r in self.rows
        )


def parse_results(data: bytes | str) -> ResultsTable:
    """Parse a results.csv (bytes as downloaded, or text) in either column set.

    Bytes are decoded as UTF-8, a BOM allowed. Blank lines are skipped. Rows are returned sorted by step;
    when a step appears twice (a resumed job can repeat one) the later line wins.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ResultsParseError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", line=1) from exc
    else:
        text = data.removeprefix("\ufeff")

    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    for header_row in reader:
        if any(cell.strip() for cell in header_row):
            header = [cell.strip().lower() for cell in header_row]
            break
    if header is None:
        raise ResultsParseError("the file is empty (no header line)", line=1)
    header_line = reader.line_num

    if "step" not in header:
        raise ResultsParseError(f"no 'step' column (columns: {', '.join(header)})", line=header_line)
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise ResultsParseError(f"duplicate column(s): {', '.join(duplicates)}", line=header_line)
    columns: ColumnSet
    if "train_loss" in header:
        columns, mapping = "current", _CURRENT_COLUMNS
    elif "training_loss" in header:
        columns, mapping = "legacy", _LEGACY_COLUMNS
    elif REWARD_COLUMNS & set(header):  # an RFT file may carry rewards without a loss
        columns, mapping = "current", _CURRENT_COLUMNS
    else:
        raise ResultsParseError(
            "unknown column set: expected 'train_loss' (current format) or 'training_loss' (legacy format), "
            f"got: {', '.join(header)}",
            line=header_line,
        )
    if "validation_mean_token_accuracy" in header and "valid_mean_token_accuracy" in header:
        raise ResultsParseError(
            "both 'validation_mean_token_accuracy' and 'valid_mean_token_accuracy' are present", line=header_line
        )
    ignored = tuple(name for name in header if name not in mapping)

    by_step: dict[int, ResultRow] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            raise ResultsParseError(f"{len(cells)} cells but the header has {len(header)} columns", line=line)
        values: dict[str, Any] = {}
        for name, raw in zip(header, cells, strict=False):
            target = mapping.get(name)
            if target is None:
                continue
            values[target] = _parse_cell(raw, column=name, line=line, integer=target in _INT_FIELDS)
        if values.get("step") is None:
            raise ResultsParseError("the step cell is empty", line=line, column="step")
        row = ResultRow(**values)
        by_step[row.step] = row
    rows = tuple(by_step[step] for step in sorted(by_step))
    return ResultsTable(columns=columns, rows=rows, ignored_columns=ignored)


def _parse_cell(raw: str, *, column: str, line: int, integer: bool) -> float | int | None:
    cell = raw.strip()
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError as exc:
        raise ResultsParseError(f"{cell!r} is not a number", line=line, column=column) from exc
    if not integer:
        return value if math.isfinite(value) else None
    if not math.isfinite(value) or value != int(value):
        if column == "step":
            raise ResultsParseError(f"{cell!r} is not a whole step number", line=line, column=column)
        return None
    return int(value)


# --------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------


class CheckpointLike(Protocol):
    """What `summarize` needs of a checkpoint (`fine_tuning.job.checkpoint`); plain dicts are accepted too."""

    @property
    def id(self) -> str: ...

    @property
    def step_number(self) -> int: ...

    @property
    def fine_tuned_model_checkpoint(self) -> str: ...


class CheckpointRef(BaseModel):
    """The checkpoint picked as best: deployable by `fine_tuned_model_checkpoint` (or by `id`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    step_number: int
    fine_tuned_model_checkpoint: str


class DivergenceSignal(BaseModel):
    """Train/valid divergence: is the model overfitting?

    Definition. Let V be the validation loss at the evaluation steps (`valid_loss`; `full_valid_loss` when the
    file has no `valid_loss` values) and K the window (`window`, 5 by default; fewer, down to 3, when there are
    fewer than 2K evaluation points). Every statistic is a **median over K consecutive evaluation points**, so
    one or two noisy points in a window move nothing:

    * `valid_loss_recent` = median of the last K points of V;
    * `valid_loss_best` = the lowest such rolling median over the run (at `best_window_end_step`);
    * `valid_loss_rise` = valid_loss_recent / valid_loss_best - 1 (0 when the recent window is the best);
    * `train_loss_recent` / `train_loss_at_best` = median training loss over the steps the recent window / the
      best window span;
    * `train_loss_change` = train_loss_recent / train_loss_at_best - 1 (negative: training loss fell);
    * `gap_ratio` = valid_loss_recent / train_loss_recent (how much worse the model does on unseen data).

    `overfitting` is True when the validation loss rose by at least `tolerance` (5% by default) from its best
    window while the training loss kept falling over the same span (`train_loss_change < 0`). With fewer than
    6 evaluation points, or no training loss at those steps, nothing is assessed: `assessed` is False,
    `overfitting` False, and `explanation` says why.
    """

    assessed: bool
    overfitting: bool
    explanation: str
    metric: Literal["valid_loss", "full_valid_loss"] | None = None
    window: int | None = None
    tolerance: float
    evaluation_points: int
    valid_loss_recent: float | None = None
    valid_loss_best: float | None = None
    best_window_end_step: int | None = None
    valid_loss_rise: float | None = None
    train_loss_recent: float | None = None
    train_loss_at_best: float | None = None
    train_loss_change: float | None = None
    gap_ratio: float | None = None


class RewardSummary(BaseModel):
    """Reinforcement fine-tuning's figures (`metrics.json` `reward`): the mean grader reward on the training
    batches and the validation samples, the grader's parse and other errors summed over the steps, and the mean
    reasoning tokens. A train-valid gap above 0.10 is the fine-tuning skill's sign of reward hacking."""

    first_train_reward_mean: float | None = None
    final_train_reward_mean: float | None = None
    best_train_reward_mean: float | None = None
    best_train_reward_mean_step: int | None = None
    final_valid_reward_mean: float | None = None
    best_valid_reward_mean: float | None = None
    best_valid_reward_mean_step: int | None = None
    train_valid_gap: float | None = None
    parse_errors: int | None = None
    other_errors: int | None = None
    final_reasoning_tokens_mean: float | None = None


class MetricsSummary(BaseModel):
    """The content of `metrics.json`.

    "final" is the last value present in the column (validation columns are sparse, so it may come from an
    earlier step than `steps`); "best" is the lowest loss / highest accuracy seen. Accuracies are fractions
    (0..1), as in the results file.
    """

    columns: ColumnSet
    steps: int
    rows: int
    evaluation_points: int
    has_validation: bool
    ignored_columns: list[str] = []

    final_train_loss: float | None = None
    final_valid_loss: float | None = None
    final_full_valid_loss: float | None = None
    best_valid_loss: float | None = None
    best_valid_loss_step: int | None = None
    best_full_valid_loss: float | None = None
    best_full_valid_loss_step: int | None = None
    best_checkpoint: CheckpointRef | None = None
    best_checkpoint_basis: Literal["full_valid_loss", "valid_loss"] | None = None

    final_train_token_accuracy: float | None = None
    best_train_token_accuracy: float | None = None
    final_valid_token_accuracy: float | None = None
    best_valid_token_accuracy: float | None = None
    final_full_valid_token_accuracy: float | None = None
    best_full_valid_token_accuracy: float | None = None

    overfitting: bool
    divergence: DivergenceSignal

    tokens_billed: int | None = None
    duration_seconds: float | None = None
    reward: RewardSummary | None = None
    """Reinforcement fine-tuning: the grader's rewards; None for a file without reward columns."""


def summarize_reward(table: ResultsTable) -> RewardSummary | None:
    """The reward figures of an RFT results file (None without any)."""
    train = table.series("train_reward_mean")
    valid = table.series("valid_reward_mean") or table.series("full_valid_reward_mean")
    if not train and not valid:
        return None
    best_train = _best(train, lowest=False)
    best_valid = _best(valid, lowest=False)
    parse_errors = table.series("train_sample_parse_error_count")
    other_errors = table.series("train_other_error_count")
    final_train, final_valid = _final(train), _final(valid)
    return RewardSummary(
        first_train_reward_mean=train[0][1] if train else None,
        final_train_reward_mean=final_train,
        best_train_reward_mean=best_train[1] if best_train else None,
        best_train_reward_mean_step=best_train[0] if best_train else None,
        final_valid_reward_mean=final_valid,
        best_valid_reward_mean=best_valid[1] if best_valid else None,
        best_valid_reward_mean_step=best_valid[0] if best_valid else None,
        train_valid_gap=(final_train - final_valid) if final_train is not None and final_valid is not None else None,
        parse_errors=int(sum(v for _, v in parse_errors)) if parse_errors else None,
        other_errors=int(sum(v for _, v in other_errors)) if other_errors else None,
        final_reasoning_tokens_mean=_final(table.series("train_reasoning_tokens_mean")),
    )


def summarize(
    table: ResultsTable,
    /,
    *,
    checkpoints: Iterable[CheckpointLike | Mapping[str, Any]] = (),
    trained_tokens: int | None = None,
    started_at: datetime | float | None = None,
    finished_at: datetime | float | None = None,
    divergence_window: int = DEFAULT_DIVERGENCE_WINDOW,
    divergence_tolerance: float = DEFAULT_DIVERGENCE_TOLERANCE,
) -> MetricsSummary:
    """Sum up a parsed results file, with what the job itself says (`checkpoints`, `trained_tokens`, times).

    * `best_checkpoint`: among the checkpoints given (the service lists only the last three epochs), the one
      with the lowest `full_valid_loss` at its step (or, with no full validation loss in the file, the lowest
      `valid_loss`; `best_checkpoint_basis` says which); when no checkpoint's step has a value, the nearest
      checkpoint at or after the best step; None when there is none. It differs from the best step
      (`best_full_valid_loss_step`) when the best epoch's checkpoint is no longer kept.
    * `tokens_billed`: `trained_tokens` from the job; for a legacy file without it, the last `elapsed_tokens`.
    * `duration_seconds`: `finished_at - started_at` (datetimes, or unix seconds as the job object has them);
      None when either is missing or the difference is negative.
    """
    train_loss = table.series("train_loss")
    valid_loss = table.series("valid_loss")
    full_valid_loss = table.series("full_valid_loss")
    train_acc = table.series("train_mean_token_accuracy")
    valid_acc = table.series("valid_mean_token_accuracy")
    full_valid_acc = table.series("full_valid_mean_token_accuracy")

    best_valid = _best(valid_loss, lowest=True)
    best_full = _best(full_valid_loss, lowest=True)
    basis: Literal["full_valid_loss", "valid_loss"] | None = None
    best_step: int | None = None
    if best_full is not None:
        basis, best_step = "full_valid_loss", best_full[0]
    elif best_valid is not None:
        basis, best_step = "valid_loss", best_valid[0]
    checkpoints = list(checkpoints)
    best_checkpoint = None
    if basis is not None:
        best_checkpoint = _best_kept_checkpoint(full_valid_loss if basis == "full_valid_loss" else valid_loss,
                                                checkpoints)
    if best_checkpoint is None and best_step is not None:
        best_checkpoint = _checkpoint_at_or_after(best_step, checkpoints)

    tokens = trained_tokens
    if tokens is None and table.columns == "legacy":
        elapsed = table.series("elapsed_tokens")
        tokens = int(elapsed[-1][1]) if elapsed else None

    divergence = assess_divergence(table, window=divergence_window, tolerance=divergence_tolerance)
    best_train_acc = _best(train_acc, lowest=False)
    best_valid_acc = _best(valid_acc, lowest=False)
    best_full_acc = _best(full_valid_acc, lowest=False)
    return MetricsSummary(
        columns=table.columns,
        steps=table.rows[-1].step if table.rows else 0,
        rows=len(table.rows),
        evaluation_points=len(valid_loss) if valid_loss else len(full_valid_loss),
        has_validation=table.has_validation,
        ignored_columns=list(table.ignored_columns),
        final_train_loss=_final(train_loss),
        final_valid_loss=_final(valid_loss),
        final_full_valid_loss=_final(full_valid_loss),
        best_valid_loss=best_valid[1] if best_valid else None,
        best_valid_loss_step=best_valid[0] if best_valid else None,
        best_full_valid_loss=best_full[1] if best_full else None,
        best_full_valid_loss_step=best_full[0] if best_full else None,
        best_checkpoint=best_checkpoint,
        best_checkpoint_basis=basis if best_checkpoint is not None else None,
        final_train_token_accuracy=_final(train_acc),
        best_train_token_accuracy=best_train_acc[1] if best_train_acc else None,
        final_valid_token_accuracy=_final(valid_acc),
        best_valid_token_accuracy=best_valid_acc[1] if best_valid_acc else None,
        final_full_valid_token_accuracy=_final(full_valid_acc),
        best_full_valid_token_accuracy=best_full_acc[1] if best_full_acc else None,
        overfitting=divergence.overfitting,
        divergence=divergence,
        tokens_billed=tokens,
        duration_seconds=_duration(started_at, finished_at),
        reward=summarize_reward(table),
    )


def assess_divergence(
    table: ResultsTable,
    *,
    window: int = DEFAULT_DIVERGENCE_WINDOW,
    tolerance: float = DEFAULT_DIVERGENCE_TOLERANCE,
) -> DivergenceSignal:
    """Compute the train/valid divergence signal; see `DivergenceSignal` for the definition."""
    if window < 3:
        raise ValueError("the divergence window must be at least 3 evaluation points")
    metric: Literal["valid_loss", "full_valid_loss"] = "valid_loss"
    points = table.series("valid_loss")
    if not points:
        metric, points = "full_valid_loss", table.series("full_valid_loss")
    n = len(points)
    base: dict[str, Any] = {"tolerance": tolerance, "evaluation_points": n}
    if n == 0:
        return DivergenceSignal(assessed=False, overfitting=False, explanation="no validation data", **base)
    k = min(window, n // 2)
    if k < 3:
        return DivergenceSignal(
            assessed=False,
            overfitting=False,
            metric=metric,
            explanation=f"only {n} evaluation point(s); at least 6 are needed to see a trend",
            **base,
        )
    values = [v for _, v in points]
    medians = [statistics.median(values[end - k + 1 : end + 1]) for end in range(k - 1, n)]
    best_index = min(range(len(medians)), key=lambda i: (medians[i], i))  # earliest of equal minima
    best_end = best_index + k - 1  # index into points of the best window's last point
    recent = medians[-1]
    best = medians[best_index]
    rise = recent / best - 1 if best > 0 else 0.0

    train = table.series("train_loss")
    train_recent = _median_between(train, points[n - k][0], points[n - 1][0])
    train_best = _median_between(train, points[best_end - k + 1][0], points[best_end][0])
    base.update(
        metric=metric,
        window=k,
        valid_loss_recent=recent,
        valid_loss_best=best,
        best_window_end_step=points[best_end][0],
        valid_loss_rise=rise,
    )
    if train_recent is None or train_best is None:
        return DivergenceSignal(
            assessed=False, overfitting=False, explanation="no training loss at the evaluation steps", **base
        )
    train_change = train_recent / train_best - 1 if train_best > 0 else 0.0
    gap = recent / train_recent if train_recent > 0 else None
    rising = rise >= tolerance
    falling = train_change < 0
    overfitting = rising and falling
    if overfitting:
        explanation = (
            f"{metric} (median of {k} evaluation points) rose {rise:.1%} from its best at step "
            f"{points[best_end][0]} while training loss fell {-train_change:.1%}"
        )
    elif rising:
        explanation = (
            f"{metric} rose {rise:.1%} from its best at step {points[best_end][0]}, but training loss did not "
            f"fall ({train_change:+.1%}): not a train/valid divergence"
        )
    else:
        explanation = f"{metric} is within {tolerance:.0%} of its best (rise {rise:.1%}): no divergence"
    return DivergenceSignal(
        assessed=True,
        overfitting=overfitting,
        explanation=explanation,
        train_loss_recent=train_recent,
        train_loss_at_best=train_best,
        train_loss_change=train_change,
        gap_ratio=gap,
        **base,
    )


def _median_between(series: Sequence[tuple[int, float]], first: int, last: int) -> float | None:
    values = [v for step, v in series if first <= step <= last]
    return statistics.median(values) if values else None


def _final(series: Sequence[tuple[int, float]]) -> float | None:
    return series[-1][1] if series else None


def _best(series: Sequence[tuple[int, float]], *, lowest: bool) -> tuple[int, float] | None:
    """The (step, value) with the lowest (or highest) value; the earliest step on a tie."""
    if not series:
        return None
    pick = min if lowest else max
    value = pick(v for _, v in series)
    return next(p for p in series if p[1] == value)


def _best_kept_checkpoint(
    series: list[tuple[int, float]], checkpoints: Iterable[CheckpointLike | Mapping[str, Any]]
) -> CheckpointRef | None:
    """The checkpoint with the lowest loss at its own step, among the checkpoints the service lists.

    The service keeps only the last three epochs (the final one is the model itself), so the best step of the
    whole run may have no checkpoint any more: the choice is made among those that exist. A checkpoint is scored
    by the last evaluation at or before its step; None when no listed checkpoint has one.
    """
    points = sorted(series)
    steps = [step for step, _ in points]
    scored = []
    for ref in map(_checkpoint_ref, checkpoints):
        i = bisect.bisect_right(steps, ref.step_number)  # the last evaluation at or before the checkpoint
        if i:
            scored.append((points[i - 1][1], ref.step_number, ref))
    if not scored:
        return None
    return min(scored, key=lambda t: (t[0], t[1]))[2]


def _checkpoint_at_or_after(
    step: int, checkpoints: Iterable[CheckpointLike | Mapping[str, Any]]
) -> CheckpointRef | None:
    refs = [_checkpoint_ref(c) for c in checkpoints]
    candidates = [c for c in refs if c.step_number >= step]
    if not candidates:
        return None
    return min(candidates, key=lambda c: c.step_number)


def _checkpoint_ref(checkpoint: CheckpointLike | Mapping[str, Any]) -> CheckpointRef:
    if isinstance(checkpoint, Mapping):
        return CheckpointRef.model_validate(
            {key: checkpoint.get(key) for key in ("id", "step_number", "fine_tuned_model_checkpoint")}
        )
    return CheckpointRef(
        id=checkpoint.id,
        step_number=checkpoint.step_number,
        fine_tuned_model_checkpoint=checkpoint.fine_tuned_model_checkpoint,
    )


def _duration(started_at: datetime | float | None, finished_at: datetime | float | None) -> float | None:
    if started_at is None or finished_at is None:
        return None
    start = started_at.timestamp() if isinstance(started_at, datetime) else float(started_at)
    end = finished_at.timestamp() if isinstance(finished_at, datetime) else float(finished_at)
    seconds = end - start
    return seconds if seconds >= 0 else None
