"""RetryTransport: which answers are retried, how long it waits, and the rule for creates."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable

import httpx
import pytest

from shared.aoai import (
    APIConnectionError,
    APITimeoutError,
    AzureOpenAIClient,
    InsufficientQuotaError,
    InternalServerError,
    RateLimitError,
)
from shared.aoai.retry import RetryTransport, effect_is_ambiguous, is_idempotent, parse_retry_after

from .conftest import SAS_URL, Script, Sleeps, err, jresp

JOB = {"id": "ftjob-1", "object": "fine_tuning.job", "status": "pending", "model": "m", "training_file": "file-1"}
FILE = {"id": "file-1", "object": "file", "status": "pending", "filename": "a.jsonl", "purpose": "fine-tune"}
MakeClient = Callable[..., tuple[AzureOpenAIClient, Script]]


def transport(script: Script, sleeps: Sleeps, **kwargs: object) -> RetryTransport:
    return RetryTransport(httpx.MockTransport(script), sleep=sleeps, rng=lambda: 0.0, **kwargs)  # type: ignore[arg-type]


# -- waits --------------------------------------------------------------------------------------------
def test_retry_after_ms_is_preferred_over_retry_after(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(err(429, "429", "slow down", retry_after_ms="1500", retry_after="7"), jresp(200, JOB))
    assert client.jobs.get("ftjob-1").id == "ftjob-1"
    assert script.count == 2
    assert sleeps == [1.5]


def test_retry_after_seconds(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(err(429, "tooManyRequests", "x", retry_after="3"), jresp(200, JOB))
    client.jobs.get("ftjob-1")
    assert sleeps == [3.0]


def test_retry_after_http_date(make_client: MakeClient, sleeps: Sleeps) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    client, script = make_client(err(503, "serviceUnavailable", "busy", retry_after=when), jresp(200, JOB))
    client.jobs.get("ftjob-1")
    assert script.count == 2
    assert len(sleeps) == 1 and 17.0 <= sleeps[0] <= 20.5


def test_retry_after_is_capped(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(err(429, "429", "Please retry after 600 seconds", retry_after="600"), jresp(200, JOB))
    client.jobs.get("ftjob-1")
    assert sleeps == [60.0]


def test_exponential_backoff_capped_and_jittered(sleeps: Sleeps) -> None:
    script = Script(jresp(500, {}))
    rt = RetryTransport(
        httpx.MockTransport(script), max_retries=6, backoff_base=1.0, backoff_cap=5.0, sleep=sleeps, rng=lambda: 1.0
    )
    with httpx.Client(transport=rt) as http:
        assert http.get("https://x/y").status_code == 500
    assert script.count == 7
    # jitter takes up to 25 % off: rng()=1.0 is the largest reduction
    assert sleeps == [0.75, 1.5, 3.0, 3.75, 3.75, 3.75]
    assert rt.retries_done == 6


def test_parse_retry_after_variants() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({}) is None
    past = email.utils.formatdate(time.time() - 100, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


# -- what is retried ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_get_retried_on_retryable_status(make_client: MakeClient, sleeps: Sleeps, status: int) -> None:
    client, script = make_client(err(status, "x", "transient"), jresp(200, JOB))
    assert client.jobs.get("ftjob-1").status == "pending"
    assert script.count == 2
    assert sleeps == [0.5]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_not_retried(make_client: MakeClient, status: int) -> None:
    client, script = make_client(err(status, "x", "no"))
    with pytest.raises(Exception):  # noqa: B017 - the class is checked in test_errors
        client.jobs.get("ftjob-1")
    assert script.count == 1


def test_get_gives_up_after_max_retries(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(err(500, "internalFailure", "boom"), max_retries=2)
    with pytest.raises(InternalServerError) as info:
        client.jobs.get("ftjob-1")
    assert script.count == 3
    assert sleeps == [0.5, 1.0]
    assert info.value.ambiguous is False  # a GET has no effect to reconcile


def test_connect_error_retried(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(httpx.ConnectError("refused"), jresp(200, JOB))
    client.jobs.get("ftjob-1")
    assert script.count == 2


def test_read_timeout_retried_for_get(make_client: MakeClient) -> None:
    client, script = make_client(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), jresp(200, JOB))
    client.jobs.get("ftjob-1")
    assert script.count == 3


def test_connection_error_exhausted_maps_to_api_connection_error(make_client: MakeClient) -> None:
    client, script = make_client(httpx.ConnectError("refused"), max_retries=1)
    with pytest.raises(APIConnectionError) as info:
        client.jobs.get("ftjob-1")
    assert script.count == 2
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.ambiguous is False


def test_x_should_retry_false_is_honoured(make_client: MakeClient) -> None:
    client, script = make_client(jresp(500, {"error": {"code": "x", "message": "y"}}, x_should_retry="false"))
    with pytest.raises(InternalServerError):
        client.jobs.get("ftjob-1")
    assert script.count == 1


def test_quota_429_without_retry_hint_not_retried(make_client: MakeClient) -> None:
    client, script = make_client(err(429, "quotaExceeded", "The number of jobs exceeds the limit of 100"))
    with pytest.raises(InsufficientQuotaError):
        client.jobs.list().__next__()
    assert script.count == 1


def test_throttle_429_exhausted_raises_rate_limit_error_with_retry_after(make_client: MakeClient) -> None:
    client, script = make_client(err(429, "429", "Please retry after 2 seconds", retry_after="2"), max_retries=1)
    with pytest.raises(RateLimitError) as info:
        client.jobs.get("ftjob-1")
    assert script.count == 2
    assert info.value.retry_after == 2.0


# -- the rule for creates ------------------------------------------------------------------------------
def test_create_not_retried_on_500_and_flagged_ambiguous(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(err(500, "internalFailure", "oops"), jresp(201, JOB))
    with pytest.raises(InternalServerError) as info:
        client.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-1")
    assert script.count == 1
    assert sleeps == []
    assert info.value.ambiguous is True
    assert "reconcile" in str(info.value)


def test_create_not_retried_on_read_timeout(make_client: MakeClient) -> None:
    client, script = make_client(httpx.ReadTimeout("no answer"), jresp(201, JOB))
    with pytest.raises(APITimeoutError) as info:
        client.jobs.create(model="m", training_file="file-1")
    assert script.count == 1
    assert info.value.ambiguous is True


def test_create_not_retried_when_connection_drops_after_sending(make_client: MakeClient) -> None:
    client, script = make_client(httpx.RemoteProtocolError("server disconnected"), jresp(201, FILE))
    with pytest.raises(APIConnectionError) as info:
        client.files.import_from_url("a.jsonl", SAS_URL)
    assert script.count == 1
    assert info.value.ambiguous is True
    assert "SECRETSIG" not in str(info.value)


def test_create_retried_on_429(make_client: MakeClient, sleeps: Sleeps) -> None:
    client, script = make_client(err(429, "tooManyRequests", "x", retry_after="1"), jresp(201, JOB))
    assert client.jobs.create(model="m", training_file="file-1").id == "ftjob-1"
    assert script.count == 2
    assert sleeps == [1.0]


def test_create_retried_on_connect_error_and_connect_timeout(make_client: MakeClient) -> None:
    client, script = make_client(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow dns"), jresp(201, FILE))
    assert client.files.upload("a.jsonl", b'{"messages": []}\n').id == "file-1"
    assert script.count == 3
    # the multipart body was sent whole every time
    assert all(b'{"messages": []}' in r.content for r in script.requests)


def test_create_retried_on_503_with_retry_after_only(make_client: MakeClient) -> None:
    client, script = make_client(err(503, "serviceUnavailable", "busy", retry_after="2"), jresp(201, JOB))
    client.jobs.create(model="m", training_file="file-1")
    assert script.count == 2
    client2, script2 = make_client(err(503, "serviceUnavailable", "busy"), jresp(201, JOB))
    with pytest.raises(InternalServerError) as info:
        client2.jobs.create(model="m", training_file="file-1")
    assert script2.count == 1
    assert info.value.ambiguous is True


def test_create_4xx_is_not_ambiguous(make_client: MakeClient) -> None:
    client, script = make_client(err(400, "invalidPayload", "bad"))
    with pytest.raises(Exception) as info:  # noqa: B017
        client.jobs.create(model="m", training_file="file-1")
    assert getattr(info.value, "ambiguous", None) is False


def test_cancel_and_chat_are_retried_like_reads(make_client: MakeClient) -> None:
    client, script = make_client(err(500, "x", "y"), jresp(200, {**JOB, "status": "cancelled"}))
    assert client.jobs.cancel("ftjob-1").state == "cancelled"
    assert script.count == 2
    chat = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {"total_tokens": 3}}
    client, script = make_client(httpx.ReadTimeout("slow"), jresp(200, chat))
    assert client.chat_completions("dep", [{"role": "user", "content": "hello"}], max_tokens=5).content == "hi"
    assert script.count == 2


def test_idempotency_marks() -> None:
    post = httpx.Request("POST", "https://x/y")
    assert not is_idempotent(post)
    post.extensions["idempotent"] = True
    assert is_idempotent(post)
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        assert is_idempotent(httpx.Request(method, "https://x/y"))
    create = httpx.Request("POST", "https://x/y", extensions={"idempotent": False})
    assert effect_is_ambiguous(create, exc=httpx.ReadTimeout("t"))
    assert not effect_is_ambiguous(create, exc=httpx.ConnectError("c"))
    assert not effect_is_ambiguous(create, response=httpx.Response(429))
    assert effect_is_ambiguous(create, response=httpx.Response(502))


# -- logging ------------------------------------------------------------------------------------------
def test_each_retry_is_logged_without_query_or_secrets(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client, script = make_client(err(429, "429", "slow", retry_after="2"), err(502, "x", "y"), jresp(200, FILE))
    with caplog.at_level(logging.DEBUG, logger="shared.aoai"):
        client.files.get("file-1")
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert [r.getMessage() for r in retries] == [
        "retrying GET /openai/files/file-1 after 429: waiting 2.000 s (retry 1 of 3)",
        "retrying GET /openai/files/file-1 after 502: waiting 1.000 s (retry 2 of 3)",
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "api-version" not in text
    assert "unit-test-api-key" not in text
