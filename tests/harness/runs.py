"""Waiting for a run on a running stack (devstack.Stack: devhost processes, Azurite, the emulator).

The devhost's timer and queues run in real time; the emulator's jobs and deployments do not have to: with
``emulator_url`` the emulator's clock is moved on between polls, so a run ends as soon as the app has done its
part, however slow the machine.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shared.runs import RunRecord
from shared.services import Services
from tests.harness.waiting import wait_for


def wait_for_run(
    services: Services,
    run_id: str,
    *,
    emulator_url: str | None,
    until: Callable[[RunRecord], bool] | None = None,
    timeout: float = 120,
    advance_seconds: float = 3,
) -> RunRecord:
    """The run's record once it is terminal (or once ``until`` holds)."""

    def reached() -> RunRecord | None:
        found = services.store.load(run_id)
        record = found[0] if found else None
        done = record is not None and (until(record) if until is not None else record.terminal)
        return record if done else None

    def clock() -> None:
        httpx.post(f"{emulator_url}/_emulator/clock", json={"advance_seconds": advance_seconds}, timeout=10)

    what = f"run {run_id} to {'get where the test needs it' if until else 'end'}"
    record: RunRecord = wait_for(reached, what, timeout, 0.5, between=clock if emulator_url else None)
    return record
