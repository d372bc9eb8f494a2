"""Scrub secrets from text before it reaches an exception message or a log record.

What is scrubbed: the userinfo of URLs (`https://user:password@host`), SAS signatures and other
credential-bearing query parameters (`sig=`, `api-key=`, `key=`, `code=`, `token=`, ...),
`Authorization: Bearer ...` values, `api-key:` header values, and any exact secret values the caller
registers (the client registers its own api key).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

REDACTED = "REDACTED"

#: Query parameters whose values are credentials (compared case-insensitively).
SENSITIVE_PARAMS = frozenset(
    {
        "sig",
        "signature",
        "api-key",
        "api_key",
        "apikey",
        "key",
        "code",
        "token",
        "access_token",
        "client_secret",
        "password",
        "secret",
        "skoid",
        "sktid",
        "x-ms-signature",
    }
)

_PARAM_RE = re.compile(
    r"(?i)(?P<name>\b(?:" + "|".join(re.escape(p) for p in sorted(SENSITIVE_PARAMS, key=len, reverse=True)) + r"))"
    r"(?P<sep>=|%3D)(?P<value>[^&\s\"'<>#]+)"
)
# scheme://user[:password]@ -> scheme://REDACTED@ (a password in a URL is a credential like any other)
_USERINFO_RE = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#@\s\"'<>]+)@")
_BEARER_RE = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*")
_HEADER_RE = re.compile(
    r"(?i)(?P<name>\b(?:api-key|ocp-apim-subscription-key|authorization)\b\s*[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>[^\s\"',}]+)"
)


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with credential values replaced by ``REDACTED``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _BEARER_RE.sub("Bearer " + REDACTED, text)
    text = _PARAM_RE.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    return _HEADER_RE.sub(lambda m: f"{m.group('name')}{REDACTED}", text)


def scrub_url(url: str | httpx.URL) -> str:
    """Return the URL with sensitive query parameter values (SAS `sig`, `api-key`, ...) replaced."""
    raw = str(url)
    try:
        parts = urlsplit(raw)
    except ValueError:
        return scrub_text(raw)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    if not parts.query:
        return scrub_text(urlunsplit((parts.scheme, netloc, parts.path, "", parts.fragment)))
    pairs = [
        (k, REDACTED if k.lower() in SENSITIVE_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    query = urlencode(pairs, safe=":/,")
    return scrub_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def scrub_obj(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """Recursively scrub every string in a JSON-like structure (dicts, lists, strings)."""
    secrets = tuple(secrets)
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    if isinstance(obj, dict):
        return {k: scrub_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_obj(v, secrets) for v in obj]
    return obj


class ScrubbingFilter(logging.Filter):
    """Scrubs a record's formatted message (httpx logs every request URL at INFO: SAS, userinfo, webhook tokens)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_FILTER = ScrubbingFilter()


def scrub_http_client_logs() -> None:
    """Install the filter on the HTTP client libraries' loggers (idempotent)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
