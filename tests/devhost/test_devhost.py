"""devhost end to end: a real subprocess running the fixture app against the session's Azurite.

Every wait is a bounded poll (``wait_for``); nothing asserts on timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from tests.devhost.conftest import Scenario, wait_for

BLOB_FNS = ("blob_client_fn", "blob_stream_fn")
HTTP_FNS = ("item_fn", "hello_fn", "admin_fn", "boom_fn")
KEY = {"x-functions-key": "test-function-key"}


def _queue_texts(queue: QueueClient) -> list[str]:
    try:
        return [str(m.content) for m in queue.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------------- HTTP
def test_http_routes_params_methods_and_auth(scenario: Scenario, tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"DEVHOST_MASTER_KEY": "file-master", "GREETING": "x"}}))
    host = scenario.start(HTTP_FNS, extra_env={"DEVHOST_MASTER_KEY": "env-master"},
                          args=("--settings", str(settings)))
    assert "http: 4 at http://127.0.0.1:" in host.ready_line
    base = host.base_url
    assert base.endswith("/api")
    with httpx.Client(timeout=10) as http:
        r = http.get(f"{base}/items/42", params={"q": "z"}, headers=KEY)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.json() == {"id": "42", "method": "GET", "q": "z", "body": ""}
        r = http.post(f"{base}/items/7?code=test-function-key", content=b"payload")
        assert r.json() == {"id": "7", "method": "POST", "q": None, "body": "payload"}
        assert http.get(f"{base}/items/42").status_code == 401
        assert http.get(f"{base}/items/42", headers={"x-functions-key": "wrong"}).status_code == 401
        assert http.get(f"{base}/items/42", headers={"x-functions-key": "env-master"}).status_code == 200
        assert http.get(f"{base}/items/abc", headers=KEY).status_code == 404  # {id:int}
        assert http.delete(f"{base}/items/42", headers=KEY).status_code == 404  # method not allowed -> 404
        r = http.get(f"{base}/hello", params={"name": "dev"})
        assert (r.status_code, r.text) == (201, "hello dev")  # async handler, anonymous
        # admin level: the master key only (the environment's, which wins over the settings file's)
        assert http.get(f"{base}/ops/ping", headers=KEY).status_code == 401
        assert http.get(f"{base}/ops/ping", headers={"x-functions-key": "file-master"}).status_code == 401
        assert http.get(f"{base}/ops/ping?code=env-master").text == "pong"
        assert http.get(f"{base}/boom").status_code == 500
        assert http.get(f"{base}/nope").status_code == 404
        assert http.get(base.removesuffix("/api") + "/hello").status_code == 404  # routePrefix is required
    log = host.log()
    assert "invocation boom_fn (http GET /api/boom) failed" in log and "RuntimeError: boom on purpose" in log
    assert "Traceback" in log
    assert "invocation item_fn (http GET /api/items/42) ok" in log
    assert host.stop() == 0


# ---------------------------------------------------------------------------------------------------- blobs
def _raw(base: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes to the devhost and read until it answers or closes (the socket timeout fails the test)."""
    import socket
    from urllib.parse import urlsplit

    netloc = urlsplit(base)
    with socket.create_connection((netloc.hostname or "127.0.0.1", netloc.port or 80), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_http_bodies_like_the_host(scenario: Scenario) -> None:
    host = scenario.start(HTTP_FNS, extra_env={"DEVHOST_HTTP_TIMEOUT_SECONDS": "1"})
    base = host.base_url
    key = KEY["x-functions-key"]

    def chunks() -> Iterator[bytes]:
        yield b"chunked "
        yield b"body"

    with httpx.Client(timeout=10) as http:
        r = http.post(f"{base}/items/3", content=chunks(), headers=KEY)  # Transfer-Encoding: chunked
        assert r.status_code == 200 and r.json()["body"] == "chunked body"
    # No key: 401 at once, although the body (claimed 200 MB) was never sent: the key is checked first.
    answer = _raw(base, b"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401") and b"Connection: close" in answer
    # Over the host's 100 MB limit: 413 from the Content-Length, before reading.
    answer = _raw(base, f"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nx-functions-key: {key}\r\n"
                  "Content-Length: 200000000\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 413")
    for bad in (b"abc", b"-5", b"1, 2"):
        answer = _raw(base, b"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nx-functions-key: " + key.encode()
                      + b"\r\nContent-Length: " + bad + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), answer
    # A client that stops sending mid-body is dropped after the socket timeout, not waited on forever.
    stalled = _raw(base, f"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nx-functions-key: {key}\r\n"
                   "Content-Length: 10\r\n\r\nabc".encode())
    assert not stalled.startswith(b"HTTP/1.1 200")
    assert _raw(base, b"GET /api/" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 414")
    with httpx.Client(timeout=10) as http:  # still serving
        assert http.get(f"{base}/items/42", headers=KEY).json()["id"] == "42"
    log = host.log_path.read_text()
    assert key not in log


def test_blob_once_per_version_sdk_and_stream_bindings_and_restart(scenario: Scenario) -> None:
    blobs = scenario.connection.blob_service_client()
    container = blobs.create_container(scenario.names["BLOB_CONTAINER"])
    streams = blobs.create_container(scenario.names["STREAM_CONTAINER"])
    container.upload_blob("a.txt", b"version 1")
    streams.upload_blob("in/x.txt", b"stream x", metadata={"origin": "test"})
    streams.upload_blob("other/y.txt", b"not watched")
    host = scenario.start(BLOB_FNS)
    assert "blob: 2" in host.ready_line

    def of(name: str) -> list[dict[str, object]]:
        return [r for r in scenario.records("blob_client_fn") if r["name"] == name]

    first = wait_for(lambda: of("a.txt"), "a.txt version 1")
    assert first[0]["content"] == "version 1"
    assert first[0]["type"] == "azure.storage.blob._blob_client.BlobClient"  # built by the extension's converter
    stream = wait_for(lambda: scenario.records("blob_stream_fn"), "in/x.txt")
    assert stream == [{
        "function": "blob_stream_fn", "pid": host.proc.pid, "name": f"{streams.container_name}/in/x.txt",
        "uri": f"{scenario.azurite.blob_endpoint}/{streams.container_name}/in/x.txt", "length": 8,
        "content": "stream x", "function_name": "blob_stream_fn", "metadata": {"origin": "test"},
    }]

    container.upload_blob("a.txt", b"version 2", overwrite=True)  # a new ETag: delivered again
    wait_for(lambda: len(of("a.txt")) >= 2, "a.txt version 2")
    container.upload_blob("sentinel-1.txt", b"s")
    wait_for(lambda: of("sentinel-1.txt"), "sentinel-1")
    assert [r["content"] for r in of("a.txt")] == ["version 1", "version 2"] or sorted(
        r["content"] for r in of("a.txt")) == ["version 1", "version 2"]
    assert len(of("a.txt")) == 2
    assert host.stop() == 0
    assert "source=EventGrid is served by polling locally" in host.log()

    again = scenario.start(BLOB_FNS)  # same host id: receipts in azure-webjobs-hosts stop any replay
    container.upload_blob("after-restart.txt", b"new")
    wait_for(lambda: of("after-restart.txt"), "a blob uploaded after the restart")
    streams.upload_blob("in/z.txt", b"z")
    wait_for(lambda: len(scenario.records("blob_stream_fn")) >= 2, "in/z.txt")
    assert len(of("a.txt")) == 2 and len(of("sentinel-1.txt")) == 1
    assert sorted(r["name"] for r in scenario.records("blob_stream_fn")) == [
        f"{streams.container_name}/in/x.txt", f"{streams.container_name}/in/z.txt"]  # other/y.txt never matched
    receipts = scenario.connection.blob_service_client().get_container_client("azure-webjobs-hosts")
    names = [b.name for b in receipts.list_blobs(name_starts_with=f"blobreceipts/{scenario.host_id}/")]
    assert any(n.endswith(f"/{container.container_name}/a.txt") for n in names)
    assert again.stop() == 0


def test_blob_poison_after_five_failures(scenario: Scenario) -> None:
    blobs = scenario.connection.blob_service_client()
    container = blobs.create_container(scenario.names["BLOB_CONTAINER"])
    container.upload_blob("bad.txt", b"fail please")
    host = scenario.start(("blob_client_fn",))
    poison = scenario.connection.queue_client("webjobs-blobtrigger-poison")

    def poisoned() -> list[dict[str, str]]:
        found = [json.loads(t) for t in _queue_texts(poison)]
        return [m for m in found if m["ContainerName"] == container.container_name]

    message = wait_for(poisoned, "the poison message for bad.txt")
    etag = str(container.get_blob_client("bad.txt").get_blob_properties().etag)
    assert message == [{"Type": "BlobTrigger", "FunctionId": "Host.Functions.blob_client_fn", "BlobType": "BlockBlob",
                        "ContainerName": container.container_name, "BlobName": "bad.txt", "ETag": etag}]
    container.upload_blob("good.txt", b"fine")
    wait_for(lambda: [r for r in scenario.records() if r["name"] == "good.txt"], "good.txt after the poison")
    assert len([r for r in scenario.records() if r["name"] == "bad.txt"]) == 5
    assert host.log().count("told to fail on bad.txt") >= 5
    assert "moved to queue webjobs-blobtrigger-poison" in host.log()
    assert host.stop() == 0


# ---------------------------------------------------------------------------------------------------- queues
def test_queue_delivery_retries_and_poison(scenario: Scenario) -> None:
    name = scenario.names["QUEUE_NAME"]
    queue = scenario.connection.queue_client(name)  # base64, the host's default messageEncoding
    raw = scenario.connection.queue_client(name, message_encoding="none")
    host = scenario.start(("queue_fn",))  # creates the queue
    queue.send_message("hello")
    queue.send_message("fail-1")
    raw.send_message("not base64 !")
    poison = scenario.connection.queue_client(f"{name}-poison", message_encoding="none")
    wait_for(lambda: len(_queue_texts(poison)) == 2, "two messages in the poison queue", timeout=30)
    queue.send_message("sentinel")
    wait_for(lambda: [r for r in scenario.records("queue_fn") if r["body"] == "sentinel"], "the sentinel")

    bodies = [r["body"] for r in scenario.records("queue_fn")]
    assert bodies.count("hello") == 1 and bodies.count("sentinel") == 1
    fails = [r for r in scenario.records("queue_fn") if r["body"] == "fail-1"]
    assert sorted(r["dequeue_count"] for r in fails) == [1, 2, 3, 4, 5]
    assert len({r["id"] for r in fails}) == 1 and all(r["has_pop_receipt"] for r in fails)
    hello = next(r for r in scenario.records("queue_fn") if r["body"] == "hello")
    assert hello["dequeue_count"] == 1 and hello["inserted"] != "None" and hello["expires"] != "None"
    assert "not base64 !" not in bodies  # never reached the handler
    # poison copies are unchanged: base64 as sent, and the undecodable one as it was
    assert sorted(_queue_texts(poison)) == sorted(["ZmFpbC0x", "not base64 !"])
    wait_for(lambda: not _queue_texts(raw), "the work queue to be empty")
    log = host.log()
    assert "dequeue_count=5) failed" in log and f"moved to queue {name}-poison" in log
    assert "message is not valid base64" in log
    assert host.stop() == 0


# ---------------------------------------------------------------------------------------------------- timers
def test_timer_schedule_and_run_on_startup(scenario: Scenario) -> None:
    host = scenario.start(("timer_fn",))  # TIMER_SCHEDULE=*/1 * * * * * via %TIMER_SCHEDULE%
    assert "timer: 1" in host.ready_line
    wait_for(lambda: len(scenario.records("timer_fn")) >= 3, "a startup run and two scheduled runs")
    assert host.stop() == 0
    log = host.log()
    assert "invocation timer_fn (timer startup" in log
    assert "invocation timer_fn (timer scheduled" not in log  # routine ticks are DEBUG, not INFO noise
    debug = scenario.start(("timer_fn",), extra_env={"DEVHOST_LOG_LEVEL": "DEBUG"})
    wait_for(lambda: debug.log().count("invocation timer_fn (timer scheduled") >= 2, "two scheduled runs at DEBUG")
    assert debug.stop() == 0
    records = scenario.records("timer_fn")
    assert not any(r["past_due"] for r in records)
    scheduled = [r["next"] for r in records]
    assert len(set(scheduled)) >= 2


def test_timer_past_due_from_schedule_status(scenario: Scenario) -> None:
    hosts = scenario.connection.blob_service_client().get_container_client("azure-webjobs-hosts")
    try:
        hosts.create_container()
    except Exception:  # noqa: BLE001 - it exists
        pass
    status = hosts.get_blob_client(f"timers/{scenario.host_id}/Host.Functions.daily_fn/status")
    missed = datetime.now(UTC) - timedelta(days=1)
    status.upload_blob(json.dumps({"Last": (missed - timedelta(days=1)).isoformat(), "Next": missed.isoformat(),
                                   "LastUpdated": missed.isoformat()}), overwrite=True)
    host = scenario.start(("daily_fn",))  # "0 0 3 * * *", async handler, useMonitor on by default
    record = wait_for(lambda: scenario.records("daily_fn"), "the past-due run")
    assert record[0]["past_due"] is True
    after = json.loads(status.download_blob().readall())
    wait_for(lambda: json.loads(status.download_blob().readall())["Next"] != missed.isoformat(), "status update")
    after = json.loads(status.download_blob().readall())
    assert datetime.fromisoformat(after["Next"].replace("Z", "+00:00")) > datetime.now(UTC)
    assert host.stop() == 0
    assert len(scenario.records("daily_fn")) == 1


# ---------------------------------------------------------------------------------------------------- scale-out
def test_two_devhosts_deliver_each_message_and_blob_once(scenario: Scenario) -> None:
    name = scenario.names["QUEUE_NAME"]
    blobs = scenario.connection.blob_service_client()
    container = blobs.create_container(scenario.names["BLOB_CONTAINER"])
    queue = scenario.connection.queue_client(name)
    queue.create_queue()
    for i in range(30):
        queue.send_message(f"m{i}")
    queue.send_message("slow:4")  # outlives its 2 s visibility lock: renewal must keep it from the other host
    for i in range(20):
        container.upload_blob(f"b{i:02}.txt", f"blob {i}".encode())
    only = ("queue_fn", "blob_client_fn", "timer_fn")
    env = {"DEVHOST_QUEUE_LOCK_SECONDS": "2"}
    one = scenario.start(only, extra_env=env)
    two = scenario.start(only, extra_env=env)

    wait_for(lambda: len(scenario.records("queue_fn")) >= 31 and len(scenario.records("blob_client_fn")) >= 20,
             "31 messages and 20 blobs handled", timeout=40)
    wait_for(lambda: scenario.records("queue_fn_slow_done"), "the slow message to finish", timeout=30)
    raw = scenario.connection.queue_client(name, message_encoding="none")
    wait_for(lambda: not _queue_texts(raw), "the queue to drain")
    queue.send_message("sentinel")
    container.upload_blob("sentinel.txt", b"s")
    wait_for(lambda: any(r["body"] == "sentinel" for r in scenario.records("queue_fn"))
             and any(r["name"] == "sentinel.txt" for r in scenario.records("blob_client_fn")), "the sentinels")

    bodies = sorted(r["body"] for r in scenario.records("queue_fn"))
    assert bodies == sorted([f"m{i}" for i in range(30)] + ["slow:4", "sentinel"])  # each exactly once
    assert len(scenario.records("queue_fn_slow_done")) == 1
    blob_names = sorted(r["name"] for r in scenario.records("blob_client_fn"))
    assert blob_names == sorted([f"b{i:02}.txt" for i in range(20)] + ["sentinel.txt"])
    timer_pids = {r["pid"] for r in scenario.records("timer_fn")}
    assert timer_pids and len(timer_pids) == 1  # the timer is a singleton across devhosts
    assert one.stop() == 0 and two.stop() == 0
    pids = {r["pid"] for r in scenario.records()}
    print(f"work split across pids: {sorted(pids)}")


def test_startup_error_names_the_missing_setting(scenario: Scenario) -> None:
    import subprocess
    import sys

    from tests.devhost.conftest import FIXTURE_APP, REPO

    env = scenario.env(("queue_fn",))
    del env["QUEUE_NAME"]
    result = subprocess.run([sys.executable, "-m", "devhost", "--app-dir", str(FIXTURE_APP), "--http-port", "0"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "%QUEUE_NAME%" in result.stderr and "devhost ready" not in result.stdout
