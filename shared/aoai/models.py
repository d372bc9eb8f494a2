"""Wire models of the Azure OpenAI data plane and of ARM deployments.

They accept every spelling listed in docs/azure-openai-contract.md and keep unknown fields
(``extra="allow"``), so a newer api-version adding fields does not break parsing. A status value the
contract does not know is a validation error (raised by the client as ``APIResponseValidationError``):
a poller must never treat an unknown status as "still running" and spin forever.

Job status spellings differ by surface; :attr:`FineTuningJob.state` folds them into one :class:`JobState`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AsyncOperation",
    "ChatCompletion",
    "Checkpoint",
    "Completion",
    "DeletedFile",
    "Deployment",
    "FileObject",
    "FileStatus",
    "FineTuningJob",
    "JobEvent",
    "JobState",
    "JobStatus",
    "Model",
    "ProvisioningState",
    "Upload",
    "UploadPart",
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _canonical(value: Any, spellings: tuple[str, ...]) -> Any:
    """Match a status case-insensitively to its canonical spelling (``Succeeded`` -> ``succeeded``)."""
    if isinstance(value, str):
        for spelling in spellings:
            if value.lower() == spelling.lower():
                return spelling
    return value


# ---------------------------------------------------------------------------------------------- files
FileStatus = Literal["uploaded", "pending", "running", "processed", "error", "deleting", "deleted"]
_FILE_STATUSES: tuple[str, ...] = get_args(FileStatus)
FILE_TERMINAL: frozenset[str] = frozenset({"processed", "error", "deleted"})


class FileObject(_Wire):
    """``object: "file"``. ``status_details`` carries the reason when ``status == "error"``."""

    id: str
    object: str = "file"
    created_at: int | None = None
    status: FileStatus | None = None
    bytes: int | None = None
    purpose: str | None = None
    filename: str | None = None
    status_details: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return _canonical(value, _FILE_STATUSES)

    @property
    def is_terminal(self) -> bool:
        return self.status in FILE_TERMINAL

    @property
    def is_usable(self) -> bool:
        """Only a ``processed`` file may be used by a job."""
        return self.status == "processed"


class DeletedFile(_Wire):
    id: str
    object: str = "file"
    deleted: bool = True


UploadStatus = Literal["pending", "completed", "cancelled", "expired"]


class Upload(_Wire):
    """``object: "upload"`` (Uploads API, v1): ``file`` is the File once the upload is ``completed``."""

    id: str
    object: str = "upload"
    bytes: int | None = None
    created_at: int | None = None
    expires_at: int | None = None
    filename: str | None = None
    purpose: str | None = None
    status: UploadStatus
    file: FileObject | None = None


class UploadPart(_Wire):
    """``object: "upload.part"``; Azure adds ``azure_block_id`` (the storage block the part became)."""

    id: str
    object: str = "upload.part"
    created_at: int | None = None
    upload_id: str | None = None
    azure_block_id: str | None = None


# ----------------------------------------------------------------------------------------------- jobs
JobStatus = Literal[
    "created",
    "pending",
    "validating_files",
    "queued",
    "notRunning",
    "running",
    "pausing",
    "paused",
    "resuming",
    "succeeded",
    "failed",
    "cancelled",
    "canceled",
    "deleted",
]
_JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)


class JobState(StrEnum):
    """One vocabulary for the job status spellings of every surface."""

    PENDING = "pending"
    """Accepted, not yet training: created, pending, validating_files, queued, notRunning."""
    RUNNING = "running"
    PAUSING = "pausing"
    """Preview only, as are PAUSED and RESUMING."""
    PAUSED = "paused"
    RESUMING = "resuming"
    SUCCEEDED = "succeeded"
    """Terminal: ``fine_tuned_model`` is set."""
    FAILED = "failed"
    """Terminal: ``error`` says why."""
    CANCELLED = "cancelled"
    """Terminal: cancelled or (legacy) canceled."""
    DELETED = "deleted"
    """Terminal (legacy 2023-05-15)."""

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATES


_TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DELETED})
_STATE_OF: dict[str, JobState] = {
    "created": JobState.PENDING,
    "pending": JobState.PENDING,
    "validating_files": JobState.PENDING,
    "queued": JobState.PENDING,
    "notRunning": JobState.PENDING,
    "running": JobState.RUNNING,
    "pausing": JobState.PAUSING,
    "paused": JobState.PAUSED,
    "resuming": JobState.RESUMING,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
    "deleted": JobState.DELETED,
}


class JobError(_Wire):
    code: str | None = None
    message: str | None = None
    param: str | None = None


class FineTuningJob(_Wire):
    """``object: "fine_tuning.job"``; ``status`` as the surface spelled it, ``state`` normalised."""

    id: str
    object: str = "fine_tuning.job"
    created_at: int | None = None
    status: JobStatus
    model: str | None = None
    fine_tuned_model: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    result_files: list[str] | None = None
    finished_at: int | None = None
    trained_tokens: int | None = None
    error: JobError | None = None
    estimated_finish: int | None = None
    hyperparameters: dict[str, Any] | None = None
    suffix: str | None = None
    """The suffix asked for: ``suffix`` on the versioned surface, ``user_provided_suffix`` on v1."""
    seed: int | None = None
    method: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    """v1 only: the pairs the job was created with."""

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return _canonical(value, _JOB_STATUSES)

    @model_validator(mode="before")
    @classmethod
    def _v1_suffix(cls, data: Any) -> Any:
        """v1 (OpenAI's shape) names the suffix asked for ``user_provided_suffix``."""
        if isinstance(data, dict) and data.get("suffix") is None and data.get("user_provided_suffix") is not None:
            return {**data, "suffix": data["user_provided_suffix"]}
        return data

    @property
    def state(self) -> JobState:
        return _STATE_OF[self.status]

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def error_message(self) -> str | None:
        """The job error as ``code: message``, or None when the job carries no error."""
        if self.error is None or not (self.error.code or self.error.message):
            return None
        return f"{self.error.code}: {self.error.message}" if self.error.code else self.error.message


class JobEvent(_Wire):
    """``object: "fine_tuning.job.event"``; ``type == "metrics"`` events carry ``data`` with step/loss keys."""

    id: str
    object: str = "fine_tuning.job.event"
    created_at: int | None = None
    level: Literal["info", "warning", "warn", "error"] = "info"
    message: str = ""
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None

    @field_validator("level", "type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Checkpoint(_Wire):
    """``object: "fine_tuning.job.checkpoint"``; one per epoch."""

    id: str
    object: str = "fine_tuning.job.checkpoint"
    created_at: int | None = None
    fine_tuned_model_checkpoint: str | None = None
    step_number: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    fine_tuning_job_id: str | None = None


# --------------------------------------------------------------------------------------------- models
class ModelCapabilities(_Wire):
    fine_tune: bool = False
    inference: bool = False
    completion: bool = False
    chat_completion: bool = False
    embeddings: bool = False


class ModelDeprecation(_Wire):
    fine_tune: int | None = None
    inference: int | None = None


class Model(_Wire):
    """``object: "model"``: a base model, or a fine-tuned one (``model`` = its base, ``fine_tune`` = job id)."""

    id: str
    object: str = "model"
    created_at: int | None = None
    status: str | None = None
    model: str | None = None
    fine_tune: str | None = None
    capabilities: ModelCapabilities = Field(default_factory=ModelCapabilities)
    lifecycle_status: str | None = None
    deprecation: ModelDeprecation | None = None


# ---------------------------------------------------------------------------------------- inference
class ChatMessage(_Wire):
    role: str = "assistant"
    content: str | None = None


class ChatChoice(_Wire):
    index: int = 0
    message: ChatMessage = Field(default_factory=ChatMessage)
    finish_reason: str | None = None


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(_Wire):
    id: str | None = None
    object: str = "chat.completion"
    created: int | None = None
    model: str | None = None
    choices: list[ChatChoice] = Field(default_factory=list)
    usage: Usage | None = None

    @property
    def content(self) -> str | None:
        """``choices[0].message.content`` (None when there is no choice or it was filtered)."""
        return self.choices[0].message.content if self.choices else None


class CompletionChoice(_Wire):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None


class Completion(_Wire):
    id: str | None = None
    object: str = "text_completion"
    created: int | None = None
    model: str | None = None
    choices: list[CompletionChoice] = Field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str | None:
        return self.choices[0].text if self.choices else None


# ---------------------------------------------------------------------------------------- deployments
ProvisioningState = Literal["Accepted", "Creating", "Deleting", "Moving", "Failed", "Succeeded", "Disabled", "Canceled"]
_PROVISIONING_STATES: tuple[str, ...] = get_args(ProvisioningState)
PROVISIONING_TERMINAL: frozenset[str] = frozenset({"Succeeded", "Failed", "Canceled", "Disabled"})


class Sku(_Wire):
    name: str
    capacity: int | None = None


class DeploymentModel(_Wire):
    format: str = "OpenAI"
    name: str
    version: str | None = None
    source: str | None = None


class DeploymentProperties(_Wire):
    model: DeploymentModel | None = None
    provisioning_state: ProvisioningState | None = Field(default=None, alias="provisioningState")
    capabilities: dict[str, Any] | None = None
    rate_limits: list[dict[str, Any]] | None = Field(default=None, alias="rateLimits")
    current_capacity: int | None = Field(default=None, alias="currentCapacity")

    @field_validator("provisioning_state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        return _canonical(value, _PROVISIONING_STATES)


class Deployment(_Wire):
    """ARM ``Microsoft.CognitiveServices/accounts/deployments`` resource."""

    id: str | None = None
    name: str
    type: str | None = None
    sku: Sku | None = None
    etag: str | None = None
    system_data: dict[str, Any] | None = Field(default=None, alias="systemData")
    properties: DeploymentProperties = Field(default_factory=DeploymentProperties)

    @property
    def provisioning_state(self) -> str | None:
        return self.properties.provisioning_state

    @property
    def model_name(self) -> str | None:
        return self.properties.model.name if self.properties.model else None

    def system_time(self, key: str) -> datetime | None:
        """ARM ``systemData.createdAt`` / ``lastModifiedAt`` as an aware datetime (None when absent)."""
        value = (self.system_data or {}).get(key)
        if not isinstance(value, str):
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class OperationError(_Wire):
    code: str | None = None
    message: str | None = None


class AsyncOperation(_Wire):
    """ARM ``Azure-AsyncOperation`` status. ``status`` is free text while running (``InProgress``,
    ``Accepted``, ``Creating``, ...); only ``Succeeded``, ``Failed`` and ``Canceled`` are terminal."""

    id: str | None = None
    name: str | None = None
    status: str
    start_time: str | None = Field(default=None, alias="startTime")
    end_time: str | None = Field(default=None, alias="endTime")
    percent_complete: float | None = Field(default=None, alias="percentComplete")
    error: OperationError | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.lower() in {"succeeded", "failed", "canceled", "cancelled"}

    @property
    def succeeded(self) -> bool:
        return self.status.lower() == "succeeded"
