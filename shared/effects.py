"""Effects the service cannot deduplicate (file import, job create, deployment PUT), sent exactly once.

Every such effect runs under a *lease* kept in the run record (`record.leases[key]`), written only with
the record's ETag:

1. **Acquire.** A conditional write sets `holder` (this call's own token), `expires_at` = now + the lease
   time, and `generation` + 1. Whoever loses the write re-reads and finds the lease held: it leaves the effect
   alone (`HELD`). An effect already recorded is `DONE`; one the run no longer wants is `GONE`.
2. **Renew.** While the request is in flight a background thread extends `expires_at` every third of the
   lease time, each time checking that holder and generation are still its own. A request slower than the
   lease therefore keeps it; a holder that dies stops renewing and loses it one lease time later. Renewal
   stops after `max_hold` (the client's own worst case for the call, derived from its timeouts and retries).
3. **Reconcile.** A holder that takes a lease whose previous holder never released it, or that was released
   after an *ambiguous* failure (the service may have acted), first looks for the object by what the run
   derived for it (a file's run-derived name, a job's training file id) and sends nothing if it is there.
4. **Commit.** The answer is recorded in the same conditional write that frees the lease, and only if
   holder and generation are still this call's (the *fencing token*). A late answer of a fenced-off holder,
   a second copy found while reconciling, or an object created for a run that ended meanwhile is never
   recorded as the result: it goes to `record.surplus`, which the timer deletes or cancels and records.

So nothing the service creates is ever left untracked, and at most one object per effect is the run's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Generic, Literal, TypeVar

from shared.runs import Lease, RunRecord, SurplusObject, utcnow
from shared.runstore import RunStore

log = logging.getLogger(__name__)

T = TypeVar("T")


class EffectOutcome(StrEnum):
    DONE = "done"
    """The result is already recorded: nothing was sent."""
    HELD = "held"
    """Another holder's lease is live: nothing was sent."""
    GONE = "gone"
    """The run no longer wants the effect (it moved on, or ended): nothing was sent."""
    CREATED = "created"
    """This call sent the create and recorded its answer."""
    RECONCILED = "reconciled"
    """The object already existed (a lost answer): found, recorded, nothing sent."""
    FENCED = "fenced"
    """This call's lease was taken over before its answer came: the answer went to the run's surplus list."""


@dataclass(frozen=True)
class Effect(Generic[T]):
    """One effect of one run: how to tell it is wanted or done, find it, create it, and record it."""

    key: str
    kind: Literal["file", "job", "deployment", "eval", "eval_run"]
    wanted: Callable[[RunRecord], bool]
    recorded: Callable[[RunRecord], str | None]
    """The id of the recorded result (None: not done yet)."""
    find: Callable[[RunRecord], list[T]]
    """Objects that already exist for this effect, the one to keep first (used when reconciling)."""
    create: Callable[[RunRecord], T]
    record: Callable[[RunRecord, T], None]
    """Write the result into the record (the same write that frees the lease)."""
    ident: Callable[[T], str]
    on_ended: bool = False
    """The effect acts on an ended run (a retention deletion): its lease and result are written onto the ended
    record, and the run having ended does not make the answer surplus."""
    creates: bool = True
    """False for a deletion: a fenced-off holder's answer is nothing to delete again (never surplus)."""


@dataclass
class EffectResult(Generic[T]):
    outcome: EffectOutcome
    record: RunRecord
    result: T | None = None


@dataclass
class Held:
    """What `EffectRunner.hold` got: the lease (`acquired`), or how long until the current holder's expires."""

    acquired: bool
    record: RunRecord
    retry_after: float = 0.0


