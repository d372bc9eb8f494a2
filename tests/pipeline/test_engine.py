"""The run engine under the conditions a chaos run found: answers slower than the lease, holders killed between
a create and its record write, deployers dead inside their lease, lost messages, runs that stop moving.

Effects are counted in the emulator's own request log (the lines this test added), and every object the
service made for a run is checked to be the run's result or removed and recorded.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from shared.advance import tick
from shared.deploy import DeployRetry, handle_deploy_message
from shared.runs import Lease, RunRecord, RunState, utcnow
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import Driver, age_run, chat_lines, expire_lease


class RequestLog:
    """The emulator's request lines written since this object was made."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.start = len(emulator.log_text().splitlines())

    def count(self, method: str, path: str) -> int:
        lines = self.emulator.log_text().splitlines()[self.start :]
        # "<method> <path> <status> <duration>ms": the status, not the duration, must start with 2
        return sum(1 for line in lines if f" {method} {path} " in f" {line} "
                   and (line.split(path, 1)[-1].split() or [""])[0].startswith("2"))


def _files_of(services: Services, run_id: str) -> list[Any]:
    return [f for f in services.aoai.files.list() if (f.filename or "").startswith(run_id)]


def _assert_nothing_untracked(services: Services, record: RunRecord) -> None:
    """Every file the service holds for the run is the run's own or recorded as surplus and removed."""
    own = {slot.file_id for _, slot in record.files.slots() if slot.file_id}
    removed = {s.id for s in record.surplus if s.removed_at is not None}
    for f in _files_of(services, record.id):
        assert f.id in own or (f.id in removed and f.status in ("deleted", "deleting")), (f.id, f.status)
    jobs = [j for j in services.aoai.jobs.list(limit=100) if j.training_file in own]
    live = [j for j in jobs if j.id == record.job.id or j.status not in ("cancelled", "failed")]
    assert [j.id for j in live] == [record.job.id], [(j.id, j.status) for j in jobs]


