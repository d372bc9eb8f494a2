"""Runs submitted by other systems (HTTP or queue) become drops: a blob in the drop container.

Submitting is idempotent: the blob name comes from the submission (its name, or its idempotency key /
message id) and is written with `If-None-Match: *`, so a retried submission never starts a second run.

A submission by URL makes the app fetch something a stranger named, from inside its network: `fetch_url`
refuses what would turn that into a server-side request forgery. Only `https` (plain `http` only with
`SUBMIT_ALLOW_LOCAL_HTTP`, which also admits loopback, for local use); the host is resolved and every address
it resolves to must be public (no loopback, private, link-local, cloud-metadata, multicast or reserved
address), and the connection goes to exactly the address that was checked (no second lookup to rebind);
`SUBMIT_ALLOWED_HOSTS` narrows it to named hosts; a redirect is followed only on the same host and is
checked again; the body is refused by its `Content-Length` and capped while streaming at `MAX_FILE_BYTES`;
the whole fetch has one deadline (`SUBMIT_FETCH_TIMEOUT_SECONDS`). A refusal that can never succeed is a
`SubmissionError` with `retryable=False`; the queue handler drops such a message at once instead of
retrying it five times.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import ssl
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContentSettings

from shared.aoai.redact import scrub_http_client_logs
from shared.names import VALIDATION_SUFFIX, InvalidName, check_blob_name, companion_name, is_validation_companion
from shared.runs import derive_run_id
from shared.sas import redact_url
from shared.services import Services
from shared.settings import Settings
from shared.spec import METADATA_FIELDS, OTHER_METADATA

# Addresses that are public by their range but reach a cloud platform's own services.
_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("168.63.129.16"),  # Azure's WireServer / platform DNS
        ipaddress.ip_address("169.254.169.254"),  # the instance metadata service (Azure, AWS, GCP)
        ipaddress.ip_address("fd00:ec2::254"),
    }
)
_MAX_REDIRECTS = 3


class SubmissionError(ValueError):
    """A submission that cannot be accepted; the message says what to change.

    `retryable` is True only for what may work on a later try (a connection failure, a 5xx, a timeout).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class AlreadySubmitted(SubmissionError):
    def __init__(self, blob_name: str, run_id: str) -> None:
        super().__init__(f"{blob_name} was already submitted (run {run_id})")
        self.blob_name = blob_name
        self.run_id = run_id


class TooLarge(SubmissionError):
    """The body is larger than MAX_FILE_BYTES (never retryable)."""


def check_submission(name: str, metadata: Mapping[str, str]) -> dict[str, str]:
    """The metadata to store, lowercased; SubmissionError for a bad name, an unknown key or a bad value."""
    try:
        check_blob_name(name, what="name")
    except InvalidName as exc:
        raise SubmissionError(str(exc)) from None
    if not name.endswith(".jsonl") or is_validation_companion(name):
        raise SubmissionError(f"name {name!r} must end in .jsonl (and not in {VALIDATION_SUFFIX}, any case)")
    known = set(METADATA_FIELDS) | OTHER_METADATA
    unknown = sorted(k for k in metadata if k.lower() not in known)
    if unknown:
        raise SubmissionError(f"unknown spec keys {unknown}; accepted: {sorted(known)}")
    meta = {k.lower(): str(v) for k, v in metadata.items()}
    for key, value in meta.items():
        check_metadata_value(key, value)
    return meta


def check_metadata_value(key: str, value: str) -> None:
    """Blob metadata values travel as HTTP headers: printable ASCII only, at most 8 KB, no CR or LF."""
    if any(c in value for c in "\r\n"):
        raise SubmissionError(f"spec key {key!r}: the value contains a line break")
    if not value.isascii() or any(not c.isprintable() for c in value):
        raise SubmissionError(f"spec key {key!r}: the value must be printable ASCII (blob metadata is ASCII)")
    if len(value) > 8192:
        raise SubmissionError(f"spec key {key!r}: the value is {len(value)} characters; at most 8192")


def check_size(declared: int | None, max_bytes: int) -> None:
    if declared is not None and declared > max_bytes:
        raise TooLarge(f"the file is {declared:,} bytes; the limit is {max_bytes:,} (MAX_FILE_BYTES)")


