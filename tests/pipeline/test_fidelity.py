"""What passes here must pass on Azure: the spec and data checks the service would apply, made before upload.

Rules and sources: docs/azure-openai-contract.md. Each test counts what reached the emulator (imports, jobs).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.aoai import AzureOpenAIClient
from shared.deploy import DeployRetry, handle_deploy_message
from shared.epochs import default_epochs
from shared.models_check import check_spec
from shared.runs import RunSpec, RunState
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import Driver, chat_lines


def _imports(services: Services, run_id: str) -> list[Any]:
    return [f for f in services.aoai.files.list(purpose="fine-tune") if (f.filename or "").startswith(run_id)]


def _preference_lines(n: int) -> bytes:
    rows = [{"input": {"messages": [{"role": "user", "content": f"Greet customer number {i}"}]},
             "preferred_output": [{"role": "assistant", "content": f"Hello, customer {i}!"}],
             "non_preferred_output": [{"role": "assistant", "content": "Go away."}]} for i in range(n)]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def test_dpo_on_a_model_dpo_does_not_support_is_refused_before_upload(driver: Driver, services: Services) -> None:
    name = driver.drop("prefs.jsonl", _preference_lines(12), {"model": "gpt-4o-mini-2024-07-18",
                                                              "validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "validation_failed"
    assert "method_not_supported" in record.error.message and "gpt-4.1-mini-2025-04-14" in record.error.message
    assert _imports(services, record.id) == []
    explicit = driver.drop("explicit.jsonl", chat_lines(12), {"method": "dpo", "model": "gpt-4o-mini-2024-07-18"})
    rejected = driver.blob_event(explicit)
    assert rejected is not None and rejected.error is not None and rejected.error.code == "method_not_supported"


def test_preference_data_on_a_dpo_model_trains_with_the_preview(driver: Driver, services: Services) -> None:
    name = driver.drop("dpo.jsonl", _preference_lines(12), {"model": "gpt-4.1-mini-2025-04-14",
                                                            "validation_split": "0", "dpo_beta": "0.3"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.job.id is not None or r.terminal, deploy=False)
    assert record.job.id is not None, record.error
    # Read back on the preview surface (the GA job object has no `method`): DPO with the spec's placement of beta.
    preview = AzureOpenAIClient(services.settings.azure_openai_endpoint, api_version="2025-04-01-preview",
                                api_key=services.settings.azure_openai_api_key)
    seen = preview.jobs.get(record.job.id)
    assert seen.method is not None and seen.method["type"] == "dpo"
    assert seen.method["dpo"]["hyperparameters"]["beta"] == 0.3
    assert (seen.model_extra or {})["trainingType"] == "Standard"
    assert services.aoai.jobs.get(record.job.id).method is None


def test_preview_only_spec_without_a_preview_version_is_refused_naming_the_setting(
    app_env: dict[str, str], driver: Driver
) -> None:
    env = {**app_env, "AZURE_OPENAI_PREVIEW_API_VERSION": ""}
    settings = settings_from_env(env).model_copy(update={"azure_openai_preview_api_version": ""})
    strict = Services.from_settings(settings, env=env)
    strict_driver = Driver(strict, driver.emulator)
    name = strict_driver.drop("typed.jsonl", chat_lines(12), {"training_type": "GlobalStandard"})
    record = strict_driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "api_version_lacks_feature"
    assert "AZURE_OPENAI_PREVIEW_API_VERSION" in record.error.message and "trainingType" in record.error.message
    assert _imports(strict, record.id) == []


def test_a_validation_companion_under_ten_examples_is_rejected(driver: Driver, services: Services) -> None:
    driver.drop("small.validation.jsonl", chat_lines(5, tag=" (held out)"))
    name = driver.drop("small.jsonl", chat_lines(12))
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and "too_few_examples" in record.error.message
    assert "validation file" in record.error.message
    assert _imports(services, record.id) == []


def test_a_split_that_would_upload_a_small_file_is_not_made(driver: Driver, services: Services) -> None:
    name = driver.drop("fifteen.jsonl", chat_lines(15), {"validation_split": "0.2"})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING
    assert record.files.validation is None or record.files.validation.blob is None
    assert any(w.code == "no_validation_split" for w in record.warnings)
    assert [f.filename for f in _imports(services, record.id)] == [f"{record.id}-training.jsonl"]


def test_the_estimate_counts_the_examples_trained_on_after_the_split(driver: Driver, services: Services) -> None:
    name = driver.drop("thirty.jsonl", chat_lines(30), {"validation_split": "0.34"})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING
    assert record.files.validation is not None and record.files.validation.blob is not None
    staging = services.blobs.get_container_client(services.settings.staging_container)
    trained = sum(1 for line in staging.download_blob(record.files.training.blob.name).readall().splitlines()
                  if line.strip())
    assert 10 <= trained <= 20
    report = json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")
    assert report["examples"] == 30
    assert report["estimate"]["n_epochs"] == default_epochs(trained) != default_epochs(30)
    assert record.validation is not None and record.validation.billed_tokens == report["estimate"]["billed_tokens"]
    assert report["estimate"]["billed_tokens"] < report["tokens"]["billed_per_epoch"] * default_epochs(trained)


def test_long_suffix_is_accepted_with_a_warning(driver: Driver) -> None:
    metadata = {"suffix": "a-suffix-of-30-characters-xyz0", "validation_split": "0"}
    name = driver.drop("suffix.jsonl", chat_lines(12), metadata)
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING
    assert any(w.code == "long_suffix" and "40" in w.message and "18" in w.message for w in record.warnings)


def test_continuous_fine_tuning_from_this_resources_model_passes_the_check(driver: Driver,
                                                                           services: Services) -> None:
    name = driver.drop("parent.jsonl", chat_lines(12), {"validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.job.fine_tuned_model is not None or r.terminal, deploy=False)
    parent = record.job.fine_tuned_model
    assert parent is not None, record.error
    listed = services.aoai.models.get(parent)
    assert listed.capabilities.fine_tune is False  # as the spec's GET /models example shows a fine-tuned model
    assert check_spec(services.aoai, RunSpec(model=parent)) is None
    foreign = check_spec(services.aoai, RunSpec(model="gpt-4o-mini-2024-07-18.ft-" + "0" * 32))
    assert foreign is not None and "not in this resource" in foreign.message


def test_a_succeeded_job_without_its_results_file_is_measured_only_once_it_exists(
    driver: Driver, services: Services, emulator: Any
) -> None:
    """Real event streams show "Job succeeded." minutes before the results file: wait, never gate too early."""
    emulator.configure(results_seconds=40.0)  # x time scale 0.25: 10 s of the emulator's clock
    name = driver.drop("late.jsonl", chat_lines(40), {"deploy": "false", "gate_max_train_loss": "10"})
    record = driver.blob_event(name)
    assert record is not None
    waiting = driver.run(record.id, until=lambda r: r.job.status == "succeeded" or r.terminal, deploy=False)
    assert waiting.state == RunState.TRAINING and waiting.job.result_files == []  # succeeded, no file yet
    assert any(w.code == "results_file_pending" for w in waiting.warnings)
    record = driver.run(record.id)
    assert record.state == RunState.TRAINED, record.error
    assert record.metrics is not None and record.metrics.final_train_loss is not None
    assert record.gate is not None and record.gate.passed, record.gate
    assert not any(w.code == "no_results_file" for w in record.warnings)
    assert record.job.trained_tokens and record.metrics.tokens_billed == record.job.trained_tokens


def test_deployment_not_ready_is_retried_through_the_queue(driver: Driver, services: Services,
                                                           emulator: Any) -> None:
    emulator.configure(not_ready_seconds=40.0)  # x 0.25: 10 s of the emulator's clock after ARM's Succeeded
    name = driver.drop("ready.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "not-ready"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED or r.terminal, deploy=False)
    body = json.dumps({"run_id": record.id})
    path = "/openai/deployments/not-ready/chat/completions"
    before = emulator.log_text().count(path)
    with pytest.raises(DeployRetry):  # ARM said Succeeded; the data plane answered DeploymentNotReady
        handle_deploy_message(services, body, 1)
    during = services.store.get(record.id)
    assert during.state == RunState.DEPLOYING and during.deployment.provisioning_state == "Succeeded"
    assert during.deployment.last_error is not None and during.deployment.last_error.code == "DeploymentNotReady"
    assert during.deployment.smoke_test is None
    emulator.advance_clock(15)
    done = handle_deploy_message(services, body, 2)
    assert done is not None and done.state == RunState.DEPLOYED, done.error
    assert done.deployment.smoke_test is not None and done.deployment.smoke_test.status == "passed"
    assert emulator.log_text().count(path) - before == 2
    assert done.deployment.attempts == 2 and not any(w.code == "smoke_test_failed" for w in done.warnings)


def test_best_checkpoint_is_chosen_among_those_the_service_keeps(driver: Driver, services: Services) -> None:
    name = driver.drop("best.jsonl", chat_lines(40), {"deployment_target": "best_checkpoint", "n_epochs": "5",
                                                      "deployment_name": "best-kept"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED, record.error
    kept = {c.id for c in record.job.checkpoints}
    assert len(kept) == 3  # five epochs trained, the last three kept
    assert record.metrics is not None and record.metrics.best_checkpoint is not None
    assert record.metrics.best_checkpoint.id in kept and record.deployment.model in kept
