"""The official clients drive the whole lifecycle against the emulator: the openai SDK at every supported
data-plane api-version and azure-mgmt-cognitiveservices at its *default* api-version (2025-09-01 in 14.x).

With the delays Azure shows (the results file minutes after "Job succeeded.", `DeploymentNotReady` after ARM's
`Succeeded`) switched on, so what passes here is what a client must also survive on Azure.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import openai
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import Deployment, DeploymentModel, DeploymentProperties, Sku
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

from tests.emulator.conftest import GA, LEGACY, PREVIEW, chat_jsonl, make_client, processed_file, wait_for, wait_job
from tests.harness.emulator import EmulatorProcess

SUB = "00000000-0000-0000-0000-000000000000"
RG, ACCOUNT = "rg-emulator", "aoai-emulator"
SCOPE = "https://management.azure.com/.default"


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


class _PlainHttpArmAuth(ARMChallengeAuthenticationPolicy):
    def on_request(self, request: Any) -> None:
        request.context.options["enforce_https"] = False  # loopback emulator over http
        super().on_request(request)


def _mgmt(emulator: EmulatorProcess, **kwargs: Any) -> CognitiveServicesManagementClient:
    credential = _Credential()
    return CognitiveServicesManagementClient(
        credential,  # type: ignore[arg-type]
        SUB,
        base_url=emulator.base_url,
        polling_interval=0.1,
        authentication_policy=_PlainHttpArmAuth(credential, SCOPE),  # type: ignore[arg-type]
        **kwargs,
    )


def _deployment(model: str, sku: str = "Standard", capacity: int = 1) -> Deployment:
    return Deployment(sku=Sku(name=sku, capacity=capacity),
                      properties=DeploymentProperties(model=DeploymentModel(format="OpenAI", name=model, version="1")))


def _url_of(pipeline_response: Any, deserialized: Any, headers: Any) -> tuple[str, Any]:
    return str(pipeline_response.http_request.url), deserialized


@pytest.mark.parametrize("version", [GA, PREVIEW, LEGACY])
def test_official_clients_drive_the_lifecycle(emulator: EmulatorProcess, version: str) -> None:
    emulator.configure(results_seconds=4.0, not_ready_seconds=8.0)  # x time scale 0.25: 1 s and 2 s
    aoai = make_client(emulator, version)
    training = processed_file(aoai, chat_jsonl(12))
    extra = {"trainingType": "Standard"} if version == PREVIEW else None  # preview-only field
    job = aoai.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=training, suffix="sdk",
                                       hyperparameters={"n_epochs": 4}, extra_body=extra)
    final = wait_job(aoai, job.id)
    assert final.status == "succeeded"
    assert final.fine_tuned_model and final.fine_tuned_model.endswith("-sdk")
    if not final.result_files:  # "Job succeeded." comes before the results file: wait for it, bounded
        final = wait_for(lambda: aoai.fine_tuning.jobs.retrieve(job.id), lambda j: bool(j.result_files), timeout=20)
    assert final.trained_tokens and final.result_files[0].startswith("file-")
    results = aoai.files.content(final.result_files[0]).text
    header = results.splitlines()[0]
    assert header.startswith("step,elapsed_tokens" if version == LEGACY else "step,train_loss")
    checkpoints = list(aoai.fine_tuning.jobs.checkpoints.list(job.id))
    assert len(checkpoints) == 3 and checkpoints[0].fine_tuned_model_checkpoint == final.fine_tuned_model

    mgmt = _mgmt(emulator)  # no api_version: the SDK's default
    assert mgmt._config.api_version == "2025-09-01"
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    created = mgmt.deployments.begin_create_or_update(RG, ACCOUNT, name, _deployment(final.fine_tuned_model)).result(
        timeout=30)
    assert created.properties.provisioning_state == "Succeeded"
    url, fetched = mgmt.deployments.get(RG, ACCOUNT, name, cls=_url_of)
    assert "api-version=2025-09-01" in url and fetched.properties.model.name == final.fine_tuned_model
    try:
        with pytest.raises(openai.NotFoundError) as not_ready:  # ARM says Succeeded; the data plane not yet
            aoai.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=20)
        assert not_ready.value.code == "DeploymentNotReady"

        def ask() -> Any:
            try:
                return aoai.chat.completions.create(model=name, messages=[{"role": "user", "content": "question 3"}])
            except openai.NotFoundError as exc:
                assert exc.code == "DeploymentNotReady"
                return None

        answer = wait_for(ask, lambda a: a is not None, timeout=20)
        assert answer.choices[0].message.content
    finally:
        mgmt.deployments.begin_delete(RG, ACCOUNT, name).result(timeout=30)
    assert name not in [d.name for d in mgmt.deployments.list(RG, ACCOUNT)]
    aoai.files.delete(training)


def test_developer_tier_needs_its_api_version_and_lives_for_its_lifetime(emulator: EmulatorProcess,
                                                                          trained: dict[str, Any]) -> None:
    model = trained["job"].fine_tuned_model
    old = _mgmt(emulator, api_version="2024-10-01")
    with pytest.raises(HttpResponseError) as refused:
        old.deployments.begin_create_or_update(RG, ACCOUNT, "dev-old", _deployment(model, "DeveloperTier", 50))
    assert refused.value.status_code == 400 and "2025-07-01-preview" in str(refused.value.message)
    emulator.configure(developer_lifetime_seconds=8.0)  # 24 h on Azure; x time scale 0.25: 2 s
    dev = _mgmt(emulator, api_version="2025-07-01-preview")
    name = f"dev-{uuid.uuid4().hex[:8]}"
    created = dev.deployments.begin_create_or_update(RG, ACCOUNT, name, _deployment(model, "DeveloperTier", 50)).result(
        timeout=30)
    assert created.sku.name == "DeveloperTier" and created.properties.provisioning_state == "Succeeded"
    wait_for(lambda: [d.name for d in dev.deployments.list(RG, ACCOUNT)], lambda names: name not in names, timeout=20)


def test_safety_evaluation_reaches_the_sdk_as_a_failed_job(emulator: EmulatorProcess) -> None:
    aoai = make_client(emulator, GA)
    job = aoai.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18",
                                       training_file=processed_file(aoai, chat_jsonl(12, marker="safety_eval_failure")))
    final = wait_job(aoai, job.id)
    assert final.status == "failed" and final.error is not None
    assert final.error.message.startswith("This model is unable to be deployed. Model evaluation identified")
