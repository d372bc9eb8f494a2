"""Admin API under `/_emulator/...`: health, reset, faults, scenarios, quota, runtime settings and the clock.

No authentication (the emulator listens on loopback); never fault-injected. See docs/emulator.md.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import __version__, clock, limits
from .datafiles import SCENARIO_MARKERS
from .faults import FaultError, Faults
from .state import SCENARIOS, State

TUNABLE = ("time_scale", "job_seconds", "file_seconds", "deployment_seconds", "arm_retry_after", "max_file_bytes",
           "max_ft_deployments", "max_running_jobs", "max_queued_jobs", "max_total_jobs", "max_ft_files",
           "max_ft_files_bytes", "results_seconds", "not_ready_seconds", "developer_lifetime_seconds")


def _state(request: Request) -> State:
    state: State = request.app.state.emu
    return state


def _faults(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "invalidPayload", "message": message}}, status_code=400)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


async def health(request: Request) -> Response:
    state = _state(request)
    return JSONResponse({
        "status": "ok",
        "version": __version__,
        "files": len(state.files),
        "jobs": len(state.jobs),
        "deployments": len(state.deployments),
        "time_scale": state.config.time_scale,
    })


async def reset(request: Request) -> Response:
    state = _state(request)
    initial = request.app.state.initial_config
    for key in TUNABLE:
        setattr(state.config, key, getattr(initial, key))
    state.reset()
    _faults(request).clear()
    return JSONResponse({"reset": True})


async def list_faults(request: Request) -> Response:
    return JSONResponse({"faults": _faults(request).rules})


async def add_faults(request: Request) -> Response:
    body = await _json(request)
    rules = body.get("faults") if isinstance(body, dict) and "faults" in body else [body]
    if not isinstance(rules, list):
        return _bad("send a rule object or {\"faults\": [rules]}")
    faults = _faults(request)
    try:
        added = [faults.add(rule) for rule in rules]
    except FaultError as exc:
        return _bad(str(exc))
    return JSONResponse({"faults": added}, status_code=201)


async def clear_faults(request: Request) -> Response:
    faults = _faults(request)
    removed = len(faults.rules)
    faults.clear()
    return JSONResponse({"removed": removed})


async def delete_fault(request: Request) -> Response:
    if not _faults(request).remove(request.path_params["fault_id"]):
        return JSONResponse({"error": {"code": "notFound", "message": "no such fault"}}, status_code=404)
    return JSONResponse({"removed": 1})


def _quota(state: State) -> dict[str, int]:
    used = sum(d["sku"]["capacity"] for d in state.deployments.values() if d.get("deleting_at") is None)
    return {"total_capacity": state.quota_capacity, "used_capacity": used,
            "available_capacity": max(0, state.quota_capacity - used)}


def _scenarios_view(state: State) -> dict[str, Any]:
    return {
        "pending": state.scenarios,
        "quota": _quota(state),
        "require_training_type": state.require_training_type,
        "known": {name: target for name, target in SCENARIOS.items()} | {"quota": "deployment",
                                                                        "require_training_type": "job"},
        "markers": {f"EMULATOR_SCENARIO:{k}": v for k, v in SCENARIO_MARKERS.items()},
    }


async def list_scenarios(request: Request) -> Response:
    return JSONResponse(_scenarios_view(_state(request)))


async def add_scenario(request: Request) -> Response:
    """`{"scenario": NAME, "count": 1, "harm_types": [...]}`; `quota` takes `available_capacity` or
    `total_capacity`; `require_training_type` takes `enabled` (default true)."""
    state = _state(request)
    body = await _json(request)
    if not isinstance(body, dict):
        return _bad("send a JSON object")
    name = body.get("scenario")
    if name == "quota":
        if isinstance(body.get("total_capacity"), int):
            state.quota_capacity = body["total_capacity"]
        elif isinstance(body.get("available_capacity"), int):
            state.quota_capacity = _quota(state)["used_capacity"] + body["available_capacity"]
        else:
            return _bad("quota needs an integer available_capacity or total_capacity")
        state.save()
        return JSONResponse(_scenarios_view(state), status_code=201)
    if name == "require_training_type":
        state.require_training_type = bool(body.get("enabled", True))
        state.save()
        return JSONResponse(_scenarios_view(state), status_code=201)
    if name not in SCENARIOS:
        return _bad(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}, quota, "
                    "require_training_type")
    count = body.get("count", 1)
    if not isinstance(count, int) or count < 1:
        return _bad("count must be a positive integer")
    options = {k: v for k, v in body.items() if k not in ("scenario", "count")}
    entry = state.add_scenario(name, count, options)
    return JSONResponse(entry, status_code=201)


async def clear_scenarios(request: Request) -> Response:
    state = _state(request)
    state.scenarios.clear()
    state.quota_capacity = state.config.quota_capacity
    state.require_training_type = state.config.require_training_type
    state.save()
    return JSONResponse(_scenarios_view(state))


async def get_config(request: Request) -> Response:
    cfg = _state(request).config
    return JSONResponse({k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("api_key", "bearer_token")})


async def patch_config(request: Request) -> Response:
    """Change durations and limits at run time (objects created before keep the durations they were given)."""
    cfg = _state(request).config
    body = await _json(request)
    if not isinstance(body, dict):
        return _bad("send a JSON object")
    for key, value in body.items():
        if key not in TUNABLE:
            return _bad(f"{key} cannot be changed at run time; tunable: {', '.join(TUNABLE)}")
        current = getattr(cfg, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            return _bad(f"{key} must be a non-negative number")
        setattr(cfg, key, type(current)(value))
    return await get_config(request)


async def get_limits(request: Request) -> Response:
    """The resource's fine-tuning limits and their use (see emulator.limits); set them with PATCH /config."""
    return JSONResponse(limits.usage(_state(request)))


