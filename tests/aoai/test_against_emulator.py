"""shared.aoai against the local emulator (`python -m emulator`) over real HTTP.

The `emulator` session fixture (tests/harness/emulator.py) runs the emulator at time scale 0.25: a file is
processed in ~0.25 s, a small job succeeds in ~1.5 s, a deployment in ~0.5 s. Faults (429/500/503/drop) and
scenarios are injected through its admin API and cleared after each test. Imports fetch their content from a
small local HTTP server whose URLs carry a fake SAS query (``sig=...``), so the tests can assert that the
signature never reaches an exception message or a log record.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shared.aoai import (
    APIConnectionError,
    AuthenticationError,
    AzureOpenAIClient,
    BadRequestError,
    DeploymentLimitError,
    DeploymentsClient,
    FileObject,
    FineTuningJob,
    InsufficientQuotaError,
    InternalServerError,
    JobState,
    NotFoundError,
    OperationFailedError,
    RetryTransport,
)
from tests.harness.emulator import EmulatorProcess

BASE_MODEL = "gpt-4o-mini-2024-07-18"
SIG = "EMUSECRETSIG"


def training_jsonl(n: int = 12, tag: str = "") -> bytes:
    lines = []
    for i in range(n):
        example = {
            "messages": [
                {"role": "system", "content": "You answer questions about Contoso Cloud."},
                {"role": "user", "content": f"How do I reset password number {i}? {tag}"},
                {"role": "assistant", "content": f"Open Settings, then Security, then reset password {i}."},
            ]
        }
        lines.append(json.dumps(example))
    return ("\n".join(lines) + "\n").encode()


# -- helpers ------------------------------------------------------------------------------------------
class SleepRecorder(list[float]):
    """Records the waits the retry transport asks for, sleeping only briefly for real."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(min(seconds, 0.05))


