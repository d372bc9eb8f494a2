"""Compose the emulator: the routes of each surface behind one gateway (request log, faults, authentication).

Authentication (data plane `/openai/...`): with `--api-key` set, a request needs `api-key: KEY` or
`Authorization: Bearer TOKEN` (any non-empty token, or exactly `--bearer-token` when that is set, or the key
itself: the v1 spec's second key scheme is the `authorization` header, which is how the official `openai`
client sends a key); anything else is the gateway's 401.

Foundry project endpoints: `/api/projects/{project}/openai/v1/...` is served as `/openai/v1/...` (one emulator
is one resource, every project shares it); the request log and the faults see the path as the client sent it.

Control plane (`/subscriptions/...`): with either option set, only a Bearer token
is accepted (ARM takes no api-key); a failure is ARM's `AuthenticationFailed` / `InvalidAuthenticationToken`.
With neither option set, everything is accepted.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from email.utils import formatdate
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import admin, clock, controlplane, dataplane, evals, inference, uploads
from .config import Config
from .errors import ACCESS_DENIED, ApiError, ArmError, is_v1, not_found
from .faults import Faults
from .state import State

log = logging.getLogger("emulator")

PROJECT_PATH = re.compile(r"^/api/projects/(?P<project>[^/]+)(?P<rest>/openai/v1(?:/.*)?)$")
"""A Foundry project endpoint's data plane: https://<resource>.services.ai.azure.com/api/projects/<p>/openai/v1."""


def _is_arm(path: str) -> bool:
    return path.startswith("/subscriptions/") or path == "/subscriptions"


def _fault_response(rule: dict[str, Any], path: str) -> Response:
    mode = rule["mode"]
    seconds = rule["retry_after"]
    arm = _is_arm(path)
    headers: dict[str, str] = {}
    if mode == "429":
        headers = {"Retry-After": str(seconds), "retry-after-ms": str(seconds * 1000),
                   "x-ms-retry-after-ms": str(seconds * 1000)}
        if arm:
            body = ArmError(429, "TooManyRequests", f"The request was throttled (injected fault). Please retry "
                            f"after {seconds} seconds.").body()
        else:
            body = {"error": {"code": "429", "message": "Requests to the Azure OpenAI API have exceeded the rate "
                              f"limit of your current pricing tier (injected fault). Please retry after {seconds} "
                              "seconds."}}
        return JSONResponse(body, status_code=429, headers=headers)
    if mode == "503":
        headers = {"Retry-After": str(seconds)}
        if arm:
            body = ArmError(503, "ServiceUnavailable", "The service is temporarily unavailable (injected "
                            "fault).").body()
        else:
            body = {"error": {"code": "serviceUnavailable", "message": "The service is temporarily unavailable "
                              "(injected fault). Please try again later."}}
        return JSONResponse(body, status_code=503, headers=headers)
    if arm:
        body = ArmError(500, "InternalServerError", "An internal server error occurred (injected fault).").body()
    else:
        body = {"error": {"code": "internalFailure", "message": "The server had an error while processing your "
                          "request (injected fault)."}}
    return JSONResponse(body, status_code=500)


class Gateway:
    """Outermost ASGI layer: logs every request, applies faults, then checks credentials."""

    def __init__(self, app: ASGIApp, state: State, faults: Faults) -> None:
        self.app = app
        self.state = state
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        started = time.monotonic()
        status: list[Any] = ["-"]

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # The Date header tells the time on the emulator's clock (the server's own is off: __main__).
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", formatdate(clock.now(), usegmt=True).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        held: list[Any] | None = None  # mode slow: the answer, kept back until the delay has passed

        async def hold(message: Any) -> None:
            assert held is not None
            held.append(message)

        try:
            if not path.startswith("/_emulator/"):
                rule = self.faults.match(method, path)
                if rule is not None and rule["mode"] == "slow":
                    held = []
                elif rule is not None:
                    if rule["latency_ms"]:
                        await asyncio.sleep(rule["latency_ms"] / 1000)
                    if rule["mode"] == "drop":
                        status[0] = "dropped"
                        await _drop(send)
                        return
                    if rule["mode"] != "latency":
                        await _fault_response(rule, path)(scope, receive, record)
                        return
                project = PROJECT_PATH.match(path)
                if project is not None:
                    rest = project["rest"]
                    scope = {**scope, "path": rest, "raw_path": rest.encode(), "emulator.project": project["project"]}
                denied = self._authenticate(scope, scope["path"])
                if denied is not None:
                    await denied(scope, receive, record)
                    return
            if held is None:
                await self.app(scope, receive, record)
                return
            await self.app(scope, receive, hold)  # served now: whatever it does is done
            await asyncio.sleep(rule["latency_ms"] / 1000 if rule else 0)
            for message in held:  # to a client that may have given up (or died) meanwhile
                await record(message)
        finally:
            if self.state.config.log_requests:
                log.info("%s %s %s %.0fms", method, path, status[0], 1000 * (time.monotonic() - started))

    def _authenticate(self, scope: Scope, path: str) -> Response | None:
        cfg = self.state.config
        if not cfg.api_key and not cfg.bearer_token:
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        token_ok = bool(token) and (cfg.bearer_token is None or token == cfg.bearer_token)
        if _is_arm(path):
            if token_ok:
                return None
            if not auth:
                return ArmError(401, "AuthenticationFailed",
                                "Authentication failed. The 'Authorization' header is missing.").response()
            return ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.").response()
        if not path.startswith("/openai"):
            return None
        if cfg.api_key and (headers.get("api-key") == cfg.api_key or token == cfg.api_key):
            return None
        if token_ok:
            return None
        return ApiError(401, "401", ACCESS_DENIED).response(v1=is_v1(path))


async def _drop(send: Send) -> None:
    """Close the connection without a response.

    ASGI has no verb for it; uvicorn's `send` is a bound method of its request cycle, which holds the
    transport. Where that is not available, fall back to an exception (uvicorn then answers 500).
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("injected fault: drop")
    transport.close()
    await asyncio.sleep(0)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response(v1=is_v1(request.url.path))


async def _arm_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ArmError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_arm(request.url.path):
        return ArmError(exc.status_code, "NotFound" if exc.status_code == 404 else "MethodNotAllowed",
                        "The requested path or method is not served by the emulator.").response()
    v1 = is_v1(request.url.path)
    if exc.status_code in (404, 405):
        return not_found().response(v1=v1)
    return ApiError(exc.status_code, str(exc.status_code), str(exc.detail)).response(v1=v1)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if _is_arm(request.url.path):
        return ArmError(500, "InternalServerError", f"Emulator error: {type(exc).__name__}").response()
    return ApiError(500, "internalFailure", f"Emulator error: {type(exc).__name__}: {exc}").response(
        v1=is_v1(request.url.path)
    )


def build_app(config: Config) -> Starlette:
    state = State(config)
    faults = Faults(config.fault_seed, config.faults)
    _interrupt_imports(state)
    app = Starlette(
        routes=admin.routes() + inference.routes() + evals.routes() + uploads.routes() + dataplane.routes()
        + controlplane.routes(),
        exception_handlers={
            ApiError: _api_error,
            ArmError: _arm_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.emu = state
    app.state.faults = faults
    app.state.initial_config = copy.deepcopy(config)
    return Gateway(app, state, faults)  # type: ignore[return-value]


def _interrupt_imports(state: State) -> None:
    """Imports still fetching when the emulator stopped end in error (the SAS URL is never persisted)."""
    for record in state.files.values():
        if record["source"] == "import" and record["validation"] is None:
            state.import_failed(record, "File import failed: the import was interrupted by an emulator restart.")



