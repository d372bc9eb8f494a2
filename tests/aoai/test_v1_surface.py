"""The client on the v1 surface and on Foundry project endpoints: what goes on the wire, against a MockTransport
(and the Uploads API against the emulator). Rules: docs/azure-openai-contract.md, "The v1 surface"."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from shared.aoai import (
    AI_FOUNDRY_SCOPE,
    COGNITIVE_SERVICES_SCOPE,
    AzureOpenAIClient,
    BadRequestError,
    ByteSource,
    BytesSource,
    NotFoundError,
    RetryTransport,
    UnsupportedFeatureError,
)
from shared.aoai.endpoints import DataPlaneEndpoint, is_project_endpoint
from tests.emulator.conftest import chat_jsonl
from tests.harness.emulator import EmulatorProcess
from tests.harness.waiting import wait_for

from .conftest import API_KEY, SAS_URL, Script, Sleeps, jresp

MakeClient = Callable[..., tuple[AzureOpenAIClient, Script]]
PROJECT = "https://contoso.services.ai.azure.com/api/projects/team-a"
JOB = {"id": "ftjob-1", "object": "fine_tuning.job", "status": "validating_files", "model": "m",
       "training_file": "file-1", "user_provided_suffix": "s", "metadata": {"run_id": "r1"}}


def _client(sleeps: Sleeps, script: Script, endpoint: str = "https://unit.openai.azure.com", **kw: Any
            ) -> AzureOpenAIClient:
    transport = RetryTransport(httpx.MockTransport(script), sleep=sleeps, rng=lambda: 0.0)
    kw.setdefault("api_key", API_KEY)
    return AzureOpenAIClient(endpoint, surface="v1", transport=transport, **kw)


def test_v1_paths_carry_no_api_version_and_the_job_its_metadata(sleeps: Sleeps) -> None:
    script = Script(jresp(200, JOB))
    client = _client(sleeps, script)
    dpo = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}
    job = client.jobs.create(model="m", training_file="file-1", suffix="s", training_type="Standard", method=dpo,
                             metadata={"run_id": "r1"})
    sent = script.requests[0]
    assert str(sent.url) == "https://unit.openai.azure.com/openai/v1/fine_tuning/jobs"  # no api-version at all
    body = json.loads(sent.content)
    assert body["metadata"] == {"run_id": "r1"} and body["trainingType"] == "Standard"
    assert body["method"]["type"] == "dpo"
    assert job.suffix == "s" and job.metadata == {"run_id": "r1"}  # user_provided_suffix read as the suffix
    client.jobs.pause("ftjob-1")
    client.chat_completions("my-deployment", [{"role": "user", "content": "hi"}])
    assert [str(r.url) for r in script.requests[1:]] == [
        "https://unit.openai.azure.com/openai/v1/fine_tuning/jobs/ftjob-1/pause",
        "https://unit.openai.azure.com/openai/v1/chat/completions",  # v1 inference: model = the deployment
    ]
    assert json.loads(script.requests[2].content)["model"] == "my-deployment"
    assert client.jobs.api_version_for_create(metadata={"run_id": "r1"}) == "v1"


def test_each_surface_refuses_what_it_lacks_before_sending(sleeps: Sleeps, make_client: MakeClient) -> None:
    script = Script(jresp(200, JOB))
    v1 = _client(sleeps, script)
    with pytest.raises(UnsupportedFeatureError, match="v1 surface") as no_import:
        v1.files.import_from_url("a.jsonl", SAS_URL)
    assert "files import" in str(no_import.value)
    versioned, wire = make_client(jresp(201, JOB))
    with pytest.raises(UnsupportedFeatureError, match="AZURE_OPENAI_API_SURFACE=v1"):
        versioned.jobs.create(model="m", training_file="file-1", metadata={"run_id": "r1"})
    with pytest.raises(UnsupportedFeatureError):
        versioned.uploads.create("a.jsonl", 10)
    with pytest.raises(ValueError, match="16 pairs"):
        v1.jobs.create(model="m", training_file="file-1", metadata={f"k{i}": "v" for i in range(17)})
    assert script.count == 0 and wire.count == 0


def test_reconcile_by_metadata_is_exact(sleeps: Sleeps) -> None:
    other = {**JOB, "id": "ftjob-2", "metadata": {"run_id": "r10"}}
    none = {**JOB, "id": "ftjob-3", "metadata": None}
    script = Script(jresp(200, {"object": "list", "data": [other, none, JOB], "has_more": False}))
    found = _client(sleeps, script).jobs.find_by_metadata("run_id", "r1")
    assert [j.id for j in found] == ["ftjob-1"]
    assert script.requests[0].url.params["limit"] == "100" and "api-version" not in script.requests[0].url.params


def test_v1_error_envelope_maps_into_the_hierarchy(sleeps: Sleeps) -> None:
    script = Script(
        jresp(404, {"error": {"code": "notFound", "message": "no such job", "param": None, "type": "error"}}),
        jresp(400, {"error": {"code": None, "message": "bad", "param": "seed", "type": "invalid_request_error"}}),
        jresp(429, {"error": {"code": "insufficient_quota", "message": "quota", "param": None, "type": "error"}}),
    )
    client = _client(sleeps, script, max_retries=0)
    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("x")
    assert missing.value.code == "notFound" and missing.value.message == "no such job"
    with pytest.raises(BadRequestError) as bad:
        client.jobs.get("x")
    assert bad.value.code == "invalid_request_error" and bad.value.param == "seed"  # code null: the type
    from shared.aoai import InsufficientQuotaError

    with pytest.raises(InsufficientQuotaError):
        client.jobs.get("x")


class _Credential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("tok", int(time.time()) + 3600)


def test_a_project_endpoint_is_v1_with_its_own_token_scope(sleeps: Sleeps) -> None:
    assert is_project_endpoint(PROJECT) and is_project_endpoint(PROJECT + "/openai/v1/")
    assert not is_project_endpoint("https://contoso.openai.azure.com")
    credential = _Credential()
    script = Script(jresp(200, JOB))
    client = _client(sleeps, script, PROJECT + "/openai/v1", api_key=None, credential=credential)
    client.jobs.get("ftjob-1")
    assert str(script.requests[0].url) == f"{PROJECT}/openai/v1/fine_tuning/jobs/ftjob-1"
    assert credential.scopes == [AI_FOUNDRY_SCOPE] and script.requests[0].headers["authorization"] == "Bearer tok"
    resource = _Credential()
    _client(sleeps, Script(jresp(200, JOB)), credential=resource, api_key=None).jobs.get("ftjob-1")
    assert resource.scopes == [COGNITIVE_SERVICES_SCOPE]
    with pytest.raises(ValueError, match="AZURE_OPENAI_API_SURFACE=v1"):
        DataPlaneEndpoint.parse(PROJECT, "versioned")
    keyed = Script(jresp(200, JOB))  # a key goes to a project endpoint as Microsoft's samples send it: a bearer
    _client(sleeps, keyed, PROJECT).jobs.get("ftjob-1")
    sent = keyed.requests[0].headers
    assert sent["authorization"] == f"Bearer {API_KEY}" and "api-key" not in sent
    resource_key = Script(jresp(200, JOB))
    _client(sleeps, resource_key).jobs.get("ftjob-1")
    assert resource_key.requests[0].headers["api-key"] == API_KEY


def test_upload_source_streams_parts_through_the_uploads_api(emulator: EmulatorProcess) -> None:
    content = chat_jsonl(30)
    part = len(content) // 4 + 1
    start = len(emulator.log_text().splitlines())
    with AzureOpenAIClient(emulator.base_url, surface="v1", api_key=emulator.api_key, upload_part_bytes=part) as client:
        source = BytesSource(content, chunk_size=97)  # chunks that do not line up with the parts
        uploaded = client.files.upload_source("parts.jsonl", source)
        assert uploaded.filename == "parts.jsonl" and uploaded.bytes == len(content)
        assert client.files.content(uploaded.id) == content
        small = client.files.upload_source("small.jsonl", BytesSource(content[:part]))  # one part: POST /files
        assert small.bytes == part
    def logged() -> list[str]:  # the emulator's log is read in a thread: wait for the last request's line
        lines = emulator.log_text().splitlines()[start:]
        return lines if any(" POST /openai/v1/files 200" in line for line in lines) else []

    log = wait_for(logged, "the upload's last request in the emulator's log")
    assert sum(" POST /openai/v1/uploads 200" in line for line in log) == 1
    assert sum(" POST /openai/v1/uploads/" in line and "/parts 200" in line for line in log) == 4  # ceil(len / part)
    assert sum("/complete 200" in line for line in log) == 1
    assert sum(" POST /openai/v1/files 200" in line for line in log) == 1


class _Generated(ByteSource):
    """`size` bytes made on demand (never held): content is a function of the offset."""

    def __init__(self, size: int) -> None:
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        block = bytes(range(256)) * 256  # 64 KiB; byte i of the source is i % 256
        end = offset + length
        for start in range(offset, end, len(block)):
            n = min(len(block), end - start)
            yield (block[start % 256 :] + block[: start % 256])[:n]


class _Streaming(httpx.BaseTransport):
    """A transport that reads each request body chunk by chunk (httpx.MockTransport reads it whole first)."""

    def __init__(self, handler: Callable[[httpx.Request, int], httpx.Response]) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        return self.handler(request, sum(len(chunk) for chunk in request.stream))


def test_uploading_in_parts_holds_neither_the_file_nor_a_part_in_memory(sleeps: Sleeps) -> None:
    size, part = 24 * 1024 * 1024, 8 * 1024 * 1024
    received: dict[str, int] = {}

    def service(request: httpx.Request, length: int) -> httpx.Response:
        path = request.url.path
        if path.endswith("/parts"):
            received[path] = received.get(path, 0) + length
            return jresp(200, {"id": f"part_{len(received)}", "object": "upload.part", "upload_id": "upload_1"})
        if path.endswith("/complete"):
            file = {"id": "file-1", "object": "file", "status": "pending", "bytes": size, "filename": "big.jsonl"}
            return jresp(200, {"id": "upload_1", "status": "completed", "bytes": size, "file": file})
        return jresp(200, {"id": "upload_1", "object": "upload", "status": "pending", "bytes": size})

    transport = RetryTransport(_Streaming(service), sleep=sleeps, rng=lambda: 0.0)
    with AzureOpenAIClient("https://unit.openai.azure.com", surface="v1", api_key=API_KEY, transport=transport,
                           upload_part_bytes=part) as client:
        tracemalloc.start()
        try:
            uploaded = client.files.upload_source("big.jsonl", _Generated(size))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert uploaded.id == "file-1" and len(received) == 1 and sum(received.values()) > size  # 3 parts + headers
    assert peak < 4 * 1024 * 1024, peak  # a part is 8 MiB, the file 24 MiB: neither was held


def test_a_blob_snapshot_is_read_in_ranges_of_one_chunk(azurite: Any, unique_name: Callable[[str], str]) -> None:
    from azure.storage.blob import BlobServiceClient

    from shared.imports import BlobSnapshotSource

    container = BlobServiceClient.from_connection_string(azurite.connection_string).create_container(
        unique_name("ranges"))
    data = bytes(range(256)) * 40
    blob = container.upload_blob("f.jsonl", data)
    snapshot = blob.create_snapshot()["snapshot"]
    blob.upload_blob(b"changed after the snapshot", overwrite=True)
    source = BlobSnapshotSource(container.get_blob_client("f.jsonl", snapshot=snapshot), len(data), chunk_bytes=1000)
    chunks = list(source.chunks(500, 7000))
    assert b"".join(chunks) == data[500:7500] and max(len(c) for c in chunks) == 1000
    reader = source.reader(5000, 5240)
    assert reader.read(10) == data[5000:5010] and reader.seek(0, 2) == 5240 and reader.seek(0) == 0
    assert reader.read() == data[5000:]
    container.delete_container()


def test_without_an_uploads_api_the_file_goes_as_one_streamed_post(sleeps: Sleeps,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    content = chat_jsonl(20)
    missing = {"error": {"code": "404", "message": "Resource not found", "param": None, "type": "error"}}
    file = {"id": "file-9", "object": "file", "status": "pending", "bytes": len(content), "filename": "big.jsonl"}
    script = Script(jresp(404, missing), jresp(200, file))
    client = _client(sleeps, script, upload_part_bytes=len(content) // 3)
    with caplog.at_level("WARNING", logger="shared.aoai"):
        uploaded = client.files.upload_source("big.jsonl", BytesSource(content))
    assert uploaded.id == "file-9"
    assert [r.url.path for r in script.requests] == ["/openai/v1/uploads", "/openai/v1/files"]
    assert content in script.requests[1].content and "one POST /files" in caplog.text


def test_evals_on_v1_go_without_api_version_and_with_the_preview_header(emulator: EmulatorProcess) -> None:
    from shared.aoai.evals import Evals

    start = len(emulator.log_text().splitlines())
    criteria = [{"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                 "reference": "{{item.answer}}", "operation": "eq"}]
    with AzureOpenAIClient(emulator.base_url, surface="v1", api_key=emulator.api_key) as client:
        evals = Evals(client)
        created = evals.create(name="v1-eval", testing_criteria=criteria, metadata={"run_id": "v1-eval"})
        assert evals.get(created.id).metadata == {"run_id": "v1-eval"}
        assert created.id in [e.id for e in evals.list()]
        evals.delete(created.id)
    def logged() -> list[str]:  # up to the DELETE, the last call
        lines = emulator.log_text().splitlines()[start:]
        return lines if any(" DELETE /openai/v1/evals/" in ln for ln in lines) else []

    lines = wait_for(logged, "the eval calls in the emulator's log")
    assert any(" POST /openai/v1/evals 200" in ln for ln in lines) and not any(" /openai/evals" in ln for ln in lines)
    script = Script(jresp(200, {"id": "eval_1", "object": "eval", "metadata": {}}))
    transport = RetryTransport(httpx.MockTransport(script), rng=lambda: 0.0)
    with AzureOpenAIClient("https://unit.openai.azure.com", surface="v1", api_key=API_KEY, transport=transport) as c:
        Evals(c).get("eval_1")
    assert str(script.requests[0].url) == "https://unit.openai.azure.com/openai/v1/evals/eval_1"
    assert script.headers[0]["aoai-evals"] == "preview"


def test_the_surface_setting_auto_follows_the_endpoint_and_a_project_needs_v1() -> None:
    from shared.hostconfig import HostConfig
    from shared.settings import ConfigurationError, Settings, check_configuration

    host = HostConfig.load(env={})
    assert Settings(azure_openai_endpoint=PROJECT).data_plane_surface == "v1"
    assert Settings(azure_openai_endpoint="https://contoso.openai.azure.com").data_plane_surface == "versioned"
    assert Settings(azure_openai_endpoint="https://contoso.openai.azure.com",
                    azure_openai_api_surface="v1").data_plane_surface == "v1"
    check_configuration(Settings(azure_openai_endpoint=PROJECT), host)  # auto: fine
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_API_SURFACE must be v1 or auto"):
        check_configuration(Settings(azure_openai_endpoint=PROJECT, azure_openai_api_surface="versioned"), host)
