"""Open-weight models: the shipped list, the spec it shapes, the format a deployment is sent with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared import open_weight
from shared.aoai.deployments import DeploymentsClient
from shared.settings import Settings
from shared.spec import SpecError, build_spec, spec_warnings


def test_the_list_is_data_with_its_source_and_date() -> None:
    catalogue = open_weight.catalogue()
    assert "microsoft/azure-skills" in catalogue.source and catalogue.date == "2026-08-21"
    formats = {m.id: m.arm_format for m in catalogue.models}
    # case-sensitive provider strings of deployment.md; "OpenAI-OSS" is the CLI's and never sent to ARM
    assert formats == {"gpt-oss-20b": "Microsoft", "Ministral-3B": "Mistral AI", "Llama-3.3-70B-Instruct": "Meta",
                       "Qwen-3-32B": "Alibaba"}
    assert catalogue.cli_format == "OpenAI-OSS" and "OpenAI-OSS" not in formats.values()
    assert {(m.training_type, m.deployment_sku, m.min_capacity, m.methods) for m in catalogue.models} == {
        ("GlobalStandard", "GlobalStandard", 100, ("supervised",))}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Ministral-3B", "Mistral AI"),
        ("ministral-3b.ft-0123456789abcdef-team", "Mistral AI"),
        ("gpt-oss-20b.ft-abc:ckpt-step-10", "Microsoft"),
        ("gpt-4o-mini-2024-07-18.ft-abc", "OpenAI"),
        ("o4-mini-2025-04-16", "OpenAI"),
        ("Ministral-3Bx", "OpenAI"),
    ],
)
def test_the_deployment_format_follows_the_model(model: str, expected: str) -> None:
    assert open_weight.deployment_format(model) == expected


def test_the_client_sends_the_models_format_unless_told() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"name": "d", "properties": {"provisioningState": "Succeeded"}})

    client = DeploymentsClient("https://arm.example", subscription_id="sub", resource_group="rg",
                               account_name="acct", bearer_token="t", transport=httpx.MockTransport(handler))
    client.begin_create_or_update("d", model_name="Qwen-3-32B.ft-abc", sku_name="GlobalStandard", capacity=100)
    client.begin_create_or_update("d", model_name="gpt-4.1-2025-04-14.ft-abc")
    client.begin_create_or_update("d", model_name="gpt-oss-20b.ft-abc", model_format="Microsoft")
    assert [b["properties"]["model"]["format"] for b in sent] == ["Alibaba", "OpenAI", "Microsoft"]


def test_the_spec_takes_training_type_sku_and_capacity_from_the_data() -> None:
    spec = build_spec(Settings(default_training_type="Standard", default_deployment_sku="Standard"),
                      metadata={"model": "Llama-3.3-70B-Instruct"})
    assert (spec.training_type, spec.deployment.sku, spec.deployment.capacity) == ("GlobalStandard",
                                                                                  "GlobalStandard", 100)
    assert spec_warnings(spec) == []
    same = build_spec(Settings(), metadata={"model": "Llama-3.3-70B-Instruct", "training_type": "globalstandard"})
    assert same.training_type == "GlobalStandard"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"training_type": "Standard"}, "training_type = 'Standard': the open-weight model gpt-oss-20b trains"),
        ({"training_type": "Developer"}, "(from blob metadata)"),
        ({"deployment_sku": "Standard"}, "deployment_sku = 'Standard'"),
    ],
)
def test_what_the_data_forbids_is_a_rejection_naming_where_it_came_from(metadata: dict[str, str],
                                                                       message: str) -> None:
    with pytest.raises(SpecError) as caught:
        build_spec(Settings(), metadata={"model": "gpt-oss-20b", **metadata})
    assert message in str(caught.value)


def test_a_profile_value_is_named_as_the_profiles() -> None:
    with pytest.raises(SpecError, match=r"\(from the profile\)"):
        build_spec(Settings(), metadata={"model": "gpt-oss-20b"}, profile_name="p",
                   profile={"deployment": {"sku": "DeveloperTier"}})


def test_a_lower_capacity_is_kept_with_a_warning() -> None:
    spec = build_spec(Settings(), metadata={"model": "Ministral-3B", "deployment_capacity": "10"})
    assert spec.deployment.capacity == 10
    assert [code for code, _ in spec_warnings(spec)] == ["low_capacity"]
