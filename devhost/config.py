"""Settings and host.json, read the way the Functions host reads them (the parts devhost uses)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from shared.hostconfig import (
    HOST_OVERRIDE_PREFIX,
    HostConfig,
    HostConfigError,
    apply_overrides,
    parse_timespan,
)

__all__ = ["HOST_OVERRIDE_PREFIX", "ConfigError", "HostConfig", "apply_overrides", "parse_timespan"]

log = logging.getLogger("devhost")

_EXPRESSION = re.compile(r"%([^%]+)%")


ConfigError = HostConfigError
"""A setting, binding expression or host.json value devhost cannot use (one error type with shared.hostconfig)."""


def load_local_settings(path: Path, env: MutableMapping[str, str]) -> dict[str, Any]:
    """Copy ``Values`` from local.settings.json into ``env``; variables already set win (as with ``func start``).

    Returns the whole parsed file (``Host.LocalHttpPort`` etc.). A missing file is an empty one.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if data.get("IsEncrypted"):
        raise ConfigError(f"{path}: IsEncrypted is true; devhost reads plain values only")
    for key, value in (data.get("Values") or {}).items():
        if key not in env and value is not None:
            env[key] = str(value)
    return dict(data)


def resolve_expressions(value: str, env: Mapping[str, str], *, where: str) -> str:
    """Replace ``%SETTING%`` with the setting's value, as the host does for binding properties."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{where}: binding expression %{name}% names a setting that is not set")
        return env[name]

    return _EXPRESSION.sub(repl, value)


def default_host_id(app_dir: Path) -> str:
    """Like the host's id: lowercase, letters/digits/dashes, at most 32 chars. Same app dir -> same id."""
    explicit = os.environ.get("AzureFunctionsWebHost__hostid")
    base = explicit or f"devhost-{app_dir.resolve().name}"
    clean = re.sub(r"[^a-z0-9-]", "-", base.lower()).strip("-")
    return (clean or "devhost")[:32].rstrip("-")
