"""The run: one dropped blob version on its way to a deployed model, and its record's schema.

A run's record is one JSON document (`runs/<run_id>/run.json` in the runs container). Everything a run
produces lives beside it under `runs/<run_id>/`. The schema is documented in the README; fields are only
ever added, never renamed.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.gate import GateSpec


class RunState(StrEnum):
    """Where a run stands. Terminal states never change again."""

    RECEIVED = "received"
    """The blob event was seen and the record created."""
    VALIDATING = "validating"
    """The file is being streamed through the validator."""
    REJECTED = "rejected"
    """Terminal: the file or the spec is unusable; the record says which line and which rule."""
    IMPORTING = "importing"
    """Valid; the files are being imported into Azure OpenAI and processed there."""
    TRAINING = "training"
    """The fine-tuning job exists; the timer follows it."""
    SUCCEEDED = "succeeded"
    """The job succeeded; a deploy message is queued (or, with deploy=false, it ends here, measured)."""
    DEPLOYING = "deploying"
    """Metrics, quality gate, deployment and smoke test are under way."""
    DEPLOYED = "deployed"
    """Terminal: the model is deployed and answered the smoke test."""
    GATED = "gated"
    """Terminal: the quality gate refused the model; nothing was deployed."""
    FAILED = "failed"
    """Terminal: the service or the pipeline failed; `error` says why in the service's words."""
    CANCELLED = "cancelled"
    """Terminal: the job was cancelled."""


TERMINAL_STATES = frozenset({RunState.REJECTED, RunState.DEPLOYED, RunState.GATED, RunState.FAILED, RunState.CANCELLED})
# States the timer advances. Found through the blob index tag `active`, never by listing every run.
ACTIVE_STATES = frozenset({RunState.RECEIVED, RunState.VALIDATING, RunState.IMPORTING, RunState.TRAINING})

ALLOWED_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.RECEIVED: frozenset({RunState.VALIDATING, RunState.REJECTED, RunState.FAILED}),
    RunState.VALIDATING: frozenset({RunState.IMPORTING, RunState.REJECTED, RunState.FAILED}),
    RunState.IMPORTING: frozenset({RunState.TRAINING, RunState.FAILED}),
    RunState.TRAINING: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset({RunState.DEPLOYING, RunState.FAILED}),
    RunState.DEPLOYING: frozenset({RunState.DEPLOYED, RunState.GATED, RunState.FAILED, RunState.SUCCEEDED}),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def derive_run_id(container: str, blob_name: str, version: str) -> str:
    """A run id that is the same every time the same blob version is delivered.

    `version` is the blob's version id where versioning is on, else its ETag. The readable prefix is the
    file's stem; the hash makes it unique per (container, name, version).
    """
    digest = hashlib.sha256(f"{container}/{blob_name}@{version}".encode()).hexdigest()[:12]
    stem = blob_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "run"
    return f"{slug}-{digest}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RunError(_Model):
    code: str
    message: str


class HistoryEntry(_Model):
    at: datetime
    state: RunState
    note: str = ""


class RunSource(_Model):
    container: str
    blob_name: str
    etag: str
    version_id: str | None = None
    size: int | None = None
    sha256: str | None = None
    validation_blob: str | None = None


class Hyperparameters(_Model):
    n_epochs: int | None = Field(default=None, ge=1, le=50)
    batch_size: int | None = Field(default=None, ge=1, le=256)
    learning_rate_multiplier: float | None = Field(default=None, gt=0, le=10)


class DeploymentSpec(_Model):
    enabled: bool = True
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
    sku: str = "Standard"
    capacity: int = Field(default=1, ge=1, le=1000)
    target: Literal["final", "best_checkpoint"] = "final"
    source: str | None = None
    """ARM id of the resource that trained the model, for a model trained elsewhere."""


class RunSpec(_Model):
    """What to train and how: from blob metadata, then the profile, then app settings."""

    profile: str | None = None
    model: str
    training_type: str | None = None
    method: Literal["supervised", "dpo"] = "supervised"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    dpo_beta: float | None = Field(default=None, gt=0, le=2)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    validation_split: float = Field(default=0.1, ge=0.0, lt=0.5)
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)
    gate: GateSpec | None = None


class Claim(_Model):
    """A create about to be sent: written (conditionally) before the POST, so two instances never both send it."""

    at: datetime
    by: str


