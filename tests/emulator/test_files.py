"""Files: upload and import through the openai SDK, processing states, validation errors, content, delete."""
from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest
from openai import AzureOpenAI, NotFoundError

from tests.emulator.conftest import GA, PREVIEW, chat_jsonl, jsonl, make_client, upload, wait_file, wait_for
from tests.harness.emulator import EmulatorProcess


class _Blobs(http.server.BaseHTTPRequestHandler):
    """A stand-in for a blob endpoint: serves `blobs[path]`, 404 otherwise; records what it was asked."""

    blobs: dict[str, bytes] = {}
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(self.path)
        body = self.blobs.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def blob_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_upload_goes_pending_then_processed(aoai: AzureOpenAI) -> None:
    content = chat_jsonl(12)
    created = upload(aoai, content)
    assert created.id.startswith("file-") and len(created.id) == 5 + 32
    assert created.status == "pending"
    assert created.bytes == len(content)
    assert created.purpose == "fine-tune" and created.filename == "train.jsonl"
    seen = {created.status}
    final = wait_for(lambda: aoai.files.retrieve(created.id), lambda f: (seen.add(f.status) or f.status == "processed"),
                     every=0.02)
    assert final.status == "processed"
    assert "running" in seen
    assert aoai.files.content(created.id).content == content
    # The GA list is {object, data}: no has_more to page on (the SDK's auto-paging has nothing to stop at).
    page = aoai.files.list(purpose="fine-tune")
    assert created.id in [f.id for f in page.data]
    assert page.has_more is None


def test_upload_answers_201_with_location(emulator: EmulatorProcess) -> None:
    response = httpx.post(f"{emulator.base_url}/openai/files", params={"api-version": GA},
                          headers={"api-key": emulator.api_key or ""}, data={"purpose": "fine-tune"},
                          files={"file": ("t.jsonl", chat_jsonl(), "application/jsonl")})
    assert response.status_code == 201
    file_id = response.json()["id"]
    assert response.headers["location"] == f"{emulator.base_url}/openai/files/{file_id}?api-version={GA}"


def test_bom_is_accepted(aoai: AzureOpenAI) -> None:
    final = wait_file(aoai, upload(aoai, chat_jsonl(10, bom=True)).id)
    assert final.status == "processed"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (chat_jsonl(3), "the file has 3 example(s); at least 10 are required."),
        (chat_jsonl(11) + b"{not json}\n", "line 12 is not valid JSON"),
        (jsonl([{"messages": [{"role": "user", "content": "hi <|fim_suffix|> there"},
                              {"role": "assistant", "content": "x"}]}] * 10), "invalid token '<|fim_suffix|>'"),
        (jsonl([{"messages": [{"role": "user", "content": "only a question"},
                              {"role": "developer", "content": "be brief"}]}] * 10), "has no assistant message"),
        (chat_jsonl(5) + jsonl([{"messages": [{"role": "user", "content": "an RFT prompt"}]}] * 5),
         "line 6 is in reinforcement format but line 1 is in chat format"),
        (jsonl([{"messages": [{"role": "bot", "content": "x"}]}] * 10), "unrecognized role 'bot'"),
        (jsonl([{"prompt": "a", "completion": "b"}] * 5) + chat_jsonl(5), "line 6 is in chat format"),
        (b"\xff\xfe bad bytes", "not UTF-8"),
    ],
)
def test_validation_errors_end_in_error_with_details(aoai: AzureOpenAI, content: bytes, expected: str) -> None:
    final = wait_file(aoai, upload(aoai, content).id)
    assert final.status == "error"
    assert final.status_details.startswith("Validation of jsonl file failed: ")
    assert expected in final.status_details


def test_file_error_by_marker_and_by_admin(aoai: AzureOpenAI, emulator: EmulatorProcess) -> None:
    by_marker = wait_file(aoai, upload(aoai, chat_jsonl(12, marker="file_error")).id)
    assert by_marker.status == "error"
    assert "scenario file_error" in by_marker.status_details
    emulator.set_scenario("file_error")
    by_admin = wait_file(aoai, upload(aoai, chat_jsonl(12)).id)
    assert by_admin.status == "error" and by_admin.status_details.startswith("Validation of jsonl file failed")
    after = wait_file(aoai, upload(aoai, chat_jsonl(12)).id)
    assert after.status == "processed"


