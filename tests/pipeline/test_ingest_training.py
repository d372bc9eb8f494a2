"""Ingest and training against real Azurite and the emulator over HTTP: outcomes, and exactly-once effects."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import pytest

from shared.advance import tick
from shared.runs import RunState
from shared.services import Services
from tests.harness.pipeline import Driver, chat_lines, expire_lease


def _files_named(services: Services, filename: str) -> list[Any]:
    return [f for f in services.aoai.files.list() if f.filename == filename]


def _jobs_for(services: Services, training_file: str | None) -> list[Any]:
    return [j for j in services.aoai.jobs.list(limit=100) if j.training_file == training_file]


def test_good_file_trains_and_queues_its_deployment(driver: Driver, services: Services) -> None:
    name = driver.drop("support.jsonl", chat_lines(40), {"suffix": "support", "seed": "7", "n_epoch": "2"})
    before = services.blobs.get_blob_client(services.settings.drop_container, name).get_blob_properties()
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING
    assert record.validation is not None and record.validation.valid and record.validation.examples == 40
    assert any("not understood, ignored: n_epoch" in w.message for w in record.warnings)  # a typo is not silent
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)

    assert [h.state for h in record.history] == [
        RunState.RECEIVED,
        RunState.VALIDATING,
        RunState.IMPORTING,
        RunState.TRAINING,
        RunState.SUCCEEDED,
    ]
    assert record.job.fine_tuned_model and record.job.fine_tuned_model.endswith("-support")
    assert record.job.trained_tokens and record.job.trained_tokens > 0
    assert len(record.job.checkpoints) >= 1 and record.job.events_recorded > 0
    # split into a staging area outside the watched container; both halves imported
    assert record.files.training.blob and record.files.training.blob.container == services.settings.staging_container
    assert record.files.validation.file_id and record.files.training.file_id
    events = json.loads(services.store.get_artifact(record.id, "events.json") or b"[]")
    assert len(events) == record.job.events_recorded
    assert any(e["type"] == "metrics" for e in events)
    assert json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")["examples"] == 40
    # the deploy message is queued
    messages = services.queue(services.settings.deploy_queue).peek_messages(max_messages=5)
    assert [json.loads(m.content)["run_id"] for m in messages] == [record.id]
    # the dropped blob is untouched and nothing else was written under the watched container
    after = services.blobs.get_blob_client(services.settings.drop_container, name).get_blob_properties()
    assert after.etag == before.etag
    drop = services.blobs.get_container_client(services.settings.drop_container)
    assert [b.name for b in drop.list_blobs()] == [name]


def test_bad_file_is_rejected_with_line_numbers_and_nothing_imported(driver: Driver, services: Services) -> None:
    lines = chat_lines(12).decode().splitlines()
    lines[2] = '{"messages": [{"role": "user", "content": "unterminated"}'
    lines[4] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    name = driver.drop("broken.jsonl", ("\n".join(lines) + "\n").encode())
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "validation_failed"
    assert "line 3" in record.error.message and "line 5" in record.error.message
    report = json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")
    assert report["valid"] is False
    assert {e["line"] for e in report["errors"]} >= {3, 5}
    assert _files_named(services, f"{record.id}-training.jsonl") == []
    assert not services.store.active_run_ids()


def test_file_import_error_fails_the_run_in_the_service_words(driver: Driver, services: Services) -> None:
    name = driver.drop(
        "importfail.jsonl", chat_lines(12, marker="EMULATOR_SCENARIO:file_import_error"), {"validation_split": "0"}
    )
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id)
    assert record.state == RunState.FAILED
    assert record.error is not None and record.error.code == "file_import_failed"
    assert "File import failed" in record.error.message
    assert record.job.id is None


def test_rai_failure_fails_with_the_message(driver: Driver, services: Services) -> None:
    name = driver.drop("rai.jsonl", chat_lines(12, marker="EMULATOR_SCENARIO:rai_failure"), {"validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id)
    assert record.state == RunState.FAILED
    assert record.error is not None and "failed RAI checks" in record.error.message


def test_cancelled_job_ends_the_run_cancelled(driver: Driver, services: Services) -> None:
    name = driver.drop(
        "stuck.jsonl", chat_lines(12, marker="EMULATOR_SCENARIO:stuck_queued"), {"validation_split": "0"}
    )
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.TRAINING)
    assert record.job.id
    tick(services)
    assert services.store.get(record.id).state == RunState.TRAINING  # still queued: nothing ends it
    services.aoai.jobs.cancel(record.job.id)
    record = driver.run(record.id)
    assert record.state == RunState.CANCELLED
    assert record.error is not None and record.error.code == "job_cancelled"


@pytest.mark.parametrize(
    ("metadata", "code", "needle"),
    [
        ({"suffix": "not a suffix!"}, "invalid_spec", "suffix"),
        ({"model": "gpt-4o-2024-05-13"}, "model_not_fine_tunable", "cannot be fine-tuned here"),
        ({"model": "gpt-5-imaginary"}, "model_not_fine_tunable", "not offered by this resource"),
        ({"profile": "nope"}, "invalid_spec", "profiles/nope.json does not exist"),
    ],
)
def test_bad_spec_or_model_is_rejected_before_any_import(
    driver: Driver, services: Services, metadata: dict[str, str], code: str, needle: str
) -> None:
    name = driver.drop("spec.jsonl", chat_lines(12), metadata)
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == code and needle in record.error.message
    assert _files_named(services, f"{record.id}-training.jsonl") == []


def test_injected_429s_and_503s_are_ridden_out(driver: Driver, services: Services, emulator: Any) -> None:
    emulator.inject_fault("POST", "/openai/files/import", "503", count=1, retry_after=0)
    emulator.inject_fault("GET", "/openai/fine_tuning/jobs/*", "429", count=3, retry_after=0)
    emulator.inject_fault("GET", "/openai/files/*", "503", count=2, retry_after=0)
    name = driver.drop("faults.jsonl", chat_lines(12), {"validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert record.state == RunState.SUCCEEDED
    assert len(_files_named(services, f"{record.id}-training.jsonl")) == 1
    assert len(_jobs_for(services, record.files.training.file_id)) == 1


def test_same_event_three_times_gives_one_import_and_one_job(
    driver: Driver, services: Services, emulator: Any
) -> None:
    emulator.freeze_clock()  # the job must not end (and its files be let go) before they are counted
    name = driver.drop("dup.jsonl", chat_lines(12), {"validation_split": "0"})
    ids = {r.id for r in (driver.blob_event(name), driver.blob_event(name), driver.blob_event(name)) if r}
    assert len(ids) == 1
    run_id = ids.pop()
    driver.run(run_id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert driver.blob_event(name) is not None  # a late redelivery changes nothing
    record = services.store.get(run_id)
    assert record.state == RunState.SUCCEEDED
    assert len(_files_named(services, f"{run_id}-training.jsonl")) == 1
    assert len(_jobs_for(services, record.files.training.file_id)) == 1


def test_two_instances_at_once_create_one_import_and_one_job(
    driver: Driver, services: Services, emulator: Any
) -> None:
    emulator.freeze_clock()  # the job must not end (and its files be let go) before they are counted
    name = driver.drop("race.jsonl", chat_lines(12), {"validation_split": "0"})
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def instance() -> None:
        try:
            barrier.wait()
            driver.blob_event(name)
            for _ in range(6):
                tick(services)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=instance) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    run_id = next(iter(services.store.iter_records())).id
    record = driver.run(run_id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert len(_files_named(services, f"{run_id}-training.jsonl")) == 1
    assert len(_jobs_for(services, record.files.training.file_id)) == 1


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler catches it."""