def capped(chunks: Iterator[bytes], max_bytes: int, deadline: float | None = None) -> Iterator[bytes]:
    """Pass `chunks` through, raising TooLarge past `max_bytes` (and SubmissionError past `deadline`)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > max_bytes:
            raise TooLarge(f"the file is larger than the limit of {max_bytes:,} bytes (MAX_FILE_BYTES)")
        if deadline is not None and time.monotonic() > deadline:
            raise SubmissionError("the download did not finish in time (SUBMIT_FETCH_TIMEOUT_SECONDS)", retryable=True)
        yield chunk


def submit(
    services: Services, name: str, data: bytes | IO[bytes] | Iterator[bytes], metadata: Mapping[str, str]
) -> tuple[str, str]:
    """Write the drop blob once. Returns (blob name, run id).

    An iterator is capped at MAX_FILE_BYTES while it is uploaded: past the cap the upload stops before its
    block list is committed, so nothing is stored.
    """
    meta = check_submission(name, metadata)
    max_bytes = services.settings.max_file_bytes
    if isinstance(data, bytes):
        check_size(len(data), max_bytes)
    elif not hasattr(data, "read"):
        data = capped(data, max_bytes)
    container = services.settings.drop_container
    blob = services.blobs.get_blob_client(container, name)
    try:
        result = blob.upload_blob(
            data,
            overwrite=False,
            metadata=meta,
            content_settings=ContentSettings(content_type="application/jsonl"),
        )
    except ResourceExistsError:
        props = blob.get_blob_properties()
        raise AlreadySubmitted(name, derive_run_id(container, name, props.version_id or str(props.etag))) from None
    version = result.get("version_id") or str(result["etag"])
    return name, derive_run_id(container, name, version)


# --- fetching a submitted URL -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UrlPolicy:
    """What `fetch_url` may reach."""

    allow_local: bool = False  # http:// and loopback addresses (local development only)
    allowed_hosts: tuple[str, ...] = ()  # exact host names, or ".example.com" for that domain and below

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        hosts = tuple(h.strip().lower() for h in settings.submit_allowed_hosts.split(",") if h.strip())
        return cls(allow_local=settings.submit_allow_local_http, allowed_hosts=hosts)

    def check_url(self, url: httpx.URL) -> None:
        shown = redact_url(str(url))
        if url.scheme != "https" and not (url.scheme == "http" and self.allow_local):
            raise SubmissionError(f"{shown}: only https URLs are fetched")
        host = url.host.lower()
        if not host:
            raise SubmissionError(f"{shown}: the URL has no host")
        if self.allowed_hosts and not any(
            host == h or (h.startswith(".") and host.endswith(h)) for h in self.allowed_hosts
        ):
            raise SubmissionError(f"{shown}: host {host} is not in SUBMIT_ALLOWED_HOSTS")

    def refusal(self, address: str) -> str | None:
        """Why the app must not connect to `address`, or None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
            if embedded is not None:
                ip = embedded
        if ip in _METADATA_ADDRESSES:
            return "a cloud metadata address"
        if ip.is_loopback:
            return None if self.allow_local else "a loopback address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_private:
            return "a private network address"
        if ip.is_multicast or not ip.is_global:
            return "not a public address"
        return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        raise SubmissionError(f"host {host} cannot be resolved ({exc.strerror})", retryable=not permanent) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedTransport(httpx.BaseTransport):
    """Resolves each request's host, refuses unsafe addresses, and connects to exactly the address checked.

    The request goes to the IP literal with the original `Host` header and TLS server name (so the
    certificate is still verified against the host name); a DNS answer cannot change between check and use.
    """

    def __init__(self, policy: UrlPolicy, inner: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self.policy.check_url(url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = _resolve(host, port)
        for address in addresses:
            why = self.policy.refusal(address)
            if why is not None:
                raise SubmissionError(f"{redact_url(str(url))}: {host} resolves to {why}; refused")
        failure: httpx.ConnectError | None = None
        for address in addresses:  # each one checked above; the first that accepts a connection is used
            pinned = httpx.Request(
                request.method,
                url.copy_with(host=address),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
            try:
                return self.inner.handle_request(pinned)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def close(self) -> None:
        self.inner.close()


def fetch_url(
    url: str,
    *,
    policy: UrlPolicy,
    max_bytes: int,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
) -> Generator[bytes, None, None]:
    """The body of GET `url`, streamed, under `policy`, at most `max_bytes`, all within `timeout` seconds.

    Raises SubmissionError (`retryable` for what a later try may cure). The URL is never put in a message
    unredacted.
    """
    scrub_http_client_logs()
    deadline = time.monotonic() + timeout
    shown = redact_url(url)
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SubmissionError(f"not a URL: {exc}") from None
    policy.check_url(target)
    per_read = httpx.Timeout(min(30.0, timeout), connect=min(10.0, timeout))
    with httpx.Client(
        transport=GuardedTransport(policy, transport), follow_redirects=False, timeout=per_read
    ) as client:
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                with client.stream("GET", target) as response:
                    if response.is_redirect and response.next_request is not None:
                        nxt = response.next_request.url
                        if (nxt.scheme, nxt.host, nxt.port) != (target.scheme, target.host, target.port):
                            raise SubmissionError(
                                f"{shown} redirects to another host ({redact_url(str(nxt))}); "
                                "submit the final URL instead"
                            )
                        target = nxt
                        if time.monotonic() > deadline:
                            raise SubmissionError(f"{shown}: no answer in time", retryable=True)
                        continue
                    if response.status_code != 200:
                        code = response.status_code
                        retryable = code in (408, 429) or code >= 500
                        raise SubmissionError(f"GET {shown} answered {code}", retryable=retryable)
                    length = response.headers.get("content-length")
                    check_size(int(length) if length and length.isdigit() else None, max_bytes)
                    yield from capped(response.iter_bytes(), max_bytes, deadline)
                    return
            raise SubmissionError(f"{shown}: more than {_MAX_REDIRECTS} redirects")
        except httpx.HTTPError as exc:
            if _certificate_refused(exc):  # a wrong certificate does not get right by waiting
                raise SubmissionError(f"could not read {shown}: its TLS certificate was refused") from None
            raise SubmissionError(f"could not read {shown}: {type(exc).__name__}", retryable=True) from None


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def submit_from_url(services: Services, url: str, name: str, metadata: Mapping[str, str]) -> tuple[str, str]:
    """Stream a file from a URL readable with GET (e.g. a SAS URL) into the drop container, under the policy."""
    check_submission(name, metadata)  # a bad name or spec is refused before anything is fetched
    settings = services.settings
    container = settings.drop_container
    existing = services.blobs.get_blob_client(container, name)
    if existing.exists():
        props = existing.get_blob_properties()
        raise AlreadySubmitted(name, derive_run_id(container, name, props.version_id or str(props.etag)))
    chunks = fetch_url(
        url,
        policy=UrlPolicy.from_settings(settings),
        max_bytes=settings.max_file_bytes,
        timeout=settings.submit_fetch_timeout_seconds,
    )
    try:
        # The first chunk connects: every refusal (scheme, address, status, Content-Length) happens here,
        # before anything is written to storage.
        first = next(chunks, b"")
        return submit(services, name, itertools.chain((first,), chunks), metadata)
    finally:
        chunks.close()


def drop_file(
    services: Services,
    path: str,
    *,
    name: str | None = None,
    validation_path: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Upload a local training file (and its validation companion first, if given) into the drop container."""
    name = name or Path(path).name
    meta = metadata or {}
    check_submission(name, meta)
    max_bytes = services.settings.max_file_bytes
    check_size(Path(path).stat().st_size, max_bytes)
    if validation_path:
        check_size(Path(validation_path).stat().st_size, max_bytes)
        companion = companion_name(name)
        with open(validation_path, "rb") as fh:
            services.blobs.get_blob_client(services.settings.drop_container, companion).upload_blob(
                fh, overwrite=True, content_settings=ContentSettings(content_type="application/jsonl")
            )
    with open(path, "rb") as fh:
        return submit(services, name, fh, meta)
