"""The run: one dropped blob version on its way to a deployed model, and its record's schema.

A run's record is one JSON document (`runs/<run_id>/run.json` in the runs container). Everything a run
produces lives beside it under `runs/<run_id>/` (names in shared/artifacts.py). The schema is documented in
the README. Fields are only added; a record written by an earlier version still loads (its flat `files`
fields and string warnings are read into today's types). The states and their rules are in
shared/lifecycle.py.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.costs import CostEstimate
from shared.evalspec import EvalProgress, Evaluation, EvaluationSpec, Promotion
from shared.gate import GateResult, GateSpec
from shared.lifecycle import SWEPT_STATES, TERMINAL_STATES, RunState, allowed
from shared.metrics import MetricsSummary
from shared.rft import ReinforcementSpec

__all__ = ["SWEPT_STATES", "TERMINAL_STATES", "RunRecord", "RunState"]


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
    test_blob: str | None = None


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


class RetentionSpec(_Model):
    """What the retention pass (shared/retention.py) deletes for this run. Unset fields come from the app's
    `RETENTION_*` settings, so a profile says only where it differs."""

    delete_result_files: bool | None = None
    """Delete the job's result files on the service once the metrics are stored (results.csv stays beside the run)."""
    serving_days: float | None = Field(default=None, gt=0)
    """A serving deployment idle or superseded this many days is reported (and deleted with `delete_serving`)."""
    delete_serving: bool | None = None
    """Delete (not only report) serving deployments idle or superseded for `serving_days`."""
    artifacts_days: float | None = Field(default=None, gt=0)
    """Delete the run's blobs (validation.json, results.csv, metrics, charts, eval files) this many days after it
    ended; the record stays. Unset: kept."""


class RunSpec(_Model):
    """What to train and how: from blob metadata, then the profile, then app settings."""

    profile: str | None = None
    model: str
    training_type: str | None = None
    method: Literal["supervised", "dpo", "reinforcement"] = "supervised"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    reinforcement: ReinforcementSpec | None = None
    """RFT: the grader and the RFT hyperparameters (shared/rft.py); given, it makes the method reinforcement."""
    dpo_beta: float | None = Field(default=None, gt=0, le=2)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    validation_split: float = Field(default=0.1, ge=0.0, lt=0.5)
    max_training_cost: float | None = Field(default=None, ge=0)
    """Reject the run before any upload when its estimated training cost is above this (shared/costs.py)."""
    max_hosting_hours: float | None = Field(default=None, ge=0)
    """Hours of hosting the estimate prices (the deployment's SKU at the price table's hourly rate)."""
    priority: int = Field(default=0, ge=-100, le=100)
    """Admission order among waiting runs: higher first, then first come first served."""
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)
    gate: GateSpec | None = None
    test_split: float = Field(default=0.0, ge=0.0, lt=0.5)
    """Fraction held out as the test set (by example hash, disjoint from the validation split)."""
    evaluation: EvaluationSpec | None = None
    serve_as: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
    """The serving deployment a model that passed its evaluation is promoted onto."""
    retention: RetentionSpec | None = None
    """Per-run (profile, metadata) retention policy over the app's defaults."""

    @model_validator(mode="after")
    def _reinforcement(self) -> RunSpec:
        if self.reinforcement is not None and self.method == "supervised":
            self.method = "reinforcement"  # a grader says what is meant
        if self.reinforcement is not None and self.method != "reinforcement":
            raise ValueError(f"reinforcement (a grader) was given, but the method is {self.method}")
        if self.method == "reinforcement" and self.reinforcement is None:
            raise ValueError(
                "method reinforcement needs a grader: reinforcement.grader in a profile, or blob metadata "
                "rft_grader (JSON)"
            )
        return self


class BlobRef(_Model):
    """A blob (optionally one snapshot of it): where a file the run imports is read from."""

    container: str
    name: str
    snapshot: str | None = None

    @classmethod
    def parse(cls, location: str | None, snapshot: str | None = None) -> BlobRef | None:
        """From the `container/name` strings of schema 1."""
        if not location or "/" not in location:
            return None
        container, name = location.split("/", 1)
        return cls(container=container, name=name, snapshot=snapshot)

    def __str__(self) -> str:
        return f"{self.container}/{self.name}"


class ImportSlot(_Model):
    """One file the run imports into Azure OpenAI (training, validation): where from, under which name, as what."""

    blob: BlobRef | None = None
    filename: str | None = None
    """The run-derived name it is imported under (how a lost answer is reconciled)."""
    file_id: str | None = None
    status: str | None = None

    @property
    def wanted(self) -> bool:
        return self.blob is not None and self.filename is not None


IMPORT_KINDS = ("training", "validation", "test")


