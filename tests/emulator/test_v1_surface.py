"""The v1 surface (`/openai/v1/...`, no api-version) and Foundry project endpoints, driven by the official
`openai.OpenAI(base_url=...)` client at its default settings (key sent as `Authorization: Bearer`), as the
v1 API lifecycle page shows it. Rules and sources: docs/azure-openai-contract.md, "The v1 surface".

Time moves with the emulator's clock (`advance_clock`), never by sleeping.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.emulator.conftest import GA, chat_jsonl
from tests.harness.emulator import EmulatorProcess
from tests.harness.waiting import wait_for

MODEL = "gpt-4o-mini-2024-07-18"


def v1_client(emulator: EmulatorProcess, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{emulator.base_url}{prefix}/openai/v1/", api_key=emulator.api_key)


def until(emulator: EmulatorProcess, fetch: Callable[[], Any], done: Callable[[Any], bool], steps: int = 200) -> Any:
    """Fetch, moving the emulator's clock a second between tries, until `done` holds."""
    for _ in range(steps):
        value = fetch()
        if done(value):
            return value
        emulator.advance_clock(1.0)
    raise AssertionError(f"not done after {steps} emulator seconds: {value}")


def processed(emulator: EmulatorProcess, client: openai.OpenAI, content: bytes, name: str = "t.jsonl") -> str:
    created = client.files.create(file=(name, content, "application/jsonl"), purpose="fine-tune")
    final = until(emulator, lambda: client.files.retrieve(created.id), lambda f: f.status in ("processed", "error"))
    assert final.status == "processed", final
    return str(created.id)


def test_the_official_client_trains_a_job_tagged_with_metadata(emulator: EmulatorProcess) -> None:
    client = v1_client(emulator)
    training = processed(emulator, client, chat_jsonl(12))
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=training, suffix="v1", seed=3,
                                         metadata={"run_id": run_id}, hyperparameters={"n_epochs": 3})
    assert job.metadata == {"run_id": run_id}
    assert job.status in ("validating_files", "queued") and job.hyperparameters.n_epochs == 3
    assert job.user_provided_suffix == "v1" and job.result_files == []
    final = until(emulator, lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status == "succeeded")
    assert final.fine_tuned_model.endswith("-v1") and final.metadata == {"run_id": run_id}
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=5))  # auto-paging: every page
    assert len(events) > 5 and events[-1].message.startswith("Validating training file")  # newest first
    assert events[0].created_at >= events[-1].created_at and any(e.type == "metrics" for e in events)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert len(checkpoints.data) == 3 and checkpoints.data[0].fine_tuned_model_checkpoint == final.fine_tuned_model
    assert client.files.content(final.result_files[0]).text.startswith("step,train_loss")
    mine = [j for j in client.fine_tuning.jobs.list(limit=2) if (j.metadata or {}).get("run_id") == run_id]
    assert [j.id for j in mine] == [job.id]


def test_a_file_may_carry_expires_after(emulator: EmulatorProcess) -> None:
    client = v1_client(emulator)
    kept = client.files.create(file=("e.jsonl", chat_jsonl(12), "application/jsonl"), purpose="fine-tune",
                               expires_after={"anchor": "created_at", "seconds": 7200})
    assert kept.expires_at == kept.created_at + 7200
    with pytest.raises(openai.BadRequestError) as short:  # an hour at least (the v1 reference)
        client.files.create(file=("e.jsonl", chat_jsonl(12), "application/jsonl"), purpose="fine-tune",
                            expires_after={"anchor": "created_at", "seconds": 60})
    assert short.value.param == "expires_after.seconds"
    with pytest.raises(openai.BadRequestError):  # not a v1 upload purpose
        client.files.create(file=("e.jsonl", chat_jsonl(12), "application/jsonl"), purpose="user_data")
    client.files.delete(kept.id)


def test_job_lists_page_with_has_more_and_after(emulator: EmulatorProcess) -> None:
    client = v1_client(emulator)
    training = processed(emulator, client, chat_jsonl(12))
    ids = [client.fine_tuning.jobs.create(model=MODEL, training_file=training).id for _ in range(2)]
    first = client.fine_tuning.jobs.list(limit=1)
    assert len(first.data) == 1 and first.has_more and first.data[0].id == ids[1]  # newest first
    second = client.fine_tuning.jobs.list(limit=1, after=first.data[0].id)
    assert second.data[0].id == ids[0]
    for job_id in ids:
        assert client.fine_tuning.jobs.cancel(job_id).status == "cancelled"


def test_pause_and_resume_a_running_job(emulator: EmulatorProcess) -> None:
    client = v1_client(emulator)
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=processed(emulator, client, chat_jsonl(12)))
    with pytest.raises(openai.BadRequestError) as early:  # only a running job can be paused
        client.fine_tuning.jobs.pause(job.id)
    assert early.value.code == "unexpectedEntityState"
    until(emulator, lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status == "running")
    assert client.fine_tuning.jobs.pause(job.id).status == "pausing"
    emulator.advance_clock(600)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"  # the clock moved; the job did not
    events = client.fine_tuning.jobs.list_events(job.id, limit=2).data  # readable while paused (its time is known)
    assert events[0].message == "Job paused." and events[0].created_at >= job.created_at
    assert client.fine_tuning.jobs.resume(job.id).status == "resuming"
    until(emulator, lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status == "succeeded")


