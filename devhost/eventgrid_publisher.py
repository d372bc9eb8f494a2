"""A small local stand-in for the Event Grid system topic of a storage account: Azurite blob writes become
``Microsoft.Storage.BlobCreated`` events POSTed to a webhook (the devhost's blobs extension endpoint).

Azurite raises no events, so the publisher watches one container: a blob name with an ETag it has not seen is
a write that Azure announces with BlobCreated (PutBlob, PutBlockList, CopyBlob: "when the Block Blob is
completely committed"). Snapshots are not listed, so pinning a blob by snapshot announces nothing, as on Azure
(a snapshot is not among the BlobCreated operations). Sources: docs/azure-openai-contract.md.

Like Event Grid: the subscription is validated first (``SubscriptionValidation``, or the CloudEvents ``OPTIONS``
handshake), events are delivered at least once and retried on failure (bounded here: ``max_tries``), in the
Event Grid schema or as CloudEvents 1.0. On demand: every event ``duplicates`` times, and each batch in
reverse order (``reverse``), to exercise a handler's idempotency.

    python -m devhost.eventgrid_publisher --connection "$AzureWebJobsStorage" --container training-data \\
        --endpoint "http://127.0.0.1:7071/runtime/webhooks/blobs?functionName=Host.Functions.ingest_dropped_file&code=KEY"
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from azure.storage.blob import BlobProperties, ContainerClient

log = logging.getLogger("devhost.eventgrid")

Schema = Literal["eventgrid", "cloudevents"]
TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/" \
        "Microsoft.Storage/storageAccounts/{account}"


class PublishError(RuntimeError):
    """The webhook refused the subscription or kept failing a delivery past `max_tries`."""


@dataclass
class BlobEventPublisher:
    container: ContainerClient
    endpoint: str
    schema: Schema = "eventgrid"
    duplicates: int = 1
    reverse: bool = False
    interval: float = 0.5
    max_tries: int = 5
    retry_delay: float = 0.2
    seen: set[tuple[str, str]] = field(default_factory=set)
    delivered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.http = httpx.Client(timeout=30)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> BlobEventPublisher:
        """Validate the subscription, note what already exists (no events for it), then publish in a thread."""
        self.validate_subscription()
        self.seen |= {(b.name, str(b.etag)) for b in self._listing()}
        self._thread = threading.Thread(target=self._loop, name="eventgrid-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.http.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish_new()
            except Exception:  # noqa: BLE001 - a storage or delivery hiccup must not end the publisher
                log.exception("event grid publisher: a round failed; trying again")

    # -- the subscription handshake ----------------------------------------------------------------------------
    def validate_subscription(self) -> None:
        if self.schema == "cloudevents":
            response = self.http.options(self.endpoint, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
            if response.status_code != 200 or response.headers.get("WebHook-Allowed-Origin") != "eventgrid.azure.net":
                raise PublishError(f"CloudEvents handshake refused: {response.status_code}")
            return
        code = uuid.uuid4().hex
        event = {
            "id": str(uuid.uuid4()),
            "topic": self._topic(),
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": _now(),
            "data": {"validationCode": code, "validationUrl": None},
            "dataVersion": "2",
            "metadataVersion": "1",
        }
        response = self.http.post(self.endpoint, json=[event], headers={"aeg-event-type": "SubscriptionValidation"})
        if response.status_code != 200 or response.json().get("validationResponse") != code:
            raise PublishError(f"subscription validation refused: {response.status_code} {response.text[:200]}")

    # -- events ----------------------------------------------------------------------------------------------
    def publish_new(self) -> int:
        """One round: an event for every blob version not seen yet. Returns how many events were delivered."""
        fresh = [b for b in self._listing() if (b.name, str(b.etag)) not in self.seen]
        events = [self.event_for(b) for b in fresh]
        if self.reverse:
            events.reverse()
        sent = 0
        for event in events:
            for _ in range(max(1, self.duplicates)):
                self.deliver(event)
                sent += 1
        self.seen |= {(b.name, str(b.etag)) for b in fresh}
        return sent

    def event_for(self, blob: BlobProperties) -> dict[str, Any]:
        """The BlobCreated event Azure Storage sends for this blob version (Event Grid schema or CloudEvents)."""
        url = f"{self.container.url.rstrip('/')}/{blob.name}"
        data = {
            "api": "PutBlob",  # a listing cannot tell PutBlob, PutBlockList and CopyBlob apart
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": str(blob.etag).strip('"'),
            "contentType": getattr(blob.content_settings, "content_type", None) or "application/octet-stream",
            "contentLength": blob.size,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{time.time_ns():032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        }
        subject = f"/blobServices/default/containers/{self.container.container_name}/blobs/{blob.name}"
        if self.schema == "cloudevents":
            return {"specversion": "1.0", "type": "Microsoft.Storage.BlobCreated", "source": self._topic(),
                    "id": str(uuid.uuid4()), "time": _now(), "subject": subject, "data": data}
        return {"id": str(uuid.uuid4()), "topic": self._topic(), "subject": subject,
                "eventType": "Microsoft.Storage.BlobCreated", "eventTime": _now(), "data": data,
                "dataVersion": "", "metadataVersion": "1"}

    def deliver(self, event: dict[str, Any]) -> None:
        """POST one event, retried on failure (Event Grid retries for 24 h; here `max_tries` times)."""
        body: Any = event if self.schema == "cloudevents" else [event]
        content_type = "application/cloudevents+json" if self.schema == "cloudevents" else "application/json"
        for attempt in range(1, self.max_tries + 1):
            try:
                response = self.http.post(
                    self.endpoint, content=json.dumps(body).encode(),
                    headers={"aeg-event-type": "Notification", "Content-Type": content_type},
                )
                if response.status_code in (200, 202):
                    self.delivered += 1
                    return
                log.info("event grid publisher: delivery answered %s (try %d)", response.status_code, attempt)
            except httpx.HTTPError as exc:
                log.info("event grid publisher: delivery failed: %s (try %d)", type(exc).__name__, attempt)
            time.sleep(self.retry_delay * attempt)
        raise PublishError(f"event {event.get('id')} not delivered after {self.max_tries} tries")

    def _listing(self) -> list[BlobProperties]:
        return list(self.container.list_blobs())  # snapshots are not listed: they raise no BlobCreated

    def _topic(self) -> str:
        return TOPIC.format(account=self.container.account_name or "devstoreaccount1")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.eventgrid_publisher", description=__doc__.split("\n")[0])
    parser.add_argument("--connection", required=True, help="storage connection string (Azurite's)")
    parser.add_argument("--container", required=True, help="the container whose blob writes become events")
    parser.add_argument("--endpoint", required=True, help="webhook URL (with functionName and code)")
    parser.add_argument("--schema", choices=["eventgrid", "cloudevents"], default="eventgrid")
    parser.add_argument("--duplicates", type=int, default=1, help="deliver every event N times")
    parser.add_argument("--reverse", action="store_true", help="deliver each batch in reverse order")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the container")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    container = ContainerClient.from_connection_string(args.connection, args.container)
    publisher = BlobEventPublisher(container, args.endpoint, schema=args.schema, duplicates=args.duplicates,
                                   reverse=args.reverse, interval=args.interval).start()
    print(f"event grid publisher: {args.container} -> {args.endpoint.split('?')[0]}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        publisher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
