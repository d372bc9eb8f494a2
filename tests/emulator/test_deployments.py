"""Deployments control plane through azure-mgmt-cognitiveservices (LRO pollers) and raw HTTP."""
from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import Deployment, DeploymentModel, DeploymentProperties, Sku
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from openai import AzureOpenAI

from tests.emulator.conftest import (
    ARM,
    arm_delete,
    arm_get,
    arm_headers,
    arm_put,
    chat_jsonl,
    create_job,
    deploy,
    processed_file,
    wait_job,
)
from tests.harness.emulator import EmulatorProcess

SUB = "00000000-0000-0000-0000-000000000000"
RG = "rg-emulator"
ACCOUNT = "aoai-emulator"
SCOPE = "https://management.azure.com/.default"


class FakeCredential:
    """A TokenCredential that hands out a fixed token."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        assert scopes == (SCOPE,)
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


class _PlainHttpArmAuth(ARMChallengeAuthenticationPolicy):
    """The SDK's own ARM auth policy, allowed to send its token over http to the loopback emulator."""

    def on_request(self, request: Any) -> None:
        request.context.options["enforce_https"] = False
        super().on_request(request)


@pytest.fixture
def mgmt(emulator: EmulatorProcess) -> CognitiveServicesManagementClient:
    credential = FakeCredential()
    return CognitiveServicesManagementClient(
        credential,  # type: ignore[arg-type]
        SUB,
        base_url=emulator.base_url,
        api_version=ARM,
        polling_interval=0.1,
        authentication_policy=_PlainHttpArmAuth(credential, SCOPE),  # type: ignore[arg-type]
    )


def _deployment(model: str, capacity: int = 1) -> Deployment:
    return Deployment(sku=Sku(name="Standard", capacity=capacity),
                      properties=DeploymentProperties(model=DeploymentModel(format="OpenAI", name=model, version="1")))


def _name() -> str:
    return "dep-" + uuid.uuid4().hex[:8]


def test_sdk_create_get_list_update_delete(mgmt: CognitiveServicesManagementClient, trained: dict[str, Any]) -> None:
    model = trained["job"].fine_tuned_model
    name = _name()
    poller = mgmt.deployments.begin_create_or_update(RG, ACCOUNT, name, _deployment(model, 2))
    assert poller.status().lower() in ("accepted", "creating", "inprogress")
    created = poller.result(timeout=30)
    assert created.properties.provisioning_state == "Succeeded"
    assert created.properties.model.name == model and created.sku.capacity == 2
    assert created.id == (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.CognitiveServices/"
                          f"accounts/{ACCOUNT}/deployments/{name}")
    assert created.type == "Microsoft.CognitiveServices/accounts/deployments"
    assert created.properties.rate_limits[1].count == 2000
    fetched = mgmt.deployments.get(RG, ACCOUNT, name)
    assert fetched.etag == created.etag
    assert name in [d.name for d in mgmt.deployments.list(RG, ACCOUNT)]
    updated = mgmt.deployments.begin_update(RG, ACCOUNT, name, Deployment(sku=Sku(name="Standard", capacity=5))
                                            ).result(timeout=30)
    assert updated.sku.capacity == 5 and updated.etag != created.etag
    mgmt.deployments.begin_delete(RG, ACCOUNT, name).result(timeout=30)
    with pytest.raises(ResourceNotFoundError):
        mgmt.deployments.get(RG, ACCOUNT, name)


def test_put_is_a_long_running_operation(emulator: EmulatorProcess, trained: dict[str, Any],
                                         deployments: list[str]) -> None:
    name = _name()
    deployments.append(name)
    model = trained["job"].fine_tuned_model
    source = f"/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.CognitiveServices/accounts/src"
    with emulator.frozen_clock():  # the operation is seen creating, however slow the machine
        _put_and_follow(emulator, name, model, source)
    again = arm_put(emulator, name, model)
    assert again.status_code == 200  # same model: idempotent
    assert "azure-asyncoperation" not in again.headers
    assert again.json()["properties"]["provisioningState"] == "Succeeded"


