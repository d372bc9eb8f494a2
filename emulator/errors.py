"""The error envelopes the emulator speaks: the data plane's (versioned and v1) and ARM's.

Data plane: `{"error": {"code", "message", "param", "type"}}` with the service's codes (`invalidPayload`,
`notFound`, ...) or the gateway's numeric strings (`"404"` "Resource not found", `"401"`, `"429"`).
v1 (`/openai/v1/...`): the v1 spec's `AzureErrorResponse`, `{"error": {"code", "message", "param", "type":
"error"}}` (`param` always present, null when none; `type` "The object type, always 'error'").
Control plane (ARM): `{"error": {"code", "message", "target", "details", "additionalInfo"}}`.
"""
from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

RESOURCE_NOT_FOUND = "Resource not found"
ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, "
    "please wait a moment and try again."
)


class ApiError(Exception):
    """A data-plane error answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def response(self, *, v1: bool = False) -> JSONResponse:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if v1:
            body.update(param=self.param, type="error")
            return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)
        if self.param is not None:
            body["param"] = self.param
        if not self.code.isdigit():
            body["type"] = "invalid_request_error" if self.status < 500 else "server_error"
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)


class ArmError(Exception):
    """A control-plane (ARM) error answer."""

    def __init__(
        self, status: int, code: str, message: str, target: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": self.target,
                "details": [],
                "additionalInfo": [],
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def is_v1(path: str) -> bool:
    """A path of the v1 surface (after the gateway has mapped a project endpoint's prefix onto `/openai/v1`)."""
    return path == "/openai/v1" or path.startswith("/openai/v1/")


def not_found() -> ApiError:
    return ApiError(404, "404", RESOURCE_NOT_FOUND)


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalidPayload", message, param)
