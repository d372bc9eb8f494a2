"""Run events: CloudEvents 1.0 on the events queue, signed webhooks through the outbox, retries then poison.

Against the session's Azurite and a real HTTP receiver on loopback that verifies signatures with the
`standardwebhooks` library, as a receiving system would.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.notifications import EVENT_TYPE, backoff_seconds, from_json, run_event, to_json
from shared.runs import RunRecord, RunSource, RunSpec, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.summary import run_summary

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes length").decode()


@dataclass
class Receiver:
    """A webhook endpoint: verifies each POST with the Standard Webhooks library and answers `status`."""

    status: int = 204
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(SECRET).verify(body, headers)
                    receiver.received.append({"body": body, "headers": headers})
                    status = receiver.status
                except WebhookVerificationError as exc:
                    receiver.rejected.append(str(exc))
                    status = 400
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), r.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/runs?token=secret-in-the-url"
    yield r
    server.shutdown()


@pytest.fixture
def make_services(azurite: Any, unique_name: Callable[[str], str]) -> Callable[..., Services]:
    def build(**extra: str) -> Services:
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "RUNS_CONTAINER": unique_name("runs"),
            "EVENTS_QUEUE": unique_name("events"),
            "WEBHOOK_OUTBOX_QUEUE": unique_name("outbox"),
            "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9",
            "AZURE_OPENAI_API_KEY": "unused",
            **extra,
        }
        services = Services.from_settings(settings_from_env(env), env=env)
        services.store.ensure()
        return services

    return build


def _new_run(services: Services, run_id: str = "support-0123456789ab") -> RunRecord:
    record = RunRecord.new(run_id, RunSource(container="training-data", blob_name="support.jsonl", etag="e"))
    record.spec = RunSpec(model="gpt-4o-mini-2024-07-18")
    services.store.create(record)
    return record


def _advance(services: Services, run_id: str, *states: RunState) -> RunRecord:
    record = services.store.get(run_id)
    for state in states:
        record, _ = services.store.update(run_id, lambda r, s=state: r.transition(s))  # type: ignore[misc]
    return record


def _drain(services: Services, *, until: Callable[[], bool], timeout: float = 30) -> int:
    """Run the outbox trigger's handler on every message that becomes visible, like the host; returns how many."""
    queue = services.queue(services.settings.webhook_outbox_queue)
    handled = 0
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the outbox did not settle"
        for msg in queue.receive_messages(visibility_timeout=30, max_messages=16):
            services.outbox.deliver(msg.content)
            queue.delete_message(msg)
            handled += 1
        time.sleep(0.2)
    return handled


def test_the_event_is_a_cloudevent_the_sdk_parses_with_the_summary_as_data(make_services: Any) -> None:
    services = make_services()
    record = _new_run(services)
    record = _advance(services, record.id, RunState.VALIDATING)

    messages = services.queue(services.settings.events_queue).receive_messages(max_messages=5)
    bodies = [m.content for m in messages]
    assert len(bodies) == 1
    event = JSONFormat().read(None, bodies[0])  # the SDK's own reader: structured JSON mode
    assert event.get_specversion() == "1.0" and event.get_type() == EVENT_TYPE
    assert event.get_source() == "/aoai-finetune-autopilot"
    assert event.get_subject() == record.id
    assert event.get_id() == f"{record.id}:2:validating"
    assert event.get_extension("previousstate") == "received"
    assert event.get_time() == record.history[-1].at
    assert event.get_data() == run_summary(record).model_dump(mode="json")
    # the same change built again is the same event, byte for byte (receivers dedupe by id)
    assert to_json(run_event(record, RunState.RECEIVED, source="/aoai-finetune-autopilot")).decode() == bodies[0]


