"""Run records on real Azurite: conditional writes, index tags, claims, concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.claims import ClaimOutcome, claim
from shared.runs import Claim, InvalidTransition, RunRecord, RunSource, RunState, derive_run_id
from shared.runstore import ConcurrentUpdate, RunStore


@pytest.fixture
def store(blob_service: BlobServiceClient, unique_name: Callable[[str], str]) -> RunStore:
    s = RunStore(blob_service.get_container_client(unique_name("runs")))
    s.ensure()
    return s


def _record(run_id: str = "data-0123456789ab") -> RunRecord:
    return RunRecord.new(run_id, RunSource(container="training-data", blob_name="data.jsonl", etag='"0x1"'))


def test_run_id_is_derived_from_blob_name_and_version() -> None:
    a = derive_run_id("training-data", "team/Support Data.jsonl", '"0x8D1"')
    assert a == derive_run_id("training-data", "team/Support Data.jsonl", '"0x8D1"')
    assert a.startswith("support-data-") and len(a.split("-")[-1]) == 12
    assert a != derive_run_id("training-data", "team/Support Data.jsonl", '"0x8D2"')
    assert a != derive_run_id("other", "team/Support Data.jsonl", '"0x8D1"')


def test_create_is_once_only(store: RunStore) -> None:
    first, etag1, created1 = store.create(_record())
    assert created1
    again = _record()
    again.transition(RunState.VALIDATING)  # a different in-memory copy must not overwrite the stored one
    stored, etag2, created2 = store.create(again)
    assert not created2
    assert stored.state == RunState.RECEIVED
    assert etag1 == etag2


def test_stale_etag_write_is_refused(store: RunStore) -> None:
    record, etag, _ = store.create(_record())
    record.transition(RunState.VALIDATING)
    store.save(record, etag)
    record.transition(RunState.IMPORTING)
    with pytest.raises(ConcurrentUpdate):
        store.save(record, etag)  # written with the etag from before the first save
    assert store.get(record.id).state == RunState.VALIDATING


def test_active_runs_found_by_index_tags(store: RunStore) -> None:
    ids = [f"run-{i:012d}" for i in range(4)]
    for run_id in ids:
        store.create(_record(run_id))
    store.update(ids[1], lambda r: r.fail("x", "y", state=RunState.REJECTED))
    assert sorted(store.active_run_ids()) == sorted([ids[0], ids[2], ids[3]])
    tags = store.container.get_blob_client(f"runs/{ids[1]}/run.json").get_blob_tags()
    assert tags == {"active": "0", "state": "rejected", "job": "-", "job_status": "-", "warned": "0"}


def test_concurrent_updates_lose_nothing(store: RunStore) -> None:
    record, _, _ = store.create(_record())

    def add_warning(n: int) -> None:
        store.update(record.id, lambda r: r.warn(f"warning {n}"), attempts=50)

    threads = [threading.Thread(target=add_warning, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(store.get(record.id).warnings) == sorted(f"warning {n}" for n in range(8))


def test_illegal_transition_is_refused() -> None:
    record = _record()
    with pytest.raises(InvalidTransition):
        record.transition(RunState.DEPLOYED)
    record.transition(RunState.VALIDATING, "ok")
    assert [h.state for h in record.history] == [RunState.RECEIVED, RunState.VALIDATING]


def test_state_change_listener_called_once_per_change(store: RunStore) -> None:
    seen: list[tuple[str, str]] = []
    store.on_change = lambda r, before: seen.append((before.value, r.state.value))
    record, _, _ = store.create(_record())
    store.update(record.id, lambda r: r.transition(RunState.VALIDATING))
    store.update(record.id, lambda r: r.warn("no state change"))
    assert seen == [("received", "validating")]


def _claim(store: RunStore, run_id: str, by: str, timeout: float = 60) -> ClaimOutcome:
    return claim(
        store,
        run_id,
        "job_create",
        by=by,
        timeout=timeout,
        wanted=lambda r: r.state == RunState.RECEIVED,
        done=lambda r: r.job.id is not None,
    )


def test_claim_is_won_by_exactly_one_of_many(store: RunStore) -> None:
    record, _, _ = store.create(_record())
    outcomes: list[ClaimOutcome] = []
    lock = threading.Lock()

    def contend(n: int) -> None:
        outcome = _claim(store, record.id, f"instance-{n}")
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(ClaimOutcome.WON) == 1
    assert outcomes.count(ClaimOutcome.HELD) == 5


def test_stale_claim_is_taken_over_and_done_claim_is_left(store: RunStore) -> None:
    record, _, _ = store.create(_record())
    assert _claim(store, record.id, "a") == ClaimOutcome.WON
    assert _claim(store, record.id, "b") == ClaimOutcome.HELD

    def age(r: RunRecord) -> None:
        current = r.claims["job_create"]
        r.claims["job_create"] = Claim(at=current.at - timedelta(minutes=10), by="a")

    store.update(record.id, age)
    assert _claim(store, record.id, "b") == ClaimOutcome.TAKEN_OVER
    assert store.get(record.id).claims["job_create"].by == "b"
    store.update(record.id, lambda r: setattr(r.job, "id", "ftjob-1"))
    assert _claim(store, record.id, "c") == ClaimOutcome.DONE
    store.update(record.id, lambda r: r.fail("x", "y", state=RunState.REJECTED))
    assert _claim(store, record.id, "c") == ClaimOutcome.GONE