class EffectRunner:
    def __init__(self, store: RunStore, instance: str, *, lease_seconds: float) -> None:
        self.store = store
        self.instance = instance
        self.lease_seconds = lease_seconds

    @contextmanager
    def hold(
        self, run_id: str, key: str, *, wanted: Callable[[RunRecord], bool], max_hold: float
    ) -> Iterator[Held]:
        """Hold the lease `key` for a whole procedure (the deploy queue's measure/gate/deploy), renewed
        while it runs and released after. When another holder has it, yields `acquired=False` with the time
        its lease has left, so the caller can come back then instead of spending a queue retry."""
        token = f"{self.instance}#{uuid.uuid4().hex[:8]}"
        generation = 0
        retry_after = 0.0

        def mutate(r: RunRecord) -> bool:
            nonlocal generation, retry_after
            now = utcnow()
            generation = 0
            if not wanted(r):
                return False
            lease = r.leases.get(key) or Lease()
            if lease.held(now) and lease.expires_at is not None:
                retry_after = (lease.expires_at - now).total_seconds()
                return False
            generation = lease.generation + 1
            r.leases[key] = Lease(
                generation=generation, holder=token, expires_at=now + timedelta(seconds=self.lease_seconds)
            )
            return True

        record, _ = self.store.update(run_id, mutate)
        if not generation:
            yield Held(False, record, retry_after)
            return
        renewer = _Renewer(self, run_id, key, token, generation, max_hold)
        renewer.start()
        try:
            yield Held(True, record)
        finally:
            renewer.stop()
            self._release(run_id, key, token, generation, reconcile=False)

    def run(self, run_id: str, effect: Effect[T], *, max_hold: float) -> EffectResult[T]:
        """Send `effect` at most once for the run (see the module docstring). Errors of `create` propagate;
        an ambiguous one (`exc.ambiguous`) leaves the lease marked so the next holder reconciles first."""
        token = f"{self.instance}#{uuid.uuid4().hex[:8]}"
        acquired = self._acquire(run_id, effect, token)
        if isinstance(acquired, EffectResult):
            return acquired
        record, generation, must_reconcile = acquired
        renewer = _Renewer(self, run_id, effect.key, token, generation, max_hold, on_ended=effect.on_ended)
        renewer.start()
        found: list[T] = []
        try:
            if must_reconcile:
                found = effect.find(record)
                if found:
                    log.info("run %s: %s reconciled: %s exists", run_id, effect.key, effect.ident(found[0]))
            result = found[0] if found else effect.create(record)
        except Exception as exc:
            renewer.stop()
            self._release(run_id, effect.key, token, generation, reconcile=bool(getattr(exc, "ambiguous", False)))
            raise
        except BaseException:
            renewer.stop()  # the process is going down: the lease stays as a dead holder leaves it
            raise
        renewer.stop()
        extras = found[1:]
        outcome = EffectOutcome.RECONCILED if found else EffectOutcome.CREATED
        record, fenced = self._commit(run_id, effect, token, generation, result, extras)
        if fenced:
            outcome = EffectOutcome.FENCED
        return EffectResult(outcome, record, result)

    # -- steps ----------------------------------------------------------------------------------------
    def _acquire(
        self, run_id: str, effect: Effect[T], token: str
    ) -> EffectResult[T] | tuple[RunRecord, int, bool]:
        outcome: EffectOutcome | None = None
        generation = 0
        must_reconcile = False

        def mutate(r: RunRecord) -> bool:
            nonlocal outcome, generation, must_reconcile
            now = utcnow()
            outcome = None
            if effect.recorded(r) is not None:
                outcome = EffectOutcome.DONE
                return False
            if not effect.wanted(r):
                outcome = EffectOutcome.GONE
                return False
            lease = r.leases.get(effect.key) or Lease()
            if lease.held(now):
                outcome = EffectOutcome.HELD
                return False
            # A previous holder that never released may have sent the create: look before sending again.
            must_reconcile = lease.reconcile or lease.holder is not None
            generation = lease.generation + 1
            r.leases[effect.key] = Lease(
                generation=generation,
                holder=token,
                expires_at=now + timedelta(seconds=self.lease_seconds),
                reconcile=must_reconcile,
            )
            return True

        record, _ = self.store.update(run_id, mutate, on_ended=effect.on_ended)
        if outcome is not None:
            return EffectResult(outcome, record)
        if not generation:  # an ended run the effect may not touch
            return EffectResult(EffectOutcome.GONE, record)
        return record, generation, must_reconcile

    def renew(self, run_id: str, key: str, token: str, generation: int, *, on_ended: bool = False) -> bool:
        """Extend the lease if it is still this holder's. False when fenced off (or the run ended)."""
        still_ours = False

        def mutate(r: RunRecord) -> bool:
            nonlocal still_ours
            lease = r.leases.get(key)
            still_ours = lease is not None and lease.holder == token and lease.generation == generation
            if not still_ours or lease is None:
                return False
            lease.expires_at = utcnow() + timedelta(seconds=self.lease_seconds)
            return True

        self.store.update(run_id, mutate, on_ended=on_ended)
        return still_ours

    def _release(self, run_id: str, key: str, token: str, generation: int, *, reconcile: bool) -> None:
        def mutate(r: RunRecord) -> bool:
            lease = r.leases.get(key)
            if lease is None or lease.holder != token or lease.generation != generation:
                return False
            lease.holder = None
            lease.expires_at = None
            lease.reconcile = reconcile
            return True

        try:
            self.store.update(run_id, mutate, on_ended=True)
        except Exception:  # noqa: BLE001 - the lease then expires on its own; the next holder reconciles
            log.exception("run %s: could not release lease %s", run_id, key)

    def _commit(
        self, run_id: str, effect: Effect[T], token: str, generation: int, result: T, extras: list[T]
    ) -> tuple[RunRecord, bool]:
        fenced = False

        def mutate(r: RunRecord) -> bool:
            nonlocal fenced
            lease = r.leases.get(effect.key)
            ours = lease is not None and lease.holder == token and lease.generation == generation
            current = effect.recorded(r)
            keep = ours and current is None and effect.wanted(r) and (effect.on_ended or not r.terminal)
            fenced = not keep and current != effect.ident(result)
            if keep:
                effect.record(r, result)
                current = effect.ident(result)
            reason = (
                "found while reconciling: a second copy"
                if keep
                else ("the run ended while it was being created" if r.terminal or not effect.wanted(r)
                      else f"late answer: the lease had passed to generation {lease.generation if lease else '?'}")
            )
            known = {s.id for s in r.surplus}
            for obj in ([] if keep or not effect.creates else [result]) + extras:
                ident = effect.ident(obj)
                if ident != current and ident not in known:
                    log.warning("run %s: %s %s is surplus (%s)", run_id, effect.kind, ident, reason)
                    r.surplus.append(
                        SurplusObject(kind=effect.kind, id=ident, effect=effect.key, found_at=utcnow(), reason=reason)
                    )
            if ours and lease is not None:
                lease.holder = None
                lease.expires_at = None
                lease.reconcile = False
                lease.done = keep or current is not None
            return True

        record, _ = self.store.update(run_id, mutate, on_ended=True)
        return record, fenced


class _Renewer:
    """Renews a lease every third of the lease time while the request is in flight, for at most `max_hold`."""

    def __init__(self, runner: EffectRunner, run_id: str, key: str, token: str, generation: int, max_hold: float,
                 *, on_ended: bool = False):
        self.runner, self.run_id, self.key, self.token, self.generation = runner, run_id, key, token, generation
        self.max_hold = max_hold
        self.on_ended = on_ended
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{key}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        interval = self.runner.lease_seconds / 3
        held = 0.0
        while not self._stop.wait(interval):
            held += interval
            if held > self.max_hold:
                log.warning("run %s: %s held past its worst case (%.0f s): no longer renewed", self.run_id,
                            self.key, self.max_hold)
                return
            try:
                if not self.runner.renew(self.run_id, self.key, self.token, self.generation, on_ended=self.on_ended):
                    log.warning("run %s: lease %s was taken over: this holder is fenced off", self.run_id, self.key)
                    return
            except Exception:  # noqa: BLE001 - a failed renewal is retried at the next interval
                log.exception("run %s: renewing lease %s failed", self.run_id, self.key)