def _put_and_follow(emulator: EmulatorProcess, name: str, model: str, source: str) -> None:
    response = arm_put(emulator, name, model, source=source)
    assert response.status_code == 201
    assert response.json()["properties"]["provisioningState"] == "Accepted"
    assert response.json()["properties"]["model"] == {"format": "OpenAI", "name": model, "version": "1",
                                                      "source": source}
    assert response.headers["retry-after"] == "1"
    operation_url = response.headers["azure-asyncoperation"]
    assert operation_url.startswith(f"{emulator.base_url}/subscriptions/{SUB}/providers/Microsoft.CognitiveServices/"
                                    "locations/")
    assert operation_url.endswith(f"?api-version={ARM}")
    statuses = []

    def poll() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(operation_url, headers=arm_headers(emulator)).json()
        statuses.append(body["status"])
        return body

    done = poll()
    while done["status"] not in ("Succeeded", "Failed") and len(statuses) < 100:
        emulator.advance_clock(0.1)
        done = poll()
    assert done["status"] == "Succeeded" and done["percentComplete"] == 100.0 and done["endTime"]
    assert statuses[0] == "Creating" and statuses[-1] == "Succeeded", statuses


def test_deleting_is_a_long_running_operation(emulator: EmulatorProcess, trained: dict[str, Any]) -> None:
    name = _name()
    deploy(emulator, name, trained["job"].fine_tuned_model)
    with emulator.frozen_clock():  # seen deleting, however slow the machine
        response = arm_delete(emulator, name)
        assert response.status_code == 202 and response.headers["azure-asyncoperation"]
        assert arm_get(emulator, name).json()["properties"]["provisioningState"] == "Deleting"
        emulator.advance_clock(emulator.admin("GET", "config").json()["deployment_seconds"])
        assert arm_get(emulator, name).status_code == 404
    assert arm_delete(emulator, name).status_code == 204


def test_checkpoints_can_be_deployed_by_id_or_name(emulator: EmulatorProcess, aoai: AzureOpenAI,
                                                   trained: dict[str, Any], deployments: list[str]) -> None:
    checkpoints = list(aoai.fine_tuning.jobs.checkpoints.list(trained["job"].id))
    by_id, by_name = _name(), _name()
    deployments += [by_id, by_name]
    assert deploy(emulator, by_id, checkpoints[1].id)["properties"]["provisioningState"] == "Succeeded"
    assert deploy(emulator, by_name, checkpoints[2].fine_tuned_model_checkpoint)["properties"][
        "provisioningState"] == "Succeeded"
    assert len(checkpoints) == 3  # only the last three epochs are listed
    # Epoch 1 of 4 (step 6) is no longer kept: a deployment of it is refused.
    oldest = arm_put(emulator, _name(), f"{trained['job'].fine_tuned_model}:ckpt-step-6")
    assert oldest.status_code == 400
    assert oldest.json()["error"]["code"] == "DeploymentModelNotSupported"
    assert "last three epochs" in oldest.json()["error"]["message"]


def test_unknown_model_is_an_arm_error(emulator: EmulatorProcess) -> None:
    response = arm_put(emulator, _name(), "gpt-4o-mini-2024-07-18.ft-00000000000000000000000000000000")
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "target", "details", "additionalInfo"}
    assert error["code"] == "DeploymentModelNotSupported" and error["target"] == "properties.model.name"


def test_insufficient_quota(emulator: EmulatorProcess, mgmt: CognitiveServicesManagementClient,
                            trained: dict[str, Any]) -> None:
    emulator.set_scenario("quota", available_capacity=0)
    with pytest.raises(HttpResponseError) as info:
        mgmt.deployments.begin_create_or_update(RG, ACCOUNT, _name(), _deployment(trained["job"].fine_tuned_model, 120))
    assert info.value.status_code == 400
    assert info.value.error is not None and info.value.error.code == "InsufficientQuota"
    assert info.value.error.message == (
        "The specified capacity '120' of account deployment is bigger than available capacity '0' for UsageName "
        "'Tokens Per Minute (thousands) - GPT-4o-mini-finetune'.")


def test_five_fine_tuned_deployments_cap(emulator: EmulatorProcess, trained: dict[str, Any],
                                         deployments: list[str]) -> None:
    existing = httpx.get(emulator.arm_deployments_url(), params={"api-version": ARM},
                         headers=arm_headers(emulator)).json()["value"]
    in_use = sum(1 for d in existing if ".ft-" in d["properties"]["model"]["name"]
                 and d["properties"]["provisioningState"] != "Deleting")
    for _ in range(5 - in_use):
        name = _name()
        deployments.append(name)
        assert arm_put(emulator, name, trained["job"].fine_tuned_model).status_code == 201
    sixth = arm_put(emulator, _name(), trained["job"].fine_tuned_model)
    assert sixth.status_code == 400
    assert sixth.json()["error"]["code"] == "InsufficientQuota"
    assert "number of fine-tuned model deployments" in sixth.json()["error"]["message"]
    base = _name()
    deployments.append(base)
    assert arm_put(emulator, base, "gpt-4o-2024-08-06").status_code == 201  # base models do not count


