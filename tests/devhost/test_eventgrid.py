"""The blobs extension's Event Grid endpoint as the host serves it (devhost/eventgrid.py), request by request."""

from __future__ import annotations

import json
import threading
from typing import Any

from devhost.eventgrid import EventGridEndpoint, blob_path

FN = "Host.Functions.ingest_dropped_file"


class _Target:
    container_name = "training-data"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.called = threading.Event()

    def handle_event(self, blob_name: str, etag: str) -> str:
        self.calls.append((blob_name, etag))
        self.called.set()
        return "done"


def _endpoint() -> tuple[EventGridEndpoint, _Target]:
    endpoint = EventGridEndpoint(["the-key"], workers=1)
    target = _Target()
    endpoint.register(FN, target)
    return endpoint, target


def _post(endpoint: EventGridEndpoint, kind: str, body: Any, code: str = "the-key", fn: str = FN
          ) -> tuple[int, dict[str, str], bytes]:
    return endpoint.handle("POST", {"functionName": fn, "code": code}, {"aeg-event-type": kind},
                           json.dumps(body).encode())


def _created(url: str, etag: str = "0x8DCAFE", event_type: str = "Microsoft.Storage.BlobCreated") -> dict[str, Any]:
    return {"id": "1", "eventType": event_type, "subject": "/blobServices/default/containers/training-data/blobs/x",
            "data": {"url": url, "eTag": etag, "blobType": "BlockBlob", "api": "PutBlob"}}


def test_subscription_validation_in_both_schemas() -> None:
    endpoint, _ = _endpoint()
    status, headers, body = _post(endpoint, "SubscriptionValidation", [{"data": {"validationCode": "abc"}}])
    assert status == 200 and json.loads(body) == {"validationResponse": "abc"}
    assert headers["Content-Type"] == "application/json"
    status, _, body = _post(endpoint, "SubscriptionValidation", {"data": json.dumps({"validationCode": "xyz"})})
    assert status == 200 and json.loads(body) == {"validationResponse": "xyz"}  # CloudEvents: data double-encoded
    status, headers, _ = endpoint.handle("OPTIONS", {"functionName": FN, "code": "the-key"},
                                         {"WebHook-Request-Origin": "eventgrid.azure.net"}, b"")
    assert status == 200 and headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_key_function_and_event_type_are_checked() -> None:
    endpoint, target = _endpoint()
    assert _post(endpoint, "Notification", [], code="wrong")[0] == 401
    assert _post(endpoint, "Notification", [], fn="Host.Functions.other")[0] == 404
    assert _post(endpoint, "Unsubscribe", [])[0] == 202
    assert _post(endpoint, "Something", [])[0] == 400
    assert target.calls == []


def test_notification_answers_202_and_runs_blob_created_events_only() -> None:
    endpoint, target = _endpoint()
    events = [
        _created("http://127.0.0.1:10000/devstoreaccount1/training-data/team-a/data.jsonl", "0x8D1"),
        _created("http://127.0.0.1:10000/devstoreaccount1/training-data/gone.jsonl",
                 event_type="Microsoft.Storage.BlobDeleted"),
        _created("https://acct.blob.core.windows.net/other-container/x.jsonl"),
    ]
    status, _, _ = _post(endpoint, "Notification", events)
    assert status == 202
    assert target.called.wait(5)
    endpoint.close()
    assert target.calls == [("team-a/data.jsonl", '"0x8D1"')]
    assert endpoint.received == 3


def test_blob_urls_of_azure_and_azurite() -> None:
    assert blob_path("https://acct.blob.core.windows.net/c/a/b%20c.jsonl") == ("c", "a/b c.jsonl")
    assert blob_path("http://127.0.0.1:10000/devstoreaccount1/c/x.jsonl") == ("c", "x.jsonl")
    assert blob_path("http://localhost:10000/devstoreaccount1/c/x.jsonl") == ("c", "x.jsonl")
    assert blob_path("https://acct.blob.core.windows.net/c") is None