def test_crash_between_job_post_and_state_write_is_reconciled(
    driver: Driver, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = driver.drop("crash.jsonl", chat_lines(12), {"validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None
    real_create = services.aoai.jobs.create
    sent: list[str] = []

    def create_then_die(**kwargs: Any) -> Any:
        job = real_create(**kwargs)
        sent.append(job.id)
        raise Crash("killed after the POST, before the record write")

    monkeypatch.setattr(services.aoai.jobs, "create", create_then_die)
    with pytest.raises(Crash):
        driver.run(record.id, until=lambda r: r.state == RunState.TRAINING, timeout=30)
    assert len(sent) == 1
    stuck = services.store.get(record.id)
    assert stuck.state == RunState.IMPORTING and stuck.job.id is None
    assert stuck.leases["job_create"].holder is not None  # as a killed holder leaves it: never released
    monkeypatch.undo()
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert record.job.id == sent[0]  # reconciled by listing, not sent again
    assert len(_jobs_for(services, record.files.training.file_id)) == 1


def test_crash_between_import_post_and_state_write_is_reconciled(
    driver: Driver, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = services.aoai.files.import_from_url
    sent: list[str] = []

    def import_then_die(*args: Any, **kwargs: Any) -> Any:
        f = real_import(*args, **kwargs)
        sent.append(f.id)
        raise Crash("killed after the import POST")

    monkeypatch.setattr(services.aoai.files, "import_from_url", import_then_die)
    name = driver.drop("crash2.jsonl", chat_lines(12), {"validation_split": "0"})
    with pytest.raises(Crash):
        driver.blob_event(name)
    monkeypatch.undo()
    run_id = next(iter(services.store.iter_records())).id
    record = driver.run(run_id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert record.files.training.file_id == sent[0]
    assert len(_files_named(services, f"{run_id}-training.jsonl")) == 1


def test_named_validation_blob_must_exist(driver: Driver, services: Services) -> None:
    name = driver.drop("named.jsonl", chat_lines(12), {"validation_blob": "missing.validation.jsonl"})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "validation_file_missing"
    assert "missing.validation.jsonl, which does not exist: upload it first" in record.error.message


def test_validation_companion_is_paired_and_checked(driver: Driver, services: Services) -> None:
    train = chat_lines(12)
    overlap = b"".join(train.splitlines(keepends=True)[:2]) + chat_lines(10, tag=" (held out)")
    driver.drop("paired.validation.jsonl", overlap)
    assert driver.blob_event("paired.validation.jsonl") is None  # a companion is never a run
    record = driver.blob_event(driver.drop("paired.jsonl", train))
    assert record is not None and record.state == RunState.IMPORTING
    assert record.source.validation_blob == "paired.validation.jsonl"
    assert str(record.files.validation.blob) == f"{services.settings.drop_container}/paired.validation.jsonl"
    report = json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")
    assert report["validation"]["examples"] == 12
    overlap_warnings = [w for w in report["warnings"] if w["code"] == "train_validation_overlap"]
    assert overlap_warnings and overlap_warnings[0]["file"] == "validation", report["warnings"]


def test_no_sas_or_key_in_logs_records_or_service_logs(
    driver: Driver, services: Services, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    emulator.inject_fault("POST", "/openai/files/import", "503", count=1, retry_after=0)  # a retry gets logged
    name = driver.drop("secret-free.jsonl", chat_lines(12), {"validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None
    record = driver.run(record.id, until=lambda r: r.state == RunState.TRAINING, deploy=False)
    key = services.storage.account_key or ""
    texts = {
        "logs": caplog.text,
        "record": record.model_dump_json(),
        "emulator log": emulator.log_text(),
    }
    assert "import" in caplog.text  # the import (and its retry) was logged at all
    for where, text in texts.items():
        assert "sig=" not in text, where
        assert emulator.api_key not in text, where
        assert key[:20] not in text, where


def test_no_job_is_created_before_the_validation_file_is_imported(
    driver: Driver, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver.drop("half.validation.jsonl", chat_lines(10, tag=" (held out)"))
    real_import = services.aoai.files.import_from_url
    calls: list[str] = []

    def second_import_dies(filename: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(filename)
        if filename.endswith("-validation.jsonl"):
            raise Crash("killed between the training and the validation import")
        return real_import(filename, *args, **kwargs)

    monkeypatch.setattr(services.aoai.files, "import_from_url", second_import_dies)
    name = driver.drop("half.jsonl", chat_lines(12))
    with pytest.raises(Crash):
        driver.blob_event(name)
    monkeypatch.undo()
    run_id = next(r.id for r in services.store.iter_records())
    half = services.store.get(run_id)
    assert half.files.training.file_id and not half.files.validation.file_id
    # The training file gets processed while the validation import is unfinished: no job may start.
    deadline = time.monotonic() + 30
    while services.aoai.files.get(half.files.training.file_id).status != "processed":  # the import's fetch, then
        assert time.monotonic() < deadline, "the training file was never processed"  # its processing
        driver.emulator.advance_clock(5)
    tick(services)  # the dead importer's lease is still live: nothing is sent, no job is created
    assert services.store.get(run_id).job.id is None
    assert services.store.get(run_id).leases["import:validation"].holder is not None
    expire_lease(services, run_id, "import:validation")  # a lease time later: the next tick takes over
    record = driver.run(run_id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert record.files.validation.file_id
    (job,) = _jobs_for(services, record.files.training.file_id)
    assert job.validation_file == record.files.validation.file_id


def test_what_was_validated_is_what_gets_imported_even_if_the_blob_changes(
    driver: Driver, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = chat_lines(12)
    name = driver.drop("pinned.jsonl", original, {"validation_split": "0"})
    real_import = services.aoai.files.import_from_url
    blob = services.blobs.get_blob_client(services.settings.drop_container, name)

    def overwrite_then_import(*args: Any, **kwargs: Any) -> Any:
        blob.upload_blob(b"not json at all\n", overwrite=True)  # someone re-uploads mid-flight
        return real_import(*args, **kwargs)

    monkeypatch.setattr(services.aoai.files, "import_from_url", overwrite_then_import)
    record = driver.blob_event(name)
    monkeypatch.undo()
    assert record is not None and record.files.training.blob is not None and record.files.training.blob.snapshot
    record = driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert record.files.training.file_id
    assert services.aoai.files.content(record.files.training.file_id) == original
    assert record.source.sha256 == hashlib.sha256(original).hexdigest()
    assert blob.download_blob().readall() == b"not json at all\n"  # the new version is its own (future) run
