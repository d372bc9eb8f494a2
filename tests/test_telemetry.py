"""Telemetry with in-memory exporters: spans, run attributes on spans and log lines, metrics; off costs nothing."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.aoai import AzureOpenAIClient, NotFoundError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Exported:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: InMemoryLogRecordExporter
    logger: logging.Logger

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def exported() -> Iterator[Exported]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    handler = LoggingHandler(logger_provider=logger_provider)
    logger = logging.getLogger("test.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    telemetry.enable(tracer_provider, MeterProvider(metric_readers=[reader]), log_handlers=[handler])
    yield Exported(spans, reader, logs, logger)
    telemetry.disable()
    logger.removeHandler(handler)


def test_a_handler_span_holds_the_run_span_and_a_service_call_span_without_the_query(
    exported: Exported, emulator: Any
) -> None:
    client = AzureOpenAIClient(
        emulator.base_url, api_key=emulator.api_key, transport=telemetry.service_transport("azure_openai")
    )

    def work() -> None:
        exported.logger.info("checking job")
        with pytest.raises(NotFoundError):
            client.jobs.get("ftjob-nope")

    @telemetry.traced("advance_runs")
    def handler() -> str:
        exported.logger.info("tick starts")  # outside any run: no run_id
        telemetry.in_run("support-0123456789ab", "ftjob-nope", work)
        return "done"

    assert handler() == "done"
    spans = {s.name: s for s in exported.spans.get_finished_spans()}
    assert set(spans) == {"function advance_runs", "run", "GET azure_openai"}
    root, run, call = spans["function advance_runs"], spans["run"], spans["GET azure_openai"]
    assert run.parent is not None and run.parent.span_id == root.context.span_id
    assert call.parent is not None and call.parent.span_id == run.context.span_id
    assert dict(run.attributes or {}) == {"run_id": "support-0123456789ab", "job_id": "ftjob-nope"}
    attributes = dict(call.attributes or {})
    assert attributes["http.response.status_code"] == 404 and attributes["url.path"].endswith("/ftjob-nope")
    assert attributes["run_id"] == "support-0123456789ab" and attributes["peer.service"] == "azure_openai"
    everything = " ".join(str(v) for s in spans.values() for v in (s.attributes or {}).values())
    assert "api-version" not in everything and emulator.api_key not in everything

    records = {r.log_record.body: dict(r.log_record.attributes or {}) for r in exported.logs.get_finished_logs()}
    assert records["checking job"]["run_id"] == "support-0123456789ab"
    assert records["checking job"]["job_id"] == "ftjob-nope"
    assert "run_id" not in records["tick starts"]

    errors = exported.metric_points("autopilot.service.errors")
    assert [(dict(p.attributes), p.value) for p in errors] == [({"service": "azure_openai", "status": "404"}, 1)]
    durations = exported.metric_points("autopilot.handler.duration")
    assert [(dict(p.attributes), p.count) for p in durations] == [({"function": "advance_runs", "outcome": "ok"}, 1)]


def test_state_changes_and_queue_depth_are_metrics(exported: Exported, queue_service: Any, unique_name: Any) -> None:
    queue = queue_service.get_queue_client(unique_name("depth"))
    queue.create_queue()
    for i in range(3):
        queue.send_message(f"m{i}")
    telemetry.watch_queues({"fine-tuning-deploy": queue})
    for state in ("validating", "importing", "importing"):
        telemetry.state_changed(state)
    depth = exported.metric_points("autopilot.queue.depth")
    assert [(dict(p.attributes), p.value) for p in depth] == [({"queue": "fine-tuning-deploy"}, 3)]
    changes = {p.attributes["state"]: p.value for p in exported.metric_points("autopilot.runs.state_changes")}
    assert changes == {"validating": 1, "importing": 2}


def test_a_failing_handler_is_an_error_span_and_still_measured(exported: Exported) -> None:
    @telemetry.traced("deploy_succeeded_run")
    def handler() -> None:
        raise RuntimeError("quota")

    with pytest.raises(RuntimeError):
        handler()
    (span,) = exported.spans.get_finished_spans()
    assert span.name == "function deploy_succeeded_run" and not span.status.is_ok
    (point,) = exported.metric_points("autopilot.handler.duration")
    assert dict(point.attributes) == {"function": "deploy_succeeded_run", "outcome": "error"}


def test_off_without_a_connection_string_nothing_of_opentelemetry_is_loaded() -> None:
    assert telemetry.configure({}) is False and not telemetry.enabled()
    assert telemetry.service_transport("azure_openai") is None
    code = (
        "import sys, function_app; from shared import telemetry; "
        "print(telemetry.enabled(), sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False []"
