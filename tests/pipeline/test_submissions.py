"""Submissions by URL against real Azurite and a real local HTTP server: what is refused, and that a refusal
stores nothing (server-side request forgery, oversize bodies, deadlines, credentials in URLs)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import azure.functions as func
import pytest

from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import SubmissionError, TooLarge, UrlPolicy, fetch_url, submit_from_url
from tests.harness.pipeline import chat_lines

PAYLOAD = chat_lines(12)


class _Server(http.server.BaseHTTPRequestHandler):
    """PAYLOAD at /data.jsonl; /redirect-same and /redirect-other redirect; /big has no length; /slow trickles."""

    hits: ClassVar[list[str]] = []
    other_base: ClassVar[str] = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        type(self).hits.append(path)
        if path == "/redirect-same":
            self._redirect("/data.jsonl")
        elif path == "/redirect-other":
            self._redirect(f"{self.other_base}/data.jsonl")
        elif path == "/big":  # no Content-Length: only the streaming cap can stop it
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(64):
                chunk = b"x" * 4096
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"{")
                    self.wfile.flush()
                    time.sleep(0.05)  # the case itself: a server that never finishes
            except OSError:
                pass
        elif path == "/declared-big":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif path == "/missing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Server.hits = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    _Server.other_base = f"http://localhost:{port}"
    yield f"http://127.0.0.1:{port}"
    srv.shutdown()
    srv.server_close()


def _services(app_env: dict[str, str], **extra: str) -> Services:
    env = {**app_env, **extra}
    s = Services.from_settings(settings_from_env(env), env=env)
    s.ensure_storage()
    return s


def _stored(services: Services, name: str) -> bool:
    return bool(services.blobs.get_blob_client(services.settings.drop_container, name).exists())


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1:{port}/data.jsonl", "loopback"),
        ("https://localhost:{port}/data.jsonl", "loopback"),
        ("https://2130706433:{port}/data.jsonl", "loopback"),  # 127.0.0.1 as one decimal number
        ("https://[::1]:{port}/data.jsonl", "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/data.jsonl", "loopback"),
        ("https://169.254.169.254/metadata/instance?api-version=2021-02-01", "metadata"),
        ("https://[::ffff:169.254.169.254]/metadata/instance", "metadata"),
        ("https://169.254.10.1/x", "link-local"),
        ("https://168.63.129.16/machine", "metadata"),
        ("https://10.0.0.4/x.jsonl", "private"),
        ("https://192.168.1.1/x.jsonl", "private"),
        ("https://0.0.0.0:{port}/data.jsonl", "private"),
        ("https://100.64.0.1/x", "not a public address"),
        ("http://example.com/data.jsonl", "only https"),
        ("ftp://example.com/data.jsonl", "only https"),
        ("file:///etc/passwd", "only https"),
    ],
)
def test_unsafe_urls_are_refused_before_any_connection(
    app_env: dict[str, str], server: str, url: str, why: str
) -> None:
    services = _services(app_env)
    port = server.rsplit(":", 1)[1]
    with pytest.raises(SubmissionError, match=why) as caught:
        submit_from_url(services, url.format(port=port), "ssrf.jsonl", {})
    assert caught.value.retryable is False  # the queue handler drops it instead of retrying five times
    assert _Server.hits == []  # nothing was ever connected to
    assert not _stored(services, "ssrf.jsonl")


def test_local_http_needs_the_setting_and_still_refuses_link_local(app_env: dict[str, str], server: str) -> None:
    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true")
    blob_name, run_id = submit_from_url(services, f"{server}/data.jsonl", "local.jsonl", {"seed": "7"})
    assert blob_name == "local.jsonl" and run_id.startswith("local-")
    blob = services.blobs.get_blob_client(services.settings.drop_container, "local.jsonl")
    assert blob.download_blob().readall() == PAYLOAD and blob.get_blob_properties().metadata == {"seed": "7"}
    policy = UrlPolicy.from_settings(services.settings)
    assert policy.refusal("169.254.169.254") == "a cloud metadata address"
    assert policy.refusal("10.1.2.3") == "a private network address"
    assert policy.refusal("127.0.0.1") is None


def test_redirects_only_on_the_same_host(app_env: dict[str, str], server: str) -> None:
    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true")
    submit_from_url(services, f"{server}/redirect-same", "same.jsonl", {})
    assert _stored(services, "same.jsonl") and _Server.hits == ["/redirect-same", "/data.jsonl"]
    _Server.hits.clear()
    with pytest.raises(SubmissionError, match="redirects to another host") as caught:
        submit_from_url(services, f"{server}/redirect-other", "other.jsonl", {})
    assert not caught.value.retryable
    assert _Server.hits == ["/redirect-other"] and not _stored(services, "other.jsonl")


def test_allow_list_of_hosts(app_env: dict[str, str], server: str) -> None:
    hosts = "files.example.com,.blob.core.windows.net"
    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true", SUBMIT_ALLOWED_HOSTS=hosts)
    with pytest.raises(SubmissionError, match="not in SUBMIT_ALLOWED_HOSTS"):
        submit_from_url(services, f"{server}/data.jsonl", "allow.jsonl", {})
    assert _Server.hits == []
    policy = UrlPolicy.from_settings(services.settings)
    import httpx

    policy.check_url(httpx.URL("https://acct.blob.core.windows.net/c/b.jsonl"))  # a suffix entry admits the domain
    with pytest.raises(SubmissionError):
        policy.check_url(httpx.URL("https://evilblob.core.windows.net.attacker.io/x"))


def test_oversize_is_refused_by_content_length_and_while_streaming(app_env: dict[str, str], server: str) -> None:
    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true", MAX_FILE_BYTES="100000")
    with pytest.raises(TooLarge, match="1,000,000,000 bytes"):
        submit_from_url(services, f"{server}/declared-big", "declared.jsonl", {})
    with pytest.raises(TooLarge, match="larger than the limit of 100,000"):
        submit_from_url(services, f"{server}/big", "streamed.jsonl", {})  # 256 KiB, chunked, no length
    assert not _stored(services, "declared.jsonl") and not _stored(services, "streamed.jsonl")


def test_the_whole_fetch_has_a_deadline(app_env: dict[str, str], server: str) -> None:
    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true", SUBMIT_FETCH_TIMEOUT_SECONDS="0.5")
    with pytest.raises(SubmissionError, match="in time") as caught:
        submit_from_url(services, f"{server}/slow", "slow.jsonl", {})
    assert caught.value.retryable and not _stored(services, "slow.jsonl")


def test_credentials_in_the_url_are_never_logged_or_raised(
    app_env: dict[str, str], server: str, caplog: pytest.LogCaptureFixture
) -> None:
    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true")
    port = server.rsplit(":", 1)[1]
    url = f"http://alice:hunter2-password@127.0.0.1:{port}/missing?sig=SECRETSIG&sv=2024"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SubmissionError) as caught:
        submit_from_url(services, url, "creds.jsonl", {})
    assert "answered 404" in str(caught.value) and not caught.value.retryable
    text = str(caught.value) + caplog.text
    assert "hunter2" not in text and "alice" not in text and "SECRETSIG" not in text


def _queue_message(body: object) -> func.QueueMessage:
    return func.QueueMessage(id="msg-1", body=json.dumps(body).encode() if not isinstance(body, bytes) else body)


def test_queue_handler_drops_what_can_never_succeed_and_retries_the_rest(
    app_env: dict[str, str], server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import blueprints.api as api

    services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="false")
    monkeypatch.setattr(api, "get_services", lambda: services)
    caplog.set_level(logging.INFO)
    port = server.rsplit(":", 1)[1]
    refused: list[Any] = [
        {"url": "https://169.254.169.254/metadata", "name": "a.jsonl"},
        {"url": f"https://user:hunter2@localhost:{port}/x", "name": "b.jsonl"},
        {"name": "no-url.jsonl"},
        b"not json",
        {"url": "https://example.com/x", "name": "../escape.jsonl"},
    ]
    for body in refused:
        api.submit_run_from_queue(_queue_message(body))  # returns: the message is consumed, not retried
    assert caplog.text.count("submission msg-1 refused") == len(refused) and "hunter2" not in caplog.text
    assert _Server.hits == []
    retry_services = _services(app_env, SUBMIT_ALLOW_LOCAL_HTTP="true")
    monkeypatch.setattr(api, "get_services", lambda: retry_services)
    closed_port = _closed_port()
    with pytest.raises(SubmissionError) as caught:  # a connection refused may work later: the host retries
        api.submit_run_from_queue(_queue_message({"url": f"http://127.0.0.1:{closed_port}/x", "name": "c.jsonl"}))
    assert caught.value.retryable


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for DNS name `name` (no IP address in it)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize("cert_name", ["localhost", "elsewhere.example"])
def test_the_pinned_connection_still_verifies_the_certificate_against_the_host_name(
    tmp_path: Path, cert_name: str
) -> None:
    import ssl

    import httpx

    cert, key = _certificate(tmp_path, cert_name)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    srv.socket = server_tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    trust = ssl.create_default_context(cafile=str(cert))  # trusts exactly this certificate
    url = f"https://localhost:{port}/data.jsonl"  # the request itself goes to 127.0.0.1, checked and pinned
    policy = UrlPolicy(allow_local=True)
    try:
        chunks = fetch_url(url, policy=policy, max_bytes=10**6, timeout=10, transport=httpx.HTTPTransport(verify=trust))
        if cert_name == "localhost":
            assert b"".join(chunks) == PAYLOAD
        else:  # a certificate for another name is refused although the address was the one checked
            with pytest.raises(SubmissionError, match="certificate was refused") as caught:
                b"".join(chunks)
            assert not caught.value.retryable
    finally:
        srv.shutdown()
        srv.server_close()
