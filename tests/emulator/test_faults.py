"""Fault injection: 429 / 500 / 503 / dropped connections / latency, by rate, count and skip, on both planes."""
from __future__ import annotations

import time

import httpx
import pytest
from openai import AzureOpenAI

from tests.emulator.conftest import ARM, GA, arm_headers, make_client
from tests.harness.emulator import EmulatorProcess


def _models(emulator: EmulatorProcess, client: httpx.Client | None = None) -> httpx.Response:
    send = client or httpx
    return send.get(f"{emulator.base_url}/openai/models", params={"api-version": GA},  # type: ignore[union-attr]
                    headers={"api-key": emulator.api_key or ""})


def test_429_with_retry_after_for_a_count(emulator: EmulatorProcess) -> None:
    rule = emulator.inject_fault("GET", "/openai/models", "429", count=2, retry_after=3)
    statuses = [_models(emulator) for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    throttled = statuses[0]
    assert throttled.headers["retry-after"] == "3" and throttled.headers["retry-after-ms"] == "3000"
    assert throttled.json()["error"]["code"] == "429"
    assert throttled.json()["error"]["message"].endswith("Please retry after 3 seconds.")
    [after] = [r for r in emulator.faults() if r["id"] == rule["id"]]
    assert after["fired"] == 2 and after["matched"] == 2  # an exhausted rule stops matching


def test_the_sdk_retries_through_429s(emulator: EmulatorProcess) -> None:
    client: AzureOpenAI = make_client(emulator, max_retries=2)
    emulator.inject_fault("GET", "/openai/fine_tuning/jobs", "429", count=2, retry_after=1)
    started = time.monotonic()
    page = client.fine_tuning.jobs.list(limit=1)
    assert page.object == "list"
    assert time.monotonic() - started >= 2.0  # honoured Retry-After twice
    assert emulator.faults()[0]["fired"] == 2
    assert emulator.log_text().count("GET /openai/fine_tuning/jobs 429") >= 2


@pytest.mark.parametrize(("mode", "code"), [("500", "internalFailure"), ("503", "serviceUnavailable")])
def test_server_errors(emulator: EmulatorProcess, mode: str, code: str) -> None:
    emulator.inject_fault("GET", "/openai/models", mode, count=1)
    failed = _models(emulator)
    assert failed.status_code == int(mode) and failed.json()["error"]["code"] == code
    assert _models(emulator).status_code == 200


def test_control_plane_faults_use_the_arm_envelope(emulator: EmulatorProcess) -> None:
    emulator.inject_fault("PUT", "/subscriptions/*/deployments/*", "503", count=1, retry_after=2)
    emulator.inject_fault("GET", "/subscriptions/*", "429", count=1)
    body = {"sku": {"name": "Standard", "capacity": 1}, "properties": {"model": {"format": "OpenAI",
                                                                                 "name": "gpt-4o-2024-08-06"}}}
    put = httpx.put(emulator.arm_deployments_url("faulty"), params={"api-version": ARM}, json=body,
                    headers=arm_headers(emulator))
    assert put.status_code == 503 and put.json()["error"]["code"] == "ServiceUnavailable"
    assert put.headers["retry-after"] == "2"
    listed = httpx.get(emulator.arm_deployments_url(), params={"api-version": ARM}, headers=arm_headers(emulator))
    assert listed.status_code == 429 and listed.json()["error"]["code"] == "TooManyRequests"
    assert set(listed.json()["error"]) == {"code", "message", "target", "details", "additionalInfo"}


def test_dropped_connection(emulator: EmulatorProcess) -> None:
    emulator.inject_fault("POST", "/openai/fine_tuning/jobs", "drop", count=1)
    # The server closes without answering: seen as a protocol error or, when the close races the read, a reset.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(f"{emulator.base_url}/openai/fine_tuning/jobs", params={"api-version": GA},
                   headers={"api-key": emulator.api_key or ""}, json={"model": "x", "training_file": "y"})
    after = httpx.post(f"{emulator.base_url}/openai/fine_tuning/jobs", params={"api-version": GA},
                       headers={"api-key": emulator.api_key or ""}, json={"model": "x", "training_file": "y"})
    assert after.status_code == 400
    assert "POST /openai/fine_tuning/jobs dropped" in emulator.log_text()


def test_added_latency(emulator: EmulatorProcess) -> None:
    rule = emulator.inject_fault("GET", "/openai/models", "latency", latency_ms=400, count=1)
    started = time.monotonic()
    assert _models(emulator).status_code == 200
    assert time.monotonic() - started >= 0.4  # a lower bound only: a slow machine can only make it longer
    assert _models(emulator).status_code == 200
    fired = next(r for r in emulator.faults() if r["id"] == rule["id"])
    assert fired["fired"] == 1  # the second request was not delayed (counted, not timed)


def test_a_slow_answer_comes_after_the_service_has_acted(emulator: EmulatorProcess) -> None:
    """Mode slow: the create is done at once, only its answer waits; a client that gives up first never hears of
    it, yet the file exists (what the app reconciles after an ambiguous failure)."""
    emulator.inject_fault("POST", "/openai/files", "slow", latency_ms=5000, count=1)
    name = f"slow-{time.monotonic_ns()}.jsonl"
    headers, params = {"api-key": emulator.api_key or ""}, {"api-version": GA}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{emulator.base_url}/openai/files", params=params, headers=headers, timeout=0.5,
                   files={"file": (name, b'{"messages": []}\n')}, data={"purpose": "fine-tune"})
    listed = httpx.get(f"{emulator.base_url}/openai/files", params=params, headers=headers).json()["data"]
    assert [f["filename"] for f in listed if f["filename"] == name] == [name]


def test_rate_is_a_seeded_fraction(emulator: EmulatorProcess) -> None:
    rule = emulator.inject_fault("GET", "/openai/models", "500", rate=0.5)
    with httpx.Client() as client:
        codes = [_models(emulator, client).status_code for _ in range(40)]
    failures = codes.count(500)
    assert 8 <= failures <= 32 and failures + codes.count(200) == 40
    [after] = [r for r in emulator.faults() if r["id"] == rule["id"]]
    assert after["fired"] == failures and after["matched"] == 40


def test_skip_then_fire_and_method_filter(emulator: EmulatorProcess) -> None:
    emulator.inject_fault("GET", "/openai/models*", "503", skip=1, count=1)
    emulator.inject_fault("POST", "/openai/models", "500")
    assert [_models(emulator).status_code for _ in range(3)] == [200, 503, 200]


def test_admin_is_never_faulted_and_rules_are_validated(emulator: EmulatorProcess) -> None:
    emulator.inject_fault("*", "/*", "500")
    assert emulator.health()["status"] == "ok"
    bad = httpx.post(f"{emulator.base_url}/_emulator/faults", json={"path": "/x", "mode": "418"})
    assert bad.status_code == 400 and "mode must be one of" in bad.json()["error"]["message"]
    emulator.clear_faults()
    assert emulator.faults() == []
    assert _models(emulator).status_code == 200
