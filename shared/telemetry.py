"""OpenTelemetry for the app: traces, metrics and log attributes, exported to Application Insights.

Off unless `APPLICATIONINSIGHTS_CONNECTION_STRING` is set (the Bicep sets it): then `configure()` calls
`azure.monitor.opentelemetry.configure_azure_monitor` once, and

- every handler invocation is a span (`@traced("advance_runs")` on the blueprint functions), and so is every
  call to Azure OpenAI and the control plane (an httpx transport: method, host, path and status, never the
  query string, a key or a token); storage calls are spans of the Azure SDK's own instrumentation;
- every log line written inside `in_run(run_id, job_id, ...)` carries `run_id` (and `job_id`) as attributes,
  as does the current span;
- a few metrics: `autopilot.runs.state_changes` (by state), `autopilot.handler.duration` (seconds, by
  function: the timer's is the tick time), `autopilot.queue.depth` (by queue) and `autopilot.service.errors`
  (by service and status).

When it is off, nothing of OpenTelemetry is imported: `traced` and `in_run` cost one flag test, the
transport is not installed. Tests call `enable()` with SDK providers that export to memory.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import httpx

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

log = logging.getLogger(__name__)

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
_SCOPE = "aoai-finetune-autopilot"

P = ParamSpec("P")
R = TypeVar("R")

_run: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("run", default=None)


class _Telemetry:
    """The instruments, once enabled (a module-level singleton: OpenTelemetry's providers are global too)."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer = tracer_provider.get_tracer(_SCOPE)
        meter = meter_provider.get_meter(_SCOPE)
        self.meter = meter
        self.state_changes = meter.create_counter(
            "autopilot.runs.state_changes", unit="{run}", description="Runs entering each state"
        )
        self.handler_duration = meter.create_histogram(
            "autopilot.handler.duration", unit="s", description="Handler invocations (advance_runs: the tick)"
        )
        self.service_errors = meter.create_counter(
            "autopilot.service.errors", unit="{error}", description="Service calls that failed, by status"
        )
        self.queues: dict[str, QueueClient] = {}
        meter.create_observable_gauge(
            "autopilot.queue.depth", callbacks=[self._queue_depths], unit="{message}",
            description="Approximate messages waiting, by queue",
        )

    def _queue_depths(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for name, queue in list(self.queues.items()):
            try:
                count = queue.get_queue_properties().approximate_message_count or 0
            except Exception:  # noqa: BLE001 - a metric callback must never raise
                continue
            yield Observation(count, {"queue": name})


_active: _Telemetry | None = None


def enabled() -> bool:
    return _active is not None


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Turn telemetry on when the connection string is set (idempotent). Returns whether it is on."""
    global _active
    if _active is not None:
        return True
    env = os.environ if env is None else env
    if not env.get(CONNECTION_SETTING):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics, trace

    off = {"enabled": False}
    configure_azure_monitor(
        connection_string=env[CONNECTION_SETTING],
        enable_live_metrics=False,
        # Our transport traces the Azure OpenAI calls without their query strings; the generic HTTP client
        # instrumentations would record full URLs (webhook URLs, submitted URLs carry secrets).
        instrumentation_options={name: off for name in ("httpx", "requests", "urllib", "urllib3", "django",
                                                         "fastapi", "flask", "psycopg2")},
    )
    enable(trace.get_tracer_provider(), metrics.get_meter_provider(), log_handlers=_otel_handlers())
    return True


def enable(
    tracer_provider: TracerProvider, meter_provider: MeterProvider, *, log_handlers: Iterable[logging.Handler] = ()
) -> None:
    """Use these providers (tests: in-memory exporters). Log handlers get the run_id/job_id attributes."""
    global _active
    _active = _Telemetry(tracer_provider, meter_provider)
    for handler in log_handlers:
        if not any(isinstance(f, RunAttributes) for f in handler.filters):
            handler.addFilter(RunAttributes())


def disable() -> None:
    global _active
    _active = None


def _otel_handlers() -> list[logging.Handler]:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    return [h for h in logging.getLogger().handlers if isinstance(h, LoggingHandler)]


class RunAttributes(logging.Filter):
    """Adds `run_id` / `job_id` of the run being worked on to each record (exported as log attributes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _run.get()
        if current is not None:
            run_id, job_id = current
            if not hasattr(record, "run_id"):
                record.run_id = run_id
            if job_id and not hasattr(record, "job_id"):
                record.job_id = job_id
        return True


# --- spans -----------------------------------------------------------------------------------------------------
def traced(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A span per invocation of a handler, and its duration in `autopilot.handler.duration`."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            telemetry = _active
            if telemetry is None:
                return fn(*args, **kwargs)
            started = time.perf_counter()
            outcome = "ok"
            with telemetry.tracer.start_as_current_span(f"function {name}", attributes={"faas.name": name}):
                try:
                    return fn(*args, **kwargs)
                except BaseException:
                    outcome = "error"
                    raise
                finally:
                    telemetry.handler_duration.record(
                        time.perf_counter() - started, {"function": name, "outcome": outcome}
                    )

        return wrapper

    return decorate


def in_run(run_id: str | None, job_id: str | None, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `fn` as work on one run: its log lines and the current span carry `run_id` and `job_id`."""
    if _active is None or run_id is None:
        return fn(*args, **kwargs)
    token = _run.set((run_id, job_id))
    try:
        with _active.tracer.start_as_current_span("run", attributes=_run_attributes(run_id, job_id)):
            return fn(*args, **kwargs)
    finally:
        _run.reset(token)


def _run_attributes(run_id: str, job_id: str | None) -> dict[str, str]:
    return {"run_id": run_id, **({"job_id": job_id} if job_id else {})}


def state_changed(state: str) -> None:
    if _active is not None:
        _active.state_changes.add(1, {"state": state})


def watch_queues(queues: Mapping[str, QueueClient]) -> None:
    """Report these queues' depth in `autopilot.queue.depth` (read when the metrics are exported)."""
    if _active is not None:
        _active.queues.update(queues)


# --- service calls ---------------------------------------------------------------------------------------------
class TracingTransport(httpx.BaseTransport):
    """A span per HTTP request to a service: method, host and path only (no query string: no SAS, no key)."""

    def __init__(self, service: str, inner: httpx.BaseTransport | None = None) -> None:
        self.service = service
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        telemetry = _active
        if telemetry is None:
            return self.inner.handle_request(request)
        from opentelemetry.trace import SpanKind, Status, StatusCode

        attributes: dict[str, str | int] = {
            "peer.service": self.service,
            "http.request.method": request.method,
            "server.address": request.url.host,
            "url.path": request.url.path,
        }
        current = _run.get()
        if current is not None:
            attributes.update(_run_attributes(*current))
        with telemetry.tracer.start_as_current_span(
            f"{request.method} {self.service}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                response = self.inner.handle_request(request)
            except httpx.HTTPError as exc:
                telemetry.service_errors.add(1, {"service": self.service, "status": type(exc).__name__})
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                telemetry.service_errors.add(1, {"service": self.service, "status": str(response.status_code)})
                span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
            return response

    def close(self) -> None:
        self.inner.close()


def service_transport(service: str) -> httpx.BaseTransport | None:
    """The transport for a service client: traced when telemetry is on, else None (the client's default)."""
    return TracingTransport(service) if _active is not None else None
