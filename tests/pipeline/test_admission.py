"""Admission within the resource's limits (shared/admission.py), against a private emulator with real limits.

Runs that would pass a limit wait in `waiting` (validated, nothing imported), are admitted by priority then
arrival as room opens, and a limit error from the service sends a run back to waiting instead of failing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared import admission
from shared.advance import tick
from shared.runs import RunRecord, RunState
from shared.runs_cli import waiting_line
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.emulator import EmulatorProcess, start_emulator
from tests.harness.pipeline import Driver, chat_lines


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """The resource's real limits (the session emulator has none); its own state for this module."""
    with start_emulator() as emu:  # stopped when the module is done
        yield emu


_LOG_START = {"at": 0}


@pytest.fixture(autouse=True)
def _fresh(emulator: EmulatorProcess) -> Iterator[None]:
    emulator.reset()
    _LOG_START["at"] = len(emulator.log_text())  # the request log of this test only
    yield
    emulator.restore_config()


def _services(app_env: dict[str, str], **limits: int) -> Services:
    env = dict(app_env, **{f"RESOURCE_MAX_{k.upper()}": str(v) for k, v in limits.items()})
    s = Services.from_settings(settings_from_env(env), env=env)
    s.ensure_storage()
    return s


def _drop(driver: Driver, name: str, **meta: str) -> RunRecord:
    driver.drop(name, chat_lines(30, tag=name), {"deploy": "false", **meta})
    record = driver.blob_event(name)
    assert record is not None
    return record


def _count(emulator: EmulatorProcess, pattern: str) -> int:
    return len(re.findall(pattern, emulator.log_text()[_LOG_START["at"]:]))


def _tick_until(driver: Driver, done: Any, ticks: int = 80) -> None:
    for _ in range(ticks):
        if done():
            return
        tick(driver.services)
        driver.emulator.advance_clock(driver.step_seconds)
    raise AssertionError("condition not reached")


def test_runs_past_the_file_quota_wait_and_go_by_priority_then_arrival(
    app_env: dict[str, str], emulator: EmulatorProcess
) -> None:
    services = _services(app_env, files=4)  # two runs of two files each (training + the 10 % split)
    driver = Driver(services, emulator)
    first, second = _drop(driver, "a.jsonl"), _drop(driver, "b.jsonl")
    third, fourth = _drop(driver, "c.jsonl"), _drop(driver, "d.jsonl", priority="5")
    assert [first.state, second.state] == [RunState.IMPORTING, RunState.IMPORTING]
    assert [third.state, fourth.state] == [RunState.WAITING, RunState.WAITING]
    assert third.files.training.file_id is None and third.validation is not None and third.validation.valid
    assert third.waiting is not None and third.waiting.reason.startswith("file quota: 4 of 4")
    # the later run with a higher priority is ahead; status says where each stands and why
    assert admission.place(services, fourth.id) == admission.Place(1, 2, fourth.waiting.reason if fourth.waiting
                                                                   else "")
    line = waiting_line(services, services.store.get(third.id))
    assert line.startswith("position 2 of 2") and "1 run(s) ahead of it; the first waits for: file quota" in line

    lists_before = _count(emulator, r"GET /openai/files 200")
    tick(services)
    assert _count(emulator, r"GET /openai/files 200") == lists_before + 1  # one listing per tick, not per run

    _tick_until(driver, lambda: services.store.get(third.id).state != RunState.WAITING)
    records = {r: services.store.get(r) for r in (first.id, second.id, third.id, fourth.id)}
    fourth_in, third_in = records[fourth.id].entered(RunState.IMPORTING), records[third.id].entered(RunState.IMPORTING)
    assert fourth_in is not None and third_in is not None and fourth_in <= third_in
    # the first two ended their jobs and their imported files were deleted (recorded), which made the room
    for r in (first.id, second.id):
        removed = [s for s in records[r].surplus if s.effect == "retention"]
        assert len(removed) == 2 and all(s.removed_at is not None for s in removed)
    for r in (third.id, fourth.id):
        final = driver.run(r)
        assert final.state == RunState.TRAINED, final.error
        assert [h.state for h in final.history][:4] == [RunState.RECEIVED, RunState.VALIDATING, RunState.WAITING,
                                                        RunState.IMPORTING]
    assert _count(emulator, r" 429 ") == 0
    tick(services)  # the last two ended with their files on the removal list: the next tick deletes them
    assert emulator.admin("GET", "limits").json()["files"]["used"] == 0  # retention left nothing behind


