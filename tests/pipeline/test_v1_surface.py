"""An SFT run on the v1 surface, from drop to deployed, through a Foundry project endpoint of the emulator.

`AZURE_OPENAI_ENDPOINT` names a project (`.../api/projects/<p>`), so `AZURE_OPENAI_API_SURFACE=auto` means v1:
every data-plane request goes to `/api/projects/<p>/openai/v1/...` without an api-version, the files are
uploaded from their blob snapshots in parts (no files import exists on v1), and the job carries
`metadata.run_id`. Counted in the emulator's own request log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared.advance import tick
from shared.cli import main
from shared.run_commands import CommandRefused, pause
from shared.runs import RunState
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import Driver, chat_lines
from tests.harness.waiting import wait_for
from tests.pipeline.test_engine import RequestLog

PART_BYTES = 2048


@pytest.fixture
def v1_env(app_env: dict[str, str], unique_name: Callable[[str], str], emulator: Any) -> dict[str, str]:
    project = unique_name("proj")
    return {**app_env, "AZURE_OPENAI_ENDPOINT": f"{emulator.base_url}/api/projects/{project}",
            "AZURE_OPENAI_UPLOAD_PART_BYTES": str(PART_BYTES), "PROJECT": project}


@pytest.fixture
def v1_driver(v1_env: dict[str, str], emulator: Any) -> Driver:
    services = Services.from_settings(settings_from_env(v1_env), env=v1_env)
    services.ensure_storage()
    return Driver(services, emulator)


def test_sft_on_v1_goes_from_drop_to_deployed(v1_driver: Driver, v1_env: dict[str, str], emulator: Any) -> None:
    services = v1_driver.services
    assert services.aoai.surface == "v1" and services.settings.azure_openai_api_surface == "auto"
    prefix = f"/api/projects/{v1_env['PROJECT']}/openai/v1"
    log = RequestLog(emulator)
    data = chat_lines(40)
    name = v1_driver.drop("support.jsonl", data, {"suffix": "v1run", "validation_split": "0"})
    record = v1_driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING, record
    record = v1_driver.run(record.id)
    try:
        assert record.state == RunState.DEPLOYED, record.error
        assert record.job.fine_tuned_model and record.job.fine_tuned_model.endswith("-v1run")
        assert record.deployment.smoke_test is not None and record.deployment.smoke_test.status == "passed"
        job = services.aoai.jobs.get(record.job.id or "")
        assert job.metadata == {"run_id": record.id}  # the job says whose it is
        assert [j.id for j in services.aoai.jobs.find_by_metadata("run_id", record.id)] == [record.job.id]

        smoke = f" POST {prefix}/chat/completions 200"  # the log is read in a thread: wait for the last line counted
        wait_for(lambda: smoke in emulator.log_text(), "the smoke test in the emulator's log")
        parts = -(-len(data) // PART_BYTES)  # the training file in ranges of PART_BYTES, never whole
        assert parts >= 3
        assert log.count("POST", f"{prefix}/fine_tuning/jobs") == 1
        assert log.count("POST", f"{prefix}/uploads") == 1
        assert sum(log.count("POST", f"{prefix}/uploads/{u}/parts") for u in _upload_ids(log, prefix)) == parts
        assert sum(log.count("POST", f"{prefix}/uploads/{u}/complete") for u in _upload_ids(log, prefix)) == 1
        assert log.count("POST", f"{prefix}/chat/completions") == 1  # the smoke test, on v1 too
        assert log.count("POST", "/openai/files/import") == 0
        lines = emulator.log_text().splitlines()[log.start :]
        data_plane = [line for line in lines if "/openai/" in line]
        assert data_plane and all(f" {prefix}/" in line for line in data_plane), data_plane[:5]  # no versioned call
        assert not any("/openai/fine_tuning" in line and prefix not in line for line in lines)
    finally:
        for deployment in services.deployments.list() if services.deployments else []:
            if deployment.name == record.deployment.name:
                services.deployments.delete_and_wait(deployment.name, timeout=30)


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler catches it."""


