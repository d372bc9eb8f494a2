"""Timer trigger: NCRONTAB schedules (UTC), runOnStartup, past-due via a status blob, one runner across hosts.

As with the host:
- The schedule runs on one devhost at a time: the holder of a lease on
  ``azure-webjobs-hosts/locks/<hostId>/Host.Functions.<name>.Listener``. Other devhosts keep trying to take it.
- With ``useMonitor`` (default: on when occurrences are at least a minute apart) the last and next
  occurrences are kept in ``azure-webjobs-hosts/timers/<hostId>/Host.Functions.<name>/status``; a devhost that
  starts after a recorded ``Next`` has passed runs the function at once with ``past_due=True``.
- ``run_on_startup`` runs it when the schedule starts (when this devhost takes the lock).
- A failed run is logged and not retried; invocations of one timer function never overlap.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.functions.timer import TimerRequest

from devhost.config import resolve_expressions
from devhost.functions import FunctionSpec
from devhost.leases import HOSTS_CONTAINER, HeldLease, ensure_blob, ensure_container
from devhost.ncrontab import Schedule
from devhost.runtime import Runtime

log = logging.getLogger("devhost")

LOCK_SECONDS = 15
RETRY_LOCK_EVERY = 2.0


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class TimerTriggerListener:
    def __init__(self, spec: FunctionSpec, rt: Runtime) -> None:
        self.spec = spec
        self.rt = rt
        self.expression = resolve_expressions(str(spec.trigger["schedule"]), rt.env,
                                              where=f"function {spec.name} schedule")
        self.schedule = Schedule(self.expression)
        self.run_on_startup = bool(spec.trigger.get("runOnStartup"))
        use_monitor = spec.trigger.get("useMonitor")
        self.use_monitor = (
            bool(use_monitor) if use_monitor is not None
            else self.schedule.shortest_interval(datetime.now(UTC)) >= timedelta(minutes=1)
        )
        hosts = rt.host_storage().blob_service_client().get_container_client(HOSTS_CONTAINER)
        self.hosts = hosts
        self.lock_blob = hosts.get_blob_client(f"locks/{rt.host_id}/{spec.function_id}.Listener")
        self.status_blob = hosts.get_blob_client(f"timers/{rt.host_id}/{spec.function_id}/status")
        self.thread = threading.Thread(target=self.run, name=f"timer-{spec.name}", daemon=True)

    def describe(self) -> str:
        return f"{self.spec.name} <- timer '{self.expression}' (UTC)"

    def start(self) -> None:
        ensure_container(self.hosts)
        ensure_blob(self.lock_blob)
        self.thread.start()

    def run(self) -> None:
        while not self.rt.stop.is_set():
            held = None
            try:
                held = HeldLease.try_acquire(self.lock_blob, LOCK_SECONDS)
            except Exception:  # noqa: BLE001 - storage hiccups must not end the listener
                log.exception("timer %s: taking the singleton lock failed; retrying", self.spec.name)
            if held is None:
                self.rt.stop.wait(RETRY_LOCK_EVERY)
                continue
            log.info("timer %s: this devhost holds the schedule lock", self.spec.name)
            with held:
                try:
                    self._run_schedule(held)
                except Exception:  # noqa: BLE001
                    log.exception("timer %s: schedule loop failed; restarting it", self.spec.name)
                    self.rt.stop.wait(RETRY_LOCK_EVERY)
            if not self.rt.stop.is_set():
                log.warning("timer %s: schedule lock lost; trying to take it again", self.spec.name)

    # ---------------------------------------------------------------- status blob
    def read_status(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.status_blob.download_blob().readall() or b"null") or {}) or None
        except ResourceNotFoundError:
            return None
        except ValueError:
            return None

    def write_status(self, last: datetime | None, next_: datetime) -> dict[str, str]:
        status = {"Last": _iso(last) if last else _iso(datetime.min.replace(tzinfo=UTC)),
                  "Next": _iso(next_), "LastUpdated": _iso(datetime.now(UTC))}
        if self.use_monitor:
            self.status_blob.upload_blob(json.dumps(status).encode(), overwrite=True)
        return status

    # ---------------------------------------------------------------- loop
    def _run_schedule(self, held: HeldLease) -> None:
        now = datetime.now(UTC)
        status = self.read_status() if self.use_monitor else None
        last = _parse(status["Last"]) if status and status.get("Last") else None
        if status is None or "Next" not in status:
            status = self.write_status(None, self.schedule.next_after(now))
        if self.use_monitor and _parse(status["Next"]) < now:
            log.info("timer %s: past due (scheduled %s)", self.spec.name, status["Next"])
            self.fire(past_due=True, status=status, occurrence=_parse(status["Next"]))
            last = _parse(status["Next"])
        elif self.run_on_startup:
            self.fire(past_due=False, status=status, occurrence=now, startup=True)
        next_due = self.schedule.next_after(datetime.now(UTC))
        status = self.write_status(last, next_due)
        while not self.rt.stop.is_set() and not held.lost.is_set():
            delay = (next_due - datetime.now(UTC)).total_seconds()
            if delay > 0:
                self.rt.stop.wait(min(delay, 1.0))
                continue
            occurrence = next_due
            next_due = self.schedule.next_after(max(datetime.now(UTC), occurrence))
            status = {"Last": _iso(occurrence), "Next": _iso(next_due), "LastUpdated": _iso(datetime.now(UTC))}
            self.fire(past_due=False, status=status, occurrence=occurrence)
            # written after the run: a devhost that dies mid-run finds it past due on restart (at-least-once)
            self.write_status(occurrence, next_due)

    def fire(self, *, past_due: bool, status: dict[str, Any], occurrence: datetime, startup: bool = False) -> None:
        request = TimerRequest(past_due=past_due, schedule_status=dict(status), schedule={"AdjustForDST": True})
        why = "startup" if startup else ("past due" if past_due else "scheduled")
        self.rt.invoke(self.spec, request, f"timer {why} {_iso(occurrence)} past_due={past_due}")