def test_errors_are_the_v1_envelope_and_map_to_the_sdk_classes(emulator: EmulatorProcess) -> None:
    client = v1_client(emulator)
    with pytest.raises(openai.NotFoundError) as missing:
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    assert missing.value.body == {"code": "notFound", "message": "The fine-tuning job 'ftjob-nope' was not found.",
                                  "param": None, "type": "error"}
    training = processed(emulator, client, chat_jsonl(12))
    too_many = {f"k{i}": "v" for i in range(17)}
    for bad, param in ((dict(metadata=too_many), "metadata"), (dict(metadata={"run_id": "x" * 513}), "metadata.run_id"),
                       (dict(seed=-1), "seed")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(model=MODEL, training_file=training, **bad)
        assert refused.value.code == "invalidPayload" and refused.value.param == param
    key = {"api-key": emulator.api_key or ""}
    base = f"{emulator.base_url}/openai/v1"
    imported = httpx.post(f"{base}/files/import", headers=key,
                          json={"purpose": "fine-tune", "filename": "x.jsonl", "content_url": "https://example.com/x"})
    assert imported.status_code == 404 and imported.json()["error"]["type"] == "error"  # no files import on v1
    denied = httpx.get(f"{base}/files", headers={"api-key": "wrong"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "401"
    assert denied.json()["error"]["type"] == "error"
    ga = httpx.post(f"{emulator.base_url}/openai/fine_tuning/jobs", params={"api-version": GA}, headers=key,
                    json={"model": MODEL, "training_file": training, "metadata": {"run_id": "x"}})
    assert ga.status_code == 400 and ga.json()["error"]["param"] == "metadata"  # metadata is v1's, not GA's


def test_the_uploads_api_assembles_parts_in_the_order_named(emulator: EmulatorProcess, tmp_path: Path) -> None:
    client = v1_client(emulator)
    content = chat_jsonl(40)
    path = tmp_path / "big.jsonl"
    path.write_bytes(content)
    completed = client.uploads.upload_file_chunked(file=path, mime_type="application/jsonl", purpose="fine-tune",
                                                   part_size=len(content) // 3 + 1)  # the SDK's own helper: 3 parts
    assert completed.status == "completed" and completed.file is not None and completed.bytes == len(content)
    file_id = completed.file.id
    until(emulator, lambda: client.files.retrieve(file_id), lambda f: f.status == "processed")
    assert client.files.content(file_id).content == content

    upload = client.uploads.create(filename="swapped.jsonl", purpose="fine-tune", bytes=len(content),
                                   mime_type="application/jsonl")
    half = len(content) // 2
    first = client.uploads.parts.create(upload.id, data=content[:half])
    second = client.uploads.parts.create(upload.id, data=content[half:])
    assert first.azure_block_id  # type: ignore[attr-defined]  # Azure's addition to the part
    with pytest.raises(openai.BadRequestError):  # wrong md5
        client.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    with pytest.raises(openai.BadRequestError):  # one part short of the bytes announced
        client.uploads.complete(upload.id, part_ids=[first.id])
    done = client.uploads.complete(upload.id, part_ids=[first.id, second.id],
                                   md5=hashlib.md5(content).hexdigest())  # noqa: S324 - the API's checksum
    assert done.file is not None
    with pytest.raises(openai.BadRequestError):  # completed: no more parts
        client.uploads.parts.create(upload.id, data=b"more")

    cancelled = client.uploads.create(filename="c.jsonl", purpose="fine-tune", bytes=10, mime_type="application/jsonl")
    assert client.uploads.cancel(cancelled.id).status == "cancelled"
    late = client.uploads.create(filename="l.jsonl", purpose="fine-tune", bytes=10, mime_type="application/jsonl")
    emulator.advance_clock(3601)  # an upload expires an hour after it was created
    with pytest.raises(openai.BadRequestError) as expired:
        client.uploads.parts.create(late.id, data=b"0123456789")
    assert "expired" in expired.value.message


def test_a_foundry_project_endpoint_serves_the_v1_surface(emulator: EmulatorProcess) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    client = v1_client(emulator, f"/api/projects/{project}")
    training = processed(emulator, client, chat_jsonl(12))
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=training, metadata={"run_id": project})
    assert client.fine_tuning.jobs.retrieve(job.id).metadata == {"run_id": project}
    assert job.id in [j.id for j in v1_client(emulator).fine_tuning.jobs.list(limit=100)]  # one resource
    line = f"POST /api/projects/{project}/openai/v1/fine_tuning/jobs 200"  # logged as the client sent it
    wait_for(lambda: line in emulator.log_text(), "the job create in the emulator's log")
    versioned = httpx.get(f"{emulator.base_url}/api/projects/{project}/openai/files", params={"api-version": GA},
                          headers={"api-key": emulator.api_key or ""})
    assert versioned.status_code == 404  # a project endpoint has the v1 surface only
    client.fine_tuning.jobs.cancel(job.id)
