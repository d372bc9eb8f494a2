"""The resource's fine-tuning limits (quotas page): files, total size, outstanding and total jobs, one job
training at a time in creation order. A private emulator with the real limits (the session one has none)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import AzureOpenAI, RateLimitError

from tests.emulator.conftest import chat_jsonl, create_job, make_client, upload
from tests.harness.emulator import EmulatorProcess, start_emulator


@pytest.fixture(scope="module")
def limited() -> Iterator[EmulatorProcess]:
    emu = start_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def client(limited: EmulatorProcess) -> Iterator[AzureOpenAI]:
    limited.reset()
    yield make_client(limited)
    limited.restore_config()


def _processed(emu: EmulatorProcess, client: AzureOpenAI, n: int = 1) -> list[str]:
    ids = [upload(client, chat_jsonl(12), name=f"t{i}.jsonl").id for i in range(n)]
    emu.advance_clock(10)
    assert all(client.files.retrieve(i).status == "processed" for i in ids)
    return ids


def _limits(emu: EmulatorProcess) -> dict[str, Any]:
    data: dict[str, Any] = emu.admin("GET", "limits").json()
    return data


def test_the_documented_limits_are_the_defaults(limited: EmulatorProcess, client: AzureOpenAI) -> None:
    assert {k: v["limit"] for k, v in _limits(limited).items()} == {
        "files": 50, "file_bytes": 1_000_000_000, "outstanding_jobs": 21, "jobs": 100}


def test_files_past_the_count_are_refused_with_quota_exceeded(limited: EmulatorProcess, client: AzureOpenAI) -> None:
    limited.configure(max_ft_files=2)
    upload(client, chat_jsonl(12))
    upload(client, chat_jsonl(12))
    with pytest.raises(RateLimitError) as refused:
        upload(client, chat_jsonl(12))
    assert refused.value.status_code == 429
    body: Any = refused.value.body
    assert body["code"] == "quotaExceeded" and "limit of 2" in body["message"]
    assert "retry-after" not in refused.value.response.headers
    # other purposes do not count; a deleted file frees its place
    client.files.create(file=("b.jsonl", b"{}\n", "application/jsonl"), purpose="batch")
    client.files.delete(client.files.list().data[-1].id)
    upload(client, chat_jsonl(12))
    # an import is refused the same way
    response = httpx.post(f"{limited.base_url}/openai/files/import", params={"api-version": "2025-04-01-preview"},
                          headers={"api-key": limited.api_key or ""},
                          json={"purpose": "fine-tune", "filename": "x.jsonl", "content_url": "http://127.0.0.1:9/x"})
    assert response.status_code == 429 and response.json()["error"]["code"] == "quotaExceeded"


def test_total_bytes_past_the_limit_are_refused(limited: EmulatorProcess, client: AzureOpenAI) -> None:
    size = len(chat_jsonl(12))
    limited.configure(max_ft_files_bytes=2 * size + 10)
    upload(client, chat_jsonl(12))
    upload(client, chat_jsonl(12))
    with pytest.raises(RateLimitError) as refused:
        upload(client, chat_jsonl(12))
    assert f"above the limit of {2 * size + 10} bytes" in str(refused.value)
    assert _limits(limited)["file_bytes"]["used"] == 2 * size


def test_jobs_train_one_at_a_time_in_creation_order(limited: EmulatorProcess, client: AzureOpenAI) -> None:
    training = _processed(limited, client)[0]
    with limited.frozen_clock():  # only the test moves time: the statuses below do not depend on the machine
        _one_at_a_time(limited, client, training)


def _one_at_a_time(limited: EmulatorProcess, client: AzureOpenAI, training: str) -> None:
    jobs = [create_job(client, training).id for _ in range(3)]
    limited.advance_clock(1.0)  # past validation and the queue phase of a lone job (1.5 s at time scale 0.25)
    statuses = [str(client.fine_tuning.jobs.retrieve(j).status) for j in jobs]
    assert statuses == ["running", "pending", "pending"], statuses
    events = [e.message for e in client.fine_tuning.jobs.list_events(jobs[1]).data]
    assert "Job enqueued. Waiting for jobs ahead to complete." in events and "Job started." not in events
    # the first ends: the second starts then, not earlier; the third waits for the second
    first_done = client.fine_tuning.jobs.retrieve(jobs[0])
    while first_done.status != "succeeded":
        limited.advance_clock(0.5)
        first_done = client.fine_tuning.jobs.retrieve(jobs[0])
    assert client.fine_tuning.jobs.retrieve(jobs[1]).status == "running"
    assert str(client.fine_tuning.jobs.retrieve(jobs[2]).status) == "pending"
    # cancelling the running one lets the next start at once
    client.fine_tuning.jobs.cancel(jobs[1])
    assert client.fine_tuning.jobs.retrieve(jobs[2]).status == "running"
    limited.advance_clock(60)
    finals = [client.fine_tuning.jobs.retrieve(j) for j in jobs]
    assert [j.status for j in finals] == ["succeeded", "cancelled", "succeeded"]
    assert finals[2].finished_at is not None and first_done.finished_at is not None
    assert finals[2].finished_at > first_done.finished_at


def test_outstanding_and_total_jobs_are_capped(limited: EmulatorProcess, client: AzureOpenAI) -> None:
    training = _processed(limited, client)[0]
    limited.configure(max_queued_jobs=2, max_total_jobs=4)
    for _ in range(3):
        create_job(client, training)
    with pytest.raises(RateLimitError) as refused:
        create_job(client, training)
    assert "3 fine-tuning jobs queued or running; the limit is 3 (1 running and 2 queued)" in str(refused.value)
    assert _limits(limited)["outstanding_jobs"] == {"used": 3, "limit": 3, "peak": 3}
    limited.advance_clock(120)  # all three end, one after the other
    create_job(client, training)
    with pytest.raises(RateLimitError) as total:
        create_job(client, training)
    assert "has 4 fine-tuning jobs; the limit is 4" in str(total.value)
    limited.advance_clock(120)
    oldest = client.fine_tuning.jobs.list().data[-1].id
    httpx.delete(f"{limited.base_url}/openai/fine_tuning/jobs/{oldest}", params={"api-version": "2024-10-21"},
                 headers={"api-key": limited.api_key or ""}).raise_for_status()
    create_job(client, training)  # a deleted job no longer counts


def test_no_limit_when_running_jobs_is_zero(limited: EmulatorProcess, client: AzureOpenAI) -> None:
    limited.configure(max_running_jobs=0)
    training = _processed(limited, client)[0]
    jobs = [create_job(client, training).id for _ in range(2)]
    limited.advance_clock(1.0)
    assert [client.fine_tuning.jobs.retrieve(j).status for j in jobs] == ["running", "running"]
