"""Retries as an ``httpx`` transport, and the rule for requests that have effects.

:class:`RetryTransport` wraps any ``httpx.BaseTransport`` (the real ``HTTPTransport`` or a test's
``MockTransport``) so retries live in one place instead of around each call.

What is retried
    * responses 408, 409, 429 and >= 500 (unless the service says ``x-should-retry: false``, or a 429
      carries a quota code such as ``quotaExceeded`` / ``InsufficientQuota``: a limit, not a throttle);
    * transport errors: connect errors and timeouts, read/write errors and timeouts, dropped connections.

How long to wait
    ``retry-after-ms`` or ``x-ms-retry-after-ms`` first, then ``Retry-After`` (seconds or an HTTP date),
    capped at ``max_retry_after`` (60 s by default); without any of them, exponential backoff
    ``backoff_base * 2**(n-1)`` capped at ``backoff_cap`` and jittered down by up to ``jitter`` (25 %).

The rule for effects (creates)
    A request is *non-idempotent* when ``request.extensions["idempotent"] is False`` (the client marks its
    creates: ``files.upload``, ``files.import_from_url``, ``jobs.create``), or, absent the mark, when its method
    is POST or PATCH. GET, HEAD, DELETE and PUT (ARM PUT is idempotent) are retried on every rule above.
    A non-idempotent request is resent **only when the service surely did not act on it**:

    * 429 (throttled before processing);
    * 503 carrying ``Retry-After`` / ``retry-after-ms`` (the front door refused it, asking to come back);
    * a failure *before* the request was sent: ``httpx.ConnectError``, ``httpx.ConnectTimeout``,
      ``httpx.PoolTimeout``.

    Anything else - a read or write timeout, a connection dropped after sending, a 500/502/504, a 408, a
    503 without a retry hint - is handed to the caller at once. The client raises it as
    ``APIConnectionError`` / ``APITimeoutError`` / ``InternalServerError`` with ``ambiguous=True``: the service
    may have created the file or job, so the caller reconciles (lists and matches by filename / training
    file + suffix) instead of sending the create again. Resending could start a second paid training job.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping

import httpx

logger = logging.getLogger("shared.aoai")

__all__ = [
    "NOT_SENT_ERRORS",
    "RETRYABLE_STATUSES",
    "RetryTransport",
    "effect_is_ambiguous",
    "is_idempotent",
    "parse_retry_after",
]

#: Transport errors raised before any byte of the request reached the service.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Transport errors worth a retry for an idempotent request.
RETRYABLE_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: Millisecond retry hints, first match wins: OpenAI's ``retry-after-ms``, then Azure's ``x-ms-retry-after-ms``.
RETRY_AFTER_MS_HEADERS = ("retry-after-ms", "x-ms-retry-after-ms")
_NON_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
_QUOTA_CODES = frozenset({"insufficientquota", "quotaexceeded", "insufficient_quota"})


def is_idempotent(request: httpx.Request) -> bool:
    """``request.extensions["idempotent"]`` when set, else False for POST/PATCH and True otherwise."""
    mark = request.extensions.get("idempotent")
    if isinstance(mark, bool):
        return mark
    return request.method.upper() not in _NON_IDEMPOTENT_METHODS


def parse_retry_after(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the service asks us to wait: ``retry-after-ms``, ``x-ms-retry-after-ms``, then ``Retry-After``
    (seconds or an HTTP date)."""
    for name in RETRY_AFTER_MS_HEADERS:
        ms = headers.get(name)
        if ms:
            try:
                return max(float(ms) / 1000.0, 0.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now(), 0.0)


def _has_retry_hint(response: httpx.Response) -> bool:
    return "retry-after" in response.headers or any(h in response.headers for h in RETRY_AFTER_MS_HEADERS)


def effect_is_ambiguous(
    request: httpx.Request, *, response: httpx.Response | None = None, exc: BaseException | None = None
) -> bool:
    """True when a non-idempotent request failed in a way that leaves open whether the service acted."""
    if is_idempotent(request):
        return False
    if exc is not None:
        return not isinstance(exc, NOT_SENT_ERRORS)
    if response is not None:
        status = response.status_code
        if status == 503:
            return not _has_retry_hint(response)
        return status == 408 or status >= 500
    return False


def _is_quota_answer(response: httpx.Response) -> bool:
    try:
        body = json.loads(response.read() or b"null")
    except (ValueError, httpx.HTTPError, RuntimeError):
        return False
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return isinstance(code, str) and code.lower() in _QUOTA_CODES


class RetryTransport(httpx.BaseTransport):
    """Retry an inner transport's requests by the rules in this module's docstring.

    ``sleep`` and ``rng`` are injectable so tests can record waits instead of sleeping.
    ``retries_done`` counts the retries this transport has made (for metrics and tests).
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_retry_after: float = 60.0,
        jitter: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.jitter = jitter
        self._sleep = sleep
        self._rng = rng
        self.retries_done = 0

    # -- policy ---------------------------------------------------------------------------------------
    def should_retry_response(self, request: httpx.Request, response: httpx.Response) -> bool:
        status = response.status_code
        if status not in RETRYABLE_STATUSES and status < 500:
            return False
        if response.headers.get("x-should-retry", "").lower() == "false":
            return False
        if status == 429 and not _has_retry_hint(response) and _is_quota_answer(response):
            return False
        if is_idempotent(request):
            return True
        return status == 429 or (status == 503 and _has_retry_hint(response))

    def should_retry_error(self, request: httpx.Request, exc: httpx.TransportError) -> bool:
        if isinstance(exc, NOT_SENT_ERRORS):
            return True
        return is_idempotent(request) and isinstance(exc, RETRYABLE_ERRORS)

    def wait_time(self, retry_number: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        if response is not None:
            hinted = parse_retry_after(response.headers)
            if hinted is not None:
                return min(hinted, self.max_retry_after)
        backoff = min(self.backoff_base * (2.0 ** (retry_number - 1)), self.backoff_cap)
        return backoff * (1.0 - self.jitter * self._rng())

    # -- transport ------------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        retry_number = 0
        while True:
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as exc:
                if retry_number >= self.max_retries or not self.should_retry_error(request, exc):
                    raise
                retry_number += 1
                wait = self.wait_time(retry_number, None)
                self._log(request, type(exc).__name__, wait, retry_number)
            else:
                if retry_number >= self.max_retries or not self.should_retry_response(request, response):
                    return response
                retry_number += 1
                wait = self.wait_time(retry_number, response)
                self._log(request, str(response.status_code), wait, retry_number)
                response.close()
            self.retries_done += 1
            self._sleep(wait)

    def _log(self, request: httpx.Request, outcome: str, wait: float, retry_number: int) -> None:
        logger.warning(
            "retrying %s %s after %s: waiting %.3f s (retry %d of %d)",
            request.method,
            request.url.path,
            outcome,
            wait,
            retry_number,
            self.max_retries,
            extra={
                "aoai_method": request.method,
                "aoai_path": request.url.path,
                "aoai_outcome": outcome,
                "aoai_wait": wait,
                "aoai_retry": retry_number,
            },
        )

    def close(self) -> None:
        self.inner.close()
