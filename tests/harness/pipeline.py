"""The pipeline tests' helpers: chat lines, the in-process `Driver` of the real handlers, and the record
tweaks (an expired lease, an aged run). A plain module, so test modules import it (a conftest is pytest's to
load: imported as a module too, it is loaded twice and its fixtures can go missing)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack import deliver_deploy_messages
from shared.advance import tick
from shared.ingest import handle_new_blob
from shared.runs import RunRecord
from shared.services import Services


def chat_lines(n: int, *, tag: str = "", marker: str = "") -> bytes:
    topics = ["invoices", "API keys", "storage quotas", "outages", "password resets", "regions", "SLAs", "exports"]
    lines = []
    for i in range(n):
        topic = topics[i % len(topics)]
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {
                            "role": "system",
                            "content": "You are the Contoso Cloud support assistant. Be brief and exact.",
                        },
                        {
                            "role": "user",
                            "content": f"Question {i}{tag}: how do I handle {topic} for project {i}? {marker}".strip(),
                        },
                        {
                            "role": "assistant",
                            "content": f"For {topic} in project {i}, open Settings > {topic.title()} "
                            f"and follow the steps shown there.",
                        },
                    ]
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Driver:
    """Runs the app's handlers in-process, the way the host would: blob event, timer ticks, queue messages.

    Between ticks it moves the emulator's clock forward instead of sleeping, so how fast a job trains does not
    depend on how fast the machine is. A test that looks at an in-between state stops the clock first
    (`emulator.freeze_clock()`): then only the ticks move it (a deploy's wait inside its handler needs it running)."""

    services: Services
    emulator: Any
    step_seconds: float = 1.0

    def drop(self, name: str, data: bytes, metadata: Mapping[str, str] | None = None) -> str:
        blob = self.services.blobs.get_blob_client(self.services.settings.drop_container, name)
        blob.upload_blob(data, overwrite=True, metadata=dict(metadata or {}))
        return name

    def blob_event(self, name: str) -> RunRecord | None:
        blob = self.services.blobs.get_blob_client(self.services.settings.drop_container, name)
        return handle_new_blob(self.services, blob)

    def deliver_deploy_messages(self) -> int:
        """Deliver what is on the deploy queue, with the host's retry count; returns messages handled."""
        return deliver_deploy_messages(self.services, max_messages=16)

    def run(
        self,
        run_id: str,
        *,
        until: Callable[[RunRecord], bool] | None = None,
        timeout: float = 60.0,
        deploy: bool = True,
    ) -> RunRecord:
        """Tick and deliver until the run is terminal (or `until` holds)."""
        deadline = time.monotonic() + timeout
        done = until or (lambda r: r.terminal)
        while True:
            record = self.services.store.get(run_id)
            if done(record):
                return record
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {record.state.value} after {timeout} s: "
                    f"{record.model_dump_json(indent=1)[:2000]}"
                )
            tick(self.services)
            if deploy:
                self.deliver_deploy_messages()
            self.emulator.advance_clock(self.step_seconds)


def expire_lease(services: Services, run_id: str, key: str) -> None:
    """What a dead holder's lease looks like one lease time later (instead of sleeping through it)."""

    def age(r: RunRecord) -> None:
        r.leases[key].expires_at = datetime.now(UTC) - timedelta(seconds=1)

    services.store.update(run_id, age)


def age_run(services: Services, run_id: str, by: timedelta) -> None:
    """The record as it would look `by` later: every moment it holds moved back (the app's clock, driven)."""

    def shift(r: RunRecord) -> None:
        r.created_at -= by
        r.updated_at -= by
        for h in r.history:
            h.at -= by
        for name in ("queued_at", "started_at"):
            if getattr(r.deployment, name) is not None:
                setattr(r.deployment, name, getattr(r.deployment, name) - by)
        for lease in r.leases.values():
            if lease.expires_at is not None:
                lease.expires_at -= by
        if r.last_attempt is not None:
            r.last_attempt.at -= by

    services.store.update(run_id, shift, on_ended=True)  # an ended run ages too (retention's days)