class Counting(httpx.BaseTransport):
    """Counts what actually goes on the wire (below the retry transport)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str]] = []
        self.params: list[httpx.QueryParams] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        self.params.append(request.url.params)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class Content(http.server.BaseHTTPRequestHandler):
    blobs: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.blobs.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def content_server() -> Iterator[Callable[[str, bytes | None], str]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Content)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def publish(name: str, body: bytes | None) -> str:
        if body is not None:
            Content.blobs[f"/blobs/{name}"] = body
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}/blobs/{name}?sv=2024-08-04&se=2030-01-01&sr=b&sp=r&sig={SIG}%2Bx%3D"

    yield publish
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def wire() -> Counting:
    return Counting(httpx.HTTPTransport())


@pytest.fixture
def aoai(emulator: EmulatorProcess, sleeps: SleepRecorder, wire: Counting) -> Iterator[AzureOpenAIClient]:
    transport = RetryTransport(wire, max_retries=3, sleep=sleeps)
    assert emulator.api_key is not None
    with AzureOpenAIClient(emulator.base_url, api_key=emulator.api_key, transport=transport, timeout=10) as client:
        yield client


@pytest.fixture
def arm(emulator: EmulatorProcess, sleeps: SleepRecorder) -> Iterator[DeploymentsClient]:
    transport = RetryTransport(httpx.HTTPTransport(), max_retries=3, sleep=sleeps)
    with DeploymentsClient(
        emulator.base_url,
        subscription_id="00000000-0000-0000-0000-000000000000",
        resource_group="rg-emulator",
        account_name="aoai-emulator",
        bearer_token=emulator.bearer_token,
        transport=transport,
        max_poll_interval=0.2,
        timeout=10,
    ) as client:
        yield client


def wait_file(aoai: AzureOpenAIClient, file_id: str, timeout: float = 15) -> FileObject:
    deadline = time.monotonic() + timeout
    while True:
        f = aoai.files.get(file_id)
        if f.is_terminal:
            return f
        assert time.monotonic() < deadline, f"file {file_id} still {f.status}"
        time.sleep(0.1)


def wait_job(aoai: AzureOpenAIClient, job_id: str, timeout: float = 30) -> FineTuningJob:
    deadline = time.monotonic() + timeout
    while True:
        job = aoai.jobs.get(job_id)
        if job.is_terminal:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.2)


def processed_file(aoai: AzureOpenAIClient, tag: str = "") -> FileObject:
    f = aoai.files.upload(f"train-{uuid.uuid4().hex[:8]}.jsonl", training_jsonl(tag=tag))
    f = wait_file(aoai, f.id)
    assert f.status == "processed", f.status_details
    return f


@pytest.fixture(scope="module")
def trained_job(emulator: EmulatorProcess) -> FineTuningJob:
    """One succeeded job for the tests that need a fine-tuned model."""
    assert emulator.api_key is not None
    with AzureOpenAIClient(emulator.base_url, api_key=emulator.api_key, timeout=10) as client:
        f = processed_file(client, tag="module")
        job = client.jobs.create(model=BASE_MODEL, training_file=f.id, suffix="emu", seed=7, training_type="Standard")
        job = wait_job(client, job.id)
    assert job.state is JobState.SUCCEEDED, job.error_message
    return job


# -- files --------------------------------------------------------------------------------------------
def test_files_upload_import_list_content_delete(
    aoai: AzureOpenAIClient, content_server: Callable[[str, bytes | None], str]
) -> None:
    data = training_jsonl(tag="files")
    uploaded = aoai.files.upload("upload.jsonl", data)
    assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune"
    name = f"import-{uuid.uuid4().hex[:8]}.jsonl"
    imported = aoai.files.import_from_url(name, content_server(name, data))
    assert imported.status in ("pending", "running", "processed")
    assert wait_file(aoai, uploaded.id).status == "processed"
    assert wait_file(aoai, imported.id).status == "processed"

    listed = {f.id for f in aoai.files.list(purpose="fine-tune")}
    assert {uploaded.id, imported.id} <= listed
    assert [f.id for f in aoai.files.find_by_filename(name)] == [imported.id]
    assert aoai.files.content(imported.id) == data
    assert b"".join(aoai.files.stream_content(uploaded.id, chunk_size=256)) == data

    assert aoai.files.delete(uploaded.id).deleted is True
    with pytest.raises(NotFoundError) as info:
        aoai.files.get(uploaded.id)
    assert info.value.status_code == 404 and info.value.message


def test_import_failure_keeps_the_reason_but_not_the_sas(
    aoai: AzureOpenAIClient, content_server: Callable[[str, bytes | None], str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        f = aoai.files.import_from_url("missing.jsonl", content_server("nothing-here", None))
        f = wait_file(aoai, f.id)
    assert f.status == "error"
    assert f.status_details and "404" in f.status_details
    assert SIG not in (f.status_details or "")
    assert all(SIG not in r.getMessage() for r in caplog.records)


def test_invalid_file_ends_in_error_with_details(aoai: AzureOpenAIClient) -> None:
    f = wait_file(aoai, aoai.files.upload("tiny.jsonl", training_jsonl(n=3)).id)
    assert f.status == "error" and not f.is_usable
    assert f.status_details and "10" in f.status_details


# -- jobs ---------------------------------------------------------------------------------------------
def test_job_lifecycle_events_checkpoints_models(aoai: AzureOpenAIClient, wire: Counting) -> None:
    f = processed_file(aoai, tag="lifecycle")
    job = aoai.jobs.create(model=BASE_MODEL, training_file=f.id, suffix="life", seed=1, training_type="Standard")
    assert job.state is JobState.PENDING and not job.is_terminal
    job = wait_job(aoai, job.id)
    assert job.state is JobState.SUCCEEDED and job.fine_tuned_model and job.fine_tuned_model.startswith(BASE_MODEL)
    assert job.result_files

    events = list(aoai.jobs.events(job.id, limit=2))
    assert len(events) >= 3
    assert len({e.id for e in events}) == len(events)
    assert [e.created_at or 0 for e in events] == sorted((e.created_at or 0 for e in events), reverse=True)
    assert any(e.type == "metrics" and e.data for e in events)

    wire.sent.clear()
    newer = list(aoai.jobs.events(job.id, limit=2, newer_than=events[1].id))
    assert [e.id for e in newer] == [events[0].id]
    assert len(wire.sent) == 1  # found on the first page: the later pages were never asked for

    checkpoints = list(aoai.jobs.checkpoints(job.id, limit=1))
    assert checkpoints and all(c.fine_tuning_job_id == job.id for c in checkpoints)
    assert all(c.fine_tuned_model_checkpoint for c in checkpoints)

    results = aoai.files.content(job.result_files[0])
    assert results.splitlines()[0].startswith(b"step,")

    wire.sent.clear()
    all_jobs = [j.id for j in aoai.jobs.list(limit=1)]
    assert job.id in all_jobs
    assert len(wire.sent) == len(all_jobs)  # one job per page, each next page asked with after=

    models = {m.id: m for m in aoai.models.list()}
    assert models[BASE_MODEL].capabilities.fine_tune
    assert job.fine_tuned_model in models
    assert aoai.models.get(job.fine_tuned_model).fine_tune == job.id
    assert aoai.jobs.find_matching(model=BASE_MODEL, training_file=f.id, suffix="life")[0].id == job.id


def test_jobs_list_pages_with_after(aoai: AzureOpenAIClient, wire: Counting) -> None:
    f = processed_file(aoai, tag="paging")
    created = [aoai.jobs.create(model=BASE_MODEL, training_file=f.id, training_type="Standard") for _ in range(2)]
    wire.sent.clear()
    wire.params.clear()
    listed = [j.id for j in aoai.jobs.list(limit=1)]
    assert {j.id for j in created} <= set(listed)
    assert len(listed) == len(set(listed)) == len(wire.sent) >= 2
    assert "after" not in wire.params[0]
    assert wire.params[1]["after"] == listed[0] and wire.params[1]["limit"] == "1"
    for job in created:
        aoai.jobs.cancel(job.id)


def test_cancel_a_queued_job(aoai: AzureOpenAIClient, emulator: EmulatorProcess) -> None:
    f = processed_file(aoai, tag="cancel")
    emulator.set_scenario("stuck_queued")
    job = aoai.jobs.create(model=BASE_MODEL, training_file=f.id, training_type="Standard")
    cancelled = aoai.jobs.cancel(job.id)
    assert cancelled.state in (JobState.CANCELLED, JobState.PENDING)
    job = wait_job(aoai, job.id, timeout=10)
    assert job.state is JobState.CANCELLED and job.is_terminal


@pytest.mark.parametrize("api_version", ["2023-05-15", "2025-04-01-preview"])
def test_other_api_versions_parse(emulator: EmulatorProcess, api_version: str) -> None:
    assert emulator.api_key is not None
    with AzureOpenAIClient(emulator.base_url, api_key=emulator.api_key, api_version=api_version) as client:
        jobs = list(client.jobs.list(limit=5))
        assert all(isinstance(j.state, JobState) for j in jobs)
        client.models.list().__next__()


def test_job_on_pending_file_is_a_bad_request(aoai: AzureOpenAIClient) -> None:
    f = aoai.files.upload("fresh.jsonl", training_jsonl(tag="pending"))
    with pytest.raises(BadRequestError) as info:
        aoai.jobs.create(model=BASE_MODEL, training_file=f.id, training_type="Standard")
    assert "pending" in info.value.message.lower() or "processed" in info.value.message.lower()
    assert info.value.ambiguous is False


def test_not_fine_tunable_model(aoai: AzureOpenAIClient) -> None:
    f = processed_file(aoai, tag="badmodel")
    with pytest.raises(BadRequestError) as info:
        aoai.jobs.create(model="gpt-4-0613", training_file=f.id, training_type="Standard")
    assert info.value.code == "invalidPayload"
    assert "does not support fine-tuning" in info.value.message


# -- error envelopes ----------------------------------------------------------------------------------
def test_wrong_key_is_authentication_error(emulator: EmulatorProcess) -> None:
    with AzureOpenAIClient(emulator.base_url, api_key="wrong-key-123456") as client:
        with pytest.raises(AuthenticationError) as info:
            client.models.get(BASE_MODEL)
    assert info.value.status_code == 401
    assert "wrong-key-123456" not in str(info.value)


def test_unknown_api_version_is_resource_not_found(emulator: EmulatorProcess) -> None:
    assert emulator.api_key is not None
    with AzureOpenAIClient(emulator.base_url, api_key=emulator.api_key, api_version="2019-01-01") as client:
        with pytest.raises(NotFoundError) as info:
            list(client.jobs.list())
    assert info.value.code == "404" and info.value.message == "Resource not found"


def test_missing_job_is_not_found(aoai: AzureOpenAIClient) -> None:
    with pytest.raises(NotFoundError) as info:
        aoai.jobs.get("ftjob-" + "0" * 32)
    assert info.value.code


# -- injected faults ----------------------------------------------------------------------------------
def test_injected_429_on_get_recovered(
    aoai: AzureOpenAIClient, emulator: EmulatorProcess, sleeps: SleepRecorder, wire: Counting
) -> None:
    emulator.inject_fault("GET", "/openai/models*", "429", count=2, retry_after=1)
    assert list(aoai.models.list())
    assert sleeps == [1.0, 1.0]  # retry-after-ms 1000 preferred, same value as Retry-After
    assert len(wire.sent) == 3


def test_injected_503_and_drop_on_get_recovered(
    aoai: AzureOpenAIClient, emulator: EmulatorProcess, wire: Counting
) -> None:
    emulator.inject_fault("GET", "/openai/fine_tuning/jobs", "503", count=1, retry_after=1)
    emulator.inject_fault("GET", "/openai/fine_tuning/jobs", "drop", count=1)
    list(aoai.jobs.list(limit=50))
    assert wire.sent[:3] == [("GET", "/openai/fine_tuning/jobs")] * 3


def test_injected_429_on_create_is_retried(
    aoai: AzureOpenAIClient, emulator: EmulatorProcess, sleeps: SleepRecorder, wire: Counting
) -> None:
    f = processed_file(aoai, tag="429create")
    wire.sent.clear()
    emulator.inject_fault("POST", "/openai/fine_tuning/jobs", "429", count=1, retry_after=1)
    # (the 429 answer is the gateway's: code "429", Retry-After and retry-after-ms)
    job = aoai.jobs.create(model=BASE_MODEL, training_file=f.id, training_type="Standard")
    assert job.id.startswith("ftjob-")
    assert wire.sent == [("POST", "/openai/fine_tuning/jobs")] * 2
    assert sleeps == [1.0]
    aoai.jobs.cancel(job.id)


def test_injected_500_on_create_is_ambiguous_and_reconciled(
    aoai: AzureOpenAIClient, emulator: EmulatorProcess, wire: Counting
) -> None:
    f = processed_file(aoai, tag="500create")
    wire.sent.clear()
    emulator.inject_fault("POST", "/openai/fine_tuning/jobs", "500", count=1)
    with pytest.raises(InternalServerError) as info:
        aoai.jobs.create(model=BASE_MODEL, training_file=f.id, suffix="recon", training_type="Standard")
    assert info.value.ambiguous is True and info.value.code == "internalFailure"
    assert wire.sent == [("POST", "/openai/fine_tuning/jobs")]  # not resent
    # the caller reconciles: no job matches, so creating is safe
    assert aoai.jobs.find_matching(model=BASE_MODEL, training_file=f.id, suffix="recon") == []
    job = aoai.jobs.create(model=BASE_MODEL, training_file=f.id, suffix="recon", training_type="Standard")
    assert [j.id for j in aoai.jobs.find_matching(model=BASE_MODEL, training_file=f.id, suffix="recon")] == [job.id]
    aoai.jobs.cancel(job.id)


def test_dropped_connection_on_import_is_ambiguous_and_not_resent(
    aoai: AzureOpenAIClient,
    emulator: EmulatorProcess,
    wire: Counting,
    content_server: Callable[[str, bytes | None], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.inject_fault("POST", "/openai/files/import", "drop", count=1)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(APIConnectionError) as info:
            aoai.files.import_from_url("dropped.jsonl", content_server("dropped.jsonl", training_jsonl()))
    assert info.value.ambiguous is True
    assert wire.sent == [("POST", "/openai/files/import")]
    assert SIG not in str(info.value)
    assert all(SIG not in r.getMessage() for r in caplog.records)


# -- inference and deployments ------------------------------------------------------------------------
def test_deployment_lifecycle_and_chat(
    aoai: AzureOpenAIClient, arm: DeploymentsClient, trained_job: FineTuningJob, emulator: EmulatorProcess
) -> None:
    assert trained_job.fine_tuned_model
    name = f"ft-{uuid.uuid4().hex[:8]}"
    emulator.inject_fault("PUT", "/subscriptions/*", "429", count=1, retry_after=1)
    deployment = arm.create_or_update_and_wait(name, model_name=trained_job.fine_tuned_model, timeout=30)
    assert deployment.name == name and deployment.provisioning_state == "Succeeded"
    assert deployment.model_name == trained_job.fine_tuned_model
    got = arm.get(name)
    assert got is not None and got.provisioning_state == "Succeeded"
    assert name in {d.name for d in arm.list()}

    answer = aoai.chat_completions(name, [{"role": "user", "content": "How do I reset my password?"}], max_tokens=50)
    assert answer.content
    assert answer.usage is not None and answer.usage.total_tokens > 0

    assert arm.delete_and_wait(name, timeout=30) is True
    assert arm.get(name) is None
    with pytest.raises(NotFoundError):
        aoai.chat_completions(name, [{"role": "user", "content": "hi"}])


def test_deployment_quota_refused(
    arm: DeploymentsClient, trained_job: FineTuningJob, emulator: EmulatorProcess
) -> None:
    assert trained_job.fine_tuned_model
    emulator.set_scenario("quota", available_capacity=0)
    with pytest.raises(InsufficientQuotaError) as info:
        arm.create_or_update_and_wait("ft-noquota", model_name=trained_job.fine_tuned_model, capacity=10)
    assert type(info.value) is InsufficientQuotaError
    assert info.value.code == "InsufficientQuota" and "available capacity" in info.value.message


def test_deployment_cap(arm: DeploymentsClient, trained_job: FineTuningJob, emulator: EmulatorProcess) -> None:
    assert trained_job.fine_tuned_model
    existing = sum(1 for d in arm.list() if d.model_name and ".ft-" in d.model_name)
    emulator.configure(max_ft_deployments=existing)
    with pytest.raises(DeploymentLimitError) as info:
        arm.begin_create_or_update("ft-over-cap", model_name=trained_job.fine_tuned_model)
    assert isinstance(info.value, InsufficientQuotaError)


def test_deployment_failure_carries_operation_error(
    arm: DeploymentsClient, trained_job: FineTuningJob, emulator: EmulatorProcess
) -> None:
    assert trained_job.fine_tuned_model
    emulator.set_scenario("deployment_failed")
    name = f"ft-fail-{uuid.uuid4().hex[:6]}"
    try:
        with pytest.raises(OperationFailedError) as info:
            arm.create_or_update_and_wait(name, model_name=trained_job.fine_tuned_model, timeout=30)
        assert info.value.status == "Failed"
        assert info.value.code == "DeploymentFailed"
    finally:
        arm.delete_and_wait(name, timeout=30)
