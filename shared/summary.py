"""One run, summed up: the row the HTTP API lists, the CLI's runs table, the dashboard and the events carry.

`run_summary(record)` is the only place that reads a run record for a summary: when the record's schema
changes, this module changes and every reader (API, CLI, dashboard, webhook and queue events) follows.
The summary is flat, JSON-friendly and stable: fields are only ever added.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from shared.runs import RunRecord


class SummaryError(BaseModel):
    code: str
    message: str


class RunSummary(BaseModel):
    """What a person (or a receiving system) needs to know about a run at a glance."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: str
    terminal: bool
    """True once the run can change no more (deployed, gated, rejected, failed, cancelled, ...)."""
    created_at: datetime
    updated_at: datetime
    container: str
    blob: str
    profile: str | None = None
    base_model: str | None = None
    method: str | None = None
    examples: int | None = None
    format: str | None = None
    valid: bool | None = None
    billed_tokens: int | None = None
    """Estimated before training (tokens x epochs), from the validation."""
    trained_tokens: int | None = None
    """What the job reports it trained on (what is charged), once it succeeded."""
    cost_estimate: float | None = None
    """Training cost in the price's currency: trained tokens (else the estimate) x price per million tokens."""
    job_id: str | None = None
    job_status: str | None = None
    fine_tuned_model: str | None = None
    deployment: str | None = None
    deployment_state: str | None = None
    deployed_model: str | None = None
    serving: bool | None = None
    """A deployed run: whether its deployment still serves its model (False once deleted, replaced or gone);
    None for every other state."""
    deployment_deleted_reason: str | None = None
    waiting: str | None = None
    """Why a waiting run waits (its position when it started waiting; `status` shows the live one)."""
    smoke_test: str | None = None
    """passed / failed, once a smoke test ran."""
    verdict: str | None = None
    """The quality gate's: passed / failed (None when no gate ran)."""
    evaluation: str | None = None
    """The held-out evaluation's: passed / failed once completed, else its status (None without one)."""
    evaluation_improvement: float | None = None
    """Candidate score minus baseline score on the held-out test set."""
    final_train_loss: float | None = None
    final_valid_loss: float | None = None
    baseline_score: float | None = None
    candidate_score: float | None = None
    """The held-out evaluation's scores (record.evaluation) of the baseline and of the candidate."""
    promoted_to: str | None = None
    """The serving deployment the run's model was promoted onto."""
    error: SummaryError | None = None
    last_attempt: SummaryError | None = None
    """The last thing that went wrong on the way (a retry, a wait), while the run goes on."""
    warnings: int = 0
    last_note: str = ""
    """The note of the latest history entry (what happened last, in the pipeline's words)."""


def run_summary(record: RunRecord, *, price_per_million_tokens: float | None = None) -> RunSummary:
    """The summary of `record` (optionally with a training cost estimate at the given price)."""
    spec = record.spec
    validation = record.validation
    job = record.job
    deployment = record.deployment
    metrics = record.metrics
    tokens = job.trained_tokens
    if tokens is None and validation is not None:
        tokens = validation.billed_tokens
    cost = None
    if price_per_million_tokens is not None and tokens is not None:
        cost = round(tokens * price_per_million_tokens / 1_000_000, 4)
    verdict = None
    if record.gate is not None:
        verdict = "passed" if record.gate.passed else "failed"
    return RunSummary(
        id=record.id,
        state=record.state.value,
        terminal=record.terminal,
        created_at=record.created_at,
        updated_at=record.updated_at,
        container=record.source.container,
        blob=record.source.blob_name,
        profile=spec.profile if spec else None,
        base_model=spec.model if spec else None,
        method=spec.method if spec else None,
        examples=validation.examples if validation else None,
        format=validation.format if validation else None,
        valid=validation.valid if validation else None,
        billed_tokens=validation.billed_tokens if validation else None,
        trained_tokens=job.trained_tokens,
        cost_estimate=cost,
        job_id=job.id,
        job_status=job.status,
        fine_tuned_model=job.fine_tuned_model,
        deployment=deployment.name,
        deployment_state=deployment.provisioning_state,
        deployed_model=deployment.model,
        serving=(deployment.deleted_at is None) if record.state.value == "deployed" and deployment.name else None,
        deployment_deleted_reason=deployment.deleted_reason,
        waiting=(f"position {record.waiting.position}: {record.waiting.reason}"
                 if record.waiting is not None and record.state.value == "waiting" else None),
        smoke_test=deployment.smoke_test.status if deployment.smoke_test else None,
        verdict=verdict,
        evaluation=_evaluation_verdict(record),
        evaluation_improvement=record.evaluation.improvement if record.evaluation is not None else None,
        final_train_loss=_number(metrics.final_train_loss) if metrics else None,
        final_valid_loss=(
            _first_number(metrics.final_full_valid_loss, metrics.final_valid_loss) if metrics else None
        ),
        baseline_score=record.evaluation.baseline.score if record.evaluation is not None else None,
        candidate_score=record.evaluation.candidate.score if record.evaluation is not None else None,
        promoted_to=record.promotion.deployment if record.promotion and record.promotion.model else None,
        error=SummaryError(code=record.error.code, message=record.error.message) if record.error else None,
        last_attempt=(
            SummaryError(code=record.last_attempt.code, message=record.last_attempt.message)
            if record.last_attempt is not None and not record.terminal
            else None
        ),
        warnings=len(record.warnings),
        last_note=record.history[-1].note if record.history else "",
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _first_number(*values: object) -> float | None:
    return next((n for n in map(_number, values) if n is not None), None)


def _evaluation_verdict(record: RunRecord) -> str | None:
    evaluation = record.evaluation
    if evaluation is None:
        return None
    if evaluation.status == "completed" and evaluation.passed is not None:
        return "passed" if evaluation.passed else "failed"
    return evaluation.status
