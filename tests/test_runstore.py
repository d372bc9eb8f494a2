"""Run records on real Azurite: conditional writes, index tags, guarded advances, concurrent writers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.connections import StorageConnection
from shared.runs import InvalidTransition, RunRecord, RunSource, RunState, SurplusObject, derive_run_id, utcnow
from shared.runstore import BACKFILL, TAG_KEYS, Backfill, ConcurrentUpdate, RunStore, _tags, created_tag
from tests.harness.old_records import write_as_before_retention


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


# --- records written before the retention tags: the backfill -------------------------------------------------
def _ended_deployed(run_id: str) -> RunRecord:
    record = _record(run_id)
    record.deployment.name, record.deployment.model = f"ft-{run_id}"[:60], "gpt-4o-mini-2024-07-18.ft-x"
    for state in (RunState.VALIDATING, RunState.IMPORTING, RunState.TRAINING, RunState.SUCCEEDED,
                  RunState.MEASURING, RunState.DEPLOYING, RunState.DEPLOYED):
        record.transition(state)
    return record


def _counted_store(azurite_connection: StorageConnection, name: str) -> tuple[RunStore, list[tuple[str, str, int]]]:
    """A store whose every request to Azurite is logged as (method, url, status)."""
    calls: list[tuple[str, str, int]] = []
    service = BlobServiceClient(
        account_url=azurite_connection.blob_endpoint, credential=azurite_connection.credential(),
        raw_response_hook=lambda r: calls.append(
            (r.http_request.method, r.http_request.url, r.http_response.status_code)),
    )
    return RunStore(service.get_container_client(name)), calls


def test_tag_keys_are_the_tags_every_record_is_written_with() -> None:
    assert tuple(sorted(_tags(_record()))) == TAG_KEYS
    assert tuple(sorted(_tags(_ended_deployed("run-000000000001")))) == TAG_KEYS


def test_backfill_retags_records_written_before_retention_in_bounded_pages(
    store: RunStore, azurite_connection: StorageConnection
) -> None:
    old = [_ended_deployed(f"old-{i:012d}") for i in range(4)]  # ended, deployed: the retention pass's business
    live = _record("live-000000000000")
    older = _ended_deployed("pre-000000000000")  # from before the `created` tag too
    for record in old + [live]:
        write_as_before_retention(store, record)
        store.put_json(record.id, "metrics.json", {"x": 1})  # a run folder holds more than its record
    write_as_before_retention(store, older, tags=("active", "state", "job", "job_status", "warned"))
    new = _ended_deployed("new-000000000000")
    store.create(new)
    before = {r.id: store.container.get_blob_client(f"runs/{r.id}/run.json").get_blob_properties().etag
              for r in [*old, live, older, new]}
    assert store.retained_run_ids() == [new.id]  # the problem: old records are invisible to the tag query

    counted, calls = _counted_store(azurite_connection, store.container.container_name)
    pages = []
    while not (pages and pages[-1].done):
        del calls[:]
        page = counted.backfill_tags(limit=3, workers=4)
        pages.append(page)
        lists = [c for c in calls if c[0] == "GET" and "comp=list" in c[1]]
        writes = [c for c in calls if c[0] == "PUT" and "/runs/" in c[1]]
        assert len(lists) == 1 and page.listed <= 3  # one List Blobs call of at most `limit` blobs per pass
        assert len(writes) == page.retagged <= 3 and page.raced == 0
        assert len(pages) < 10
    # 12 blobs under runs/ (6 old records, their 5 metrics.json, 1 new record): 4 pages of 3
    assert [p.listed for p in pages] == [3, 3, 3, 3]
    assert sum(p.retagged for p in pages) == 6 and all(p.done == (p is pages[-1]) for p in pages)
    assert sorted(r.id for p in pages for r in p.found) == sorted(r.id for r in [*old, live, older])
    for record in [*old, live, older, new]:
        blob = store.container.get_blob_client(f"runs/{record.id}/run.json")
        stored = store.get(record.id)
        assert blob.get_blob_tags() == _tags(stored)  # every tag, as this version writes them
        assert stored.model_dump(exclude={"retention"}) == record.model_dump(exclude={"retention"})  # content as was
        assert stored.updated_at == record.updated_at  # its ages (retention's days) are not reset
        assert (blob.get_blob_properties().etag == before[record.id]) == (record is new)  # a tagged one is not written
    assert sorted(store.retained_run_ids()) == sorted(r.id for r in [*old, older, new])
    # Done: a further pass costs one read of the cursor, and nothing else.
    del calls[:]
    assert counted.backfill_tags(limit=3) == Backfill(done=True)
    assert [(c[0], c[1].split("?")[0].rsplit("/", 2)[-2:]) for c in calls] == [("GET", ["index", "backfill.json"])]
    cursor = json.loads(store.get_artifact_at(BACKFILL) or b"")
    assert cursor["done"] and cursor["marker"] is None and cursor["retagged"] == 6 and cursor["listed"] == 12


def test_two_backfills_at_once_write_each_record_once(store: RunStore) -> None:
    records = [_ended_deployed(f"old-{i:012d}") for i in range(2)]
    for record in records:
        write_as_before_retention(store, record)
    both_read = threading.Barrier(2)
    loads = 0
    lock = threading.Lock()
    load = store.load

    def load_then_wait(run_id: str) -> tuple[RunRecord, str] | None:
        nonlocal loads
        found = load(run_id)
        with lock:
            loads += 1
            first = loads <= 2
        if first:
            both_read.wait(timeout=30)  # both sweeps hold the first record's ETag before either writes
        return found

    store.load = load_then_wait  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pages = list(pool.map(lambda _: store.backfill_tags(limit=10), range(2)))
    store.load = load  # type: ignore[method-assign]
    assert sum(p.retagged for p in pages) == 2 and sum(p.raced for p in pages) == 2  # each record written once
    for record in records:
        stored = store.get(record.id)
        assert store.container.get_blob_client(f"runs/{record.id}/run.json").get_blob_tags() == _tags(stored)
        assert stored.model_dump(exclude={"retention"}) == record.model_dump(exclude={"retention"})
        assert all(record.id in {r.id for r in p.found} for p in pages)  # both passes look at both records
    cursor = json.loads(store.get_artifact_at(BACKFILL) or b"")
    assert cursor["done"] and cursor["listed"] == 2  # moved once, by one of them (its counts are that page's)


def test_a_state_change_between_the_backfills_read_and_write_is_never_lost(store: RunStore) -> None:
    record = _ended_deployed("old-000000000000")
    write_as_before_retention(store, record)
    other = RunStore(store.container)  # another instance, recording the deployment's deletion meanwhile
    load = store.load

    def load_then_someone_writes(run_id: str) -> tuple[RunRecord, str] | None:
        found = load(run_id)
        other.update(run_id, lambda r: setattr(r.deployment, "deleted_at", utcnow()) or r.warn("gone", "deleted"),
                     on_ended=True)
        return found

    store.load = load_then_someone_writes  # type: ignore[method-assign]
    page = store.backfill_tags()
    store.load = load  # type: ignore[method-assign]
    assert (page.retagged, page.raced) == (0, 1)  # our write (If-Match the ETag we read) was refused
    stored = store.get(record.id)
    assert stored.deployment.deleted_at is not None and [w.code for w in stored.warnings] == ["gone"]
    assert page.found == [stored]  # the pass looks at the record as it is now
    tags = store.container.get_blob_client(f"runs/{record.id}/run.json").get_blob_tags()
    assert tags == _tags(stored) and tags["retain"] == "0"  # the writer's tags: it holds nothing now


def test_backfill_dry_run_writes_nothing_and_an_unreadable_record_is_passed_over(store: RunStore) -> None:
    record = _ended_deployed("old-000000000000")
    etag = write_as_before_retention(store, record)
    store.container.upload_blob("runs/bad-000000000000/run.json", b'{"id": 5}', tags={"active": "0"})
    dry = store.backfill_tags(dry_run=True)
    assert dry.dry_run and [r.id for r in dry.found] == [record.id] and dry.retagged == 0
    assert dry.unreadable == ["bad-000000000000"]
    blob = store.container.get_blob_client(f"runs/{record.id}/run.json")
    assert blob.get_blob_properties().etag == etag and "retain" not in blob.get_blob_tags()
    assert store.get_artifact_at(BACKFILL) is None  # the cursor did not move
    page = store.backfill_tags()
    assert page.retagged == 1 and page.unreadable == ["bad-000000000000"] and page.done
    assert json.loads(store.get_artifact_at(BACKFILL) or b"")["unreadable"] == ["bad-000000000000"]
