"""The emulator as a process: ready line, ports, request log, flags and env vars, persistence across restarts."""
from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.emulator.conftest import GA, arm_put, chat_jsonl, create_job, make_client, upload, wait_file, wait_for
from tests.harness.emulator import EmulatorProcess, start_emulator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gateway_errors(emulator: EmulatorProcess) -> None:
    base = emulator.base_url
    key = {"api-key": emulator.api_key or ""}
    not_found = {"error": {"code": "404", "message": "Resource not found"}}
    assert httpx.get(f"{base}/openai/models", headers=key).json() == not_found
    old = httpx.get(f"{base}/openai/models", params={"api-version": "2022-12-01"}, headers=key)
    assert old.status_code == 404 and old.json() == not_found
    wrong_path = httpx.get(f"{base}/openai/nothing-here", params={"api-version": GA}, headers=key)
    assert wrong_path.status_code == 404 and wrong_path.json() == not_found
    denied = httpx.get(f"{base}/openai/models", params={"api-version": GA}, headers={"api-key": "wrong"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "401"
    bearer = httpx.get(f"{base}/openai/models", params={"api-version": GA},
                       headers={"Authorization": "Bearer any-entra-token"})
    assert bearer.status_code == 200
    empty_bearer = httpx.get(f"{base}/openai/models", params={"api-version": GA}, headers={"Authorization": "Bearer"})
    assert empty_bearer.status_code == 401
    v1 = httpx.get(f"{base}/openai/v1/models", headers=key)
    assert v1.status_code == 200 and any(m["id"] == "gpt-4o-mini-2024-07-18" for m in v1.json()["data"])
    assert httpx.get(f"{base}/openai/v1/models", params={"api-version": GA}, headers=key).status_code == 404


def test_request_log_has_no_query_string(emulator: EmulatorProcess) -> None:
    httpx.get(f"{emulator.base_url}/openai/models", params={"api-version": GA, "marker": "zz-query-zz"},
              headers={"api-key": emulator.api_key or ""})
    log = emulator.log_text()
    assert "INFO GET /openai/models 200" in log
    assert "zz-query-zz" not in log and "api-version=" not in log


def test_fixed_port_env_key_bearer_and_cli_fault() -> None:
    port = _free_port()
    with start_emulator(api_key=None, extra_args=["--port", str(port), "--bearer-token", "only-this",
                                                  "--fault", "GET /openai/models 503 count=1"],
                        env={"EMULATOR_API_KEY": "from-env"}) as emu:
        assert emu.base_url == f"http://127.0.0.1:{port}"
        assert f"emulator listening on http://127.0.0.1:{port}" in emu.log_text()
        url = f"{emu.base_url}/openai/models"
        first = httpx.get(url, params={"api-version": GA}, headers={"api-key": "from-env"})
        assert first.status_code == 503
        assert httpx.get(url, params={"api-version": GA}, headers={"api-key": "from-env"}).status_code == 200
        assert httpx.get(url, params={"api-version": GA}, headers={"api-key": "other"}).status_code == 401
        assert httpx.get(url, params={"api-version": GA},
                         headers={"Authorization": "Bearer not-this"}).status_code == 401
        assert httpx.get(url, params={"api-version": GA},
                         headers={"Authorization": "Bearer only-this"}).status_code == 200


def test_no_key_configured_accepts_anything_and_reset_forgets() -> None:
    with start_emulator(api_key=None) as emu:
        url = f"{emu.base_url}/openai/files"
        created = httpx.post(url, params={"api-version": GA}, data={"purpose": "fine-tune"},
                             files={"file": ("a.jsonl", chat_jsonl())})
        assert created.status_code == 201
        assert len(httpx.get(url, params={"api-version": GA}).json()["data"]) == 1
        emu.reset()
        assert httpx.get(url, params={"api-version": GA}).json()["data"] == []
        assert emu.health()["files"] == 0


def test_state_dir_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with start_emulator(state_dir=state, time_scale=0.5) as first:
        client = make_client(first)
        file_id = wait_file(client, upload(client, chat_jsonl()).id).id
        first.freeze_clock()  # the job is still pending below, however slow the machine
        job = create_job(client, file_id, seed=5)
        assert arm_put(first, "base-dep", "gpt-4o-2024-08-06").status_code == 201
        assert client.fine_tuning.jobs.retrieve(job.id).status == "pending"
    assert (state / "state.json").exists() and (state / "files" / file_id).exists()
    with start_emulator(state_dir=state, time_scale=0.5) as second:
        client = make_client(second)
        assert client.files.retrieve(file_id).status == "processed"
        assert client.files.content(file_id).content == chat_jsonl()
        final = wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status == "succeeded",
                         timeout=30)
        assert final.seed == 5 and final.trained_tokens > 0
        assert final.created_at == job.created_at
        deployment = httpx.get(second.arm_deployments_url("base-dep"), params={"api-version": "2024-10-01"},
                               headers={"Authorization": "Bearer t"})
        assert deployment.json()["properties"]["provisioningState"] == "Succeeded"
