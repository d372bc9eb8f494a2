"""The product's function_app.py under the development host, end to end, with two hosts sharing the work.

This is the real composition: blob trigger -> timer -> deploy queue, through devhost processes against
Azurite and the emulator (a stack of its own, on free ports), the way `make demo` runs it.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from devstack import Stack
from shared.runs import RunRecord, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import drop_file

DATA = Path(__file__).resolve().parents[2] / "demo" / "data"


def _wait_until_terminal(services: Services, run_id: str, timeout: float = 120) -> RunRecord | None:
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        found = services.store.load(run_id)
        record = found[0] if found else None
        if record is not None and record.terminal:
            break
        time.sleep(0.5)
    return record


def test_two_devhosts_take_a_drop_to_deployed_once(tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", extra_settings={"TRAINING_POLL_SCHEDULE": "*/1 * * * * *"}) as stack:
        stack.start_devhost()  # a second instance: scale-out
        services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
        services.ensure_storage()
        _, run_id = drop_file(
            services,
            str(DATA / "support-train.jsonl"),
            name="e2e.jsonl",
            validation_path=str(DATA / "support-valid.jsonl"),
            metadata={"deployment_name": "e2e", "suffix": "e2e"},
        )
        record = _wait_until_terminal(services, run_id)
        assert record is not None and record.state == RunState.DEPLOYED, record and record.model_dump_json(indent=1)
        assert record.deployment.smoke_test is not None and record.deployment.smoke_test.status == "passed"
        jobs = [j for j in services.aoai.jobs.list(limit=100) if j.training_file == record.files.training_file_id]
        assert len(jobs) == 1
        files = [f for f in services.aoai.files.list() if f.filename == f"{run_id}-training.jsonl"]
        assert len(files) == 1
        assert services.deployments is not None
        assert [d.name for d in services.deployments.list()] == ["e2e"]
        for name in ("metrics.json", "loss.png", "accuracy.png", "results.csv", "validation.json"):
            assert services.store.get_artifact(run_id, name), name
        logs = [p.read_text() for p in (tmp_path / "stack").glob("devhost*.log")]
        assert len(logs) == 2 and all("devhost ready" in text for text in logs)


def test_quota_refusal_is_retried_by_the_queue_then_poisoned_and_the_run_failed(tmp_path: Path) -> None:
    settings = {
        "TRAINING_POLL_SCHEDULE": "*/1 * * * * *",
        "DEPLOY_MAX_ATTEMPTS": "3",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
    }
    with Stack(tmp_path / "stack", extra_settings=settings) as stack:
        httpx.post(
            f"{stack.emulator_url}/_emulator/scenarios", json={"scenario": "quota", "available_capacity": 0}
        ).raise_for_status()
        services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
        services.ensure_storage()
        _, run_id = drop_file(
            services,
            str(DATA / "support-train.jsonl"),
            name="quota.jsonl",
            metadata={"deployment_name": "no-room", "validation_split": "0"},
        )
        record = _wait_until_terminal(services, run_id)
        assert record is not None and record.state == RunState.FAILED, record and record.state
        assert record.error is not None and record.error.code == "InsufficientQuota"
        assert "gave up after 3 tries" in record.error.message and "capacity" in record.error.message
        assert record.deployment.attempts == 3
        poison = services.queue(services.settings.deploy_queue + "-poison")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not poison.peek_messages():
            time.sleep(0.3)
        messages = poison.peek_messages(max_messages=5)
        assert len(messages) == 1 and run_id in messages[0].content
