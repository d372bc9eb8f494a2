"""Quality gate: decide from a run's `MetricsSummary` whether the fine-tuned model may be deployed.

Thresholds apply to the model the job delivers, the final one: `final_*` figures of the summary (the last
value present in each column). Validation token accuracy is the full-validation figure when the file has
one, else the mini-batch validation figure. A threshold whose metric is absent (no validation file, a legacy
file without `full_valid_loss`) fails: a gate that cannot check what it was asked to check does not pass.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.metrics import MetricsSummary


class GateSpec(BaseModel):
    """What a run must reach to pass. Every threshold is optional; an empty spec passes every run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_full_valid_loss: float | None = Field(default=None, ge=0)
    max_valid_loss: float | None = Field(default=None, ge=0)
    max_train_loss: float | None = Field(default=None, ge=0)
    min_valid_token_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_train_token_accuracy: float | None = Field(default=None, ge=0, le=1)
    allow_overfitting: bool = True
    min_valid_reward: float | None = Field(default=None)
    """RFT: the final mean grader reward on the validation samples must reach it."""
    max_reward_gap: float | None = Field(default=None, ge=0)
    """RFT: final training reward minus validation reward at most this (the skill: above 0.10, reward hacking)."""


class GateCheck(BaseModel):
    """One threshold checked: the metric, its value (None when absent), the limit, and a sentence."""

    check: str
    metric: str
    value: float | None
    limit: float | None
    passed: bool
    message: str


class GateResult(BaseModel):
    """`passed` with, when it did not, one readable reason per failed check (`checks` has them all)."""

    passed: bool
    reasons: list[str]
    checks: list[GateCheck] = []


_ABSENT_WHY = {
    "full_valid_loss": "no validation file, or a results file without full validation",
    "valid_loss": "no validation file",
    "valid_mean_token_accuracy": "no validation file",
    "train_loss": "no training loss in the results file",
    "train_mean_token_accuracy": "no training token accuracy in the results file",
    "valid_reward_mean": "not a reinforcement fine-tuning job, or no validation reward in the results file",
    "reward_gap": "not a reinforcement fine-tuning job, or no training and validation reward to compare",
}


def evaluate_gate(spec: GateSpec, summary: MetricsSummary) -> GateResult:
    """Check every threshold set in `spec` against `summary`."""
    checks: list[GateCheck] = []
    if spec.max_full_valid_loss is not None:
        checks.append(
            _limit(
                "max_full_valid_loss",
                "full_valid_loss",
                summary.final_full_valid_loss,
                spec.max_full_valid_loss,
                upper=True,
            )
        )
    if spec.max_valid_loss is not None:
        checks.append(_limit("max_valid_loss", "valid_loss", summary.final_valid_loss, spec.max_valid_loss, upper=True))
    if spec.max_train_loss is not None:
        checks.append(_limit("max_train_loss", "train_loss", summary.final_train_loss, spec.max_train_loss, upper=True))
    if spec.min_valid_token_accuracy is not None:
        value: float | None
        if summary.final_full_valid_token_accuracy is not None:
            metric, value = "full_valid_mean_token_accuracy", summary.final_full_valid_token_accuracy
        else:
            metric, value = "valid_mean_token_accuracy", summary.final_valid_token_accuracy
        checks.append(_limit("min_valid_token_accuracy", metric, value, spec.min_valid_token_accuracy, upper=False))
    if spec.min_train_token_accuracy is not None:
        checks.append(
            _limit(
                "min_train_token_accuracy",
                "train_mean_token_accuracy",
                summary.final_train_token_accuracy,
                spec.min_train_token_accuracy,
                upper=False,
            )
        )
    if not spec.allow_overfitting:
        checks.append(_overfitting(summary))
    reward = summary.reward
    if spec.min_valid_reward is not None:
        valid_reward = reward.final_valid_reward_mean if reward else None
        checks.append(_limit("min_valid_reward", "valid_reward_mean", valid_reward, spec.min_valid_reward, upper=False))
    if spec.max_reward_gap is not None:
        checks.append(_limit("max_reward_gap", "reward_gap", reward.train_valid_gap if reward else None,
                             spec.max_reward_gap, upper=True))
    reasons = [c.message for c in checks if not c.passed]
    return GateResult(passed=not reasons, reasons=reasons, checks=checks)


def _limit(check: str, metric: str, value: float | None, limit: float, *, upper: bool) -> GateCheck:
    bound = "limit" if upper else "minimum"
    if value is None:
        why = _ABSENT_WHY.get(metric, "not in the results file")
        message = f"{metric} is absent ({why}), so the {bound} {_format_number(limit)} cannot be checked"
        return GateCheck(check=check, metric=metric, value=None, limit=limit, passed=False, message=message)
    shown, shown_limit = _format_pair(value, limit)
    if upper:
        passed = value <= limit
        verdict = "is within the limit" if passed else "is above the limit"
    else:
        passed = value >= limit
        verdict = "meets the minimum" if passed else "is below the minimum"
    message = f"{metric} {shown} {verdict} {shown_limit}"
    return GateCheck(check=check, metric=metric, value=value, limit=limit, passed=passed, message=message)


def _overfitting(summary: MetricsSummary) -> GateCheck:
    signal = summary.divergence
    if not signal.assessed:
        passed, message = False, f"overfitting cannot be ruled out: {signal.explanation}"
    elif signal.overfitting:
        gap = f" (validation/training loss ratio {signal.gap_ratio:.2f})" if signal.gap_ratio is not None else ""
        passed, message = False, f"the model overfits: {signal.explanation}{gap}"
    else:
        passed, message = True, f"no overfitting: {signal.explanation}"
    return GateCheck(
        check="allow_overfitting",
        metric=signal.metric or "valid_loss",
        value=signal.valid_loss_rise,
        limit=signal.tolerance,
        passed=passed,
        message=message,
    )


def _format_pair(value: float, limit: float) -> tuple[str, str]:
    """Both numbers with the same decimals (at least 2), enough to tell them apart: 0.82 / 0.50, 0.5004 / 0.5000."""
    decimals = 2
    while decimals < 6 and round(limit, decimals) != limit:
        decimals += 1  # never show a limit rounded: 0.0001 stays 0.0001
    while decimals < 6 and value != limit and f"{value:.{decimals}f}" == f"{limit:.{decimals}f}":
        decimals += 1
    return f"{value:.{decimals}f}", f"{limit:.{decimals}f}"


def _format_number(number: float) -> str:
    """At least 2 decimals, more (up to 6) when the number has them: 1.00, 0.50, 0.505."""
    decimals = 2
    while decimals < 6 and round(number, decimals) != number:
        decimals += 1
    return f"{number:.{decimals}f}"
