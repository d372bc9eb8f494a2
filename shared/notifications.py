"""Tell other systems about runs: CloudEvents 1.0 on every state change, signed webhooks through an outbox.

Every state change of a run becomes one CloudEvent (structured JSON mode, built and serialised by the
`cloudevents` SDK)::

    {"specversion": "1.0", "type": "com.aoai-finetune-autopilot.run.state_changed",
     "source": "/aoai-finetune-autopilot/fine-tuning-runs", "id": "<run>:<transition #>:<state>",
     "time": "<when the state changed>", "subject": "<run id>", "previousstate": "training",
     "datacontenttype": "application/json", "data": {<the run summary, shared/summary.py>}}

The id and the time come from the record's history, so an event built twice for the same change is the same
event, byte for byte: receivers drop repeats by `id`.

Where it goes (each optional):

- `EVENTS_QUEUE`: the CloudEvent JSON as the message, sent while the state change is recorded.
- `NOTIFY_WEBHOOK_URL`: an *outbox* message on `WEBHOOK_OUTBOX_QUEUE`. The state change only waits for that
  enqueue; the `deliver_webhooks` queue trigger POSTs it, signed the Standard Webhooks way (`webhook-id` = the
  CloudEvent id, the same on every redelivery; `webhook-timestamp`; `webhook-signature` = `v1,` + base64
  HMAC-SHA256 of `id.timestamp.body` with `NOTIFY_WEBHOOK_SECRET`, by the `standardwebhooks` library). A
  failed POST is re-queued with exponential back-off (`WEBHOOK_RETRY_BASE_SECONDS` doubling up to
  `WEBHOOK_RETRY_MAX_SECONDS`) until `WEBHOOK_MAX_ATTEMPTS`, then parked on `<outbox>-poison` with the reason.
- `EVENT_GRID_TOPIC_ENDPOINT`: the same CloudEvent published to an Event Grid custom topic (CloudEvents
  schema), through the same outbox, with the topic key or the app's managed identity.

Nothing here ever fails a state change: a notification that cannot even be queued is logged, no more.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, SecretStr
from standardwebhooks.webhooks import Webhook

from shared.connections import StorageConnection
from shared.runs import RunRecord, RunState
from shared.settings import Settings
from shared.summary import run_summary
from shared.telemetry import state_changed

log = logging.getLogger(__name__)

EVENT_TYPE = "com.aoai-finetune-autopilot.run.state_changed"
CONTENT_TYPE = JSONFormat.CONTENT_TYPE  # application/cloudevents+json
_FORMAT = JSONFormat()

Target = Literal["webhook", "eventgrid"]


def run_event(
    record: RunRecord, previous: RunState | None, *, source: str, price_per_million_tokens: float | None = None
) -> CloudEvent:
    """The CloudEvent for the record's latest state change (deterministic: same change, same event)."""
    changed_at = record.history[-1].at if record.history else record.updated_at
    attributes: dict[str, Any] = {
        "type": EVENT_TYPE,
        "source": source,
        "id": f"{record.id}:{len(record.history)}:{record.state.value}",
        "time": changed_at,
        "subject": record.id,
        "datacontenttype": "application/json",
    }
    if previous is not None:
        attributes["previousstate"] = previous.value
    data = run_summary(record, price_per_million_tokens=price_per_million_tokens).model_dump(mode="json")
    return CloudEvent(attributes, data)


def to_json(event: CloudEvent) -> bytes:
    """Structured-mode JSON (`application/cloudevents+json`)."""
    return _FORMAT.write(event)


def from_json(body: bytes | str) -> CloudEvent:
    event = _FORMAT.read(None, body)
    if not isinstance(event, CloudEvent):
        raise ValueError(f"not a CloudEvents 1.0 event (specversion {event.get_specversion()!r})")
    return event


class OutboxMessage(BaseModel):
    """One pending delivery on the outbox queue."""

    target: Target
    event: str
    """The CloudEvent, structured JSON, exactly the bytes that are signed and POSTed."""
    attempt: int = 1
    first_queued_at: datetime
    last_error: str | None = None


@dataclass(frozen=True)
class Delivery:
    """What one delivery attempt did (returned for logs and tests)."""

    outcome: Literal["delivered", "retry", "poisoned"]
    attempt: int
    error: str | None = None
    retry_in_seconds: int | None = None


class DeliveryError(RuntimeError):
    """The receiver did not take the event (a status other than 2xx, or no answer)."""


