"""Load a Python v2 app, read each function's trigger, and call the real handler (sync or async).

Handlers get their arguments from the trigger's binding name and the parameter's annotation, as the Python
worker does; a parameter named ``context`` gets a :class:`azure.functions.Context`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import threading
import time
import typing
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

from devhost.config import ConfigError

log = logging.getLogger("devhost")

TRIGGER_KINDS = {"blobTrigger": "blob", "queueTrigger": "queue", "timerTrigger": "timer", "httpTrigger": "http"}


@dataclass
class FunctionSpec:
    """One function of the app: its name, trigger kind, raw trigger binding and the user's callable."""

    name: str
    kind: str
    trigger: dict[str, Any]
    handler: Callable[..., Any]
    other_bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def function_id(self) -> str:
        """The id the host uses in receipts, locks and poison messages."""
        return f"Host.Functions.{self.name}"

    @property
    def trigger_param(self) -> str:
        return str(self.trigger["name"])

    def annotation(self, param: str) -> Any:
        try:
            hints = typing.get_type_hints(self.handler)
        except Exception:  # noqa: BLE001 - unresolved string annotations: fall back to the raw ones
            hints = {k: p.annotation for k, p in inspect.signature(self.handler).parameters.items()}
        hint = hints.get(param, inspect.Parameter.empty)
        return None if hint is inspect.Parameter.empty else hint


def _plain(value: Any) -> Any:
    """Enums (BindingDirection, AuthLevel, HttpMethod) -> their values, recursively."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and type(value).__module__.startswith("azure.functions"):
        return value.value
    return value


def load_app(module: str, app_dir: Path) -> Any:
    """Import ``module`` (a name like ``function_app`` or a path to a .py file) and return its FunctionApp."""
    if module.endswith(".py"):
        path = (app_dir / module).resolve()
        app_dir, module = path.parent, path.stem
    sys.path.insert(0, str(app_dir.resolve()))
    mod = importlib.import_module(module)
    apps = [v for v in vars(mod).values() if isinstance(v, func.FunctionRegister)]
    if not apps:
        raise ConfigError(f"module {module!r} defines no azure.functions.FunctionApp")
    if len(apps) > 1:
        raise ConfigError(f"module {module!r} defines {len(apps)} FunctionApp objects; the host allows one")
    return apps[0]


def discover(app: Any, env: typing.Mapping[str, str]) -> list[FunctionSpec]:
    specs: list[FunctionSpec] = []
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        raw = {k: _plain(v) for k, v in trigger.get_dict_repr().items()}
        name = fn.get_function_name()
        kind = TRIGGER_KINDS.get(raw.get("type", ""))
        if kind is None:
            log.warning("function %s: trigger type %r is not served by devhost; skipped", name, raw.get("type"))
            continue
        disabled = env.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower()
        if disabled in ("true", "1"):
            log.info("function %s is disabled by AzureWebJobs.%s.Disabled", name, name)
            continue
        others = [
            {k: _plain(v) for k, v in b.get_dict_repr().items()}
            for b in fn.get_bindings()
            if b is not trigger
        ]
        others = [b for b in others if not (b.get("type") == "http" and b.get("name") == "$return")]
        for b in others:
            log.warning(
                "function %s: %s binding %r (%s) is not provided by devhost; the parameter gets None",
                name, b.get("direction"), b.get("name"), b.get("type"),
            )
        specs.append(FunctionSpec(name=name, kind=kind, trigger=raw, handler=fn.get_user_function(),
                                  other_bindings=others))
    return specs


class _TraceContext(TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    def __init__(self, retry_count: int = 0, max_retry_count: int = 0) -> None:
        self._count, self._max = retry_count, max_retry_count

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return self._max

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The ``context`` argument: invocation id, function name and directory, trace and retry context."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._id = str(uuid.uuid4())
        self._name = function_name
        self._dir = function_directory
        self._trace = _TraceContext()
        self._retry = _RetryContext()
        self._tls = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._dir

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


class InvocationTimeout(Exception):
    """The function ran past host.json's functionTimeout."""


class Invoker:
    """Calls handlers: sync ones on the calling worker thread, async ones on one shared event loop (as the
    Python worker does), both bounded by host.json's ``functionTimeout`` where that is possible."""

    def __init__(self, app_dir: Path, function_timeout: float | None) -> None:
        self.app_dir = app_dir
        self.function_timeout = function_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devhost-asyncio", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def call(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Invoke ``spec``'s handler with its trigger argument; returns what the handler returns."""
        kwargs: dict[str, Any] = {}
        for pname, param in inspect.signature(spec.handler).parameters.items():
            if pname == spec.trigger_param:
                kwargs[pname] = trigger_value
            elif pname == "context":
                kwargs[pname] = InvocationContext(spec.name, str(self.app_dir))
            elif param.default is inspect.Parameter.empty:
                kwargs[pname] = None
        if inspect.iscoroutinefunction(spec.handler):
            return self._run_async(spec.handler(**kwargs))
        started = time.monotonic()
        result = spec.handler(**kwargs)
        if self.function_timeout is not None and time.monotonic() - started > self.function_timeout:
            # A thread cannot be stopped; the host would have restarted the worker and failed the invocation.
            raise InvocationTimeout(f"{spec.name} ran past functionTimeout ({self.function_timeout:g}s)")
        return result

    def _run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        async def bounded() -> Any:
            if self.function_timeout is None:
                return await coro
            try:
                return await asyncio.wait_for(coro, self.function_timeout)
            except TimeoutError as exc:
                raise InvocationTimeout(f"ran past functionTimeout ({self.function_timeout:g}s)") from exc

        future = asyncio.run_coroutine_threadsafe(bounded(), self._loop)
        try:
            return future.result()
        except FutureTimeout as exc:  # pragma: no cover - result() without timeout does not raise this
            raise InvocationTimeout(str(exc)) from exc
