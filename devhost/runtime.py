"""What every trigger listener shares: settings, host.json, connections, the invoker and the stop signal."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.config import HostConfig
from devhost.functions import FunctionSpec, Invoker
from shared.connections import StorageConnection

log = logging.getLogger("devhost")


@dataclass
class Outcome:
    ok: bool
    result: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0


@dataclass
class Runtime:
    env: Mapping[str, str]
    host: HostConfig
    host_id: str
    poll_interval: float
    invoker: Invoker
    app_dir: Path
    stop: threading.Event = field(default_factory=threading.Event)
    _connections: dict[str, StorageConnection] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connection(self, name: str | None) -> StorageConnection:
        key = name or "AzureWebJobsStorage"
        with self._lock:
            if key not in self._connections:
                self._connections[key] = StorageConnection.from_settings(key, self.env)
            return self._connections[key]

    def host_storage(self) -> StorageConnection:
        """AzureWebJobsStorage: where receipts, timer status and locks live, as with the host."""
        return self.connection("AzureWebJobsStorage")

    def invoke(self, spec: FunctionSpec, value: Any, detail: str) -> Outcome:
        """Call the handler and log one line: function, trigger detail, duration, ok/failed (+ traceback)."""
        started = time.perf_counter()
        try:
            result = self.invoker.call(spec, value)
        except Exception as exc:  # noqa: BLE001 - a failing handler is logged and reported, never fatal
            ms = (time.perf_counter() - started) * 1000
            log.error(
                "invocation %s (%s) failed in %.0f ms: %s: %s\n%s",
                spec.name, detail, ms, type(exc).__name__, exc,
                "".join(traceback.format_exception(exc)).rstrip(),
            )
            return Outcome(ok=False, error=exc, duration_ms=ms)
        ms = (time.perf_counter() - started) * 1000
        # A schedule firing every few seconds would fill the log: its successful runs are DEBUG (failures stay ERROR).
        level = logging.DEBUG if detail.startswith("timer scheduled") else logging.INFO
        log.log(level, "invocation %s (%s) ok in %.0f ms", spec.name, detail, ms)
        return Outcome(ok=True, result=result, duration_ms=ms)