def backoff_seconds(attempt: int, *, base: float, cap: float) -> int:
    """Delay before attempt `attempt + 1`: base, 2 x base, 4 x base, ... capped (whole seconds, at least 1)."""
    return max(1, math.ceil(min(cap, base * 2.0 ** (attempt - 1))))


class Notifier:
    """Builds the CloudEvent of each state change and hands it to the events queue and the outbox (one outbox
    message per configured target). Queues are created on first use."""

    def __init__(
        self,
        *,
        source: str,
        events_queue: QueueClient | None = None,
        outbox: QueueClient | None = None,
        targets: tuple[Target, ...] = (),
        price_per_million_tokens: float | None = None,
    ) -> None:
        self.source = source
        self._events_queue = events_queue
        self._outbox = outbox
        self.targets = targets if outbox is not None else ()
        self._price = price_per_million_tokens

    @property
    def enabled(self) -> bool:
        return self._events_queue is not None or bool(self.targets)

    def run_changed(self, record: RunRecord, previous: RunState | None) -> bool:
        """Queue the event of the record's latest state change. False when a queue write failed: the run keeps
        the change as unannounced (`events_published`) and the timer relays it (shared/advance.py)."""
        state_changed(record.state.value)
        if not self.enabled:
            return True
        event = run_event(record, previous, source=self.source, price_per_million_tokens=self._price)
        body = to_json(event).decode()
        queued = True
        if self._events_queue is not None:
            try:
                _send(self._events_queue, body)
            except Exception:  # noqa: BLE001 - the state change is already recorded; the timer relays the event
                log.exception("run %s: could not queue the state-change event %s", record.id, event.get_id())
                queued = False
        for target in self.targets:
            assert self._outbox is not None
            message = OutboxMessage(target=target, event=body, first_queued_at=datetime.now(UTC))
            try:
                _send(self._outbox, message.model_dump_json())
            except Exception:  # noqa: BLE001 - never block or fail a state change on a notification
                log.exception("run %s: could not queue %s delivery of event %s", record.id, target, event.get_id())
                queued = False
        return queued

    def relay(self, record: RunRecord) -> bool:
        """Queue the events of every state change of `record` not announced yet (same ids and times as the
        originals would have had, so a receiver that got one already deduplicates it by id)."""
        start = record.events_published
        if start is None:
            return True
        ok = True
        for index in range(max(start, 1), len(record.history)):
            at_the_time = record.model_copy(
                update={"history": record.history[: index + 1], "state": record.history[index].state}
            )
            ok = self.run_changed(at_the_time, record.history[index - 1].state) and ok
        return ok


def _send(queue: QueueClient, content: str, *, visibility_timeout: int | None = None) -> None:
    """Send, creating the queue the first time (a new deployment, a test's own queue)."""
    try:
        queue.send_message(content, visibility_timeout=visibility_timeout)
    except ResourceNotFoundError:
        try:
            queue.create_queue()
        except ResourceExistsError:
            pass
        queue.send_message(content, visibility_timeout=visibility_timeout)


