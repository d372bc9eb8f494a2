"""Control plane (ARM): `.../accounts/{account}/deployments/{name}` and its async operations.

PUT is a long-running operation: 201 with `provisioningState: Accepted`, an `Azure-AsyncOperation` URL served
by the emulator itself (built from the request's Host) and `Retry-After`; the deployment then goes
Accepted -> Creating -> Succeeded (or Failed) on the emulator's clock. DELETE is one too (202). PATCH of
the sku or tags answers 200 at once. One emulator is one Azure OpenAI resource: the subscription, resource
group and account in the path are echoed in ids, not checked. Deployment names are unique per emulator.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared import open_weight

from . import clock
from .catalog import base_model
from .config import ARM_VERSIONS, DEVELOPER_TIER_ARM_VERSIONS
from .errors import ArmError
from .state import State
from .training import SAFETY_EVAL_MESSAGE

_PREFIX = r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.CognitiveServices/accounts/(?P<acct>[^/]+)/deployments"  # noqa: E501
COLLECTION_RE = re.compile(_PREFIX + r"/?$", re.IGNORECASE)
ITEM_RE = re.compile(_PREFIX + r"/(?P<name>[^/]+)$", re.IGNORECASE)
log = logging.getLogger(__name__)
OPERATION_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.CognitiveServices/locations/(?P<loc>[^/]+)"
    r"/operationStatuses/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
SKU_NAMES = {"standard", "globalstandard", "datazonestandard", "developertier", "developer", "provisionedmanaged",
             "globalprovisionedmanaged", "globalbatch"}
# REST examples spell it `developertier` (with 2025-07-01-preview), the CLI `Developer`.
DEVELOPER_SKUS = {"developertier", "developer"}
PAGE_SIZE = 10
LOCATION = "local"
DEPLOYMENT_TYPE = "Microsoft.CognitiveServices/accounts/deployments"


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _emu(request: Request) -> State:
    state: State = request.app.state.emu
    return state


def _check_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if not version:
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    if version not in ARM_VERSIONS:
        raise ArmError(400, "InvalidApiVersionParameter",
                       f"The api-version '{version}' is invalid. The supported versions are "
                       f"'{','.join(ARM_VERSIONS)}'.")
    return version


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def deployment_view(state: State, dep: dict[str, Any]) -> dict[str, Any]:
    capacity = dep["sku"]["capacity"]
    model = base_model(dep["base_model"]) if dep.get("base_model") else None
    capabilities = {"completion": "true"} if model is not None and model.completion else {"chatCompletion": "true"}
    properties: dict[str, Any] = {
        "model": dep["model"],
        "provisioningState": state.deployment_state(dep),
        "capabilities": capabilities,
        "rateLimits": [
            {"key": "request", "renewalPeriod": 10, "count": capacity},
            {"key": "token", "renewalPeriod": 60, "count": capacity * 1000},
        ],
        "currentCapacity": capacity,
        "raiPolicyName": "Microsoft.DefaultV2",
        "versionUpgradeOption": "NoAutoUpgrade",
    }
    view: dict[str, Any] = {
        "id": dep["id"],
        "name": dep["name"],
        "type": DEPLOYMENT_TYPE,
        "sku": dep["sku"],
        "etag": f'"{dep["etag"]}"',
        "systemData": {
            "createdBy": "emulator",
            "createdByType": "User",
            "createdAt": _iso(dep["created_at"]),
            "lastModifiedBy": "emulator",
            "lastModifiedByType": "User",
            "lastModifiedAt": _iso(dep["modified_at"]),
        },
        "properties": properties,
    }
    if dep.get("tags"):
        view["tags"] = dep["tags"]
    return view


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized.") from exc
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def _sku(body: dict[str, Any], current: dict[str, Any] | None, version: str) -> dict[str, Any]:
    sku = body.get("sku")
    if sku is None:
        if current is not None:
            return dict(current)
        return {"name": "Standard", "capacity": 1}
    if not isinstance(sku, dict):
        raise ArmError(400, "InvalidResourceProperties", "sku must be an object.", "sku")
    name = sku.get("name", (current or {}).get("name", "Standard"))
    if not isinstance(name, str) or name.lower() not in SKU_NAMES:
        raise ArmError(400, "InvalidResourceProperties", f"The sku name '{name}' is not supported.", "sku.name")
    if name.lower() in DEVELOPER_SKUS and version not in DEVELOPER_TIER_ARM_VERSIONS:
        raise ArmError(400, "InvalidResourceProperties",
                       f"The sku name '{name}' is not supported with api-version '{version}'; use one of "
                       f"{', '.join(DEVELOPER_TIER_ARM_VERSIONS)}.", "sku.name")
    capacity = sku.get("capacity", (current or {}).get("capacity", 1))
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ArmError(400, "InvalidResourceProperties", "sku.capacity must be a positive integer.", "sku.capacity")
    return {"name": name, "capacity": capacity}


def _check_quota(state: State, name: str, dep_model: str, capacity: int, usage: str) -> None:
    used = sum(d["sku"]["capacity"] for n, d in state.deployments.items()
               if n != name and d.get("deleting_at") is None)
    available = max(0, state.quota_capacity - used)
    if capacity > available:
        raise ArmError(
            400,
            "InsufficientQuota",
            f"The specified capacity '{capacity}' of account deployment is bigger than available capacity "
            f"'{available}' for UsageName 'Tokens Per Minute (thousands) - {usage}'.",
        )


def _operation(state: State, request: Request, sub: str, kind: str, name: str, seconds: float,
               final: str = "Succeeded", error: dict[str, Any] | None = None, stuck: bool = False
               ) -> tuple[dict[str, Any], dict[str, str]]:
    now = clock.now()
    op_id = uuid.uuid4().hex
    path = f"/subscriptions/{sub}/providers/Microsoft.CognitiveServices/locations/{LOCATION}/operationStatuses/{op_id}"
    op = {
        "id": op_id, "path": path, "kind": kind, "deployment": name, "start": now, "end": now + seconds,
        "running_status": "Creating" if kind == "create" else "Deleting", "final_status": final,
        "error": error, "stuck": stuck,
    }
    state.operations[op_id] = op
    version = request.query_params.get("api-version")
    url = f"{_base(request)}{path}?api-version={version}"
    headers = {"Azure-AsyncOperation": url, "Retry-After": str(state.config.arm_retry_after)}
    return op, headers


async def put_deployment(request: Request, m: re.Match[str]) -> Response:
    state = _emu(request)
    state.prune_deleted()
    body = await _body(request)
    name = m["name"]
    props = body.get("properties") or {}
    model = props.get("model") if isinstance(props, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise ArmError(400, "InvalidResourceProperties", "properties.model.name is required.",
                       "properties.model.name")
    fmt = model.get("format", "OpenAI")
    existing = state.deployments.get(name)
    if existing is not None and existing.get("deleting_at") is not None:
        raise ArmError(409, "Conflict", f"The deployment '{name}' is being deleted; try again when it is gone.")
    version = request.query_params.get("api-version", "")
    sku = _sku(body, existing["sku"] if existing else None, version)
    resolved = state.resolve_model(model["name"])
    if resolved is None:
        raise ArmError(400, "DeploymentModelNotSupported",
                       f"The model '{model['name']}' of format 'OpenAI' is not known to this resource: neither a "
                       "base model, nor a fine-tuned model of a succeeded job, nor a checkpoint of one.",
                       "properties.model.name")
    if resolved["kind"] == "checkpoint" and not resolved["deployable"]:
        raise ArmError(400, "DeploymentModelNotSupported",
                       f"The checkpoint '{model['name']}' cannot be deployed: only the checkpoints of the last three "
                       "epochs can be deployed.", "properties.model.name")
    job = resolved["job"]
    base = job["base_model"] if job else resolved["model"].id
    expected = open_weight.deployment_format(base)
    if fmt != expected:
        # Microsoft's fine-tuning skill: a wrong (or wrongly cased) model.format is "HTTP 500, no message" on Azure,
        # and the CLI's "OpenAI-OSS" sent to ARM is a 500 too. The body's wording is the emulator's.
        log.info("deployment %s: model.format %r is not %r: answering 500 as ARM does", name, fmt, expected)
        raise ArmError(500, "InternalServerError", "An internal server error occurred.")
    usage = base_model(base).usage_name if base_model(base) else base  # type: ignore[union-attr]
    model_out = {"format": expected, "name": model["name"], "version": str(model.get("version") or "1")}
    for key in ("source", "sourceAccount"):  # sourceAccount: the cross-tenant how-to's field
        if model.get(key):
            model_out[key] = model[key]
    if existing is not None and existing["model"]["name"] != model["name"] and state.take_scenario("model_change"):
        raise ArmError(400, "InvalidResourceProperties", "The model of an existing deployment cannot be changed "
                       "(scenario model_change_refused): delete the deployment and create it again.",
                       "properties.model.name")
    if existing is not None and existing["model"]["name"] == model["name"]:
        if sku["capacity"] != existing["sku"]["capacity"]:
            _check_quota(state, name, model["name"], sku["capacity"], usage)
        changed = sku != existing["sku"] or (body.get("tags") is not None and body.get("tags") != existing.get("tags"))
        existing["sku"] = sku
        if body.get("tags") is not None:
            existing["tags"] = body["tags"]
        if changed:
            existing["modified_at"] = clock.now()
            existing["etag"] = uuid.uuid4().hex
        state.save()
        return JSONResponse(deployment_view(state, existing), status_code=200)
    fine_tuned = resolved["kind"] in ("fine-tuned", "checkpoint")
    if fine_tuned:
        count = sum(1 for n, d in state.deployments.items()
                    if n != name and d.get("deleting_at") is None and d.get("fine_tuned"))
        if count >= state.config.max_ft_deployments:
            raise ArmError(400, "InsufficientQuota",
                           f"The number of fine-tuned model deployments of this resource has reached the limit of "
                           f"{state.config.max_ft_deployments}. Delete a fine-tuned deployment and try again.")
    _check_quota(state, name, model["name"], sku["capacity"], usage)
    scenario = state.take_scenario("deployment")
    outcome = {"deployment_failed": "failed", "deployment_stuck": "stuck"}.get(
        scenario["scenario"] if scenario else "", "succeeded")
    if scenario and scenario["scenario"] == "deployment_refused":
        harms = ", ".join(scenario["options"].get("harm_types") or ["Violence", "Self Harm"])
        raise ArmError(400, "BadRequest", SAFETY_EVAL_MESSAGE.format(harms=harms), "properties.model.name")
    now = clock.now()
    seconds = state.config.scaled(state.config.deployment_seconds)
    dep = {
        "id": f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}/providers/Microsoft.CognitiveServices/accounts/"
              f"{m['acct']}/deployments/{name}",
        "name": name,
        "sku": sku,
        "model": model_out,
        "base_model": base,
        "fine_tuned": fine_tuned,
        "tags": body.get("tags"),
        "created_at": now,
        "modified_at": now,
        "creating_at": now + min(0.5, seconds / 4),
        "ready_at": now + seconds,
        "not_ready_s": state.config.scaled(state.config.not_ready_seconds),
        "expires_at": (now + seconds + state.config.scaled(state.config.developer_lifetime_seconds)
                       if sku["name"].lower() in DEVELOPER_SKUS else None),
        "outcome": outcome,
        "etag": uuid.uuid4().hex,
        "deleting_at": None,
    }
    error = None
    if outcome == "failed":
        error = {"code": "DeploymentFailed", "message": "The deployment failed while provisioning the model "
                 "(scenario deployment_failed). Delete it and try again."}
    state.deployments[name] = dep
    _, headers = _operation(state, request, m["sub"], "create", name, seconds,
                            final="Failed" if outcome == "failed" else "Succeeded", error=error,
                            stuck=outcome == "stuck")
    state.save()
    return JSONResponse(deployment_view(state, dep), status_code=201 if existing is None else 200, headers=headers)


def _not_found(m: re.Match[str]) -> ArmError:
    return ArmError(
        404, "ResourceNotFound",
        f"The Resource 'Microsoft.CognitiveServices/accounts/{m['acct']}/deployments/{m['name']}' under resource "
        f"group '{m['rg']}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


async def get_deployment(request: Request, m: re.Match[str]) -> Response:
    state = _emu(request)
    state.prune_deleted()
    dep = state.deployments.get(m["name"])
    if dep is None:
        raise _not_found(m)
    return JSONResponse(deployment_view(state, dep))


async def patch_deployment(request: Request, m: re.Match[str]) -> Response:
    state = _emu(request)
    state.prune_deleted()
    dep = state.deployments.get(m["name"])
    if dep is None or dep.get("deleting_at") is not None:
        raise _not_found(m)
    body = await _body(request)
    sku = _sku(body, dep["sku"], request.query_params.get("api-version", ""))
    if sku["capacity"] != dep["sku"]["capacity"]:
        model = base_model(dep["base_model"])
        _check_quota(state, dep["name"], dep["model"]["name"], sku["capacity"], model.usage_name if model else "")
    dep["sku"] = sku
    if body.get("tags") is not None:
        dep["tags"] = body["tags"]
    dep["modified_at"] = clock.now()
    dep["etag"] = uuid.uuid4().hex
    state.save()
    return JSONResponse(deployment_view(state, dep))


async def delete_deployment(request: Request, m: re.Match[str]) -> Response:
    state = _emu(request)
    state.prune_deleted()
    dep = state.deployments.get(m["name"])
    if dep is None:
        return Response(status_code=204)
    seconds = state.config.scaled(max(0.5, state.config.deployment_seconds / 2))
    if dep.get("deleting_at") is None:
        dep["deleting_at"] = clock.now()
        dep["gone_at"] = dep["deleting_at"] + seconds
    _, headers = _operation(state, request, m["sub"], "delete", dep["name"], seconds)
    headers["Location"] = headers["Azure-AsyncOperation"]
    state.save()
    return Response(status_code=202, headers=headers)


async def list_deployments(request: Request, m: re.Match[str]) -> Response:
    state = _emu(request)
    state.prune_deleted()
    try:
        skip = int(request.query_params.get("$skipToken", "0"))
    except ValueError as exc:
        raise ArmError(400, "InvalidSkipToken", "The $skipToken is not valid.") from exc
    deps = sorted(state.deployments.values(), key=lambda d: d["created_at"])
    page = deps[skip:skip + PAGE_SIZE]
    next_link = None
    if skip + PAGE_SIZE < len(deps):
        next_link = (f"{_base(request)}{request.url.path}?api-version={request.query_params['api-version']}"
                     f"&$skipToken={skip + PAGE_SIZE}")
    return JSONResponse({"value": [deployment_view(state, d) for d in page], "nextLink": next_link})


async def get_operation(request: Request, m: re.Match[str]) -> Response:
    state = _emu(request)
    op = state.operations.get(m["op"])
    if op is None:
        raise ArmError(404, "NotFound", f"The operation '{m['op']}' was not found.")
    now = clock.now()
    status = state.operation_status(op, now)
    done = status in ("Succeeded", "Failed", "Canceled")
    span = max(1e-6, op["end"] - op["start"])
    body: dict[str, Any] = {
        "id": op["path"],
        "name": op["id"],
        "status": status,
        "startTime": _iso(op["start"]),
        "endTime": _iso(op["end"]) if done else None,
        "percentComplete": 100.0 if done else round(min(99.0, 100 * (now - op["start"]) / span), 1),
    }
    if status == "Failed" and op.get("error"):
        body["error"] = op["error"]
    headers = {} if done else {"Retry-After": str(state.config.arm_retry_after)}
    return JSONResponse(body, headers=headers)


async def dispatch(request: Request) -> Response:
    """One entry for every `/subscriptions/...` path (ARM paths are case-insensitive)."""
    path = request.url.path
    method = request.method
    handlers: list[tuple[re.Pattern[str], dict[str, Any]]] = [
        (ITEM_RE, {"PUT": put_deployment, "GET": get_deployment, "PATCH": patch_deployment,
                   "DELETE": delete_deployment}),
        (COLLECTION_RE, {"GET": list_deployments}),
        (OPERATION_RE, {"GET": get_operation}),
    ]
    for pattern, by_method in handlers:
        match = pattern.match(path)
        if match:
            _check_version(request)
            handler = by_method.get(method)
            if handler is None:
                raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{method}' is not supported here.")
            response: Response = await handler(request, match)
            return response
    raise ArmError(404, "InvalidResourceType",
                   "The resource type could not be found: the emulator serves only "
                   "Microsoft.CognitiveServices/accounts/deployments and its operation statuses.")


def routes() -> list[Route]:
    return [Route("/subscriptions/{rest:path}", dispatch, methods=["GET", "PUT", "PATCH", "DELETE", "POST"])]
