"""Drop to deployed for the two newer kinds of fine-tuning: RFT on o4-mini, and SFT on an open-weight model.

Each is one run through the real handlers on Azurite and the emulator; what went over the wire is checked in the
emulator's request log and in what it recorded (the job's method, the deployment's model.format)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared.runs import RunState
from shared.services import Services
from tests.harness.pipeline import Driver, chat_lines
from tests.harness.waiting import wait_for
from tests.pipeline.test_engine import RequestLog

GRADER = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}"}
WORDS = ["apple", "bridge", "candle", "desert", "orange", "forest", "garden", "harbor", "island", "jungle",
         "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quartz", "river", "saddle", "tunnel",
         "valley", "walnut", "yellow", "zephyr", "anchor", "beacon", "copper", "dragon", "ember", "falcon"]


def rft_lines(n: int, *, field: str = "answer") -> bytes:
    lines = []
    for i in range(n):
        messages = [{"role": "developer", "content": "Answer with the number only."},
                    {"role": "user", "content": f"What is {i} plus {i + 1} in the {WORDS[i]} puzzle?"}]
        lines.append(json.dumps({"messages": messages, field: str(2 * i + 1)}))
    return ("\n".join(lines) + "\n").encode()


def _arm_deployment(services: Services, name: str) -> dict[str, Any]:
    settings = services.settings
    url = (f"{settings.azure_management_endpoint.rstrip('/')}/subscriptions/{settings.azure_subscription_id}"
           f"/resourceGroups/{settings.azure_resource_group}/providers/Microsoft.CognitiveServices/accounts/"
           f"{settings.azure_openai_account_name}/deployments/{name}")
    token = settings.azure_management_token.get_secret_value() if settings.azure_management_token else ""
    response = httpx.get(url, params={"api-version": "2025-09-01"}, headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _puts(emulator: Any, log: RequestLog, deployment: str) -> list[str]:
    """The statuses the emulator answered to PUTs of `deployment` since `log` began (the log is read in a
    thread: the first one is waited for)."""

    def statuses() -> list[str]:
        out = []
        for line in emulator.log_text().splitlines()[log.start:]:
            marker = f"/deployments/{deployment} "
            if " PUT " in line and marker in line:
                out.append(line.split(marker, 1)[1].split()[0])
        return out

    wait_for(statuses, f"a PUT of {deployment} in the emulator's log")
    return statuses()


def _job_as_the_preview_shows_it(emulator: Any, job_id: str) -> dict[str, Any]:
    """The job at the preview api-version, which shows `method` and `trainingType` (GA shows neither)."""
    response = httpx.get(f"{emulator.base_url}/openai/fine_tuning/jobs/{job_id}",
                         params={"api-version": "2025-04-01-preview"}, headers={"api-key": emulator.api_key})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def test_rft_on_o4_mini_goes_from_drop_to_deployed(driver: Driver, services: Services, emulator: Any) -> None:
    log = RequestLog(emulator)
    metadata = {"model": "o4-mini-2025-04-16", "rft_grader": json.dumps(GRADER), "reasoning_effort": "low",
                "eval_samples": "5", "eval_interval": "2", "compute_multiplier": "1.5", "n_epochs": "2",
                "gate_min_valid_reward": "0.3"}
    name = driver.drop("puzzles.jsonl", rft_lines(30), metadata)
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING, record.error
    assert record.spec is not None and record.spec.method == "reinforcement"
    assert record.validation is not None and record.validation.examples == 30
    assert record.files.validation.blob is not None  # RFT needs a validation file: the split made one
    record = driver.run(record.id, timeout=90)
    assert record.state == RunState.DEPLOYED, record.error

    # the job went out once, as an RFT job, with the grader and every hyperparameter under the method
    assert log.count("POST", "/openai/fine_tuning/jobs") == 1
    assert record.job.id is not None
    job = _job_as_the_preview_shows_it(emulator, record.job.id)
    assert job["method"]["type"] == "reinforcement"
    sent = job["method"]["reinforcement"]
    assert sent["grader"] == GRADER
    assert {k: sent["hyperparameters"][k] for k in ("reasoning_effort", "eval_samples", "eval_interval",
                                                     "compute_multiplier", "n_epochs")} == {
        "reasoning_effort": "low", "eval_samples": 5, "eval_interval": 2, "compute_multiplier": 1.5, "n_epochs": 2}
    # the rewards are measured: metrics.json, the record and the reward chart
    metrics = json.loads(services.store.get_artifact(record.id, "metrics.json") or b"{}")
    reward = metrics["reward"]
    assert reward["final_train_reward_mean"] > reward["first_train_reward_mean"]
    assert reward["final_valid_reward_mean"] is not None and reward["parse_errors"] is not None
    assert record.metrics is not None and record.metrics.reward is not None
    assert record.gate is not None and record.gate.passed
    assert [c.check for c in record.gate.checks] == ["min_valid_reward"]
    png = services.store.get_artifact(record.id, "reward.png") or b""
    assert png.startswith(b"\x89PNG")
    from shared.runs_cli import detail_lines

    assert any(line.startswith("  reward      train ") for line in detail_lines(services, record))
    # deployed as an OpenAI model and answered the smoke test
    assert _puts(emulator, log, str(record.deployment.name)) == ["201"]
    assert _arm_deployment(services, str(record.deployment.name))["properties"]["model"]["format"] == "OpenAI"
    assert record.deployment.smoke_test is not None and record.deployment.smoke_test.status == "passed"


def test_a_grader_field_missing_from_the_data_is_rejected_before_upload(driver: Driver, services: Services,
                                                                       emulator: Any) -> None:
    log = RequestLog(emulator)
    lines = rft_lines(30).decode().splitlines()
    broken = json.loads(lines[6])
    broken["solution"] = broken.pop("answer")
    lines[6] = json.dumps(broken)
    name = driver.drop("silent.jsonl", ("\n".join(lines) + "\n").encode(),
                       {"model": "o4-mini-2025-04-16", "rft_grader": json.dumps(GRADER)})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and "line 7" in record.error.message
    assert "rft_missing_grader_field" in record.error.message or "item.answer" in record.error.message
    assert log.count("POST", "/openai/files/import") == 0 and log.count("POST", "/openai/files") == 0


def test_sft_on_an_open_weight_model_goes_from_drop_to_deployed(driver: Driver, services: Services,
                                                                emulator: Any) -> None:
    log = RequestLog(emulator)
    name = driver.drop("ministral.jsonl", chat_lines(24), {"model": "Ministral-3B", "suffix": "ow"})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING, record.error
    spec = record.spec
    assert spec is not None
    # from the open-weight data, not the app's defaults (Standard, capacity 1) nor the catalogue's flag
    assert (spec.training_type, spec.deployment.sku, spec.deployment.capacity) == ("GlobalStandard",
                                                                                  "GlobalStandard", 100)
    record = driver.run(record.id, timeout=90)
    assert record.state == RunState.DEPLOYED, record.error

    assert log.count("POST", "/openai/fine_tuning/jobs") == 1
    assert record.job.id is not None
    job = _job_as_the_preview_shows_it(emulator, record.job.id)
    assert (job["model"], job["trainingType"], job["method"]["type"]) == ("Ministral-3B", "GlobalStandard",
                                                                         "supervised")
    assert record.job.fine_tuned_model and record.job.fine_tuned_model.startswith("Ministral-3B.ft-")
    deployment = _arm_deployment(services, str(record.deployment.name))
    # one PUT, answered 2xx: the provider's case-sensitive format (a wrong one is the emulator's 500, as Azure's)
    assert _puts(emulator, log, str(record.deployment.name)) == ["201"]
    assert deployment["properties"]["model"]["format"] == "Mistral AI"
    assert deployment["sku"] == {"name": "GlobalStandard", "capacity": 100}
    assert record.deployment.smoke_test is not None and record.deployment.smoke_test.status == "passed"