class RunFiles(_Model):
    training: ImportSlot = Field(default_factory=ImportSlot)
    validation: ImportSlot = Field(default_factory=ImportSlot)
    test: ImportSlot = Field(default_factory=ImportSlot)
    """The held-out test set as eval items (purpose `evals`): training never sees it."""

    @model_validator(mode="before")
    @classmethod
    def _from_schema_1(cls, data: Any) -> Any:
        """Schema 1 kept flat `training_blob`, `training_snapshot`, `training_file_id`, ... fields."""
        if not isinstance(data, dict) or not any(k.endswith(("_blob", "_file_id", "_filename")) for k in data):
            return data
        upgraded: dict[str, Any] = {}
        for kind in ("training", "validation"):
            blob = BlobRef.parse(data.get(f"{kind}_blob"), data.get(f"{kind}_snapshot"))
            upgraded[kind] = {
                "blob": blob.model_dump() if blob else None,
                "filename": data.get(f"{kind}_filename"),
                "file_id": data.get(f"{kind}_file_id"),
                "status": data.get(f"{kind}_status"),
            }
        return upgraded

    def slot(self, kind: str) -> ImportSlot:
        if kind not in IMPORT_KINDS:
            raise KeyError(kind)
        slot: ImportSlot = getattr(self, kind)
        return slot

    def slots(self) -> list[tuple[str, ImportSlot]]:
        return [(kind, self.slot(kind)) for kind in IMPORT_KINDS]

    @property
    def imported(self) -> bool:
        """Every wanted file has its file id (a job is never created with only some of its files)."""
        return self.training.file_id is not None and all(s.file_id for _, s in self.slots() if s.wanted)


