"""Authentication as ``httpx.Auth`` flows: an ``api-key`` header, or a cached Microsoft Entra bearer token.

Secrets stay out of ``httpx.Client.headers`` (and so out of any repr of the client) and are never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx
from azure.core.credentials import AccessToken, TokenCredential
from pydantic import SecretStr

__all__ = [
    "AI_FOUNDRY_SCOPE",
    "COGNITIVE_SERVICES_SCOPE",
    "MANAGEMENT_SCOPE",
    "ApiKeyAuth",
    "BearerTokenAuth",
    "StaticTokenCredential",
]

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
AI_FOUNDRY_SCOPE = "https://ai.azure.com/.default"
"""Entra ID scope of a Foundry project endpoint (``https://<resource>.services.ai.azure.com/api/projects/<p>``)."""
MANAGEMENT_SCOPE = "https://management.azure.com/.default"


class ApiKeyAuth(httpx.Auth):
    """Sends ``api-key: KEY``, or ``Authorization: Bearer KEY`` with ``as_bearer`` (the v1 spec's second key
    scheme, and how Microsoft's samples send a key to a Foundry project endpoint: through ``openai.OpenAI``)."""

    def __init__(self, api_key: SecretStr, *, as_bearer: bool = False) -> None:
        self._api_key = api_key
        self._as_bearer = as_bearer

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._as_bearer:
            request.headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        else:
            request.headers["api-key"] = self._api_key.get_secret_value()
        yield request


class BearerTokenAuth(httpx.Auth):
    """Sends ``Authorization: Bearer`` with a token from ``credential`` for ``scope``.

    The token is cached until ``refresh_margin`` seconds before it expires. On a 401 the token is fetched
    again once and the request resent (a revoked or rotated token); a second 401 is returned as is.
    ``token_requests`` counts calls to ``credential.get_token`` (tests assert on it).
    """

    requires_request_body = True  # the body is replayed on the single 401 retry

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.token_requests = 0

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            now = self._clock()
            if force or self._token is None or self._token.expires_on - self._refresh_margin <= now:
                self._token = self._credential.get_token(self._scope)
                self.token_requests += 1
            return self._token.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token(force=True)}"
            yield request


class StaticTokenCredential:
    """A ``TokenCredential`` holding one fixed token (local emulators, tests, a token from ``az``)."""

    def __init__(self, token: SecretStr | str, *, expires_in: float = 3600.0) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._expires_in = expires_in

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token.get_secret_value(), int(time.time() + self._expires_in))