def test_posts_slower_than_the_lease_while_another_instance_ticks_create_once(
    driver: Driver, services: Services, app_env: dict[str, str], emulator: Any
) -> None:
    other = Services.from_settings(settings_from_env(app_env), env=app_env)  # a second instance
    lease = services.settings.lease_seconds
    slow = int(lease * 2.5 * 1000)  # answered well after the lease time, well inside the client's read timeout
    emulator.inject_fault("POST", "/openai/files/import", "latency", latency_ms=slow)
    emulator.inject_fault("POST", "/openai/fine_tuning/jobs", "latency", latency_ms=slow)
    log = RequestLog(emulator)
    name = driver.drop("slow.jsonl", chat_lines(24))  # split: a training and a validation import
    done = threading.Event()
    errors: list[BaseException] = []

    def first_instance() -> None:
        try:
            driver.blob_event(name)
            for _ in range(40):  # ticks of its own while the other instance ticks too
                if services.store.get(run_id()).state != RunState.IMPORTING:
                    break
                tick(services)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    def run_id() -> str:
        return next(iter(services.store.iter_records())).id

    thread = threading.Thread(target=first_instance)
    thread.start()
    while not done.is_set():
        if any(True for _ in services.store.iter_records()):
            tick(other)
        emulator.advance_clock(1)
    thread.join()
    assert not errors
    emulator.clear_faults()
    record = driver.run(run_id(), until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert log.count("POST", "/openai/files/import") == 2  # one per file, though each answer outlived the lease
    assert log.count("POST", "/openai/fine_tuning/jobs") == 1
    assert [s for s in record.surplus if s.effect != "retention"] == []  # no copy: only the ended job's files
    assert {s.id for s in record.surplus} <= {slot.file_id for _, slot in record.files.slots()}
    _assert_nothing_untracked(services, record)


def test_a_fenced_off_late_import_is_deleted_by_the_timer(
    driver: Driver, services: Services, app_env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first importer cannot renew (its renewals stop at once), so its slow answer arrives fenced off."""
    other = Services.from_settings(settings_from_env(app_env), env=app_env)
    slow = int(services.settings.lease_seconds * 3 * 1000)
    emulator.inject_fault("POST", "/openai/files/import", "latency", latency_ms=slow, count=1)
    monkeypatch.setattr(services.aoai, "worst_case_seconds", lambda: 0.0)  # renewal gives up at once
    name = driver.drop("fenced.jsonl", chat_lines(12), {"validation_split": "0"})
    log = RequestLog(emulator)
    thread = threading.Thread(target=lambda: driver.blob_event(name))
    thread.start()
    run_id = ""
    while not run_id:
        run_id = next((r.id for r in services.store.iter_records()), "")
    # The stalled holder's lease runs out; the other instance takes over, finds nothing yet, imports.
    while services.store.get(run_id).files.training.file_id is None:
        record = services.store.get(run_id)
        lease = record.leases.get("import:training")
        if lease is not None and lease.holder is not None:
            expire_lease(other, run_id, "import:training")
            tick(other)
    thread.join()
    record = services.store.get(run_id)
    assert len(record.surplus) == 1 and record.surplus[0].kind == "file"
    late = record.surplus[0].id
    assert late != record.files.training.file_id and "late answer" in record.surplus[0].reason
    record = driver.run(run_id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert record.surplus[0].removed_at is not None and record.surplus[0].removal_error is None
    assert log.count("POST", "/openai/files/import") == 2
    assert log.count("DELETE", f"/openai/files/{late}") == 1
    _assert_nothing_untracked(services, record)


def test_a_deployer_dead_inside_its_lease_spends_no_retries_and_one_deployment_follows(
    driver: Driver, services: Services, emulator: Any
) -> None:
    driver.drop("dead.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "dead-deployer"})
    record = driver.blob_event("dead.jsonl")
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    queue = services.queue(services.settings.deploy_queue)
    queue.clear_messages()

    def dead_holder(r: RunRecord) -> None:  # a deployer killed while holding the lease: never released
        r.leases["deploy"] = Lease(generation=1, holder="dead#0", expires_at=utcnow() + timedelta(minutes=5))

    services.store.update(record.id, dead_holder)
    log = RequestLog(emulator)
    body = json.dumps({"run_id": record.id})
    for attempt in range(1, services.deploy_attempts + 1):  # every try the queue has, all inside the lease
        handled = handle_deploy_message(services, body, attempt)  # returns: no DeployRetry, no poison
        assert handled is not None and not handled.terminal
    assert services.store.get(record.id).state == RunState.MEASURING
    assert queue.get_queue_properties().approximate_message_count == services.deploy_attempts  # came back later
    # Later: the dead holder's lease has run out and the messages were lost too; the timer re-queues.
    queue.clear_messages()
    age_run(services, record.id, timedelta(minutes=11))
    tick(services)
    assert [json.loads(m.content)["run_id"] for m in queue.peek_messages()] == [record.id]
    record = driver.run(record.id)
    assert record.state == RunState.DEPLOYED
    puts = [line for line in emulator.log_text().splitlines()[log.start :] if "PUT" in line and "dead-deployer" in line]
    assert len(puts) == 1


def test_deploy_false_run_whose_message_is_lost_still_ends_trained(driver: Driver, services: Services) -> None:
    driver.drop("nodeploy.jsonl", chat_lines(12), {"validation_split": "0", "deploy": "false"})
    record = driver.blob_event("nodeploy.jsonl")
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    services.queue(services.settings.deploy_queue).clear_messages()
    age_run(services, record.id, timedelta(minutes=11))
    record = driver.run(record.id)
    assert record.state == RunState.TRAINED and record.metrics is not None
    assert [h.state for h in record.history][-3:] == [RunState.SUCCEEDED, RunState.MEASURING, RunState.TRAINED]


def test_a_run_that_stops_moving_is_ended_at_its_deadline_with_the_last_reason(
    driver: Driver, services: Services, emulator: Any
) -> None:
    driver.drop("stuck.jsonl", chat_lines(12), {"validation_split": "0", "deployment_name": "stuck"})
    record = driver.blob_event("stuck.jsonl")
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    emulator.set_scenario("quota", available_capacity=0)
    body = json.dumps({"run_id": record.id})
    with pytest.raises(DeployRetry):
        handle_deploy_message(services, body, 1)
    services.queue(services.settings.deploy_queue).clear_messages()  # and every later message is lost
    emulator.clear_scenarios()
    age_run(services, record.id, timedelta(days=1, minutes=1))
    tick(services)
    record = services.store.get(record.id)
    assert record.state == RunState.FAILED and record.error is not None
    assert record.error.code == "deployment_stuck"
    assert "InsufficientQuota" in record.error.message  # the last attempt's reason, in the service's words
    assert record.leases["deploy"].holder is None


def test_warnings_from_repeated_service_errors_do_not_pile_up(
    driver: Driver, services: Services, emulator: Any
) -> None:
    driver.drop("flaky.jsonl", chat_lines(12), {"validation_split": "0"})
    record = driver.blob_event("flaky.jsonl")
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.TRAINING)
    emulator.inject_fault("GET", "/openai/fine_tuning/jobs/*", "500", count=8)  # two ticks' worth of tries
    for _ in range(2):
        tick(services)
    stuck = services.store.get(record.id)
    assert stuck.last_attempt is not None and stuck.warnings == []  # one attempt, replaced each tick
    emulator.clear_faults()
    assert driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False).terminal is False


def test_an_event_lost_between_the_record_write_and_the_queue_is_relayed_by_the_timer(
    app_env: dict[str, str], emulator: Any, unique_name: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.notifications as notifications

    env = {**app_env, "EVENTS_QUEUE": unique_name("events")}
    services = Services.from_settings(settings_from_env(env), env=env)
    services.ensure_storage()
    driver = Driver(services, emulator)
    real_send = notifications._send
    calls = {"n": 0}

    def first_send_fails(queue: Any, content: str, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the queue is down for this one write")
        real_send(queue, content, **kwargs)

    monkeypatch.setattr(notifications, "_send", first_send_fails)
    record = driver.blob_event(driver.drop("relay.jsonl", chat_lines(12), {"validation_split": "0"}))
    assert record is not None and record.state == RunState.IMPORTING
    stored = services.store.get(record.id)
    assert stored.events_published == 1 and stored.unannounced  # `validating` never reached the queue
    events = services.queue(env["EVENTS_QUEUE"])

    def event_ids() -> list[str]:
        return [json.loads(m.content)["id"] for m in events.peek_messages(max_messages=32)]

    assert event_ids() == [f"{record.id}:3:importing"]
    emulator.set_scenario("stuck_queued")  # the job, once created, stays queued
    trained = driver.run(record.id, until=lambda r: r.state == RunState.TRAINING, deploy=False)
    tick(services)  # the index learns the job is queued
    assert services.aoai.jobs.get(trained.job.id or "").status == "pending"
    assert f"{record.id}:2:validating" not in event_ids()  # not yet: a change gets a minute to be announced
    age_run(services, record.id, timedelta(minutes=2))
    tick(services)  # the job has not moved (the timer skips such runs unread), but an event is owed
    ids = event_ids()
    assert f"{record.id}:2:validating" in ids  # relayed with its original id (the receiver dedupes by id)
    relayed = services.store.get(record.id)
    assert relayed.events_published == len(relayed.history) and not relayed.unannounced