def test_import_fetches_the_url_and_never_logs_its_query(
    aoai: AzureOpenAI, emulator: EmulatorProcess, blob_server: str
) -> None:
    content = chat_jsonl(11)
    _Blobs.blobs["/container/train.jsonl"] = content
    sas = "sv=2024-08-04&sig=SECRETSIGNATURE123&se=2099-01-01"
    response = aoai.post(
        "/files/import",
        body={"purpose": "fine-tune", "filename": "imported.jsonl", "content_url": f"{blob_server}/container/"
              f"train.jsonl?{sas}"},
        cast_to=dict,
    )
    assert response["status"] == "pending" and response["filename"] == "imported.jsonl"
    final = wait_file(aoai, response["id"])
    assert final.status == "processed" and final.bytes == len(content)
    assert aoai.files.content(final.id).content == content
    assert f"/container/train.jsonl?{sas}" in _Blobs.seen
    assert "SECRETSIGNATURE123" not in emulator.log_text()


def test_import_of_a_missing_blob_ends_in_error(aoai: AzureOpenAI, blob_server: str) -> None:
    response = aoai.post("/files/import", cast_to=dict, body={
        "purpose": "fine-tune", "filename": "gone.jsonl", "content_url": f"{blob_server}/container/gone.jsonl?sig=x"})
    final = wait_file(aoai, response["id"])
    assert final.status == "error"
    assert final.status_details == (f"File import failed: the content URL {blob_server}/container/gone.jsonl "
                                    "answered HTTP 404.")


def test_import_error_by_admin_and_by_marker(aoai: AzureOpenAI, emulator: EmulatorProcess, blob_server: str) -> None:
    _Blobs.blobs["/container/ok.jsonl"] = chat_jsonl(12)
    _Blobs.blobs["/container/marked.jsonl"] = chat_jsonl(12, marker="file_import_error")
    emulator.set_scenario("file_import_error")
    for path in ("/container/ok.jsonl", "/container/marked.jsonl"):
        response = aoai.post("/files/import", cast_to=dict, body={
            "purpose": "fine-tune", "filename": "x.jsonl", "content_url": blob_server + path})
        final = wait_file(aoai, response["id"])
        assert final.status == "error"
        assert final.status_details.startswith("File import failed: ")
        assert "scenario file_import_error" in final.status_details


def test_import_requires_every_field(emulator: EmulatorProcess) -> None:
    response = httpx.post(f"{emulator.base_url}/openai/files/import", params={"api-version": GA},
                          headers={"api-key": emulator.api_key or ""}, json={"purpose": "fine-tune",
                                                                             "filename": "x.jsonl"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalidPayload"
    assert response.json()["error"]["param"] == "content_url"


def test_delete_then_get_is_404(aoai: AzureOpenAI) -> None:
    created = upload(aoai, chat_jsonl())
    deleted = aoai.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(NotFoundError) as info:
        aoai.files.retrieve(created.id)
    assert info.value.body["code"] == "notFound"  # type: ignore[index]


def test_list_pagination_with_after_and_limit(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    ids = {upload(aoai, chat_jsonl(), name=f"page-{i}.jsonl").id for i in range(3)}
    client = httpx.Client(base_url=emulator.base_url, headers={"api-key": emulator.api_key or ""})
    first = client.get("/openai/files", params={"api-version": "2025-04-01-preview", "limit": 2}).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    preview = make_client(emulator, PREVIEW)
    paged = [f.id for f in preview.files.list(limit=2)]
    assert ids <= set(paged)
    assert len(paged) == len(set(paged))


def test_import_from_an_azurite_blob_with_a_sas_url(aoai: AzureOpenAI, emulator: EmulatorProcess,
                                                    azurite: object, blob_service: object) -> None:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    assert isinstance(blob_service, BlobServiceClient)
    container = blob_service.create_container("emu-import-" + datetime.now(UTC).strftime("%H%M%S%f"))
    content = chat_jsonl(12, bom=True)
    container.upload_blob("train.jsonl", content)
    sas = generate_blob_sas(
        account_name=blob_service.account_name or "", container_name=container.container_name,
        blob_name="train.jsonl", account_key=blob_service.credential.account_key,
        permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + timedelta(minutes=10))
    url = f"{container.url}/train.jsonl?{sas}"
    response = aoai.post("/files/import", cast_to=dict, body={
        "purpose": "fine-tune", "filename": "from-azurite.jsonl", "content_url": url})
    final = wait_file(aoai, response["id"])
    assert final.status == "processed" and final.bytes == len(content)
    assert aoai.files.content(final.id).content == content
    signature = sas.split("sig=")[1].split("&")[0]
    assert signature not in emulator.log_text()
