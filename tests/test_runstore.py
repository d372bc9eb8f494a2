"""Run records on real Azurite: conditional writes, index tags, guarded advances, concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.runs import InvalidTransition, RunRecord, RunSource, RunState, SurplusObject, derive_run_id, utcnow
from shared.runstore import ConcurrentUpdate, RunStore, created_tag


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
    created = store.get(ids[1]).created_at.strftime("%Y%m%dT%H%M%S.%fZ")
    assert tags == {
        "active": "0", "state": "rejected", "job": "-", "job_status": "-", "warned": "0", "created": created,
        "retain": "0",  # ended with nothing the retention pass must look at on every pass
        "prune_from": created_tag(store.get(ids[1]).history[-1].at),  # its blobs, by when it ended
    }
    assert store.retained_run_ids() == []
    assert store.prunable_run_ids(datetime.now(UTC)) == [ids[1]]
    assert store.prunable_run_ids(datetime.now(UTC) - timedelta(days=1)) == []


def test_the_index_says_which_runs_have_chores_whatever_their_job_does(store: RunStore) -> None:
    ids = [f"run-{i:012d}" for i in range(3)]
    for run_id in ids:
        store.create(_record(run_id))

    def owe_a_deletion(r: RunRecord) -> None:
        r.surplus.append(SurplusObject.model_validate(
            {"kind": "file", "id": "file-1", "effect": "fenced", "found_at": utcnow(), "reason": "a late answer"}))

    store.update(ids[1], owe_a_deletion)
    store.update(ids[2], lambda r: setattr(r, "events_published", 0))  # its creation not announced
    found = {run.run_id: run.chores for run in store.active_runs()}
    assert found == {ids[0]: False, ids[1]: True, ids[2]: True}
    store.update(ids[1], lambda r: r.fail("x", "y", state=RunState.REJECTED))  # ended, deletion still owed
    assert {run.run_id: run.chores for run in store.active_runs()}[ids[1]] is True


def test_concurrent_updates_lose_nothing(store: RunStore) -> None:
    record, _, _ = store.create(_record())

    def add_warning(n: int) -> None:
        store.update(record.id, lambda r: r.warn(f"code-{n}", f"warning {n}"), attempts=50)

    threads = [threading.Thread(target=add_warning, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w.message for w in store.get(record.id).warnings) == sorted(f"warning {n}" for n in range(8))


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
    store.update(record.id, lambda r: r.warn("note", "no state change"))
    assert seen == [("received", "validating")]


def test_advance_moves_only_from_the_given_states(store: RunStore) -> None:
    record, _, _ = store.create(_record())
    moved = store.advance(record.id, (RunState.IMPORTING,), RunState.TRAINING, "not from received")
    assert moved[1] is False and moved[0].state == RunState.RECEIVED
    applied: list[str] = []
    record, ok = store.advance(
        record.id, (RunState.RECEIVED,), RunState.VALIDATING, "go", lambda r: applied.append(r.state.value)
    )
    assert ok and record.state == RunState.VALIDATING and applied == ["received"]
    assert record.history[-1].note == "go"


def test_nothing_is_written_onto_an_ended_run(store: RunStore) -> None:
    record, _, _ = store.create(_record())
    store.end(record.id, RunState.REJECTED, "validation_failed", "line 3: bad")
    _, etag = store.load(record.id) or (None, "")
    after, same_etag = store.update(record.id, lambda r: r.warn("late", "a late writer"))
    assert same_etag == etag and after.warnings == []
    ended_again = store.end(record.id, RunState.FAILED, "other", "a second ending")
    assert ended_again.state == RunState.REJECTED and ended_again.error is not None
    assert ended_again.error.code == "validation_failed"
    # an explicit on_ended write (recording a surplus removal, a cleanup) still lands
    after, _ = store.update(record.id, lambda r: r.warn("cleaned_up", "deleted file x"), on_ended=True)
    assert [w.code for w in after.warnings] == ["cleaned_up"]


def test_warnings_are_kept_once_per_code(store: RunStore) -> None:
    record, _, _ = store.create(_record())
    for n in range(5):
        store.note(record.id, "service_error", f"503 from the service (request {n})")
        store.note(record.id, "throttled", f"attempt {n}", attempt=True)
    stored = store.get(record.id)
    assert [(w.code, w.count) for w in stored.warnings] == [("service_error", 5)]
    assert stored.warnings[0].message.endswith("(request 4)")
    assert stored.last_attempt is not None and stored.last_attempt.message == "attempt 4"


def test_json_artifact_updates_lose_nothing_between_writers(store: RunStore) -> None:
    record, _, _ = store.create(_record())

    def add(n: int) -> None:
        store.update_json(record.id, "events.json", lambda doc: [*(doc or []), n])

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import json

    assert sorted(json.loads(store.get_artifact(record.id, "events.json") or b"[]")) == list(range(6))