async def get_clock(request: Request) -> Response:
    return JSONResponse({"now": clock.now(), "offset_seconds": clock.offset(), "frozen": clock.frozen()})


async def advance_clock(request: Request) -> Response:
    """`{"advance_seconds": N}`: move the emulator's clock forward (tests drive time instead of sleeping);
    `{"frozen": true|false}`: stop it where it stands, or let it run on (both may be given)."""
    body = await _json(request)
    if not isinstance(body, dict) or not ({"advance_seconds", "frozen"} & body.keys()):
        return _bad("give advance_seconds (a non-negative number) and/or frozen (true or false)")
    seconds = body.get("advance_seconds", 0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return _bad("advance_seconds must be a non-negative number")
    if "frozen" in body and not isinstance(body["frozen"], bool):
        return _bad("frozen must be true or false")
    if "frozen" in body:
        clock.freeze(body["frozen"])
    clock.advance(float(seconds))
    return await get_clock(request)


async def mark(request: Request) -> Response:
    """`POST /_emulator/mark/{token}`: nothing but its own line in the request log. The log is written after a
    response is sent, so a reader of the log (the test harness) that sees this line has every earlier request's."""
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/mark/{token}", mark, methods=["POST"]),
        Route("/_emulator/limits", get_limits, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/faults", list_faults, methods=["GET"]),
        Route("/_emulator/faults", add_faults, methods=["POST"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/faults/{fault_id}", delete_fault, methods=["DELETE"]),
        Route("/_emulator/scenarios", list_scenarios, methods=["GET"]),
        Route("/_emulator/scenarios", add_scenario, methods=["POST"]),
        Route("/_emulator/scenarios", clear_scenarios, methods=["DELETE"]),
        Route("/_emulator/config", get_config, methods=["GET"]),
        Route("/_emulator/config", patch_config, methods=["PATCH"]),
        Route("/_emulator/clock", get_clock, methods=["GET"]),
        Route("/_emulator/clock", advance_clock, methods=["POST"]),
    ]
