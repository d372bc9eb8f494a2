"""watch over HTTP (the long poll of shared/watch.py through the real handler) and what `status` shows."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared import admission, watch
from shared.cli import main
from shared.runs import RunRecord, RunSource, RunState
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import Driver, chat_lines


def _watch(services: Services, monkeypatch: pytest.MonkeyPatch, run_id: str, **params: Any) -> func.HttpResponse:
    import blueprints.api as module

    monkeypatch.setattr(module, "get_services", lambda: services)
    request = func.HttpRequest("GET", f"http://localhost/api/runs/{run_id}/watch",
                               params={k: str(v) for k, v in params.items()}, route_params={"run_id": run_id},
                               body=b"")
    return module.watch_run(request)


def test_the_long_poll_answers_with_the_change_and_then_waits(
    services: Services, monkeypatch: pytest.MonkeyPatch, unique_name: Any
) -> None:
    monkeypatch.setattr(watch, "POLL_SECONDS", 0.02)
    record = RunRecord.new(unique_name("watched"), RunSource(container="c", blob_name="w.jsonl", etag="1"))
    services.store.create(record)
    first = json.loads(_watch(services, monkeypatch, record.id, after=0, timeout=0).get_body())
    assert first["changed"] and [h["state"] for h in first["history"]] == ["received"] and first["next_after"] == 1
    quiet = json.loads(_watch(services, monkeypatch, record.id, after=1, etag=first["etag"], timeout=0).get_body())
    assert not quiet["changed"] and quiet["history"] == [] and quiet["etag"] == first["etag"]

    answers: list[dict[str, Any]] = []
    held = threading.Thread(target=lambda: answers.append(json.loads(
        _watch(services, monkeypatch, record.id, after=1, etag=first["etag"], timeout=20).get_body())))
    held.start()
    services.store.advance(record.id, (RunState.RECEIVED,), RunState.VALIDATING, "validating")
    held.join(30)
    assert not held.is_alive()
    [moved] = answers
    assert moved["changed"] and moved["state"] == "validating" and moved["next_after"] == 2
    assert [h["note"] for h in moved["history"]] == ["validating"]  # only what is new after `after`

    assert _watch(services, monkeypatch, "no-such-run-000000", timeout=0).status_code == 404
    assert _watch(services, monkeypatch, record.id, after="x").status_code == 400


def test_status_shows_split_epochs_metrics_gate_cost_and_artifacts(
    driver: Driver, services: Services, app_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    driver.drop("shown.jsonl", chat_lines(40), {"deploy": "false", "gate_max_train_loss": "5", "n_epochs": "2",
                                                "validation_split": "0.25"})
    started = driver.blob_event("shown.jsonl")
    assert started is not None
    record = driver.run(started.id)
    assert record.state == RunState.TRAINED
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}))
    assert main(["status", record.id, "--settings", str(settings)]) == 0
    out = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and
           line.split()}
    assert record.cost is not None
    assert f"training {record.cost.trained_examples} examples" in out["split"] and "validation " in out["split"]
    assert out["epochs"].split()[1:] == ["2", "(set", "in", "the", "spec)"]
    assert "final train loss" in out["metrics"] and "overfitting=" in out["metrics"]
    assert out["gate"].split()[1:3] == ["passed", "(1"]
    assert "ok" in out["ok"] and "train_loss" in out["ok"]
    assert out["cost"].startswith("  cost        estimated")
    assert out["artifacts"].strip() == f"artifacts   {services.settings.runs_container}/runs/{record.id}/"
    assert out["metrics.json"].split()[1:] == ["GET", f"/api/runs/{record.id}/metrics.json"]


def test_the_runs_table_shows_a_waiting_runs_place_and_why(
    app_env: dict[str, str], emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = dict(app_env, RESOURCE_MAX_FILES="2")  # room for one run's files at most: the second run waits
    services = Services.from_settings(settings_from_env(env), env=env)
    services.ensure_storage()
    driver = Driver(services, emulator)
    for name in ("first.jsonl", "second.jsonl"):
        driver.drop(name, chat_lines(20), {"deploy": "false"})
    driver.blob_event("first.jsonl")
    waiting = driver.blob_event("second.jsonl")
    assert waiting is not None and waiting.state == RunState.WAITING
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": env}))
    assert main(["runs", "--settings", str(settings)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(waiting.id))
    found = admission.place(services, waiting.id)  # the session emulator holds other tests' files: not always 1st
    assert found is not None and row.split()[1] == "waiting"
    assert f"position {found.position} of {found.of}: " in row and "file quota: " in row, row