def test_safety_evaluation_fails_the_job(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    """As the safety-evaluation how-to shows it: a failed job carrying the documented sentence, no model."""
    final = wait_job(aoai, create_job(aoai, processed_file(aoai, chat_jsonl(12, marker="safety_eval_failure"))).id)
    message = ("This model is unable to be deployed. Model evaluation identified that this fine tuned model scores "
               "above acceptable thresholds for [Violence, Self Harm]. Please review your training data set and "
               "resubmit the job.")
    assert final.status == "failed"
    assert final.error.message == message and final.error.code == "contentFilter"
    assert final.fine_tuned_model is None and not final.result_files and final.trained_tokens is None
    events = list(aoai.fine_tuning.jobs.list_events(final.id, limit=50))
    assert events[0].level == "error" and events[0].message == message
    assert "Job succeeded." not in [e.message for e in events]


def test_next_deployment_refused_failed_stuck(emulator: EmulatorProcess, mgmt: CognitiveServicesManagementClient,
                                              trained: dict[str, Any], deployments: list[str]) -> None:
    model = trained["job"].fine_tuned_model
    emulator.set_scenario("deployment_refused", harm_types=["Hate"])
    refused = arm_put(emulator, _name(), model)
    assert refused.status_code == 400 and "thresholds for [Hate]" in refused.json()["error"]["message"]

    emulator.set_scenario("deployment_failed")
    failed = _name()
    deployments.append(failed)
    with pytest.raises(HttpResponseError):
        mgmt.deployments.begin_create_or_update(RG, ACCOUNT, failed, _deployment(model)).result(timeout=30)
    assert arm_get(emulator, failed).json()["properties"]["provisioningState"] == "Failed"

    emulator.set_scenario("deployment_stuck")
    stuck = _name()
    deployments.append(stuck)
    operation = arm_put(emulator, stuck, model).headers["azure-asyncoperation"]
    emulator.advance_clock(60)  # far past a normal deployment's time, without waiting for it
    assert httpx.get(operation, headers=arm_headers(emulator)).json()["status"] == "Creating"
    assert arm_get(emulator, stuck).json()["properties"]["provisioningState"] == "Creating"


def test_list_pages_with_next_link(emulator: EmulatorProcess, mgmt: CognitiveServicesManagementClient,
                                   deployments: list[str]) -> None:
    for _ in range(11):
        name = _name()
        deployments.append(name)
        assert arm_put(emulator, name, "gpt-4o-2024-08-06").status_code == 201
    first = httpx.get(emulator.arm_deployments_url(), params={"api-version": ARM}, headers=arm_headers(emulator))
    assert len(first.json()["value"]) == 10 and first.json()["nextLink"].startswith(emulator.base_url)
    names = [d.name for d in mgmt.deployments.list(RG, ACCOUNT)]
    assert set(deployments) <= set(names) and len(names) == len(set(names))


def test_arm_api_version_and_auth_errors(emulator: EmulatorProcess) -> None:
    url = emulator.arm_deployments_url("x")
    missing = httpx.get(url, headers=arm_headers(emulator))
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"
    wrong = httpx.get(url, params={"api-version": "2021-01-01"}, headers=arm_headers(emulator))
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "InvalidApiVersionParameter"
    anonymous = httpx.get(url, params={"api-version": ARM})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"
    with_key = httpx.get(url, params={"api-version": ARM}, headers={"api-key": emulator.api_key or ""})
    assert with_key.status_code == 401
    absent = httpx.get(url, params={"api-version": ARM}, headers=arm_headers(emulator))
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "ResourceNotFound"
    lower = httpx.get(url.replace("resourceGroups", "resourcegroups").replace("Microsoft.CognitiveServices",
                                                                             "microsoft.cognitiveservices"),
                      params={"api-version": "2023-05-01"}, headers=arm_headers(emulator))
    assert lower.status_code == 404 and lower.json()["error"]["code"] == "ResourceNotFound"
