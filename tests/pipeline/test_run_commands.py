"""Day-2 commands (shared/run_commands.py) on real runs: cancel, redeploy, watch; CLI and HTTP; each twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared import admission
from shared.advance import tick
from shared.cli import main
from shared.run_commands import cancel, redeploy
from shared.runs import RunState
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import Driver, chat_lines


def _http(services: Services, monkeypatch: pytest.MonkeyPatch, run_id: str, command: str) -> func.HttpResponse:
    import blueprints.api as module

    monkeypatch.setattr(module, "get_services", lambda: services)
    request = func.HttpRequest("POST", f"http://localhost/api/runs/{run_id}/{command}",
                               route_params={"run_id": run_id, "command": command}, body=b"")
    handler = {"cancel": module.cancel_run, "redeploy": module.redeploy_run}[command]
    return handler(request)


def test_cancel_a_training_run_cancels_its_job_and_deletes_its_files_once(
    driver: Driver, services: Services, emulator: Any
) -> None:
    emulator.freeze_clock()  # the job is still training when it is cancelled, however slow the machine
    driver.drop("c.jsonl", chat_lines(20), {"deploy": "false"})
    started = driver.blob_event("c.jsonl")
    assert started is not None
    record = driver.run(started.id, until=lambda r: r.state == RunState.TRAINING)
    log_start = len(emulator.log_text())
    first = cancel(services, record.id)
    assert first.changed and first.record.state == RunState.CANCELLED
    assert first.record.error is not None and first.record.error.code == "cancelled_by_request"
    assert services.aoai.jobs.get(record.job.id or "").status == "cancelled"
    removed = {s.kind: s for s in first.record.surplus if s.effect == "cancel"}
    assert set(removed) == {"job", "file"} and all(s.removed_at is not None for s in removed.values())
    second = cancel(services, record.id)
    assert not second.changed and second.message.endswith("already ended: cancelled")
    log = emulator.log_text()[log_start:]
    assert log.count(f"POST /openai/fine_tuning/jobs/{record.job.id}/cancel") == 1
    assert [h.state for h in second.record.history].count(RunState.CANCELLED) == 1


def test_cancel_a_waiting_run_over_http_and_it_leaves_the_queue(
    app_env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(app_env, RESOURCE_MAX_FILES="2")
    services = Services.from_settings(settings_from_env(env), env=env)
    services.ensure_storage()
    driver = Driver(services, emulator)
    driver.drop("w1.jsonl", chat_lines(20), {"deploy": "false"})
    driver.drop("w2.jsonl", chat_lines(20), {"deploy": "false"})
    driver.blob_event("w1.jsonl")
    waiting = driver.blob_event("w2.jsonl")
    assert waiting is not None and waiting.state == RunState.WAITING
    response = _http(services, monkeypatch, waiting.id, "cancel")
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["changed"] is True and body["state"] == "cancelled"
    again = json.loads(_http(services, monkeypatch, waiting.id, "cancel").get_body())
    assert again["changed"] is False
    tick(services)
    assert admission.place(services, waiting.id) is None  # the ledger dropped it
    assert _http(services, monkeypatch, "no-such-run-000000", "cancel").status_code in (400, 404)
    refused = _http(services, monkeypatch, waiting.id, "redeploy")
    assert refused.status_code == 409 and "no trained model" in json.loads(refused.get_body())["error"]["message"]


def test_redeploy_a_trained_run_and_watch_it(
    driver: Driver, services: Services, emulator: Any, app_env: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    driver.drop("r.jsonl", chat_lines(20), {"deploy": "false", "deployment_name": "redeployed"})
    started = driver.blob_event("r.jsonl")
    assert started is not None
    record = driver.run(started.id)
    assert record.state == RunState.TRAINED and record.deployment.name is None
    log_start = len(emulator.log_text())
    first = redeploy(services, record.id)
    assert first.changed and first.message == f"deployment redeployed serves {record.job.fine_tuned_model}"
    assert first.record.state == RunState.TRAINED and first.record.deployment.provisioning_state == "Succeeded"
    assert first.record.history[-1].note.startswith("redeploy (cli): deployment redeployed serves")
    second = redeploy(services, record.id)
    assert not second.changed and second.message.startswith("deployment redeployed already serves")
    assert emulator.log_text()[log_start:].count("PUT /subscriptions/") == 1
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}), "utf-8")
    assert main(["watch", record.id, "--every", "0", "--settings", str(settings)]) == 0
    assert capsys.readouterr().out.strip().endswith("] trained  step " + str(record.job.latest_metrics.get("step"))
                                                    + f" train_loss {record.job.latest_metrics.get('train_loss')}"
                                                    + (f" valid_loss {record.job.latest_metrics['valid_loss']}"
                                                       if record.job.latest_metrics.get("valid_loss") is not None
                                                       else ""))
    assert main(["redeploy", record.id, "--settings", str(settings)]) == 0
    assert "already serves" in capsys.readouterr().out
    assert main(["cancel", record.id, "--settings", str(settings)]) == 0
    assert "already ended: trained" in capsys.readouterr().out
