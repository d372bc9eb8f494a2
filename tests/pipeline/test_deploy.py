"""Deploy and measure against real Azurite and the emulator: metrics, charts, gate, deployment, smoke test."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from shared.advance import tick
from shared.deploy import DeployRetry, handle_deploy_message
from shared.runs import RunRecord, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.summary import run_summary
from tests.harness.pipeline import Driver, age_run, chat_lines

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(driver: Driver, name: str, data: bytes, metadata: dict[str, str] | None = None) -> RunRecord:
    driver.drop(name, data, metadata)
    record = driver.blob_event(name)
    assert record is not None
    return driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED or r.terminal, deploy=False)


def test_succeeded_run_is_measured_deployed_and_smoke_tested(driver: Driver, services: Services) -> None:
    record = _train(driver, "deploy-ok.jsonl", chat_lines(40), {"deployment_name": "ok-deploy"})
    assert record.state == RunState.SUCCEEDED
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED, record.error

    metrics = json.loads(services.store.get_artifact(record.id, "metrics.json") or b"{}")
    assert metrics["columns"] == "current"
    assert metrics["final_train_loss"] is not None and metrics["best_full_valid_loss"] is not None
    assert metrics["tokens_billed"] == record.job.trained_tokens
    for chart in ("loss.png", "accuracy.png"):
        png = services.store.get_artifact(record.id, chart) or b""
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    csv = (services.store.get_artifact(record.id, "results.csv") or b"").decode()
    assert csv.startswith("step,train_loss")

    assert record.deployment.name == "ok-deploy" and record.deployment.model == record.job.fine_tuned_model
    assert services.deployments is not None
    deployed = services.deployments.get("ok-deploy")
    assert deployed is not None and deployed.provisioning_state == "Succeeded"
    assert deployed.model_name == record.job.fine_tuned_model
    smoke = record.deployment.smoke_test
    assert smoke is not None and smoke.status == "passed" and smoke.answer and smoke.latency_ms >= 0
    assert "Settings >" in smoke.answer  # answered from the training data, so the smoke test means something
    states = [h.state for h in record.history]
    assert states[-4:] == [RunState.SUCCEEDED, RunState.MEASURING, RunState.DEPLOYING, RunState.DEPLOYED]


def test_quality_gate_failure_ends_gated_with_nothing_deployed(driver: Driver, services: Services) -> None:
    record = _train(
        driver, "gated.jsonl", chat_lines(40), {"deployment_name": "gated-deploy", "gate_max_full_valid_loss": "0.0001"}
    )
    record = driver.run(record.id)
    assert record.state == RunState.GATED
    assert record.error is not None and record.error.code == "quality_gate"
    assert "full_valid_loss" in record.error.message and "above the limit 0.0001" in record.error.message
    assert record.gate is not None and record.gate.passed is False
    assert services.deployments is not None and services.deployments.get("gated-deploy") is None
    assert services.store.get_artifact(record.id, "metrics.json") is not None  # measured all the same


def test_safety_evaluation_failure_fails_the_run_with_its_message(driver: Driver, services: Services) -> None:
    """The how-to shows the post-training safety evaluation as a failed job: the run fails in training."""
    record = _train(
        driver,
        "unsafe.jsonl",
        chat_lines(12, marker="EMULATOR_SCENARIO:safety_eval_failure"),
        {"validation_split": "0", "deployment_name": "unsafe-deploy"},
    )
    record = driver.run(record.id)
    assert record.state == RunState.FAILED
    assert record.error is not None and "unable to be deployed" in record.error.message
    assert RunState.SUCCEEDED not in [h.state for h in record.history]
    assert services.deployments is not None and services.deployments.get("unsafe-deploy") is None


def test_quota_error_is_retried_then_fails_with_the_service_words(
    driver: Driver, services: Services, emulator: Any
) -> None:
    record = _train(driver, "quota.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "q-deploy"})
    emulator.set_scenario("quota", available_capacity=0)
    body = json.dumps({"run_id": record.id})
    for attempt in (1, 2):
        with pytest.raises(DeployRetry):
            handle_deploy_message(services, body, attempt)
        during = services.store.get(record.id)
        assert during.state == RunState.DEPLOYING
        assert during.deployment.last_error is not None and "InsufficientQuota" in during.deployment.last_error.code
    with pytest.raises(DeployRetry):  # the last try: the run is failed and the message goes to poison
        handle_deploy_message(services, body, 3)
    record = services.store.get(record.id)
    assert record.state == RunState.FAILED
    assert record.error is not None and "InsufficientQuota" in record.error.code
    assert "capacity" in record.error.message and "gave up after 3 tries" in record.error.message
    assert record.deployment.attempts == 3


def test_duplicate_deploy_message_deploys_once(driver: Driver, services: Services, emulator: Any) -> None:
    record = _train(driver, "twice.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "twice"})
    queue = services.queue(services.settings.deploy_queue)
    queue.send_message(json.dumps({"run_id": record.id}))  # a second copy of the timer's message
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED
    assert queue.peek_messages(max_messages=5) == []
    assert services.deployments is not None
    assert [d.name for d in services.deployments.list()].count("twice") == 1
    puts = [line for line in emulator.log_text().splitlines() if "PUT" in line and "/deployments/twice" in line]
    assert len(puts) == 1
    # a redelivery after the end changes nothing
    assert handle_deploy_message(services, json.dumps({"run_id": record.id})) is not None
    assert services.store.get(record.id).state == RunState.DEPLOYED


def test_existing_deployment_with_same_model_is_success(driver: Driver, services: Services) -> None:
    record = _train(driver, "exists.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "pre"})
    assert services.deployments is not None and record.job.fine_tuned_model
    services.deployments.create_or_update_and_wait("pre", model_name=record.job.fine_tuned_model)
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED and record.deployment.provisioning_state == "Succeeded"


def test_legacy_api_version_results_are_parsed(app_env: dict[str, str], services: Services, emulator: Any) -> None:
    env = {**app_env, "AZURE_OPENAI_API_VERSION": "2023-05-15"}
    # No trainingType: with one the job would be created with the preview api-version (it is a preview-only field).
    settings = settings_from_env(env).model_copy(update={"default_training_type": ""})
    legacy = Services.from_settings(settings, env=env)  # deployments cleaned up by `services`
    driver = Driver(legacy, emulator)
    record = _train(driver, "legacy.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "legacy"})
    assert record.state == RunState.SUCCEEDED, record.error
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED, record.error
    assert record.metrics is not None and record.metrics.columns == "legacy"
    assert record.metrics.final_train_loss is not None


def test_best_checkpoint_target_deploys_a_checkpoint(driver: Driver, services: Services) -> None:
    record = _train(
        driver,
        "ckpt.jsonl",
        chat_lines(30),
        {"deployment_name": "ckpt-deploy", "deployment_target": "best_checkpoint", "n_epochs": "3"},
    )
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED, record.error
    assert record.metrics is not None and record.metrics.best_checkpoint is not None
    best = record.metrics.best_checkpoint.id
    assert record.deployment.model == best and best.startswith("ftchkpt-")
    assert best in {c.id for c in record.job.checkpoints}
    assert services.deployments is not None
    deployed = services.deployments.get("ckpt-deploy")
    assert deployed is not None and deployed.model_name == best


def test_deploy_message_before_the_run_says_succeeded_is_retried_not_dropped(
    driver: Driver, services: Services
) -> None:
    driver.drop("early.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "early"})
    record = driver.blob_event("early.jsonl")
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.TRAINING, deploy=False)
    with pytest.raises(DeployRetry, match="still training"):
        handle_deploy_message(services, json.dumps({"run_id": record.id}), 1)
    assert services.store.get(record.id).state == RunState.TRAINING
    assert driver.run(record.id).state == RunState.DEPLOYED


def test_concurrent_duplicate_deploy_messages_deploy_once(driver: Driver, services: Services, emulator: Any) -> None:
    record = _train(driver, "race-deploy.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "race"})
    body = json.dumps({"run_id": record.id})
    errors: list[BaseException] = []
    retried: list[DeployRetry] = []
    barrier = threading.Barrier(3)

    def deliver() -> None:
        barrier.wait()
        try:
            handle_deploy_message(services, body, 1)
        except DeployRetry as exc:  # the queue would deliver it again later
            retried.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not retried  # a copy that meets the deploy lease spends no queue retry
    record = services.store.get(record.id)
    assert record.state == RunState.DEPLOYED
    assert [h.state for h in record.history].count(RunState.DEPLOYED) == 1
    puts = [line for line in emulator.log_text().splitlines() if "PUT" in line and "/deployments/race " in line]
    assert len(puts) == 1  # one instance deployed; the copies that overlapped it re-sent themselves for later
    assert handle_deploy_message(services, body, 2) is not None  # a re-sent copy finds the run deployed
    assert len([ln for ln in emulator.log_text().splitlines() if "PUT" in ln and "/deployments/race " in ln]) == 1


def test_last_try_with_an_unexpected_error_fails_the_run_with_the_reason(
    driver: Driver, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _train(driver, "boom.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "boom"})
    import shared.deploy

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("results.csv storage is on fire")

    monkeypatch.setattr(shared.deploy, "ensure_metrics", broken)
    body = json.dumps({"run_id": record.id})
    with pytest.raises(RuntimeError):
        handle_deploy_message(services, body, 1)
    assert services.store.get(record.id).state == RunState.MEASURING
    with pytest.raises(RuntimeError):
        handle_deploy_message(services, body, 3)  # the last try (host.json maxDequeueCount=3 in these tests)
    record = services.store.get(record.id)
    assert record.state == RunState.FAILED and record.error is not None
    assert record.error.code == "deploy_error" and "storage is on fire" in record.error.message


def test_lost_deploy_message_is_queued_again_by_the_timer(driver: Driver, services: Services) -> None:
    record = _train(driver, "lost.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "lost"})
    queue = services.queue(services.settings.deploy_queue)
    queue.clear_messages()  # the message is lost
    tick(services)
    assert queue.peek_messages() == []  # not yet: the first message gets 10 minutes
    age_run(services, record.id, timedelta(minutes=11))
    tick(services)
    assert [json.loads(m.content)["run_id"] for m in queue.peek_messages()] == [record.id]
    assert driver.run(record.id).state == RunState.DEPLOYED


def test_deployment_still_provisioning_is_checked_again_later(
    driver: Driver, services: Services, emulator: Any
) -> None:
    record = _train(driver, "slow.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "slow"})
    emulator.set_scenario("deployment_stuck")
    services.settings.deploy_wait_seconds = 1.0
    queue = services.queue(services.settings.deploy_queue)
    queue.clear_messages()
    record = handle_deploy_message(services, json.dumps({"run_id": record.id}), 1)  # no exception: not a failure
    assert record is not None and record.state == RunState.DEPLOYING
    assert any("still provisioning" in w.message for w in record.warnings)
    assert record.deployment.started_at is not None and record.deployment.queued_at is not None
    assert queue.peek_messages() == []  # queued again, invisible for DEPLOY_WAIT_SECONDS
    assert queue.get_queue_properties().approximate_message_count == 1


def test_cleanup_removes_the_deployment_and_files_but_keeps_the_model(driver: Driver, services: Services) -> None:
    from shared.cleanup import cleanup_run

    record = _train(driver, "clean.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "clean"})
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED and record.files.training.file_id
    tick(services)  # retention deletes the imported file once the job ended, and records it
    removed = [s for s in services.store.get(record.id).surplus if s.effect == "retention"]
    assert [s.id for s in removed] == [record.files.training.file_id] and removed[0].removed_at is not None
    done = cleanup_run(services, record.id)
    assert done == ["deleted deployment clean"]  # the file was gone already
    assert services.deployments is not None and services.deployments.get("clean") is None
    assert [f.id for f in services.aoai.files.list() if f.id == record.files.training.file_id] == []
    models = {m.id for m in services.aoai.models.list()}
    assert record.job.fine_tuned_model in models  # the model stays and can be deployed again
    assert cleanup_run(services, record.id) == []  # repeating it is harmless
    cleaned = services.store.get(record.id)
    assert any(w.message.startswith("cleaned up: deleted deployment clean") for w in cleaned.warnings)
    # The run keeps its end state; its deployment no longer reads as serving (the summary, the table, status).
    assert cleaned.state == RunState.DEPLOYED and cleaned.deployment.provisioning_state == "Deleted"
    assert cleaned.deployment.deleted_at is not None and run_summary(cleaned).serving is False
    assert [(e.target, e.id, e.action) for e in cleaned.retention] == [
        ("imported_file", record.files.training.file_id, "delete"),  # by the tick, once the job ended
        ("deployment", "clean", "delete"),
    ]
