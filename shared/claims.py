"""Exactly-once creates over at-least-once delivery: claim, send, record; reconcile a lost answer.

A create (file import, job create) is an effect the service cannot deduplicate. Before sending one, an
instance writes a *claim* into the run record with a conditional write; only the instance whose write wins
sends the POST, and it records the answer right after. If that instance dies between the POST and the
record write, the claim goes stale (older than `timeout`); the next instance takes it over and must first
*reconcile*: look the object up by what identifies it (a file's name, a job's training file) and send
again only if it is not there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum

from shared.runs import Claim, RunRecord, utcnow
from shared.runstore import RunStore


class ClaimOutcome(StrEnum):
    DONE = "done"
    """The effect is already recorded: nothing to do."""
    HELD = "held"
    """Another instance holds a fresh claim: leave it alone."""
    WON = "won"
    """This instance holds the claim and no earlier claim existed."""
    TAKEN_OVER = "taken_over"
    """This instance took over a stale claim: reconcile before sending."""
    GONE = "gone"
    """The run moved on (or ended): the effect is no longer wanted."""


def claim(
    store: RunStore,
    run_id: str,
    key: str,
    *,
    by: str,
    timeout: float,
    wanted: Callable[[RunRecord], bool],
    done: Callable[[RunRecord], bool],
) -> ClaimOutcome:
    """Try to claim the create `key` of a run (kept in `record.claims[key]` until its answer is recorded)."""
    outcome = ClaimOutcome.GONE

    def mutate(record: RunRecord) -> bool:
        nonlocal outcome
        if not wanted(record):
            outcome = ClaimOutcome.GONE
            return False
        if done(record):
            outcome = ClaimOutcome.DONE
            return False
        current = record.claims.get(key)
        now = utcnow()
        if current is not None and now - current.at < timedelta(seconds=timeout):
            outcome = ClaimOutcome.HELD
            return False
        outcome = ClaimOutcome.WON if current is None else ClaimOutcome.TAKEN_OVER
        record.claims[key] = Claim(at=now, by=by)
        return True

    store.update(run_id, mutate)
    return outcome