def test_a_limit_error_from_the_service_ends_in_waiting_never_in_failed(
    app_env: dict[str, str], emulator: EmulatorProcess
) -> None:
    services = _services(app_env)  # the app believes there is room for 50 files ...
    emulator.configure(max_ft_files=2)  # ... but the resource takes 2, and another user holds one
    other = services.aoai.files.upload("someone-else.jsonl", chat_lines(12))
    driver = Driver(services, emulator)
    record = _drop(driver, "e.jsonl")
    assert record.state == RunState.WAITING, record.history
    assert record.last_attempt is not None and record.last_attempt.code == "quotaExceeded"
    assert record.files.training.file_id is not None and record.files.validation.file_id is None
    assert record.waiting is not None and "refused for a limit" in record.waiting.reason
    for _ in range(3):  # the service showed its limit: nothing is sent again while it holds as much
        tick(services)
        emulator.advance_clock(1)
    assert services.store.get(record.id).state == RunState.WAITING
    assert _count(emulator, r"POST /openai/files/import 429") == 1
    assert "(the most the service accepted lately)" in waiting_line(services, services.store.get(record.id))
    services.aoai.files.delete(other.id)  # room opens
    final = driver.run(record.id)
    assert final.state == RunState.TRAINED and final.error is None
    assert _count(emulator, r"POST /openai/files/import 201") == 2  # training once, validation once


def test_the_job_queue_limit_admits_the_next_run_when_a_job_ends(
    app_env: dict[str, str], emulator: EmulatorProcess
) -> None:
    services = _services(app_env, outstanding_jobs=1)
    driver = Driver(services, emulator)
    first = _drop(driver, "f.jsonl", validation_split="0")
    second = _drop(driver, "g.jsonl", validation_split="0")
    assert (first.state, second.state) == (RunState.IMPORTING, RunState.WAITING)
    assert second.waiting is not None and second.waiting.reason.startswith("job queue full: 1 of 1")
    _tick_until(driver, lambda: services.store.get(first.id).state == RunState.TRAINING)
    assert services.store.get(second.id).state == RunState.WAITING
    done = driver.run(second.id)
    assert done.state == RunState.TRAINED
    first_done = services.store.get(first.id)
    assert first_done.job.finished_at is not None and done.job.created_at is not None
    assert done.job.created_at >= first_done.job.finished_at  # it was admitted once the first job had ended


def test_a_run_that_never_gets_room_fails_at_its_deadline_with_the_reason(
    app_env: dict[str, str], emulator: EmulatorProcess
) -> None:
    from datetime import timedelta

    from tests.harness.pipeline import age_run

    services = _services(app_env, jobs=1)
    emulator.configure(max_total_jobs=1)
    driver = Driver(services, emulator)
    first = _drop(driver, "h.jsonl", validation_split="0")
    second = _drop(driver, "i.jsonl", validation_split="0")
    assert second.state == RunState.WAITING
    driver.run(first.id)
    tick(services)
    assert services.store.get(second.id).state == RunState.WAITING  # 1 of 1 jobs: it cannot go on
    age_run(services, second.id, timedelta(days=8))
    tick(services)
    ended = services.store.get(second.id)
    assert ended.state == RunState.FAILED and ended.error is not None
    assert ended.error.code == "admission_timeout"
    assert "job total: the resource holds 1 of 1 jobs" in ended.error.message
