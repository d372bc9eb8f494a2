"""Tell other systems about runs: a webhook POST and/or a queue message on every state change.

The event is small and stable (schema in the README): what changed, the run's id and state, its error,
the validation summary, the job, the deployment. Delivery is best-effort and at-least-once: receivers use
`event_id` (run id + state) to drop repeats. A failed notification is logged and never fails the pipeline.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from azure.storage.queue import QueueClient
from pydantic import SecretStr

from shared.runs import RunRecord, RunState, utcnow

log = logging.getLogger(__name__)


def run_event(record: RunRecord, previous: RunState | None) -> dict[str, Any]:
    return {
        "event_id": f"{record.id}:{len(record.history)}:{record.state.value}",
        "type": "run.state_changed",
        "at": utcnow().isoformat(),
        "run_id": record.id,
        "state": record.state.value,
        "previous_state": previous.value if previous else None,
        "source": {"container": record.source.container, "blob_name": record.source.blob_name},
        "error": record.error.model_dump() if record.error else None,
        "validation": record.validation.model_dump() if record.validation else None,
        "job": {
            "id": record.job.id,
            "status": record.job.status,
            "fine_tuned_model": record.job.fine_tuned_model,
            "trained_tokens": record.job.trained_tokens,
        },
        "deployment": {"name": record.deployment.name, "model": record.deployment.model},
        "metrics": record.metrics,
    }


class Notifier:
    def __init__(self, webhook_url: SecretStr | None, queue: QueueClient | None, timeout: float = 5.0) -> None:
        self._url = webhook_url
        self._queue = queue
        self._timeout = timeout

    def run_changed(self, record: RunRecord, previous: RunState | None) -> None:
        if self._url is None and self._queue is None:
            return
        event = run_event(record, previous)
        body = json.dumps(event, default=str)
        if self._queue is not None:
            try:
                self._queue.send_message(body)
            except Exception:  # noqa: BLE001 - best effort by design
                log.exception("run %s: could not queue the state-change event", record.id)
        if self._url is not None:
            try:
                response = httpx.post(
                    self._url.get_secret_value(),
                    content=body,
                    headers={"content-type": "application/json", "x-event-id": event["event_id"]},
                    timeout=self._timeout,
                )
                if response.status_code >= 300:
                    log.warning("run %s: webhook answered %s", record.id, response.status_code)
            except httpx.HTTPError as exc:
                # The URL may carry a token: name only the error type.
                log.warning("run %s: webhook failed (%s)", record.id, type(exc).__name__)
