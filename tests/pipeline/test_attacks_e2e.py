"""The review's attack list, re-run against the running local stack (devhost + Azurite + emulator), the way the
review ran it: through the HTTP API and the submit queue of the real function_app.py."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx

from devstack import Stack
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import chat_lines
from tests.harness.waiting import wait_for


class _Target(http.server.BaseHTTPRequestHandler):
    """What a forged submission would reach: it counts every request."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).hits.append(self.path)
        body = b'{"secret": "admin only"}\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _logs(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("devhost*.log"))


def test_the_attack_list_against_the_running_stack(tmp_path: Path) -> None:
    _Target.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    workdir = tmp_path / "stack"
    settings = {"SUBMIT_ALLOW_LOCAL_HTTP": "false", "MAX_FILE_BYTES": "200000"}
    try:
        with Stack(workdir, extra_settings=settings) as stack:
            key = {"x-functions-key": stack.function_key}
            api = stack.http_url
            services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
            drop = services.blobs.get_container_client(services.settings.drop_container)

            # SSRF through the submit queue: loopback, link-local metadata, a password in the URL.
            forged = [
                f"http://127.0.0.1:{port}/admin",
                f"https://localhost:{port}/admin",
                "https://169.254.169.254/metadata/instance?api-version=2021-02-01",
                f"https://admin:hunter2@127.0.0.1:{port}/admin",
            ]
            queue = services.queue(services.settings.submit_queue)
            for i, url in enumerate(forged):
                queue.send_message(json.dumps({"url": url, "name": f"forged-{i}.jsonl"}))
            wait_for(lambda: _logs(workdir).count("refused:") >= len(forged), "every forged URL refused", 60, 0.3)
            logs = _logs(workdir)
            assert logs.count("refused:") == len(forged), logs[-3000:]
            assert _Target.hits == []  # nothing was ever fetched
            assert "hunter2" not in logs
            assert "dequeue_count=2" not in logs  # dropped at once, not retried five times
            assert not queue.peek_messages(max_messages=32)
            assert not [b.name for b in drop.list_blobs(name_starts_with="forged-")]

            # Traversal through the HTTP API.
            with httpx.Client(timeout=30, headers=key) as client:
                for run_id in ("..", "%2e%2e", "a..b", "x%2F..%2F..%2Fprofiles"):
                    answer = client.get(f"{api}/runs/{run_id}")
                    # 400 from the app, or the router's empty 404 when the client already folded the `..`
                    assert answer.status_code in (400, 404), (run_id, answer.status_code)
                    assert not answer.content or set(answer.json()) == {"error"}
                bad_name = client.post(f"{api}/runs", params={"name": "../../escape.jsonl"}, content=chat_lines(12))
                assert bad_name.status_code == 400
                # Oversize: refused before storing.
                big = client.post(f"{api}/runs", params={"name": "big.jsonl"}, content=chat_lines(1000))
                assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
                # CR/LF in a spec value: 400 naming the key at once (it was a 500 after 85 s of retries).
                crlf = client.post(f"{api}/runs", params={"name": "crlf.jsonl", "suffix": "a\r\nb"}, content=b"{}\n")
                assert crlf.status_code == 400 and "'suffix'" in crlf.json()["error"]["message"]

                # A chunked body arrives whole (it used to become an empty_file run).
                def body() -> Iterator[bytes]:
                    data = chat_lines(12)
                    yield data[:100]
                    yield data[100:]

                chunked = client.post(
                    f"{api}/runs", params={"name": "chunked.jsonl", "validation_split": "0"}, content=body()
                )
                assert chunked.status_code == 202, chunked.text
            names = {b.name for b in drop.list_blobs()}
            assert "big.jsonl" not in names and "crlf.jsonl" not in names
            assert drop.get_blob_client("chunked.jsonl").download_blob().readall() == chat_lines(12)
    finally:
        server.shutdown()
        server.server_close()
