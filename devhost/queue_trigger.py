"""Queue trigger with the host's semantics: at-least-once, visibility lock, retries, ``<queue>-poison``.

- The queue is created if missing. Up to ``batchSize`` messages run at once per function and devhost.
- A received message stays invisible while its handler runs (the visibility is renewed in the background),
  so other devhosts cannot take it. Success deletes it; failure makes it visible again after host.json's
  ``visibilityTimeout``; a failure at ``dequeueCount >= maxDequeueCount`` (5) copies it, unchanged, to
  ``<queue>-poison`` and deletes it.
- ``messageEncoding`` base64 (default) or none, from host.json; a message that is not valid base64 fails
  like any other failure and so ends in the poison queue.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from devhost.config import resolve_expressions
from devhost.functions import FunctionSpec
from devhost.runtime import Runtime

log = logging.getLogger("devhost")

LOCK_SECONDS = 30  # how long a running message stays invisible between renewals; DEVHOST_QUEUE_LOCK_SECONDS


class _KeepInvisible:
    """Renews a message's invisibility until stopped; tracks the latest pop receipt."""

    def __init__(self, queue: QueueClient, message: QueueMessage, seconds: int) -> None:
        self.queue = queue
        self.message_id = message.id
        self.pop_receipt = str(message.pop_receipt)
        self.seconds = seconds
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"renew-{message.id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with self.lock:
                if self._stop.is_set():
                    return
                try:
                    updated = self.queue.update_message(self.message_id, self.pop_receipt,
                                                        visibility_timeout=self.seconds)
                    self.pop_receipt = str(updated.pop_receipt)
                except Exception as exc:  # noqa: BLE001 - the message may run again elsewhere: at-least-once
                    log.warning("could not renew message %s visibility: %s", self.message_id, exc)
                    return

    def stop(self) -> str:
        self._stop.set()
        with self.lock:
            receipt = self.pop_receipt
        self._thread.join(timeout=5)
        return receipt


class QueueTriggerListener:
    def __init__(self, spec: FunctionSpec, rt: Runtime) -> None:
        self.spec = spec
        self.rt = rt
        self.queue_name = resolve_expressions(str(spec.trigger["queueName"]), rt.env,
                                              where=f"function {spec.name} queueName").lower()
        conn = rt.connection(spec.trigger.get("connection"))
        # Raw text on the wire: devhost decodes base64 itself and copies poison messages unchanged.
        self.queue = conn.queue_client(self.queue_name, message_encoding="none")
        self.poison_queue = conn.queue_client(f"{self.queue_name}-poison", message_encoding="none")
        self.batch = rt.host.batch_size
        self.lock_seconds = max(2, int(rt.env.get("DEVHOST_QUEUE_LOCK_SECONDS") or LOCK_SECONDS))
        self.pool = ThreadPoolExecutor(max_workers=self.batch, thread_name_prefix=f"queue-{spec.name}")
        self.slots = threading.Semaphore(self.batch)
        self.inflight = 0
        self._count_lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name=f"queue-{spec.name}", daemon=True)

    def describe(self) -> str:
        return f"{self.spec.name} <- queue {self.queue_name}"

    def start(self) -> None:
        try:
            self.queue.create_queue()
        except ResourceExistsError:
            pass
        self.thread.start()

    def run(self) -> None:
        interval = min(self.rt.poll_interval, self.rt.host.max_polling_interval)
        while not self.rt.stop.is_set():
            with self._count_lock:
                free = self.batch - self.inflight
            if free <= 0:
                self.rt.stop.wait(0.05)
                continue
            try:
                messages = list(self.queue.receive_messages(messages_per_page=free, max_messages=free,
                                                            visibility_timeout=self.lock_seconds))
            except Exception:  # noqa: BLE001 - storage hiccups must not end the listener
                log.exception("receiving from queue %s failed; retrying", self.queue_name)
                messages = []
            for message in messages:
                with self._count_lock:
                    self.inflight += 1
                self.pool.submit(self._handle_safely, message)
            if not messages:
                self.rt.stop.wait(interval)

    def shutdown(self, wait: bool) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)

    def _handle_safely(self, message: QueueMessage) -> None:
        try:
            self.handle(message)
        except Exception:  # noqa: BLE001 - the message becomes visible again when its lock runs out
            log.exception("handling message %s from %s failed outside the function", message.id, self.queue_name)
        finally:
            with self._count_lock:
                self.inflight -= 1

    def decode(self, content: Any) -> bytes:
        text = content if isinstance(content, str) else bytes(content).decode("utf-8")
        if self.rt.host.message_encoding == "base64":
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(
                    "message is not valid base64 (host.json messageEncoding is base64: send base64, or set "
                    '"messageEncoding": "none")'
                ) from exc
        return text.encode("utf-8")

    def build_argument(self, message: QueueMessage, body: bytes) -> Any:
        annotation = self.spec.annotation(self.spec.trigger_param)
        if annotation is bytes:
            return body
        if annotation is str:
            return body.decode("utf-8")
        return FuncQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    def handle(self, message: QueueMessage) -> None:
        keeper = _KeepInvisible(self.queue, message, self.lock_seconds)
        detail = f"queue {self.queue_name} id={message.id} dequeue_count={message.dequeue_count}"
        try:
            value = self.build_argument(message, self.decode(message.content))
        except (ValueError, UnicodeDecodeError) as exc:
            log.error("invocation %s (%s) failed: %s", self.spec.name, detail, exc)
            ok = False
        else:
            ok = self.rt.invoke(self.spec, value, detail).ok
        pop_receipt = keeper.stop()
        if ok:
            self.queue.delete_message(message.id, pop_receipt)
            return
        count = message.dequeue_count or 0
        if count >= self.rt.host.max_dequeue_count:
            try:
                self.poison_queue.create_queue()
            except ResourceExistsError:
                pass
            self.poison_queue.send_message(message.content)
            self.queue.delete_message(message.id, pop_receipt)
            log.error("message %s failed %d times in %s: moved to queue %s-poison", message.id, count,
                      self.spec.name, self.queue_name)
        else:
            self.queue.update_message(message.id, pop_receipt,
                                      visibility_timeout=int(self.rt.host.visibility_timeout))
