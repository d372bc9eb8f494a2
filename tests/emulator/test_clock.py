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
