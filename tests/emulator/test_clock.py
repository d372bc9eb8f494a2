"""The emulator's clock moves forward on request, and every time-derived status follows it."""

from __future__ import annotations

import httpx
from openai import AzureOpenAI

from tests.emulator.conftest import create_job, processed_file
from tests.harness.emulator import EmulatorProcess


def test_advancing_the_clock_finishes_a_long_job_at_once(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    training = processed_file(aoai)
    emulator.configure(job_seconds=100_000)
    job = create_job(aoai, training)
    assert aoai.fine_tuning.jobs.retrieve(job.id).status in ("pending", "validating_files")
    before = emulator.admin("GET", "clock").json()["offset_seconds"]
    after = emulator.advance_clock(100_000 * emulator.health()["time_scale"] + 1)
    assert after > before
    done = aoai.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.fine_tuned_model
    assert done.finished_at is not None and done.finished_at > done.created_at


def test_the_clock_never_goes_back(emulator: EmulatorProcess) -> None:
    response = httpx.post(f"{emulator.base_url}/_emulator/clock", json={"advance_seconds": -5})
    assert response.status_code == 400
    assert "advance_seconds" in response.json()["error"]["message"]


def test_a_frozen_clock_moves_only_when_advanced_and_runs_on_from_where_it_stood(
    emulator: EmulatorProcess, aoai: AzureOpenAI
) -> None:
    def now() -> float:
        return float(emulator.admin("GET", "clock").json()["now"])

    training = processed_file(aoai)
    emulator.freeze_clock()
    stood = now()
    job = create_job(aoai, training)
    for _ in range(20):  # real time passes between these requests; the emulator's does not
        assert aoai.fine_tuning.jobs.retrieve(job.id).status == "pending"
    assert now() == stood and emulator.admin("GET", "clock").json()["frozen"] is True
    emulator.advance_clock(2.5)
    assert now() == stood + 2.5
    emulator.freeze_clock(False)
    assert now() >= stood + 2.5  # runs on from the reading it stood at, never back
    assert emulator.admin("GET", "clock").json()["frozen"] is False


def test_the_clock_request_says_what_it_wants(emulator: EmulatorProcess) -> None:
    for body in ({}, {"frozen": "yes"}, {"advance_seconds": True}):
        response = httpx.post(f"{emulator.base_url}/_emulator/clock", json=body)
        assert response.status_code == 400, body
    assert emulator.admin("GET", "clock").json()["frozen"] is False
