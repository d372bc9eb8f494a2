"""The production trigger path, locally: the blob trigger with source=EventGrid under the devhost, fed by
BlobCreated events that a publisher makes of Azurite's blob writes (duplicates and out-of-order on demand).

The same drop-to-deployed flow as the polling mode (test_devhost_e2e.py), and what only events can show:
a duplicate delivery is one run, an event for an overwritten version starts nothing, a snapshot raises no event.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from devhost.eventgrid_publisher import BlobEventPublisher
from devstack import Stack
from shared.runs import RunRecord, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import drop_file
from tests.harness.runs import wait_for_run
from tests.harness.waiting import wait_for

DATA = Path(__file__).resolve().parents[2] / "demo" / "data"


def _services(stack: Stack) -> Services:
    services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
    services.ensure_storage()
    return services


def _wait(check: Callable[[], bool], timeout: float = 120) -> bool:
    return bool(wait_for(check, "the run to get where the test needs it", timeout, 0.5))


def _record(services: Services, run_id: str) -> RunRecord | None:
    found = services.store.load(run_id)
    return found[0] if found else None


def test_event_grid_mode_takes_a_drop_to_deployed_once_despite_duplicates(tmp_path: Path) -> None:
    settings = {"TRAINING_POLL_SCHEDULE": "*/1 * * * * *"}
    with Stack(tmp_path / "stack", extra_settings=settings, event_grid=True,
               event_options={"duplicates": 3, "schema": "cloudevents"}) as stack:
        services = _services(stack)
        _, run_id = drop_file(services, str(DATA / "support-train.jsonl"), name="eg.jsonl",
                              validation_path=str(DATA / "support-valid.jsonl"),
                              metadata={"deployment_name": "eg", "suffix": "eg"})
        record = wait_for_run(services, run_id, emulator_url=stack.emulator_url, timeout=180)
        assert record.state == RunState.DEPLOYED, record and record.error
        assert [r.id for r in services.store.iter_records()] == [run_id]  # 3 deliveries of each event: one run
        # imported once; deleted by retention once the job ended, and that deletion recorded once
        assert len([f for f in services.aoai.files.list() if f.filename == f"{run_id}-training.jsonl"]) <= 1
        retained = [s.id for s in record.surplus if s.effect == "retention"]
        assert record.files.training.file_id in retained and len(retained) == len(set(retained))
        assert len([j for j in services.aoai.jobs.list(limit=100)
                    if j.training_file == record.files.training.file_id]) == 1
        assert stack.publisher is not None and stack.publisher.delivered >= 6  # 2 blobs x 3, at least
        log = (tmp_path / "stack" / "devhost.log").read_text()
        assert "Event Grid events at /runtime/webhooks/blobs" in log
        assert "source=EventGrid, polled" not in log


def test_overwritten_versions_and_snapshots_start_no_run(tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", event_grid=True) as stack:
        assert stack.publisher is not None
        stack.publisher.stop()  # this test delivers by hand, in the order it wants
        services = _services(stack)
        drop = services.blobs.get_container_client(services.settings.drop_container)
        endpoint = stack.publisher.endpoint
        publisher = BlobEventPublisher(drop, endpoint)
        publisher.validate_subscription()
        blob = drop.get_blob_client("late.jsonl")
        blob.upload_blob((DATA / "support-train.jsonl").read_bytes(), overwrite=True)
        first = publisher.event_for(blob.get_blob_properties())
        blob.upload_blob((DATA / "support-train.jsonl").read_bytes() + b"\n", overwrite=True)
        second = publisher.event_for(blob.get_blob_properties())
        for event in (second, second, first):  # a duplicate, then the older version's event last
            publisher.deliver(event)
        assert _wait(lambda: len(list(services.store.iter_records())) >= 1, 60)
        record = next(iter(services.store.iter_records()))
        assert record.source.etag.strip('"') == second["data"]["eTag"]
        assert _wait(lambda: "superseded" in (tmp_path / "stack" / "devhost.log").read_text(), 30)
        # The app pinned the blob with a snapshot, and here is one more: neither is a write Azure announces
        # (BlobCreated is PutBlob, PutBlockList, CopyBlob), and the publisher, watching the listing, sees none.
        publisher.seen |= {(b.name, str(b.etag)) for b in drop.list_blobs()}  # what was delivered above
        etag = blob.get_blob_properties().etag
        blob.create_snapshot()
        assert blob.get_blob_properties().etag == etag
        assert len([b for b in drop.list_blobs(include=["snapshots"]) if b.snapshot]) >= 2
        assert publisher.publish_new() == 0
        assert [r.id for r in services.store.iter_records()] == [record.id]
        bad = httpx.post(endpoint.replace(stack.function_key, "wrong-key"), json=[],
                         headers={"aeg-event-type": "Notification"})
        assert bad.status_code == 401
        publisher.stop()