# --- delivery (the outbox queue trigger) ---------------------------------------------------------------------------
class WebhookSender:
    """POSTs a CloudEvent to the webhook URL, signed with the Standard Webhooks scheme."""

    def __init__(self, url: SecretStr, secret: SecretStr, *, timeout: float = 10.0, client: httpx.Client | None = None):
        self._url = url
        self._signer = Webhook(secret.get_secret_value())
        self._client = client or httpx.Client(timeout=timeout)

    def headers(self, event_id: str, body: str, at: datetime) -> dict[str, str]:
        return {
            "content-type": f"{CONTENT_TYPE}; charset=utf-8",
            "webhook-id": event_id,
            "webhook-timestamp": str(math.floor(at.timestamp())),
            "webhook-signature": self._signer.sign(event_id, at, body),
        }

    def __call__(self, event: CloudEvent, body: str) -> None:
        headers = self.headers(event.get_id(), body, datetime.now(UTC))
        try:
            response = self._client.post(self._url.get_secret_value(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The URL may carry a token: name the error type only, never the URL.
            raise DeliveryError(f"no answer ({type(exc).__name__})") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"the receiver answered {response.status_code}")


class EventGridSender:
    """Publishes a CloudEvent to an Event Grid custom topic (CloudEvents 1.0 input schema)."""

    def __init__(self, endpoint: str, key: SecretStr | None, credential: Any = None) -> None:
        from azure.core.credentials import AzureKeyCredential
        from azure.eventgrid import EventGridPublisherClient

        auth = AzureKeyCredential(key.get_secret_value()) if key is not None else credential
        self._client = EventGridPublisherClient(endpoint, auth)

    def __call__(self, event: CloudEvent, body: str) -> None:
        from azure.core.exceptions import AzureError
        from azure.core.messaging import CloudEvent as AzureCloudEvent

        try:
            self._client.send([AzureCloudEvent.from_json(body)])
        except AzureError as exc:
            raise DeliveryError(f"Event Grid refused the event ({type(exc).__name__}: {exc.message})") from None


Sender = Callable[[CloudEvent, str], None]


@dataclass
class Outbox:
    """The outbox queue, its poison queue and the retry rule: one place for all of it."""

    queue: QueueClient
    poison: QueueClient
    senders: dict[Target, Sender]
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0

    def deliver(self, content: str) -> Delivery:
        """Deliver one outbox message; on failure re-queue it later or park it on the poison queue.

        Raises only when the outbox itself cannot be written (the host then retries the message).
        """
        message = OutboxMessage.model_validate_json(content)
        event = from_json(message.event)
        sender = self.senders.get(message.target)
        try:
            if sender is None:
                raise DeliveryError(f"{message.target} delivery is not configured any more")
            sender(event, message.event)
        except DeliveryError as exc:
            return self._failed(message, event, str(exc))
        log.info(
            "event %s delivered to the %s on attempt %d", event.get_id(), message.target, message.attempt,
            extra={"run_id": event.get_subject()},
        )
        return Delivery("delivered", message.attempt)

    def _failed(self, message: OutboxMessage, event: CloudEvent, error: str) -> Delivery:
        failed = message.model_copy(update={"last_error": error})
        run = {"run_id": event.get_subject()}
        if message.attempt >= self.max_attempts:
            _send(self.poison, failed.model_dump_json())
            log.error(
                "event %s: %s delivery gave up after %d attempts (%s); parked on %s",
                event.get_id(), message.target, message.attempt, error, self.poison.queue_name, extra=run,
            )
            return Delivery("poisoned", message.attempt, error)
        delay = backoff_seconds(message.attempt, base=self.retry_base_seconds, cap=self.retry_max_seconds)
        _send(self.queue, failed.model_copy(update={"attempt": message.attempt + 1}).model_dump_json(),
              visibility_timeout=delay)
        log.warning(
            "event %s: %s delivery attempt %d failed (%s); next attempt in %d s",
            event.get_id(), message.target, message.attempt, error, delay, extra=run,
        )
        return Delivery("retry", message.attempt, error, delay)


def build_notifications(settings: Settings, storage: StorageConnection) -> tuple[Notifier, Outbox]:
    """The notifier the run store calls on each state change, and the outbox its trigger drains."""
    events_queue = storage.queue_client(settings.events_queue) if settings.events_queue else None
    outbox_queue = storage.queue_client(settings.webhook_outbox_queue)
    senders: dict[Target, Sender] = {}
    if settings.notify_webhook_url is not None and settings.notify_webhook_secret is not None:
        senders["webhook"] = WebhookSender(
            settings.notify_webhook_url, settings.notify_webhook_secret, timeout=settings.webhook_timeout_seconds
        )
    if settings.event_grid_topic_endpoint:
        senders["eventgrid"] = _LazyEventGrid(settings)
    notifier = Notifier(
        source=settings.events_source,
        events_queue=events_queue,
        outbox=outbox_queue,
        targets=tuple(senders),
        price_per_million_tokens=settings.price_per_million_training_tokens,
    )
    outbox = Outbox(
        queue=outbox_queue,
        poison=storage.queue_client(settings.webhook_outbox_queue + "-poison"),
        senders=senders,
        max_attempts=settings.webhook_max_attempts,
        retry_base_seconds=settings.webhook_retry_base_seconds,
        retry_max_seconds=settings.webhook_retry_max_seconds,
    )
    return notifier, outbox


class _LazyEventGrid:
    """The Event Grid client is built on the first delivery (its import is not free)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sender: EventGridSender | None = None

    def __call__(self, event: CloudEvent, body: str) -> None:
        if self._sender is None:
            key = self._settings.event_grid_topic_key
            credential = None
            if key is None:  # the app's managed identity (user-assigned when AZURE_CLIENT_ID is set)
                from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

                client_id = self._settings.azure_client_id
                credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
            self._sender = EventGridSender(self._settings.event_grid_topic_endpoint, key, credential)
        self._sender(event, body)
