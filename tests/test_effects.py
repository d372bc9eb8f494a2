"""shared.effects on real Azurite: one create per effect, leases renewed and fenced, lost answers reconciled.

The "service" here is a counter of objects created (the runner only sees callables); the pipeline tests run
the same runner against the emulator and count its request log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.effects import Effect, EffectOutcome, EffectRunner
from shared.runs import RunRecord, RunSource, RunState, utcnow
from shared.runstore import RunStore
from tests.harness.waiting import wait_for

LEASE = 0.6


@dataclass
class Service:
    """Objects created, and a gate a test can hold a create at."""

    created: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold: Callable[[], None] = lambda: None
    fail_with: BaseException | None = None

    def create(self, r: RunRecord) -> str:
        self.hold()
        if self.fail_with is not None:
            raise self.fail_with
        with self.lock:
            ident = f"obj-{len(self.created) + 1}"
            self.created.append(ident)
        return ident


def effect(service: Service) -> Effect[str]:
    def record(r: RunRecord, ident: str) -> None:
        r.job.id = ident

    return Effect(
        key="job_create",
        kind="job",
        wanted=lambda r: r.state == RunState.RECEIVED,
        recorded=lambda r: r.job.id,
        find=lambda r: list(service.created),
        create=service.create,
        record=record,
        ident=lambda ident: ident,
    )


@pytest.fixture
def store(blob_service: BlobServiceClient, unique_name: Callable[[str], str]) -> Iterator[RunStore]:
    s = RunStore(blob_service.get_container_client(unique_name("effects")))
    s.ensure()
    yield s


@pytest.fixture
def run_id(store: RunStore) -> str:
    record = RunRecord.new("data-0123456789ab", RunSource(container="c", blob_name="data.jsonl", etag="e"))
    store.create(record)
    return record.id


def runner(store: RunStore, name: str) -> EffectRunner:
    return EffectRunner(store, name, lease_seconds=LEASE)


def expire_lease(store: RunStore, run_id: str, key: str = "job_create") -> None:
    """What a holder's death looks like a lease time later (instead of sleeping through it)."""

    def age(r: RunRecord) -> None:
        lease = r.leases[key]
        lease.expires_at = utcnow() - timedelta(seconds=1)

    store.update(run_id, age)


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    wait_for(condition, "the lease to reach the state the test needs", timeout, 0.02)


def test_many_instances_one_create(store: RunStore, run_id: str) -> None:
    service = Service()
    outcomes: list[EffectOutcome] = []
    barrier = threading.Barrier(6)

    def contend(n: int) -> None:
        barrier.wait()
        outcomes.append(runner(store, f"instance-{n}").run(run_id, effect(service), max_hold=60).outcome)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert service.created == ["obj-1"]
    assert outcomes.count(EffectOutcome.CREATED) == 1
    assert set(outcomes) <= {EffectOutcome.CREATED, EffectOutcome.HELD, EffectOutcome.DONE}
    record = store.get(run_id)
    assert record.job.id == "obj-1" and record.leases["job_create"].holder is None
    assert record.leases["job_create"].done and record.surplus == []


def test_a_create_slower_than_the_lease_keeps_it_by_renewal(store: RunStore, run_id: str) -> None:
    release = threading.Event()
    service = Service(hold=lambda: release.wait(30))
    slow = threading.Thread(target=lambda: runner(store, "slow").run(run_id, effect(service), max_hold=60))
    slow.start()
    wait_until(lambda: store.get(run_id).leases.get("job_create") is not None)
    first_expiry = store.get(run_id).leases["job_create"].expires_at
    assert first_expiry is not None
    # Well past the first expiry, the lease is still the slow holder's (renewed), so another instance waits.
    wait_until(lambda: utcnow() > first_expiry + timedelta(seconds=LEASE))
    other = runner(store, "other").run(run_id, effect(service), max_hold=60)
    assert other.outcome == EffectOutcome.HELD
    release.set()
    slow.join()
    assert service.created == ["obj-1"] and store.get(run_id).job.id == "obj-1"