class RunFiles(_Model):
    training_blob: str | None = None
    """Where the imported training content lives (`container/name`: the dropped blob, or the staged split)."""
    training_snapshot: str | None = None
    """The snapshot of the dropped blob that was validated and is imported (None for staged files)."""
    validation_blob: str | None = None
    validation_snapshot: str | None = None
    training_filename: str | None = None
    validation_filename: str | None = None
    training_file_id: str | None = None
    validation_file_id: str | None = None
    training_status: str | None = None
    validation_status: str | None = None


class CheckpointInfo(_Model):
    id: str
    step_number: int
    fine_tuned_model_checkpoint: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class RunJob(_Model):
    id: str | None = None
    status: str | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    result_files: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    finished_at: datetime | None = None
    estimated_finish: datetime | None = None
    queued_warning_sent: bool = False
    last_event_id: str | None = None
    events_recorded: int = 0
    latest_metrics: dict[str, Any] = Field(default_factory=dict)
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)


class SmokeTest(_Model):
    prompt: str
    answer: str | None = None
    status: Literal["passed", "failed"]
    latency_ms: int
    error: str | None = None


class RunDeployment(_Model):
    queued_at: datetime | None = None
    """When the deploy message was (last) queued."""
    started_at: datetime | None = None
    """When the first deployment attempt began (a deployment still provisioning is given up after a day)."""
    name: str | None = None
    model: str | None = None
    sku: str | None = None
    capacity: int | None = None
    provisioning_state: str | None = None
    attempts: int = 0
    last_error: RunError | None = None
    smoke_test: SmokeTest | None = None


class ValidationSummary(_Model):
    valid: bool
    format: str | None = None
    examples: int = 0
    errors: int = 0
    warnings: int = 0
    billed_tokens: int | None = None
    first_errors: list[str] = Field(default_factory=list)


class RunRecord(_Model):
    """The record of one run (schema in the README)."""

    schema_version: int = 1
    id: str
    state: RunState = RunState.RECEIVED
    created_at: datetime
    updated_at: datetime
    source: RunSource
    spec: RunSpec | None = None
    validation: ValidationSummary | None = None
    files: RunFiles = Field(default_factory=RunFiles)
    job: RunJob = Field(default_factory=RunJob)
    deployment: RunDeployment = Field(default_factory=RunDeployment)
    metrics: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    claims: dict[str, Claim] = Field(default_factory=dict)
    """Creates in flight (`import`, `job_create`): see shared/claims.py."""
    warnings: list[str] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    error: RunError | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def transition(self, state: RunState, note: str = "", *, at: datetime | None = None) -> None:
        """Move to `state`, recording it in the history. Raises on a move the lifecycle does not allow."""
        if state == self.state:
            return
        if state not in ALLOWED_TRANSITIONS.get(self.state, frozenset()):
            raise InvalidTransition(f"run {self.id}: {self.state.value} -> {state.value} is not allowed")
        now = at or utcnow()
        self.state = state
        self.updated_at = now
        self.history.append(HistoryEntry(at=now, state=state, note=note))

    def fail(self, code: str, message: str, *, state: RunState = RunState.FAILED) -> None:
        self.error = RunError(code=code, message=message)
        self.transition(state, f"{code}: {message}"[:500])

    def warn(self, message: str) -> bool:
        """Add a warning once; False when it was already there (nothing to write)."""
        if message in self.warnings:
            return False
        self.warnings.append(message)
        return True

    @property
    def awaits_deploy(self) -> bool:
        """Succeeded and due a deployment: the timer re-queues the deploy message if it was lost."""
        return self.state == RunState.SUCCEEDED and self.spec is not None and self.spec.deployment.enabled

    def entered(self, state: RunState) -> datetime | None:
        """When the run last entered `state`."""
        return next((h.at for h in reversed(self.history) if h.state == state), None)

    @classmethod
    def new(cls, run_id: str, source: RunSource) -> RunRecord:
        now = utcnow()
        return cls(
            id=run_id,
            created_at=now,
            updated_at=now,
            source=source,
            history=[HistoryEntry(at=now, state=RunState.RECEIVED, note=f"blob {source.container}/{source.blob_name}")],
        )


class InvalidTransition(RuntimeError):
    """A state change the run lifecycle does not allow (a bug, or a stale copy of the record)."""
