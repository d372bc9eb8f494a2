"""AzureOpenAIClient against a MockTransport: requests on the wire, pagination, auth, scrubbing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import closing
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from shared.aoai import (
    APIResponseValidationError,
    AzureOpenAIClient,
    BadRequestError,
    NotFoundError,
    RetryTransport,
)
from shared.aoai.auth import COGNITIVE_SERVICES_SCOPE, BearerTokenAuth

from .conftest import API_KEY, ENDPOINT, SAS_URL, Script, Sleeps, err, jresp

MakeClient = Callable[..., tuple[AzureOpenAIClient, Script]]
FILE = {
    "id": "file-1",
    "object": "file",
    "status": "pending",
    "filename": "a.jsonl",
    "purpose": "fine-tune",
    "bytes": 10,
    "created_at": 1,
}


def job(i: int, status: str = "pending") -> dict[str, Any]:
    return {"id": f"ftjob-{i}", "object": "fine_tuning.job", "status": status, "model": "m", "training_file": "file-1"}


def page(items: list[dict[str, Any]], has_more: bool) -> httpx.Response:
    return jresp(200, {"object": "list", "data": items, "has_more": has_more})


def test_api_key_header_and_api_version(make_client: MakeClient) -> None:
    client, script = make_client(jresp(200, FILE))
    client.files.get("file-1")
    sent = script.requests[0]
    assert sent.url == "https://unit.openai.azure.com/openai/files/file-1?api-version=2024-10-21"
    assert sent.headers["api-key"] == API_KEY
    assert "authorization" not in sent.headers
    assert API_KEY not in repr(client._http.headers)


def test_endpoint_with_openai_suffix_and_custom_version(sleeps: Sleeps) -> None:
    script = Script(jresp(200, FILE))
    rt = RetryTransport(httpx.MockTransport(script), sleep=sleeps)
    with AzureOpenAIClient(ENDPOINT + "/openai/", api_key=API_KEY, api_version="2025-04-01-preview", transport=rt) as c:
        c.files.get("file 1/x")
    assert str(script.requests[0].url) == (
        "https://unit.openai.azure.com/openai/files/file%201%2Fx?api-version=2025-04-01-preview"
    )


def test_auth_arguments_are_exclusive() -> None:
    with pytest.raises(ValueError):
        AzureOpenAIClient(ENDPOINT)
    with pytest.raises(ValueError):
        AzureOpenAIClient(ENDPOINT, api_key="k", credential=FakeCredential(clock=lambda: 0))


def test_import_from_url_body(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, FILE, location="https://x/files/file-1"))
    f = client.files.import_from_url("a.jsonl", SAS_URL)
    assert f.status == "pending"
    sent = script.requests[0]
    assert sent.method == "POST" and sent.url.path == "/openai/files/import"
    assert json.loads(sent.content) == {"purpose": "fine-tune", "filename": "a.jsonl", "content_url": SAS_URL}
    assert sent.extensions["idempotent"] is False


def test_upload_multipart(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, FILE))
    client.files.upload("train.jsonl", b'{"messages": [1]}\n', purpose="fine-tune")
    sent = script.requests[0]
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert b'name="purpose"\r\n\r\nfine-tune' in sent.content
    assert b'filename="train.jsonl"' in sent.content
    assert b'{"messages": [1]}' in sent.content


def test_files_list_delete_content_and_stream(make_client: MakeClient) -> None:
    client, script = make_client(
        page([FILE, {**FILE, "id": "file-2", "status": "processed"}], False),
        jresp(200, {"object": "file", "deleted": True, "id": "file-1"}),
        httpx.Response(200, content=b"step,train_loss\n1,0.5\n"),
        httpx.Response(200, content=b"x" * 200_000),
    )
    assert [f.id for f in client.files.list(purpose="fine-tune")] == ["file-1", "file-2"]
    assert script.requests[0].url.params["purpose"] == "fine-tune"
    assert "after" not in script.requests[0].url.params
    assert client.files.delete("file-1").deleted is True
    assert client.files.content("file-1") == b"step,train_loss\n1,0.5\n"
    with closing(client.files.stream_content("file-1", chunk_size=65536)) as chunks:
        got = list(chunks)
    assert b"".join(got) == b"x" * 200_000 and len(got) >= 2
    assert script.count == 4


def test_stream_content_error_raises_hierarchy(make_client: MakeClient) -> None:
    client, _ = make_client(err(404, "notFound", "File not found"))
    with pytest.raises(NotFoundError):
        next(client.files.stream_content("file-x"))


def test_jobs_list_follows_after_across_pages(make_client: MakeClient) -> None:
    client, script = make_client(page([job(3), job(2)], True), page([job(1)], False))
    assert [j.id for j in client.jobs.list(limit=2)] == ["ftjob-3", "ftjob-2", "ftjob-1"]
    assert script.count == 2
    assert dict(script.requests[0].url.params) == {"api-version": "2024-10-21", "limit": "2"}
    assert dict(script.requests[1].url.params) == {"api-version": "2024-10-21", "limit": "2", "after": "ftjob-2"}


def test_pagination_that_never_advances_is_an_error(make_client: MakeClient) -> None:
    client, script = make_client(page([job(1)], True))
    with pytest.raises(APIResponseValidationError):
        list(client.jobs.list())
    assert script.count == 2


def event(i: int) -> dict[str, Any]:
    return {
        "id": f"ftevent-{i}",
        "object": "fine_tuning.job.event",
        "created_at": i,
        "level": "info",
        "message": f"event {i}",
        "type": "message",
    }


def test_events_all_pages_newest_first(make_client: MakeClient) -> None:
    client, script = make_client(
        page([event(5), event(4)], True), page([event(3), event(2)], True), page([event(1)], False)
    )
    assert [e.id for e in client.jobs.events("ftjob-1")] == [f"ftevent-{i}" for i in (5, 4, 3, 2, 1)]
    assert script.count == 3
    assert script.requests[0].url.path == "/openai/fine_tuning/jobs/ftjob-1/events"
    assert script.requests[2].url.params["after"] == "ftevent-2"


def test_events_newer_than_stops_pagination_early(make_client: MakeClient) -> None:
    client, script = make_client(
        page([event(5), event(4)], True), page([event(3), event(2)], True), page([event(1)], False)
    )
    assert [e.id for e in client.jobs.events("ftjob-1", newer_than="ftevent-3")] == ["ftevent-5", "ftevent-4"]
    assert script.count == 2  # the third page was never fetched


def test_checkpoints_and_models(make_client: MakeClient) -> None:
    ckpt = {
        "id": "ftchkpt-1",
        "fine_tuned_model_checkpoint": "m.ft-1:ckpt-step-10",
        "step_number": 10,
        "metrics": {},
        "fine_tuning_job_id": "ftjob-1",
    }
    model = {"id": "gpt-4o-mini-2024-07-18", "capabilities": {"fine_tune": True}}
    client, script = make_client(
        page([ckpt], True),
        page([{**ckpt, "id": "ftchkpt-2"}], False),
        jresp(200, {"object": "list", "data": [model]}),
        jresp(200, model),
    )
    assert [c.id for c in client.jobs.checkpoints("ftjob-1")] == ["ftchkpt-1", "ftchkpt-2"]
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini-2024-07-18"]
    assert client.models.get("gpt-4o-mini-2024-07-18").capabilities.fine_tune
    assert script.count == 4


def test_jobs_create_body(make_client: MakeClient) -> None:
    client, script = make_client(jresp(201, job(1)))
    client.jobs.create(
        model="gpt-4o-mini-2024-07-18",
        training_file="file-1",
        validation_file="file-2",
        hyperparameters={"n_epochs": 3},
        suffix="demo_1",
        seed=42,
        training_type="Standard",
        method={"type": "supervised"},
        extra={"integrations": []},
    )
    assert json.loads(script.requests[0].content) == {
        "model": "gpt-4o-mini-2024-07-18",
        "training_file": "file-1",
        "validation_file": "file-2",
        "hyperparameters": {"n_epochs": 3},
        "suffix": "demo_1",
        "seed": 42,
        "trainingType": "Standard",
        "method": {"type": "supervised"},
        "integrations": [],
    }
    with pytest.raises(ValueError):
        client.jobs.create(model="m", training_file="f", suffix="no spaces allowed")
    assert script.count == 1


def test_find_matching_reconciles(make_client: MakeClient) -> None:
    mine = {**job(2), "model": "gpt-4o-mini-2024-07-18", "suffix": "s"}
    client, _ = make_client(page([job(3), mine], False))
    found = client.jobs.find_matching(model="gpt-4o-mini-2024-07-18", training_file="file-1", suffix="s")
    assert [j.id for j in found] == ["ftjob-2"]


def test_chat_and_completions(make_client: MakeClient) -> None:
    chat = {
        "id": "c",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    comp = {"id": "d", "choices": [{"text": " world", "index": 0}], "usage": {"total_tokens": 2}}
    client, script = make_client(jresp(200, chat), jresp(200, comp))
    result = client.chat_completions("ft-dep", [{"role": "user", "content": "ping"}], max_tokens=8)
    assert result.content == "pong" and result.usage is not None and result.usage.total_tokens == 4
    assert client.completions("babbage-ft", "hello", max_tokens=2).text == " world"
    assert script.requests[0].url.path == "/openai/deployments/ft-dep/chat/completions"
    assert json.loads(script.requests[0].content) == {
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 8,
    }
    assert script.requests[1].url.path == "/openai/deployments/babbage-ft/completions"


def test_unexpected_body_raises_validation_error(make_client: MakeClient) -> None:
    client, _ = make_client(jresp(200, job(1, status="vibing")), httpx.Response(200, content=b"not json"))
    with pytest.raises(APIResponseValidationError):
        client.jobs.get("ftjob-1")
    with pytest.raises(APIResponseValidationError):
        client.jobs.get("ftjob-1")


# -- token auth ---------------------------------------------------------------------------------------
class FakeCredential:
    def __init__(self, clock: Callable[[], float], lifetime: int = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        return AccessToken(f"token-{len(self.calls)}", int(self.clock() + self.lifetime))


def test_bearer_token_cached_until_near_expiry(sleeps: Sleeps) -> None:
    now = [1_000_000.0]
    cred = FakeCredential(clock=lambda: now[0])
    script = Script(jresp(200, FILE))
    client = AzureOpenAIClient(ENDPOINT, credential=cred, transport=RetryTransport(httpx.MockTransport(script)))
    assert isinstance(client.auth, BearerTokenAuth)
    client.auth._clock = lambda: now[0]
    for _ in range(3):
        client.files.get("file-1")
    assert cred.calls == [(COGNITIVE_SERVICES_SCOPE,)]
    now[0] += 3600 - 299  # inside the 5-minute refresh margin
    client.files.get("file-1")
    assert len(cred.calls) == 2
    assert [r.headers["authorization"] for r in script.requests] == ["Bearer token-1"] * 3 + ["Bearer token-2"]
    assert all("api-key" not in r.headers for r in script.requests)


def test_bearer_token_refreshed_once_on_401() -> None:
    cred = FakeCredential(clock=lambda: 0.0, lifetime=10**10)
    script = Script(err(401, "unauthorized", "token expired"), jresp(200, FILE))
    client = AzureOpenAIClient(ENDPOINT, credential=cred, transport=httpx.MockTransport(script))
    client.files.get("file-1")
    assert [h["authorization"] for h in script.headers] == ["Bearer token-1", "Bearer token-2"]


# -- secrets ------------------------------------------------------------------------------------------
def test_sas_never_in_exception_or_logs(make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    message = f"Failed to import from {SAS_URL}: 403 Forbidden"
    client, script = make_client(
        err(429, "429", "busy", retry_after="1"),
        err(400, "fileImportFailed", message),
    )
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(BadRequestError) as info:
            client.files.import_from_url("a.jsonl", SAS_URL)
    assert script.count == 2
    error = info.value
    everything = " ".join([str(error), repr(error), error.message, repr(error.body), str(error.url)])
    everything += " ".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert "SECRETSIG" not in everything
    assert API_KEY not in everything
    assert "sig=REDACTED" in error.message
    assert any(r.name == "shared.aoai" for r in caplog.records)