def test_a_holder_killed_after_the_create_is_reconciled_not_resent(store: RunStore, run_id: str) -> None:
    service = Service()
    dead = runner(store, "dead")
    acquired = dead._acquire(run_id, effect(service), "dead#1")  # what a SIGKILL after the POST leaves behind
    assert isinstance(acquired, tuple)
    service.create(store.get(run_id))
    expire_lease(store, run_id)
    result = runner(store, "next").run(run_id, effect(service), max_hold=60)
    assert result.outcome == EffectOutcome.RECONCILED
    assert service.created == ["obj-1"] and store.get(run_id).job.id == "obj-1"


def test_a_fenced_off_holders_late_answer_goes_to_surplus(store: RunStore, run_id: str) -> None:
    release = threading.Event()
    answers: list[EffectOutcome] = []
    late = Service(hold=lambda: release.wait(30))
    # max_hold=0: this holder stops renewing at once (as a holder whose renewals cannot get through).
    stalled = threading.Thread(
        target=lambda: answers.append(runner(store, "stalled").run(run_id, effect(late), max_hold=0).outcome)
    )
    stalled.start()
    wait_until(lambda: store.get(run_id).leases.get("job_create") is not None)
    expire_lease(store, run_id)
    fresh = Service(created=late.created, lock=late.lock)  # the same service, answering at once
    taken = runner(store, "taker").run(run_id, effect(fresh), max_hold=60)
    assert taken.outcome == EffectOutcome.CREATED  # reconciled (nothing there yet), then created
    release.set()
    stalled.join()
    assert answers == [EffectOutcome.FENCED]
    record = store.get(run_id)
    assert record.job.id == "obj-1"
    assert [(s.kind, s.id) for s in record.surplus] == [("job", "obj-2")]
    assert "late answer" in record.surplus[0].reason and record.surplus[0].removed_at is None
    assert record.needs_sweep  # the timer will cancel it


def test_an_ambiguous_failure_makes_the_next_holder_look_first(store: RunStore, run_id: str) -> None:
    class Ambiguous(RuntimeError):
        ambiguous = True

    service = Service()
    service.created.append("obj-landed")  # the service acted, but the answer was lost
    service.fail_with = Ambiguous("read timeout")
    with pytest.raises(Ambiguous):
        runner(store, "a").run(run_id, effect(service), max_hold=60)
    lease = store.get(run_id).leases["job_create"]
    assert lease.holder is None and lease.reconcile
    service.fail_with = None
    result = runner(store, "b").run(run_id, effect(service), max_hold=60)
    assert result.outcome == EffectOutcome.RECONCILED and store.get(run_id).job.id == "obj-landed"
    assert service.created == ["obj-landed"]


def test_an_object_created_for_a_run_that_ended_meanwhile_is_surplus(store: RunStore, run_id: str) -> None:
    def end_then_answer() -> None:
        store.end(run_id, RunState.REJECTED, "x", "ended while creating")

    service = Service(hold=end_then_answer)
    result = runner(store, "a").run(run_id, effect(service), max_hold=60)
    assert result.outcome == EffectOutcome.FENCED
    record = store.get(run_id)
    assert record.job.id is None and [s.id for s in record.surplus] == ["obj-1"]
    assert "ended" in record.surplus[0].reason


def test_hold_gives_the_remaining_lease_time_to_a_second_comer(store: RunStore, run_id: str) -> None:
    first = runner(store, "first")
    wanted = lambda r: r.state == RunState.RECEIVED  # noqa: E731
    with first.hold(run_id, "deploy", wanted=wanted, max_hold=60) as held:
        assert held.acquired
        with runner(store, "second").hold(run_id, "deploy", wanted=wanted, max_hold=60) as other:
            assert not other.acquired and 0 < other.retry_after <= LEASE
    assert store.get(run_id).leases["deploy"].holder is None
    with runner(store, "third").hold(run_id, "deploy", wanted=wanted, max_hold=60) as later:
        assert later.acquired
