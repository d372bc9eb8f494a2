"""The one error hierarchy of the Azure OpenAI boundary (data plane and deployments control plane).

Every call of :mod:`shared.aoai` raises one of these, never a bare ``httpx`` or ``pydantic`` error::

    AzureOpenAIError                      base; ``str(err)`` is safe to log (secrets scrubbed)
    ├── APIConnectionError                no HTTP response (DNS, refused, reset, dropped); ``ambiguous``
    │   └── APITimeoutError               connect/read/write/pool timeout
    ├── APIStatusError                    the service answered >= 400: status_code, code, message, param,
    │   │                                 request_id, body, ambiguous
    │   ├── BadRequestError               400
    │   ├── AuthenticationError           401
    │   ├── PermissionDeniedError         403
    │   ├── NotFoundError                 404
    │   │   └── DeploymentNotReadyError   code DeploymentNotReady (any status): ARM said Succeeded, the data
    │   │                                 plane does not serve yet; a later try may succeed
    │   ├── ConflictError                 409
    │   ├── RateLimitError                429 (throttling; retried by the transport before you see it)
    │   ├── InternalServerError           >= 500
    │   └── InsufficientQuotaError        code InsufficientQuota / quotaExceeded / insufficient_quota (any
    │       │                             status): a limit, not a throttle, so never retried
    │       └── DeploymentLimitError      the per-resource cap of fine-tuned deployments (5) is reached
    │                                     (ARM answers it as InsufficientQuota; told apart by its message)
    ├── APIResponseValidationError        a 2xx answer that does not match the wire models
    ├── OperationFailedError              a long-running ARM operation ended Failed/Canceled (op's code/message)
    └── OperationTimeoutError             a long-running operation did not finish within the caller's timeout

``ambiguous=True`` marks a failure of a non-idempotent request (a create) where the service may or may not
have acted: a read timeout, a connection dropped after the request was sent, or a 500/502/504 (or a 408, or
a 503 without ``Retry-After``). Such a request is *not* resent; the caller reconciles (lists and matches)
instead. See :mod:`shared.aoai.retry` for the full rule.

The class of an :class:`APIStatusError` comes from the service error ``code`` first (quota and the
deployment cap), then from the HTTP status. :func:`error_from_response` reads both envelopes:

- data plane: ``{"error": {"code", "message", "param"?, "type"?, "innererror"?}}`` (codes such as
  ``invalidPayload``, or numeric strings from the gateway such as ``"429"``); v1's ``{"error": {"code" (may be
  null), "message", "param", "type": "error", "inner_error"?}}``;
- ARM: ``{"error": {"code", "message", "target", "details", "additionalInfo"}}``;
- the API gateway's ``{"statusCode": 401, "message": "..."}``, and a non-JSON body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import httpx

from .redact import scrub_obj, scrub_text, scrub_url
from .retry import effect_is_ambiguous, parse_retry_after

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "AzureOpenAIError",
    "BadRequestError",
    "ConflictError",
    "DeploymentLimitError",
    "DeploymentNotReadyError",
    "InsufficientQuotaError",
    "InternalServerError",
    "NotFoundError",
    "OperationFailedError",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "RateLimitError",
    "error_from_exception",
    "error_from_response",
    "request_id_of",
]

REQUEST_ID_HEADERS = ("apim-request-id", "x-request-id", "x-ms-request-id")

#: Service codes (lower-cased) meaning "you are out of quota": a limit, not a throttle.
QUOTA_CODES = frozenset({"insufficientquota", "quotaexceeded", "insufficient_quota"})
#: Service codes (lower-cased) meaning "too many deployments on this resource". *Inferred*: no spec names
#: the code of the 5-deployment cap, so the message is also matched (see ``_DEPLOYMENT_CAP_RE``).
DEPLOYMENT_LIMIT_CODES = frozenset(
    {"deploymentlimitexceeded", "deploymentlimitreached", "maxdeploymentsexceeded", "toomanydeployments"}
)
#: Service codes (lower-cased) meaning "the deployment exists but does not serve yet" (after ARM Succeeded).
NOT_READY_CODES = frozenset({"deploymentnotready"})
_DEPLOYMENT_CAP_RE = re.compile(
    r"(?i)(?:\bnumber of|\bmaximum|\bmax\b|\blimit of)[^.]{0,60}\bdeployments\b"
    r"|\bdeployments?\b[^.]{0,80}\b(?:limit|maximum|exceed(?:s|ed)?)\b"
)


class AzureOpenAIError(Exception):
    """Base of every error raised by :mod:`shared.aoai`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(AzureOpenAIError):
    """No HTTP response was received.

    ``ambiguous`` is True when the request was non-idempotent and may have reached the service
    (so it was not resent): reconcile by listing before trying again.
    """

    def __init__(
        self, message: str, *, method: str | None = None, url: str | None = None, ambiguous: bool = False
    ) -> None:
        self.method = method
        self.url = url
        self.ambiguous = ambiguous
        where = f" ({method} {url})" if method and url else ""
        hint = " [ambiguous: the service may have acted; reconcile before retrying]" if ambiguous else ""
        super().__init__(f"{message}{where}{hint}")


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, write, read or pool)."""


class APIStatusError(AzureOpenAIError):
    """The service answered with an error status.

    ``message`` is the service's own words (scrubbed); ``code`` the service error code (may be a numeric
    string such as ``"429"`` from the gateway); ``body`` the parsed (scrubbed) JSON body or the text.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        method: str | None = None,
        url: str | None = None,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.param = param
        self.request_id = request_id
        self.body = body
        self.method = method
        self.url = url
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        head = f"{self.status_code}" + (f" {self.code}" if self.code else "")
        parts = [f"{head}: {self.message}"]
        if self.param:
            parts.append(f"param={self.param}")
        if self.method and self.url:
            parts.append(f"{self.method} {self.url}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        if self.ambiguous:
            parts.append("ambiguous: the service may have acted; reconcile before retrying")
        return " | ".join(parts)


class BadRequestError(APIStatusError):
    """400: invalid payload, failed validation, failed import, unsupported model, ..."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong api key / token."""


class PermissionDeniedError(APIStatusError):
    """403: the identity lacks a role on the resource, or network rules deny access."""


class NotFoundError(APIStatusError):
    """404: unknown id, or a wrong path / api-version ("Resource not found")."""


class DeploymentNotReadyError(NotFoundError):
    """The deployment exists (ARM ``Succeeded``) but the data plane does not serve it yet; try again later."""


class ConflictError(APIStatusError):
    """409: conflict, item already exists, unexpected entity state."""


class RateLimitError(APIStatusError):
    """429: throttled; ``retry_after`` holds the service's hint in seconds where it gave one."""


class InternalServerError(APIStatusError):
    """>= 500."""


class InsufficientQuotaError(APIStatusError):
    """Out of quota (ARM ``InsufficientQuota``, data-plane ``quotaExceeded``): retrying will not help."""


class DeploymentLimitError(InsufficientQuotaError):
    """The resource already has the maximum number of fine-tuned deployments (5)."""


class APIResponseValidationError(AzureOpenAIError):
    """A successful answer whose body does not match the wire models (or is not JSON)."""

    def __init__(self, message: str, *, status_code: int, body: Any = None, request_id: str | None = None) -> None:
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        super().__init__(message)


class OperationFailedError(AzureOpenAIError):
    """A long-running operation (ARM ``Azure-AsyncOperation``) ended ``Failed`` or ``Canceled``."""

    def __init__(
        self,
        *,
        status: str,
        code: str | None,
        message: str | None,
        operation_url: str | None = None,
        resource: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.operation_message = message
        self.operation_url = scrub_url(operation_url) if operation_url else None
        self.resource = resource
        what = f" for {resource}" if resource else ""
        detail = f"{code}: {message}" if code else (message or "no detail given by the service")
        super().__init__(scrub_text(f"operation{what} ended {status}: {detail}"))


class OperationTimeoutError(AzureOpenAIError):
    """The caller's deadline passed while a long-running operation was still in progress."""

    def __init__(self, *, resource: str, last_status: str | None, timeout: float) -> None:
        self.resource = resource
        self.last_status = last_status
        self.timeout = timeout
        super().__init__(f"{resource} still {last_status or 'in progress'} after {timeout:g} s")


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def request_id_of(response: httpx.Response) -> str | None:
    """The request id the service gave (``apim-request-id``, ``x-request-id`` or ``x-ms-request-id``)."""
    for name in REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return str(value)
    return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _parse_envelope(body: Any) -> tuple[str | None, str | None, str | None]:
    """(code, message, param) from any of the envelopes the boundary speaks."""
    if not isinstance(body, dict):
        return None, None, None
    err = body.get("error")
    if isinstance(err, dict):
        # v1 (AzureErrorResponse / OpenAI.Error): code may be null, and ``type`` is "error" or an OpenAI type
        # ("invalid_request_error"); a type is the code only when there is no code and it says more than "error".
        kind = _str_or_none(err.get("type"))
        code = _str_or_none(err.get("code")) or (kind if kind and kind != "error" else None)
        message = _str_or_none(err.get("message"))
        param = _str_or_none(err.get("param")) or _str_or_none(err.get("target"))
        inner = err.get("innererror") or err.get("innerError") or err.get("inner_error")
        if isinstance(inner, dict) and inner.get("code") and message is None:
            message = _str_or_none(inner.get("message"))
        details = err.get("details")
        if not message and isinstance(details, list) and details and isinstance(details[0], dict):
            message = _str_or_none(details[0].get("message"))
        return code, message, param
    if isinstance(err, str):
        return None, err, None
    # API gateway shape: {"statusCode": 401, "message": "Access denied ..."} or a bare {"code", "message"}.
    code = _str_or_none(body.get("code")) or _str_or_none(body.get("statusCode"))
    message = _str_or_none(body.get("message"))
    return code, message, None


def _classify(status: int, code: str | None, message: str | None) -> type[APIStatusError]:
    lowered = (code or "").lower()
    if lowered in NOT_READY_CODES:
        return DeploymentNotReadyError
    if lowered in DEPLOYMENT_LIMIT_CODES:
        return DeploymentLimitError
    if status in (400, 403, 409, 429) and message and _DEPLOYMENT_CAP_RE.search(message):
        return DeploymentLimitError
    if lowered in QUOTA_CODES:
        return InsufficientQuotaError
    if status >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status, APIStatusError)


def error_from_response(
    response: httpx.Response, *, ambiguous: bool | None = None, secrets: Iterable[str] = ()
) -> APIStatusError:
    """Build the right :class:`APIStatusError` subclass for an error response (the body must be readable).

    ``ambiguous`` defaults to the effect rule of :func:`shared.aoai.retry.effect_is_ambiguous` applied to
    the response's request. ``secrets`` are exact values to scrub besides the patterns in :mod:`.redact`.
    """
    secrets = tuple(secrets)
    try:
        response.read()
        text = response.text
    except (httpx.HTTPError, UnicodeDecodeError, RuntimeError):
        text = ""
    body: Any
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    status = response.status_code
    code, message, param = _parse_envelope(body)
    if code is not None and code.isdigit() and status < 400:
        status = int(code)  # a gateway error carried on a 2xx: trust the numeric code
    if not message:
        snippet = " ".join(text.split())[:300]
        message = snippet or (response.reason_phrase or f"HTTP {status}")
    message = scrub_text(message, secrets)
    request: httpx.Request | None
    try:
        request = response.request
    except RuntimeError:
        request = None
    if ambiguous is None:
        ambiguous = request is not None and effect_is_ambiguous(request, response=response)
    cls = _classify(status, code, message)
    return cls(
        message,
        status_code=status,
        code=code,
        param=param,
        request_id=request_id_of(response),
        body=scrub_obj(body, secrets) if body is not None else scrub_text(text[:2000], secrets) or None,
        method=request.method if request is not None else None,
        url=scrub_url(request.url) if request is not None else None,
        ambiguous=ambiguous,
        retry_after=parse_retry_after(response.headers),
    )


def error_from_exception(exc: httpx.RequestError, request: httpx.Request | None = None) -> APIConnectionError:
    """Map an httpx transport error to :class:`APIConnectionError` / :class:`APITimeoutError`."""
    if request is None:
        try:
            request = exc.request
        except RuntimeError:
            request = None
    ambiguous = request is not None and effect_is_ambiguous(request, exc=exc)
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    reason = scrub_text(str(exc)) or type(exc).__name__
    return cls(
        f"{type(exc).__name__}: {reason}",
        method=request.method if request is not None else None,
        url=scrub_url(request.url) if request is not None else None,
        ambiguous=ambiguous,
    )
