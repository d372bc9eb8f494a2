"""The HTTP plumbing both clients share: send, map failures to the error hierarchy, validate bodies."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from .errors import (
    APIResponseValidationError,
    AzureOpenAIError,
    error_from_exception,
    error_from_response,
    request_id_of,
)
from .redact import scrub_obj, scrub_url
from .retry import RetryTransport

logger = logging.getLogger("shared.aoai")

M = TypeVar("M", bound=BaseModel)

USER_AGENT = "aoai-finetune-autopilot shared.aoai/0.1"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def seg(value: str) -> str:
    """Quote one path segment (an id) so it can never change the path or add a query."""
    return quote(value, safe="")


class BaseClient:
    """Owns an ``httpx.Client`` whose transport is a :class:`RetryTransport`.

    ``transport`` may be a plain transport (wrapped in a ``RetryTransport(max_retries=...)``) or a
    ``RetryTransport`` already configured by the caller (tests inject one with a recording ``sleep``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth,
        transport: httpx.BaseTransport | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        secrets: tuple[str, ...] = (),
    ) -> None:
        retry = (
            transport
            if isinstance(transport, RetryTransport)
            else RetryTransport(transport if transport is not None else httpx.HTTPTransport(), max_retries=max_retries)
        )
        self.retry_transport = retry
        self._secrets = secrets
        self._http = httpx.Client(
            base_url=base_url,
            transport=retry,
            auth=auth,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        self.base_url = self._http.base_url

    def worst_case_seconds(self) -> float:
        """The longest one call can take as configured: every try at its full timeouts, every wait at its cap.

        How long an effect's lease may be held (shared/effects.py) is derived from this, never kept by hand.
        """
        timeout = self._http.timeout
        per_try = sum(t or 0.0 for t in (timeout.connect, timeout.write, timeout.read))
        retry = self.retry_transport
        waits = retry.max_retries * max(retry.max_retry_after, retry.backoff_cap)
        return (retry.max_retries + 1) * per_try + waits

    # -- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------------------
    def _check_origin(self, url: str) -> None:
        """Refuse to send our credentials to a host other than the endpoint's (nextLink, operation URLs)."""
        target = httpx.URL(url)
        if target.is_absolute_url and (target.scheme, target.host, target.port) != (
            self.base_url.scheme,
            self.base_url.host,
            self.base_url.port,
        ):
            raise AzureOpenAIError(f"refusing to follow {scrub_url(target)}: not on {self.base_url.host}")

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        stream: bool = False,
        allow: tuple[int, ...] = (),
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send and return a < 400 response (or one whose status is in ``allow``); raise the hierarchy otherwise."""
        self._check_origin(url)
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        request = self._http.build_request(
            method, url, params=clean_params or None, json=json, files=files, data=data, headers=headers
        )
        if idempotent is not None:
            request.extensions["idempotent"] = idempotent
        try:
            response = self._http.send(request, stream=stream)
        except httpx.RequestError as exc:
            raise error_from_exception(exc, request) from exc
        logger.debug(
            "%s %s -> %d (request id %s)",
            method,
            request.url.path,
            response.status_code,
            request_id_of(response),
        )
        if response.status_code >= 400 and response.status_code not in allow:
            try:
                error = error_from_response(response, secrets=self._secrets)
            finally:
                response.close()
            raise error
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise APIResponseValidationError(
                f"{response.request.method} {response.request.url.path}: answer {response.status_code} is not JSON",
                status_code=response.status_code,
                body=response.text[:500],
                request_id=request_id_of(response),
            ) from exc

    def _validate(self, model: type[M], raw: Any, response: httpx.Response) -> M:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise APIResponseValidationError(
                f"{response.request.method} {response.request.url.path}: answer does not match "
                f"{model.__name__}: {exc.errors(include_url=False, include_input=False)}",
                status_code=response.status_code,
                body=scrub_obj(raw, self._secrets),
                request_id=request_id_of(response),
            ) from exc

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        return self._validate(model, self._json(response), response)

    def _paginate(
        self, path: str, model: type[M], params: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> Iterator[M]:
        """Yield every item of a ``{data, has_more}`` list, asking again with ``after=<last id>``."""
        after: str | None = None
        seen: set[str] = set()
        while True:
            response = self._send("GET", path, params={**params, "after": after}, headers=headers)
            page = self._json(response)
            if not isinstance(page, dict):
                raise APIResponseValidationError(
                    f"GET {path}: list answer is not an object", status_code=response.status_code, body=page
                )
            items = page.get("data") or []
            for raw in items:
                yield self._validate(model, raw, response)
            if not page.get("has_more") or not items:
                return
            last = items[-1].get("id") if isinstance(items[-1], dict) else None
            if not isinstance(last, str) or last in seen:
                raise APIResponseValidationError(
                    f"GET {path}: has_more is true but the page gives no new cursor ({last!r})",
                    status_code=response.status_code,
                    request_id=request_id_of(response),
                )
            seen.add(last)
            after = last
