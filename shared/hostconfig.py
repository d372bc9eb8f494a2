"""host.json as the Functions host reads it, with its `AzureFunctionsJobHost__*` app-setting overrides.

One reader for the app (which derives its deploy attempts and checks its deadlines against it at start-up)
and for the development host (which honours the same values).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"
"""The app's own host.json (beside function_app.py)."""


class HostConfigError(ValueError):
    """A host.json value (or override) that cannot be used."""


def parse_timespan(value: Any, *, where: str) -> float:
    """A .NET TimeSpan (``"00:05:00"``, ``"1.02:00:00"``) or a number of seconds -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    days = 0.0
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not match:
        raise HostConfigError(f"{where}: {value!r} is not a TimeSpan like 00:05:00")
    if match.group(1):
        days = float(match.group(1))
    hours, minutes, seconds = float(match.group(2)), float(match.group(3)), float(match.group(4))
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class HostConfig:
    """What the app and devhost read from host.json (defaults are the host's own)."""

    route_prefix: str = "api"
    function_timeout: float | None = None
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    message_encoding: str = "base64"
    batch_size: int = 16
    max_polling_interval: float = 60.0

    @classmethod
    def load(cls, path: Path = HOST_JSON, env: Mapping[str, str] | None = None) -> HostConfig:
        if not path.is_file():
            log.warning("no host.json at %s: using the host's defaults", path)
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise HostConfigError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(apply_overrides(data, os.environ if env is None else env), where=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "host.json") -> HostConfig:
        ext = data.get("extensions") or {}
        http = ext.get("http") or {}
        queues = ext.get("queues") or {}
        timeout = data.get("functionTimeout")
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise HostConfigError(f"{where}: extensions.queues.messageEncoding must be base64 or none")
        polling = queues.get("maxPollingInterval", "00:01:00")
        if isinstance(polling, int | float):
            polling_s = float(polling) / 1000.0  # the host reads a bare number as milliseconds
        else:
            polling_s = parse_timespan(polling, where=f"{where}: extensions.queues.maxPollingInterval")
        return cls(
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            function_timeout=(
                None
                if timeout in (None, "-1", -1)
                else parse_timespan(timeout, where=f"{where}: functionTimeout")
            ),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=parse_timespan(
                queues.get("visibilityTimeout", "00:00:00"), where=f"{where}: extensions.queues.visibilityTimeout"
            ),
            message_encoding=encoding,
            batch_size=max(1, min(32, int(queues.get("batchSize", 16)))),
            max_polling_interval=polling_s,
        )


HOST_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def apply_overrides(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply app settings that override host.json, as the host does: `AzureFunctionsJobHost__a__b=v` sets a.b.

    Keys match case-insensitively; the value stays a string (the readers above accept strings)."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    for name, value in env.items():
        if not name.startswith(HOST_OVERRIDE_PREFIX):
            continue
        parts = [p for p in name[len(HOST_OVERRIDE_PREFIX):].split("__") if p]
        node = out
        for part in parts[:-1]:
            key = next((k for k in node if k.lower() == part.lower()), part)
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if parts:
            key = next((k for k in node if k.lower() == parts[-1].lower()), parts[-1])
            node[key] = value
        log.info("host.json %s overridden by app setting %s", ".".join(parts), name)
    return out


