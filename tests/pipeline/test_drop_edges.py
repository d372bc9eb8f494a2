"""Drops that are not runs (validation companions in any case, folder markers), and the queues the app uses."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from shared.runs import RunRecord, RunSource, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import SubmissionError, submit
from tests.harness.pipeline import Driver, chat_lines


def _runs(services: Services) -> list[RunRecord]:
    return list(services.store.iter_records())


def test_companions_in_any_case_are_never_runs_nor_accepted_as_submissions(driver: Driver, services: Services) -> None:
    for name in ("X.VALIDATION.jsonl", "team/y.Validation.JSONL"):
        driver.drop(name, chat_lines(12))
        assert driver.blob_event(name) is None
        with pytest.raises(SubmissionError, match="validation.jsonl"):  # no run id is promised for it
            submit(services, name.replace(".JSONL", ".jsonl"), chat_lines(12), {})
    assert _runs(services) == []


def test_folder_markers_are_skipped(driver: Driver, services: Services) -> None:
    driver.drop("team-a", b"", {"hdi_isfolder": "true"})
    assert driver.blob_event("team-a") is None
    assert _runs(services) == []


def test_every_queue_the_app_uses_is_created_once_and_events_arrive(
    app_env: dict[str, str], unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    env = {**app_env, "EVENTS_QUEUE": unique_name("events"), "WEBHOOK_OUTBOX_QUEUE": unique_name("outbox")}
    services = Services.from_settings(settings_from_env(env), env=env)
    services.ensure_storage()
    existing = {q.name for q in services.storage.queue_service_client().list_queues()}
    assert set(services.queues_written()) <= existing
    assert env["EVENTS_QUEUE"] in existing and env["WEBHOOK_OUTBOX_QUEUE"] + "-poison" in existing
    assert services.queue(env["DEPLOY_QUEUE"]) is services.queue(env["DEPLOY_QUEUE"])  # created once, then reused
    caplog.set_level(logging.INFO)
    record = RunRecord.new("ev-0123456789ab", RunSource(container="c", blob_name="ev.jsonl", etag='"0x1"'))
    services.store.create(record)
    services.store.update(record.id, lambda r: r.transition(RunState.VALIDATING))
    events = services.queue(env["EVENTS_QUEUE"]).peek_messages(max_messages=5)
    assert len(events) == 1 and "ev-0123456789ab" in str(events[0].content)
    assert "could not queue" not in caplog.text
