"""DeploymentsClient against a MockTransport: PUT + Azure-AsyncOperation polling, nextLink, quota, delete."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.aoai import (
    AzureOpenAIError,
    DeploymentLimitError,
    DeploymentsClient,
    InsufficientQuotaError,
    OperationFailedError,
    OperationTimeoutError,
)

from .conftest import Script, Sleeps, err, jresp

MakeArm = Callable[..., tuple[DeploymentsClient, Script]]
BASE = "https://management.unit/subscriptions/sub/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/acct"
OP = "https://management.unit/subscriptions/sub/providers/Microsoft.CognitiveServices/locations/x/operationResults/op1"


def deployment(name: str = "ft", state: str = "Succeeded") -> dict[str, Any]:
    return {
        "id": f"/subscriptions/sub/.../deployments/{name}",
        "name": name,
        "type": "Microsoft.CognitiveServices/accounts/deployments",
        "sku": {"name": "Standard", "capacity": 1},
        "properties": {"model": {"format": "OpenAI", "name": "m.ft-abc", "version": "1"}, "provisioningState": state},
    }


def op(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "op1", "name": "op1", "status": status, **extra}


def test_create_polls_operation_with_retry_after(make_arm: MakeArm, sleeps: Sleeps) -> None:
    arm, script = make_arm(
        jresp(201, deployment(state="Creating"), azure_asyncoperation=OP, retry_after="5"),
        jresp(200, op("InProgress"), retry_after="7"),
        jresp(200, op("Succeeded")),
        jresp(200, deployment()),
    )
    result = arm.create_or_update_and_wait("ft", model_name="m.ft-abc", sku_name="Standard", capacity=1)
    assert result.provisioning_state == "Succeeded"
    assert script.count == 4
    put = script.requests[0]
    assert put.method == "PUT" and str(put.url) == f"{BASE}/deployments/ft?api-version=2025-09-01"
    assert put.headers["authorization"] == "Bearer arm-token-xyz"
    assert json.loads(put.content) == {
        "sku": {"name": "Standard", "capacity": 1},
        "properties": {"model": {"format": "OpenAI", "name": "m.ft-abc", "version": "1"}},
    }
    assert str(script.requests[1].url) == OP  # followed as given, no extra api-version
    assert sleeps == [5.0, 7.0]  # the PUT's Retry-After, then the first poll's


def test_poll_interval_default_60_capped_for_local_use(make_arm: MakeArm, sleeps: Sleeps) -> None:
    arm, _ = make_arm(
        jresp(201, deployment(state="Accepted"), azure_asyncoperation=OP),
        jresp(200, op("Running")),
        jresp(200, op("Succeeded")),
        jresp(200, deployment()),
        max_poll_interval=0.5,
    )
    arm.create_or_update_and_wait("ft", model_name="m.ft-abc")
    assert sleeps == [0.5, 0.5]


def test_operation_failed_carries_the_operations_error(make_arm: MakeArm) -> None:
    arm, script = make_arm(
        jresp(201, deployment(state="Creating"), azure_asyncoperation=OP, retry_after="1"),
        jresp(200, op("Failed", error={"code": "ModelNotDeployable", "message": "scores above thresholds"})),
    )
    with pytest.raises(OperationFailedError) as info:
        arm.create_or_update_and_wait("ft", model_name="m.ft-abc")
    assert info.value.status == "Failed"
    assert info.value.code == "ModelNotDeployable"
    assert "scores above thresholds" in str(info.value)
    assert script.count == 2


def test_canceled_operation(make_arm: MakeArm) -> None:
    arm, _ = make_arm(jresp(201, deployment(state="Creating"), azure_asyncoperation=OP), jresp(200, op("Canceled")))
    with pytest.raises(OperationFailedError) as info:
        arm.create_or_update_and_wait("ft", model_name="m")
    assert info.value.status == "Canceled"


def test_insufficient_quota_raised_at_put(make_arm: MakeArm) -> None:
    arm, script = make_arm(
        err(400, "InsufficientQuota", "The specified capacity '120' of account deployment is bigger than available")
    )
    with pytest.raises(InsufficientQuotaError) as info:
        arm.create_or_update_and_wait("ft", model_name="m", capacity=120)
    assert info.value.status_code == 400
    assert script.count == 1


def test_deployment_cap_raised_at_put(make_arm: MakeArm) -> None:
    arm, _ = make_arm(err(409, "DeploymentLimitExceeded", "This resource already has the maximum of 5 deployments"))
    with pytest.raises(DeploymentLimitError):
        arm.create_or_update_and_wait("ft6", model_name="m")


def test_put_answering_succeeded_needs_no_polling(make_arm: MakeArm, sleeps: Sleeps) -> None:
    arm, script = make_arm(jresp(200, deployment()))
    assert arm.create_or_update_and_wait("ft", model_name="m").name == "ft"
    assert script.count == 1 and sleeps == []


def test_without_operation_header_polls_provisioning_state(make_arm: MakeArm, sleeps: Sleeps) -> None:
    arm, script = make_arm(
        jresp(201, deployment(state="Creating")),
        jresp(200, deployment(state="Creating")),
        jresp(200, deployment(state="Failed")),
        max_poll_interval=1,
    )
    with pytest.raises(OperationFailedError):
        arm.create_or_update_and_wait("ft", model_name="m")
    assert script.count == 3 and sleeps == [1, 1]


def test_timeout(make_arm: MakeArm) -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    arm, script = make_arm(
        jresp(201, deployment(state="Creating"), azure_asyncoperation=OP),
        jresp(200, op("InProgress")),
        sleep=sleep,
        clock=lambda: clock[0],
    )
    with pytest.raises(OperationTimeoutError) as info:
        arm.create_or_update_and_wait("ft", model_name="m", timeout=150)
    assert info.value.last_status == "InProgress"
    assert clock[0] == 150  # 60 + 60 + 30: never sleeps past the deadline
    assert script.count == 4


def test_get_missing_is_none_and_list_follows_next_link(make_arm: MakeArm) -> None:
    next_link = f"{BASE}/deployments?api-version=2025-09-01&$skipToken=abc"
    arm, script = make_arm(
        err(404, "DeploymentNotFound", "not found"),
        jresp(200, {"value": [deployment("a"), deployment("b")], "nextLink": next_link}),
        jresp(200, {"value": [deployment("c")]}),
    )
    assert arm.get("nope") is None
    assert [d.name for d in arm.list()] == ["a", "b", "c"]
    assert script.requests[2].url.params["$skipToken"] == "abc"
    assert script.requests[2].url.params.get_list("api-version") == ["2025-09-01"]


def test_next_link_to_another_host_is_refused(make_arm: MakeArm) -> None:
    arm, script = make_arm(jresp(200, {"value": [], "nextLink": "https://evil.example/steal"}))
    with pytest.raises(AzureOpenAIError):
        list(arm.list())
    assert script.count == 1


def test_delete_and_wait(make_arm: MakeArm, sleeps: Sleeps) -> None:
    arm, script = make_arm(
        httpx.Response(202, headers={"azure-asyncoperation": OP, "retry-after": "2"}),
        jresp(200, op("Succeeded")),
        err(404, "DeploymentNotFound", "gone"),
    )
    assert arm.delete_and_wait("ft") is True
    assert [r.method for r in script.requests] == ["DELETE", "GET"]
    assert sleeps == [2.0]
    assert arm.delete_and_wait("ft") is False


def test_delete_with_location_header(make_arm: MakeArm, sleeps: Sleeps) -> None:
    location = f"{BASE}/operationResults/del1?api-version=2025-09-01"
    arm, script = make_arm(
        httpx.Response(202, headers={"location": location, "retry-after": "1"}),
        httpx.Response(202, headers={"retry-after": "1"}),
        httpx.Response(204),
    )
    assert arm.delete_and_wait("ft") is True
    assert script.count == 3 and sleeps == [1.0, 1.0]


def test_delete_204_immediately(make_arm: MakeArm, sleeps: Sleeps) -> None:
    arm, script = make_arm(httpx.Response(204))
    assert arm.delete_and_wait("ft") is True
    assert script.count == 1 and sleeps == []


def test_put_retried_on_503_as_idempotent(make_arm: MakeArm) -> None:
    arm, script = make_arm(err(503, "ServiceUnavailable", "busy"), jresp(200, deployment()))
    arm.create_or_update_and_wait("ft", model_name="m")
    assert [r.method for r in script.requests] == ["PUT", "PUT"]