class Lease(_Model):
    """Who may send an effect now (see shared/effects.py). `generation` fences out an earlier holder."""

    generation: int = 0
    holder: str | None = None
    """None when free."""
    expires_at: datetime | None = None
    reconcile: bool = False
    """The next holder must look for the object before creating it (a holder died, or an answer was lost)."""
    done: bool = False
    """The effect's result is recorded: nothing more to send under this key."""

    def held(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and now < self.expires_at


class SurplusObject(_Model):
    """An object the service created that is not the run's result (a late answer of a fenced-off holder, or a
    second copy found when reconciling). The timer deletes or cancels it and records when."""

    kind: Literal["file", "job", "deployment", "eval", "eval_run"]
    id: str
    effect: str
    found_at: datetime
    reason: str
    removed_at: datetime | None = None
    removal_error: str | None = None


class Attempt(_Model):
    """The last thing that went wrong on the way (overwritten per attempt; what a deadline failure reports)."""

    code: str
    message: str
    at: datetime


class Note(_Model):
    """A warning, one per code (a repeat updates the message and the count instead of adding a line)."""

    code: str
    message: str
    count: int = 1

    def __str__(self) -> str:
        return self.message


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
    deleted_at: datetime | None = None
    """When the deployment was deleted (cleanup, retention, max_hosting_hours) or found gone; `provisioning_state`
    then reads `Deleted`. The run keeps its end state (`deployed` says it was deployed; this says it no longer is)."""
    deleted_reason: str | None = None


class RetentionEntry(_Model):
    """One object the retention policy acted on (shared/retention.py): deleted once, or reported."""

    target: Literal["imported_file", "result_file", "deployment", "candidate_deployment", "artifacts"]
    id: str
    """A file id, a deployment name, or the run's folder (`runs/<id>/`) for its artifacts."""
    action: Literal["delete", "report", "gone"]
    """delete: deleted by the pipeline; report: kept, reported (the policy does not delete it); gone: found deleted
    by someone else (Azure deletes a fine-tuned deployment after 15 days without calls)."""
    reason: str
    at: datetime
    removed_at: datetime | None = None
    deleted: list[str] = Field(default_factory=list)
    """For artifacts: the blob names deleted."""


class ValidationSummary(_Model):
    valid: bool
    format: str | None = None
    examples: int = 0
    errors: int = 0
    warnings: int = 0
    billed_tokens: int | None = None
    first_errors: list[str] = Field(default_factory=list)


class WaitInfo(_Model):
    """Why a run waits for room on the resource (shared/admission.py); its live position is in the ledger."""

    since: datetime
    reason: str
    position: int = 0
    """Its place in the queue when it started waiting (`status` shows the current one)."""


class RunRecord(_Model):
    """The record of one run (schema in the README)."""

    schema_version: int = 2
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
    metrics: MetricsSummary | None = None
    gate: GateResult | None = None
    evaluation: Evaluation | None = None
    """The held-out evaluation's verdict (baseline vs candidate): see shared/evaluate.py."""
    eval: EvalProgress | None = None
    promotion: Promotion | None = None
    cost: CostEstimate | None = None
    """Estimated training (and hosting) cost before any upload; the actual training cost once trained."""
    waiting: WaitInfo | None = None
    """Set while the run waits for room on the resource (state `waiting`); kept afterwards as the last wait."""
    leases: dict[str, Lease] = Field(default_factory=dict)
    """One per effect key (`import:training`, `job_create`, `deploy`, ...): see shared/effects.py."""
    surplus: list[SurplusObject] = Field(default_factory=list)
    retention: list[RetentionEntry] = Field(default_factory=list)
    """What the retention policy deleted or reported (shared/retention.py), one entry per object and action."""
    last_attempt: Attempt | None = None
    events_published: int | None = None
    """How many history entries have had their state-change events queued (None: not tracked, no notifier).
    The timer relays the rest, so an event lost between the record write and its queue write is still sent."""
    warnings: list[Note] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    error: RunError | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_schema_1(cls, data: Any) -> Any:
        """Read a schema-1 record into today's types (it is written back as schema 2)."""
        if isinstance(data, dict) and data.get("schema_version", 2) < 2:
            data = dict(data, schema_version=2)
            data["warnings"] = [
                {"code": "note", "message": w} if isinstance(w, str) else w for w in data.get("warnings") or []
            ]
        return data

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def needs_sweep(self) -> bool:
        """The timer must look at this run: its state is swept, or it has chores."""
        return self.state in SWEPT_STATES or self.has_chores

    @property
    def has_chores(self) -> bool:
        """Work owed whatever the job does: objects it does not own wait for deletion, or events to relay."""
        return any(s.removed_at is None for s in self.surplus) or self.unannounced

    @property
    def retains(self) -> bool:
        """An ended run the retention pass must look at on every pass (its index tag `retain`): its deployment
        may still serve, its result files wait for deletion, or its own policy prunes its blobs."""
        if not self.terminal:
            return False
        done = {(e.target, e.id) for e in self.retention if e.action in ("delete", "gone")}
        if self.deployment.name and self.deployment.deleted_at is None:
            return True
        if self.metrics is not None and any(("result_file", f) not in done for f in self.job.result_files):
            return True
        removed = {s.id for s in self.surplus if s.removed_at is not None}
        if self.eval is not None and any(t.temporary and t.deployment not in removed
                                         and ("candidate_deployment", t.deployment) not in done
                                         for t in self.eval.targets):
            return True  # a candidate deployment the evaluation did not delete (it normally does at its verdict)
        own = self.spec.retention if self.spec is not None else None
        return own is not None and own.artifacts_days is not None and not self.pruned

    @property
    def pruned(self) -> bool:
        return any(e.target == "artifacts" and e.removed_at is not None for e in self.retention)

    @property
    def ended_at(self) -> datetime | None:
        """When the run reached its end state (the first history entry in it; later ones are notes)."""
        if not self.terminal:
            return None
        return next((h.at for h in self.history if h.state == self.state), self.updated_at)

    @property
    def unannounced(self) -> bool:
        """State changes whose events were not queued yet (relayed by the timer)."""
        return self.events_published is not None and self.events_published < len(self.history)

    def transition(self, state: RunState, note: str = "", *, at: datetime | None = None) -> None:
        """Move to `state`, recording it in the history. Raises on a move the lifecycle does not allow."""
        if state == self.state:
            return
        if not allowed(self.state, state):
            raise InvalidTransition(f"run {self.id}: {self.state.value} -> {state.value} is not allowed")
        now = at or utcnow()
        self.state = state
        self.updated_at = now
        self.history.append(HistoryEntry(at=now, state=state, note=note))

    def fail(self, code: str, message: str, *, state: RunState = RunState.FAILED) -> None:
        self.error = RunError(code=code, message=message)
        self.transition(state, f"{code}: {message}"[:500])

    def warn(self, code: str, message: str) -> bool:
        """Note a warning, once per code. False when nothing changed (nothing to write)."""
        for note in self.warnings:
            if note.code == code:
                if note.message == message:
                    return False
                note.message = message
                note.count += 1
                return True
        self.warnings.append(Note(code=code, message=message))
        return True

    def attempted(self, code: str, message: str) -> bool:
        """Record what went wrong on this attempt (replacing the previous one). False when it is the same."""
        if self.last_attempt is not None and (self.last_attempt.code, self.last_attempt.message) == (code, message):
            return False
        self.last_attempt = Attempt(code=code, message=message[:1000], at=utcnow())
        return True

    @property
    def awaits_deploy(self) -> bool:
        """Trained, with a deploy message due (the queue takes it from here; the timer re-queues a lost one)."""
        return self.state == RunState.SUCCEEDED

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
