"""The blobs extension's Event Grid endpoint, as the Functions host serves it for ``source="EventGrid"``.

``POST /runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<key>`` (the key: the blobs extension
system key; here ``DEVHOST_BLOBS_EXTENSION_KEY``, else the master key):

- header ``aeg-event-type: SubscriptionValidation`` -> 200 ``{"validationResponse": <data.validationCode>}``
  (Event Grid schema: an array of events; CloudEvents: one event whose ``data`` may be a JSON string);
- ``Notification`` -> each ``Microsoft.Storage.BlobCreated`` event's ``data.url`` / ``data.eTag`` becomes an
  invocation of that blob version, queued; the answer is **202** at once (the host writes a blob-trigger
  message and answers 202);
- ``Unsubscribe`` -> 202; any other value -> 400;
- ``OPTIONS`` with ``WebHook-Request-Origin`` (the CloudEvents abuse-protection handshake) -> 200 with
  ``WebHook-Allowed-Origin``.

Sources: Azure/azure-sdk-for-net ``Microsoft.Azure.WebJobs.Extensions.Storage.Blobs`` (``ConvertAsync``,
``ProcessEventsAsync``, ``GetBlobTriggerMessage``) and the Event Grid extension's ``HttpRequestProcessor``
(docs/azure-openai-contract.md, "The blob trigger in Azure"). Delivery is at least once: the blob receipts of
:mod:`devhost.blob_trigger` make a repeated event a no-op, and an event for a version that was overwritten
since is skipped (its content is gone), as the host's blob-trigger queue does.
"""

from __future__ import annotations

import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

log = logging.getLogger("devhost")

PATH = "/runtime/webhooks/blobs"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"


class BlobEventTarget(Protocol):
    """What a blob trigger listener offers the endpoint (see BlobTriggerListener.handle_event)."""

    container_name: str

    def handle_event(self, blob_name: str, etag: str) -> str: ...


def blob_path(url: str) -> tuple[str, str] | None:
    """(container, blob name) from a blob URL: ``https://acct.blob.core.windows.net/c/a/b.jsonl`` or the
    path-style ``http://127.0.0.1:10000/devstoreaccount1/c/a/b.jsonl`` (Azurite)."""
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s != ""]
    host = (parts.hostname or "").lower()
    path_style = host in ("localhost",) or host.replace(".", "").isdigit() or ":" in host
    if path_style:
        segments = segments[1:]  # the account name
    if len(segments) < 2:
        return None
    return segments[0], "/".join(segments[1:])


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The events of a delivery: an array (Event Grid schema, or a CloudEvents batch) or one object."""
    doc = json.loads(body or b"null")
    if isinstance(doc, list):
        return [e for e in doc if isinstance(e, dict)]
    if isinstance(doc, dict):
        return [doc]
    raise ValueError(f"the request content should be a JSON object or array, not {type(doc).__name__}")


def _data(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    if isinstance(data, str):  # CloudEvents subscription validation double-encodes it
        data = json.loads(data)
    return data if isinstance(data, dict) else {}


class EventGridEndpoint:
    """Serves the endpoint for the blob trigger listeners of Event Grid functions (by function id)."""

    def __init__(self, keys: list[str], workers: int = 2) -> None:
        self.keys = [k for k in keys if k]
        self.targets: dict[str, BlobEventTarget] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eventgrid")
        self.received = 0

    def register(self, function_id: str, target: BlobEventTarget) -> None:
        self.targets[function_id.lower()] = target

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=False)  # running invocations finish (the grace period)

    def _authorized(self, query: dict[str, str], headers: Any) -> bool:
        given = query.get("code") or headers.get("x-functions-key") or ""
        return bool(given) and any(hmac.compare_digest(given.encode(), k.encode()) for k in self.keys)

    def handle(self, method: str, query: dict[str, str], headers: Any, body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request to the endpoint."""
        if not self._authorized(query, headers):
            return 401, {}, b""
        target = self.targets.get((query.get("functionName") or "").lower())
        if target is None:
            return 404, {}, b""
        if method == "OPTIONS":
            origin = headers.get("WebHook-Request-Origin")
            if not origin:
                return 400, {}, b""
            return 200, {"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}, b""
        if method != "POST":
            return 405, {}, b""
        kind = (headers.get("aeg-event-type") or "").lower()
        try:
            events = parse_events(body)
        except ValueError as exc:
            return 400, {"Content-Type": "text/plain; charset=utf-8"}, str(exc).encode()
        if kind == "subscriptionvalidation":
            code = _data(events[0]).get("validationCode") if events else None
            if not code:
                return 400, {}, b""
            log.info("event grid: subscription validated for %s", query.get("functionName"))
            return 200, {"Content-Type": "application/json"}, json.dumps({"validationResponse": code}).encode()
        if kind == "unsubscribe":
            return 202, {}, b""
        if kind != "notification":
            return 400, {}, b""
        for event in events:
            self.received += 1
            event_type = event.get("eventType") or event.get("type")
            if event_type != BLOB_CREATED:
                log.info("event grid: %s ignored (only %s starts a blob trigger)", event_type, BLOB_CREATED)
                continue
            data = _data(event)
            where = blob_path(str(data.get("url") or ""))
            if where is None or where[0] != target.container_name:
                log.info("event grid: event for %s is not in container %s: ignored", data.get("url"),
                         target.container_name)
                continue
            etag = '"' + str(data.get("eTag") or "").strip('"') + '"'
            self.pool.submit(self._run, target, where[1], etag)
        return 202, {}, b""

    @staticmethod
    def _run(target: BlobEventTarget, blob_name: str, etag: str) -> None:
        try:
            outcome = target.handle_event(blob_name, etag)
            log.info("event grid: %s/%s %s -> %s", target.container_name, blob_name, etag, outcome)
        except Exception:  # noqa: BLE001 - one event's failure must not end the endpoint's worker
            log.exception("event grid: %s/%s %s failed", target.container_name, blob_name, etag)