def test_a_receiver_verifies_the_signature_and_rejects_a_tampered_body_or_an_old_timestamp(
    make_services: Any, receiver: Receiver
) -> None:
    services = make_services(NOTIFY_WEBHOOK_URL=receiver.url, NOTIFY_WEBHOOK_SECRET=SECRET)
    record = _new_run(services)
    _advance(services, record.id, RunState.VALIDATING, RunState.REJECTED)
    assert _drain(services, until=lambda: len(receiver.received) == 2) == 2
    assert receiver.rejected == []

    first = next(r for r in receiver.received if r["headers"]["webhook-id"].endswith(":validating"))
    headers, body = first["headers"], first["body"]
    assert headers["content-type"].startswith("application/cloudevents+json")
    assert headers["webhook-id"] == f"{record.id}:2:validating"
    assert headers["webhook-signature"].startswith("v1,")
    event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())  # the SDK's HTTP binding, structured mode
    assert event.get_id() == headers["webhook-id"] and event.get_subject() == record.id
    assert sorted(json.loads(r["body"])["data"]["state"] for r in receiver.received) == ["rejected", "validating"]

    verifier = Webhook(SECRET)
    assert verifier.verify(body, headers)["id"] == headers["webhook-id"]
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(body.replace(b'"validating"', b'"deployed"'), headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(body, {**headers, "webhook-id": f"{record.id}:3:rejected"})
    old = datetime.now(UTC) - timedelta(minutes=10)
    replayed = {
        **headers,
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": verifier.sign(headers["webhook-id"], old, body.decode()),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(body, replayed)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook("whsec_" + base64.b64encode(b"another secret, another sender!!").decode()).verify(body, headers)


def test_a_failing_receiver_gets_retries_with_back_off_then_the_poison_queue_while_the_run_moves_on(
    make_services: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 503
    services = make_services(
        NOTIFY_WEBHOOK_URL=receiver.url,
        NOTIFY_WEBHOOK_SECRET=SECRET,
        WEBHOOK_MAX_ATTEMPTS="3",
        WEBHOOK_RETRY_BASE_SECONDS="1",
    )
    record = _new_run(services)
    # The run moves on: every state change is recorded although no delivery has succeeded (none was tried yet).
    record = _advance(services, record.id, RunState.VALIDATING, RunState.IMPORTING, RunState.TRAINING)
    assert services.store.get(record.id).state == RunState.TRAINING
    outbox = services.queue(services.settings.webhook_outbox_queue)
    assert outbox.get_queue_properties().approximate_message_count == 3

    poison = services.queue(services.settings.webhook_outbox_queue + "-poison")
    handled = _drain(services, until=lambda: len(poison.peek_messages(max_messages=32)) == 3)
    assert handled == 9  # 3 events x 3 attempts
    assert len(receiver.received) == 9  # every attempt reached the receiver, signed and verified
    ids = [r["headers"]["webhook-id"] for r in receiver.received]
    assert sorted(set(ids)) == sorted(f"{record.id}:{n}:{s}" for n, s in ((2, "validating"), (3, "importing"),
                                                                            (4, "training")))
    assert all(ids.count(i) == 3 for i in set(ids))  # the same id on every redelivery
    parked = [json.loads(m.content) for m in poison.peek_messages(max_messages=32)]
    assert {p["attempt"] for p in parked} == {3}
    assert all(p["last_error"] == "the receiver answered 503" for p in parked)
    assert {from_json(p["event"]).get_id() for p in parked} == set(ids)
    assert outbox.get_queue_properties().approximate_message_count == 0
    assert [backoff_seconds(n, base=5, cap=60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert "next attempt in 1 s" in caplog.text and "next attempt in 2 s" in caplog.text and "parked on" in caplog.text
    assert "secret-in-the-url" not in caplog.text and "/hooks/runs" not in caplog.text


def test_a_receiver_that_recovers_gets_the_event_once_more_with_the_same_id(
    make_services: Any, receiver: Receiver
) -> None:
    receiver.status = 500
    services = make_services(NOTIFY_WEBHOOK_URL=receiver.url, NOTIFY_WEBHOOK_SECRET=SECRET,
                             WEBHOOK_RETRY_BASE_SECONDS="1")
    record = _new_run(services)
    _advance(services, record.id, RunState.VALIDATING)

    def recover_after_first() -> bool:
        if receiver.received:
            receiver.status = 200
        return len(receiver.received) == 2

    _drain(services, until=recover_after_first)
    first, second = receiver.received
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == f"{record.id}:2:validating"
    assert first["body"] == second["body"]


def test_a_webhook_url_without_a_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="NOTIFY_WEBHOOK_SECRET"):
        settings_from_env({"NOTIFY_WEBHOOK_URL": "https://example.invalid/hook"})
    with pytest.raises(ValueError, match="not whsec_"):
        settings_from_env({"NOTIFY_WEBHOOK_URL": "https://example.invalid/hook", "NOTIFY_WEBHOOK_SECRET": "x!"})


def test_an_unreachable_queue_never_fails_the_state_change(
    make_services: Any, azurite: Any, caplog: pytest.LogCaptureFixture
) -> None:
    services = make_services(EVENTS_QUEUE="Invalid_Queue_Name")  # Azurite refuses the name: send fails
    record = _new_run(services)
    record = _advance(services, record.id, RunState.VALIDATING)
    assert services.store.get(record.id).state == RunState.VALIDATING
    assert "could not queue the state-change event" in caplog.text


@dataclass
class TopicStub:
    """An HTTP endpoint standing in for an Event Grid custom topic: records what the SDK publishes."""

    status: int = 200
    posts: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def topic() -> Iterator[tuple[TopicStub, str]]:
    stub = TopicStub()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            stub.posts.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                               "body": body})
            self.send_response(stub.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield stub, f"http://127.0.0.1:{server.server_address[1]}/api/events"
    server.shutdown()


def test_event_grid_gets_the_same_cloudevent_through_the_outbox(
    make_services: Any, topic: tuple[TopicStub, str]
) -> None:
    stub, endpoint = topic
    services = make_services(EVENT_GRID_TOPIC_ENDPOINT=endpoint, EVENT_GRID_TOPIC_KEY="topic-key",
                             WEBHOOK_RETRY_BASE_SECONDS="1")
    record = _new_run(services)
    _advance(services, record.id, RunState.VALIDATING)
    stub.status = 400  # refused once (400 is not retried by the SDK): back on the outbox, then delivered
    _drain(services, until=lambda: len(stub.posts) >= 1)
    stub.status = 200
    _drain(services, until=lambda: len(stub.posts) == 2)
    first, second = stub.posts
    assert first["body"] == second["body"]
    post = second
    assert post["path"].startswith("/api/events") and post["headers"]["aeg-sas-key"] == "topic-key"
    assert post["headers"]["content-type"].startswith("application/cloudevents-batch+json")
    (published,) = json.loads(post["body"])
    assert published["id"] == f"{record.id}:2:validating" and published["type"] == EVENT_TYPE
    assert published["subject"] == record.id and published["data"]["state"] == "validating"
    assert published["previousstate"] == "received" and published["specversion"] == "1.0"
