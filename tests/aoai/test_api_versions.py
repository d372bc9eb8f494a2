"""The api-version per feature, retry hints and error codes of today's Azure OpenAI, on the wire (MockTransport).

Rules and sources: docs/azure-openai-contract.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.aoai import (
    AzureOpenAIClient,
    DeploymentNotReadyError,
    DeploymentsClient,
    NotFoundError,
    UnsupportedFeatureError,
)
from shared.aoai.api_versions import GA, PREVIEW, PREVIEW_SETTING, Feature, choose
from shared.aoai.retry import parse_retry_after

from .conftest import Script, Sleeps, err, jresp

MakeClient = Callable[..., tuple[AzureOpenAIClient, Script]]
MakeArm = Callable[..., tuple[DeploymentsClient, Script]]
JOB = {"id": "ftjob-1", "object": "fine_tuning.job", "status": "pending", "model": "m", "training_file": "file-1"}
GA_FIELDS = {"model", "training_file", "validation_file", "hyperparameters", "suffix", "seed"}


def _sent(script: Script, index: int = 0) -> tuple[str | None, dict[str, Any]]:
    request = script.requests[index]
    return request.url.params.get("api-version"), json.loads(request.content or b"{}")


def test_plain_create_stays_on_ga_with_ga_fields_only(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, JOB))
    client.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-1", validation_file="file-2",
                       hyperparameters={"n_epochs": 2}, suffix="s", seed=1)
    version, body = _sent(script)
    assert version == GA
    assert set(body) <= GA_FIELDS and body["hyperparameters"] == {"n_epochs": 2}


def test_training_type_is_sent_with_the_preview_api_version(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, JOB))
    client.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-1", training_type="GlobalStandard")
    version, body = _sent(script)
    assert version == PREVIEW and body["trainingType"] == "GlobalStandard"


def test_dpo_is_sent_with_the_preview_and_the_specs_placement(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, JOB))
    method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}
    client.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file="file-1", method=method)
    version, body = _sent(script)
    assert version == PREVIEW
    assert body["method"] == method and "hyperparameters" not in body


def test_supervised_method_on_ga_becomes_top_level_hyperparameters(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, JOB))
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 2}}}
    client.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-1", method=method)
    version, body = _sent(script)
    assert version == GA and "method" not in body
    assert body["hyperparameters"] == {"n_epochs": 3, "batch_size": 2}


@pytest.mark.parametrize(
    ("kwargs", "feature"),
    [
        ({"training_type": "Standard"}, "trainingType"),
        ({"method": {"type": "dpo", "dpo": {}}}, "method"),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, "integrations"),
    ],
)
def test_no_preview_version_refuses_before_sending(make_client: MakeClient, kwargs: dict[str, Any],
                                                   feature: str) -> None:
    client, script = make_client(jresp(201, JOB), preview_api_version=None)
    with pytest.raises(UnsupportedFeatureError) as info:
        client.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-1", **kwargs)
    assert script.count == 0
    assert feature in str(info.value) and PREVIEW_SETTING in str(info.value) and GA in str(info.value)
    with pytest.raises(UnsupportedFeatureError):
        client.jobs.api_version_for_create(**kwargs)


def test_a_preview_client_sends_everything_with_its_own_version(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, JOB), api_version=PREVIEW, preview_api_version=None)
    client.jobs.create(model="m", training_file="file-1", training_type="Standard")
    assert _sent(script)[0] == PREVIEW


def test_pause_and_resume_use_the_preview(make_client: MakeClient) -> None:
    client, script = make_client(jresp(200, {**JOB, "status": "pausing"}))
    client.jobs.pause("ftjob-1")
    client.jobs.get("ftjob-1")
    assert [r.url.params["api-version"] for r in script.requests] == [PREVIEW, GA]
    bare, bare_script = make_client(jresp(200, JOB), preview_api_version=None)
    with pytest.raises(UnsupportedFeatureError):
        bare.jobs.resume("ftjob-1")
    assert bare_script.count == 0


def test_choose_table() -> None:
    assert choose([], api_version=GA, preview_api_version=None) == GA
    assert choose([Feature.METHOD], api_version=GA, preview_api_version=PREVIEW) == PREVIEW
    assert choose([Feature.TRAINING_TYPE], api_version="2023-05-15", preview_api_version=PREVIEW) == PREVIEW


def test_x_ms_retry_after_ms_is_a_retry_hint(make_client: MakeClient, sleeps: Sleeps) -> None:
    assert parse_retry_after(httpx.Headers({"x-ms-retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "200", "x-ms-retry-after-ms": "900"})) == 0.2
    client, script = make_client(err(429, "429", "Please retry after 3 seconds.", x_ms_retry_after_ms="2500"),
                                 jresp(200, JOB))
    client.jobs.get("ftjob-1")
    assert script.count == 2 and sleeps == [2.5]


def test_deployment_not_ready_is_its_own_class(make_client: MakeClient) -> None:
    client, _ = make_client(err(404, "DeploymentNotReady", "not ready yet"), max_retries=0)
    with pytest.raises(DeploymentNotReadyError) as info:
        client.chat_completions("dep", [{"role": "user", "content": "hi"}])
    assert isinstance(info.value, NotFoundError) and info.value.code == "DeploymentNotReady"


def test_v1_error_envelope_inner_error_and_type(make_client: MakeClient) -> None:
    body = {"error": {"type": "invalid_request_error", "param": "suffix", "code": None,
                      "message": None, "inner_error": {"code": "invalidPayload", "message": "suffix too long"}}}
    client, _ = make_client(jresp(400, body))
    with pytest.raises(Exception) as info:
        client.jobs.get("ftjob-1")
    error: Any = info.value
    assert error.code == "invalid_request_error" and error.param == "suffix" and error.message == "suffix too long"


def test_developer_tier_put_uses_the_preview_arm_version_and_source_account(make_arm: MakeArm) -> None:
    deployment = {"name": "d", "properties": {"provisioningState": "Succeeded"}, "sku": {"name": "DeveloperTier"}}
    arm, script = make_arm(jresp(200, deployment))
    arm.begin_create_or_update("d", model_name="m.ft-1", sku_name="DeveloperTier", capacity=50,
                               source_account="/subscriptions/s/resourceGroups/r/providers/"
                                              "Microsoft.CognitiveServices/accounts/other")
    request = script.requests[0]
    assert request.url.params["api-version"] == "2025-07-01-preview"
    body = json.loads(request.content)
    assert body["sku"] == {"name": "DeveloperTier", "capacity": 50}
    assert body["properties"]["model"]["sourceAccount"].endswith("/accounts/other")
    standard, standard_script = make_arm(jresp(200, deployment))
    standard.begin_create_or_update("d", model_name="m.ft-1")
    assert standard_script.requests[0].url.params["api-version"] == "2025-09-01"


def test_a_purpose_the_ga_spec_lacks_goes_with_the_preview(make_client: MakeClient) -> None:
    file = {"id": "file-1", "object": "file", "status": "pending", "filename": "t.jsonl", "purpose": "evals"}
    client, script = make_client(jresp(201, file))
    client.files.import_from_url("t.jsonl", "https://a.blob.core.windows.net/c/t.jsonl?sig=x", purpose="evals")
    client.files.import_from_url("t.jsonl", "https://a.blob.core.windows.net/c/t.jsonl?sig=x")
    client.files.upload("t.jsonl", b"{}", purpose="batch")
    assert [r.url.params["api-version"] for r in script.requests] == [PREVIEW, GA, GA]
