"""error_from_response: both envelopes, numeric codes, non-JSON bodies, request ids, and no secrets."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.aoai import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DeploymentLimitError,
    InsufficientQuotaError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    error_from_response,
)
from shared.aoai.redact import scrub_text, scrub_url

from .conftest import SAS_URL


def response(
    status: int, content: bytes | str, *, method: str = "GET", url: str = "https://r/openai/files", **headers: str
) -> httpx.Response:
    raw = content.encode() if isinstance(content, str) else content
    request = httpx.Request(method, url)
    return httpx.Response(
        status, content=raw, headers={k.replace("_", "-"): v for k, v in headers.items()}, request=request
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
def test_status_classes(status: int, cls: type[APIStatusError]) -> None:
    error = error_from_response(response(status, '{"error": {"code": "x", "message": "m"}}'))
    assert type(error) is cls
    assert error.status_code == status


def test_data_plane_envelope() -> None:
    body = (
        '{"error": {"code": "invalidPayload", "message": "The specified base model does not support fine-tuning.",'
        ' "param": "model", "type": "invalid_request_error", "innererror": {"code": "x"}}}'
    )
    error = error_from_response(response(400, body, method="POST", apim_request_id="req-123"))
    assert isinstance(error, BadRequestError)
    assert error.code == "invalidPayload"
    assert error.message == "The specified base model does not support fine-tuning."
    assert error.param == "model"
    assert error.request_id == "req-123"
    assert error.body["error"]["type"] == "invalid_request_error"
    assert str(error) == (
        "400 invalidPayload: The specified base model does not support fine-tuning. | param=model"
        " | POST https://r/openai/files | request id req-123"
    )


def test_arm_envelope_insufficient_quota() -> None:
    message = (
        "The specified capacity '120' of account deployment is bigger than available capacity '0' for UsageName "
        "'Tokens Per Minute (thousands) - GPT-35-Turbo'."
    )
    body = (
        '{"error": {"code": "InsufficientQuota", "message": "' + message + '", "target": "capacity",'
        ' "details": [], "additionalInfo": []}}'
    )
    error = error_from_response(response(400, body, method="PUT", x_ms_request_id="arm-1"))
    assert isinstance(error, InsufficientQuotaError)
    assert error.code == "InsufficientQuota"
    assert error.message == message
    assert error.param == "capacity"
    assert error.request_id == "arm-1"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("DeploymentLimitExceeded", "too many"),
        ("InvalidResourceProperties", "The maximum number of fine-tuned model deployments (5) has been reached."),
        ("BadRequest", "Number of deployments exceeds the limit of 5 for this resource."),
        (
            "InsufficientQuota",
            "The number of fine-tuned model deployments of this resource has reached the limit of 5. Delete a "
            "fine-tuned deployment and try again.",
        ),
    ],
)
def test_deployment_cap(code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}})
    assert isinstance(error_from_response(response(409, body, method="PUT")), DeploymentLimitError)


def test_insufficient_quota_message_is_not_a_deployment_cap() -> None:
    message = (
        "The specified capacity '120' of account deployment is bigger than available capacity '0' for UsageName "
        "'Tokens Per Minute (thousands) - GPT-35-Turbo'."
    )
    body = json.dumps({"error": {"code": "InsufficientQuota", "message": message}})
    assert type(error_from_response(response(400, body))) is InsufficientQuotaError


def test_numeric_string_code_from_gateway() -> None:
    message = "Requests to the API have exceeded rate limit. Please retry after 7 seconds."
    body = json.dumps({"error": {"code": "429", "message": message}})
    error = error_from_response(response(429, body, retry_after="7", x_request_id="gw-9"))
    assert isinstance(error, RateLimitError)
    assert error.code == "429"
    assert error.retry_after == 7.0
    assert error.request_id == "gw-9"
    nf = error_from_response(response(404, '{"error": {"code": "404", "message": "Resource not found"}}'))
    assert isinstance(nf, NotFoundError) and nf.code == "404" and nf.message == "Resource not found"


def test_gateway_status_code_shape() -> None:
    body = '{"statusCode": 401, "message": "Access denied due to invalid subscription key or wrong API endpoint."}'
    error = error_from_response(response(401, body))
    assert isinstance(error, AuthenticationError)
    assert error.code == "401"
    assert error.message.startswith("Access denied")


def test_non_json_body() -> None:
    error = error_from_response(response(502, "<html><body>Bad Gateway</body></html>", content_type="text/html"))
    assert isinstance(error, InternalServerError)
    assert error.code is None
    assert "Bad Gateway" in error.message
    assert error.body == "<html><body>Bad Gateway</body></html>"


def test_empty_body_uses_reason_phrase() -> None:
    error = error_from_response(response(503, b""))
    assert error.message == "Service Unavailable"


def test_secrets_never_in_message_or_body() -> None:
    body = (
        '{"error": {"code": "fileImportFailed", "message": "Failed to download ' + SAS_URL + " with api-key=abc123 "
        'Authorization: Bearer eyJ0eXAi.abc.def"}}'
    )
    url = "https://r/openai/files/import?api-version=2024-10-21&api-key=querykey123"
    error = error_from_response(response(400, body, method="POST", url=url), secrets=["mysecretkeyvalue"])
    text = str(error) + repr(error.body) + error.message
    for secret in ("SECRETSIG", "abc123", "eyJ0eXAi", "querykey123"):
        assert secret not in text
    assert "sig=REDACTED" in error.message
    assert "api-version=2024-10-21" in text


def test_scrub_helpers() -> None:
    assert "SECRETSIG" not in scrub_url(SAS_URL)
    assert scrub_url("https://x/y?a=1&sig=zzz").endswith("a=1&sig=REDACTED")
    assert scrub_text("key mysecretkeyvalue here", ["mysecretkeyvalue"]) == "key REDACTED here"
    assert scrub_text('{"api-key": "k123"}') == '{"api-key": "REDACTED"}'
    assert "tok" not in scrub_text("Authorization: Bearer tok.en.value")
