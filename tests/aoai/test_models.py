"""Wire models: every status spelling of the contract, the normalised job state, lenient extra fields."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.aoai import AsyncOperation, Checkpoint, Deployment, FileObject, FineTuningJob, JobEvent, JobState, Model

JOB: dict[str, Any] = {"id": "ftjob-1", "object": "fine_tuning.job", "model": "gpt-4o-mini-2024-07-18"}


@pytest.mark.parametrize(
    ("status", "state", "terminal"),
    [
        ("created", JobState.PENDING, False),
        ("pending", JobState.PENDING, False),
        ("validating_files", JobState.PENDING, False),
        ("queued", JobState.PENDING, False),
        ("notRunning", JobState.PENDING, False),
        ("NotRunning", JobState.PENDING, False),
        ("running", JobState.RUNNING, False),
        ("Running", JobState.RUNNING, False),
        ("pausing", JobState.PAUSING, False),
        ("paused", JobState.PAUSED, False),
        ("resuming", JobState.RESUMING, False),
        ("succeeded", JobState.SUCCEEDED, True),
        ("Succeeded", JobState.SUCCEEDED, True),
        ("failed", JobState.FAILED, True),
        ("cancelled", JobState.CANCELLED, True),
        ("canceled", JobState.CANCELLED, True),
        ("Canceled", JobState.CANCELLED, True),
        ("deleted", JobState.DELETED, True),
    ],
)
def test_job_state_for_every_spelling(status: str, state: JobState, terminal: bool) -> None:
    job = FineTuningJob.model_validate({**JOB, "status": status})
    assert job.state is state
    assert job.state == state.value
    assert job.is_terminal is terminal


def test_unknown_job_status_is_rejected() -> None:
    with pytest.raises(ValidationError):
        FineTuningJob.model_validate({**JOB, "status": "vibing"})


def test_job_full_shape_and_extras() -> None:
    job = FineTuningJob.model_validate(
        {
            **JOB,
            "status": "failed",
            "created_at": 1700000000,
            "result_files": None,
            "hyperparameters": {"n_epochs": -1, "batch_size": "auto", "learning_rate_multiplier": 1.0},
            "error": {"code": "invalidTrainingFile", "message": "The training data failed RAI checks", "param": None},
            "trainingType": "Standard",
            "integrations": None,
        }
    )
    assert job.error_message == "invalidTrainingFile: The training data failed RAI checks"
    assert job.model_extra == {"trainingType": "Standard", "integrations": None}
    empty_error = FineTuningJob.model_validate({**JOB, "status": "succeeded", "error": {}})
    assert empty_error.error_message is None


@pytest.mark.parametrize(
    ("status", "terminal", "usable"),
    [
        ("uploaded", False, False),
        ("pending", False, False),
        ("running", False, False),
        ("processed", True, True),
        ("Processed", True, True),
        ("error", True, False),
        ("deleting", False, False),
        ("deleted", True, False),
    ],
)
def test_file_statuses(status: str, terminal: bool, usable: bool) -> None:
    f = FileObject.model_validate({"id": "file-1", "status": status, "bytes": None, "status_details": None})
    assert f.is_terminal is terminal
    assert f.is_usable is usable


def test_event_and_checkpoint() -> None:
    metrics = JobEvent.model_validate(
        {
            "id": "ftevent-1",
            "created_at": 1,
            "level": "warn",
            "message": "Step 100",
            "type": "metrics",
            "data": {"step": 100, "train_loss": 0.1},
        }
    )
    assert metrics.type == "metrics" and metrics.level == "warn" and metrics.data == {"step": 100, "train_loss": 0.1}
    assert JobEvent.model_validate({"id": "ftevent-2", "message": "Job started."}).type == "message"
    ckpt = Checkpoint.model_validate(
        {
            "id": "ftchkpt-1",
            "fine_tuned_model_checkpoint": "m.ft-1:ckpt-step-10",
            "step_number": 10,
            "metrics": {"full_valid_loss": None, "step": 10},
            "fine_tuning_job_id": "ftjob-1",
        }
    )
    assert ckpt.step_number == 10


def test_model_capabilities() -> None:
    m = Model.model_validate(
        {
            "id": "gpt-4o-mini-2024-07-18",
            "object": "model",
            "capabilities": {"fine_tune": True, "chat_completion": True},
            "lifecycle_status": "generally-available",
            "deprecation": {"fine_tune": 1800000000},
        }
    )
    assert m.capabilities.fine_tune and not m.capabilities.embeddings
    assert Model.model_validate({"id": "x"}).capabilities.fine_tune is False


def test_deployment_arm_shape() -> None:
    d = Deployment.model_validate(
        {
            "id": "/subscriptions/s/.../deployments/ft",
            "name": "ft",
            "type": "Microsoft.CognitiveServices/accounts/deployments",
            "sku": {"name": "Standard", "capacity": 1},
            "systemData": {"createdBy": "x"},
            "properties": {
                "model": {"format": "OpenAI", "name": "m.ft-abc", "version": "1"},
                "provisioningState": "creating",
                "rateLimits": [],
                "currentCapacity": 1,
            },
        }
    )
    assert d.provisioning_state == "Creating"
    assert d.model_name == "m.ft-abc"
    assert d.sku is not None and d.sku.capacity == 1


@pytest.mark.parametrize(
    ("status", "terminal", "ok"),
    [("InProgress", False, False), ("Succeeded", True, True), ("Failed", True, False), ("Canceled", True, False)],
)
def test_async_operation(status: str, terminal: bool, ok: bool) -> None:
    op = AsyncOperation.model_validate({"id": "op", "status": status, "percentComplete": 50})
    assert op.is_terminal is terminal and op.succeeded is ok