def test_a_lost_job_create_answer_is_reconciled_by_metadata_exactly(
    v1_driver: Driver, v1_env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = v1_driver.services
    prefix = f"/api/projects/{v1_env['PROJECT']}/openai/v1"
    name = v1_driver.drop("crash.jsonl", chat_lines(12), {"validation_split": "0"})
    record = v1_driver.blob_event(name)
    assert record is not None
    real_create = services.aoai.jobs.create
    sent: list[str] = []
    decoys: list[str] = []

    def create_then_die(**kwargs: Any) -> Any:
        # Another job on the same training file, created first, tagged for a run whose id only starts the same:
        # reconciling by training file (the versioned rule) would take it; by metadata it must not.
        decoy = real_create(**{**kwargs, "metadata": {"run_id": record.id + "0"}})
        decoys.append(decoy.id)
        emulator.advance_clock(2)  # the decoy is the older one
        job = real_create(**kwargs)
        sent.append(job.id)
        raise Crash("killed after the POST, before the record write")

    monkeypatch.setattr(services.aoai.jobs, "create", create_then_die)
    with pytest.raises(Crash):
        v1_driver.run(record.id, until=lambda r: r.state == RunState.TRAINING, timeout=30)
    monkeypatch.undo()
    log = RequestLog(emulator)
    record = v1_driver.run(record.id, until=lambda r: r.state != RunState.IMPORTING, deploy=False, timeout=30)
    assert record.state == RunState.TRAINING and record.job.id == sent[0]  # reconciled by metadata.run_id
    assert log.count("POST", f"{prefix}/fine_tuning/jobs") == 0  # found, not sent again
    assert decoys[0] not in {s.id for s in record.surplus}  # another run's job is never taken for a copy
    assert log.count("POST", f"{prefix}/fine_tuning/jobs/{decoys[0]}/cancel") == 0
    for job_id in sent + decoys:  # leave nothing training in the shared emulator
        if not services.aoai.jobs.get(job_id).is_terminal:
            services.aoai.jobs.cancel(job_id)


def _upload_ids(log: RequestLog, prefix: str) -> set[str]:
    lines = log.emulator.log_text().splitlines()[log.start :]
    ids = set()
    for line in lines:
        marker = f"{prefix}/uploads/"
        if marker in line:
            ids.add(line.split(marker, 1)[1].split("/", 1)[0])
    return ids


def test_pause_and_resume_a_training_run_over_http_and_the_cli(
    v1_driver: Driver, v1_env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import blueprints.api as api

    services = v1_driver.services
    prefix = f"/api/projects/{v1_env['PROJECT']}/openai/v1"
    emulator.configure(job_seconds=240.0)  # x time scale 0.25: a minute of emulator time, most of it training
    name = v1_driver.drop("pause.jsonl", chat_lines(24), {"validation_split": "0", "deploy": "false"})
    record = v1_driver.blob_event(name)
    assert record is not None
    with pytest.raises(CommandRefused, match="only a training run"):  # no job yet
        pause(services, record.id)
    record = v1_driver.run(record.id, until=lambda r: r.job.status == "running", deploy=False)
    log = RequestLog(emulator)
    monkeypatch.setattr(api, "get_services", lambda: services)

    def http(command: str) -> dict[str, Any]:
        request = func.HttpRequest("POST", f"http://localhost/api/runs/{record.id}/{command}",
                                   route_params={"run_id": record.id}, body=b"")
        response = (api.pause_run if command == "pause" else api.resume_run)(request)
        assert response.status_code == 200, response.get_body()
        answer: dict[str, Any] = json.loads(response.get_body())
        return answer

    first, again = http("pause"), http("pause")
    assert first["changed"] and first["state"] == "training" and not again["changed"]
    assert "already" in again["message"]
    paused = v1_driver.run(record.id, until=lambda r: r.job.status == "paused", deploy=False)
    for _ in range(30):  # the timer keeps following a paused job; the emulator's clock moves, the job does not
        tick(services)
        emulator.advance_clock(60)
    assert services.store.get(record.id).state == RunState.TRAINING
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {k: v for k, v in v1_env.items() if k != "PROJECT"}}), "utf-8")
    assert main(["resume", record.id, "--settings", str(settings)]) == 0
    assert "resuming" in capsys.readouterr().out
    v1_driver.step_seconds = 5.0
    done = v1_driver.run(record.id, until=lambda r: r.state == RunState.SUCCEEDED, deploy=False)
    assert paused.job.status == "paused"
    resumed = f" POST {prefix}/fine_tuning/jobs/{record.job.id}/resume 200"
    wait_for(lambda: resumed in emulator.log_text(), "the resume in the emulator's log")
    assert log.count("POST", f"{prefix}/fine_tuning/jobs/{record.job.id}/pause") == 1  # the second was a no-op
    assert log.count("POST", f"{prefix}/fine_tuning/jobs/{record.job.id}/resume") == 1
    notes = [h.note for h in done.history]
    assert any(n.startswith("pause (http): job") for n in notes) and any(n.startswith("resume (cli)") for n in notes)
