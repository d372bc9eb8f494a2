"""The product's function_app.py under the development host, end to end, with two hosts sharing the work.

This is the real composition: blob trigger -> timer -> deploy queue, through devhost processes against
Azurite and the emulator (a stack of its own, on free ports), the way `make demo` runs it.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from devstack import Stack
from shared.cli import main as cli_main
from shared.runs import RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import drop_file
from tests.harness.runs import wait_for_run
from tests.harness.waiting import wait_for

DATA = Path(__file__).resolve().parents[2] / "demo" / "data"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"the e2e webhook secret, 32 bytes").decode()


def test_two_devhosts_take_a_drop_to_deployed_once(tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", extra_settings={"TRAINING_POLL_SCHEDULE": "*/1 * * * * *"}) as stack:
        stack.start_devhost()  # a second instance: scale-out
        services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
        services.ensure_storage()
        _, run_id = drop_file(
            services,
            str(DATA / "support-train.jsonl"),
            name="e2e.jsonl",
            validation_path=str(DATA / "support-valid.jsonl"),
            metadata={"deployment_name": "e2e", "suffix": "e2e"},
        )
        record = wait_for_run(services, run_id, emulator_url=stack.emulator_url)
        assert record is not None and record.state == RunState.DEPLOYED, record and record.model_dump_json(indent=1)
        assert record.deployment.smoke_test is not None and record.deployment.smoke_test.status == "passed"
        jobs = [j for j in services.aoai.jobs.list(limit=100) if j.training_file == record.files.training.file_id]
        assert len(jobs) == 1
        files = [f for f in services.aoai.files.list() if f.filename == f"{run_id}-training.jsonl"]
        assert len(files) <= 1  # imported once; deleted by retention once the job ended (recorded below)
        retained = [s.id for s in record.surplus if s.effect == "retention"]
        assert record.files.training.file_id in retained and len(retained) == len(set(retained)) == 2
        assert services.deployments is not None
        assert [d.name for d in services.deployments.list()] == ["e2e"]
        for name in ("metrics.json", "loss.png", "accuracy.png", "results.csv", "validation.json"):
            assert services.store.get_artifact(run_id, name), name
        logs = [p.read_text() for p in (tmp_path / "stack").glob("devhost*.log")]
        assert len(logs) == 2 and all("devhost ready" in text for text in logs)


def test_quota_refusal_is_retried_by_the_queue_then_poisoned_and_the_run_failed(tmp_path: Path) -> None:
    settings = {
        "TRAINING_POLL_SCHEDULE": "*/1 * * * * *",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
    }
    with Stack(tmp_path / "stack", extra_settings=settings) as stack:
        httpx.post(
            f"{stack.emulator_url}/_emulator/scenarios", json={"scenario": "quota", "available_capacity": 0}
        ).raise_for_status()
        services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
        services.ensure_storage()
        _, run_id = drop_file(
            services,
            str(DATA / "support-train.jsonl"),
            name="quota.jsonl",
            metadata={"deployment_name": "no-room", "validation_split": "0"},
        )
        record = wait_for_run(services, run_id, emulator_url=stack.emulator_url)
        assert record is not None and record.state == RunState.FAILED, record and record.state
        assert record.error is not None and record.error.code == "InsufficientQuota"
        assert "gave up after 3 tries" in record.error.message and "capacity" in record.error.message
        assert record.deployment.attempts == 3
        poison = services.queue(services.settings.deploy_queue + "-poison")
        wait_for(poison.peek_messages, "the deploy message in the poison queue", 10, 0.3)
        messages = poison.peek_messages(max_messages=5)
        assert len(messages) == 1 and run_id in messages[0].content


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that also serves the training file (for the submit queue's URL)."""

    events: list[dict[str, Any]] = []
    payload = b""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        # A receiver verifies the Standard Webhooks signature before it trusts the event.
        type(self).events.append(Webhook(WEBHOOK_SECRET).verify(body, dict(self.headers.items())))
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


def test_http_api_submit_queue_and_webhook(tmp_path: Path) -> None:
    _Receiver.events = []
    _Receiver.payload = (DATA / "support-train.jsonl").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}"
    settings = {
        "TRAINING_POLL_SCHEDULE": "*/1 * * * * *",
        "NOTIFY_WEBHOOK_URL": f"{hook}/hook",
        "NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    try:
        with Stack(tmp_path / "stack", extra_settings=settings) as stack:
            key = {"x-functions-key": stack.function_key}
            assert httpx.get(f"{stack.http_url}/runs").status_code == 401
            answer = httpx.post(  # the key as ?code=, the other documented way
                f"{stack.http_url}/runs",
                params={
                    "name": "api.jsonl",
                    "deployment_name": "api",
                    "validation_split": "0",
                    "code": stack.function_key,
                },
                content=_Receiver.payload,
            )
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["run_id"]
            again = httpx.post(f"{stack.http_url}/runs", params={"name": "api.jsonl"}, content=b"x", headers=key)
            assert again.status_code == 200 and again.json() == {
                "run_id": run_id,
                "blob_name": "api.jsonl",
                "status": "already_submitted",
            }
            bad = httpx.post(f"{stack.http_url}/runs", params={"name": "x.jsonl", "colour": "red"}, headers=key)
            assert bad.status_code == 400 and "colour" in bad.json()["error"]["message"]

            services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
            services.queue(services.settings.submit_queue).send_message(
                json.dumps({"url": f"{hook}/data.jsonl", "name": "queued.jsonl", "spec": {"deploy": "false"}})
            )
            record = wait_for_run(services, run_id, emulator_url=stack.emulator_url)
            assert record is not None and record.state == RunState.DEPLOYED

            listed = httpx.get(f"{stack.http_url}/runs", headers=key).json()
            assert run_id in [r["id"] for r in listed]
            one = httpx.get(f"{stack.http_url}/runs/{run_id}", headers=key).json()
            assert one["state"] == "deployed" and one["deployment"]["name"] == "api"
            png = httpx.get(f"{stack.http_url}/runs/{run_id}/loss.png", headers=key)
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
            assert httpx.get(f"{stack.http_url}/runs/nope", headers=key).status_code == 404
            # watch over HTTP: the long poll answers at once for an ended run, before the {artifact} route
            watched = httpx.get(f"{stack.http_url}/runs/{run_id}/watch", params={"after": 0, "timeout": 5},
                                headers=key).json()
            assert watched["terminal"] and watched["state"] == "deployed"
            assert [h["state"] for h in watched["history"]][-1] == "deployed"
            assert httpx.get(f"{stack.http_url}/runs/{run_id}/watch").status_code == 401
            assert cli_main(["watch", run_id, "--api", stack.http_url, "--key", stack.function_key]) == 0

            queued_run = wait_for(
                lambda: next((r for r in services.store.iter_records() if r.source.blob_name == "queued.jsonl"), None),
                "the run submitted through the queue",
                60,
                0.5,
            )
            queued = wait_for_run(services, queued_run.id, emulator_url=stack.emulator_url)
            assert queued is not None and queued.state == RunState.TRAINED  # deploy=false: trained and measured
            assert queued.metrics is not None
            # Webhooks are delivered from the outbox, after the state change: wait for the last one.
            wait_for(
                lambda: any(e["subject"] == run_id and e["data"]["state"] == "deployed" for e in _Receiver.events),
                "the webhook of the deployed state",
                30,
                0.3,
            )
    finally:
        server.shutdown()
    events = sorted((e for e in _Receiver.events if e["subject"] == run_id), key=lambda e: e["time"])
    states = [e["data"]["state"] for e in events]
    assert states[-1] == "deployed"
    assert {"validating", "importing", "training", "succeeded", "deploying"} <= set(states)
    assert all(e["specversion"] == "1.0" and str(e["id"]).endswith(f":{e['data']['state']}") for e in events)
    assert len({e["id"] for e in _Receiver.events}) == len(_Receiver.events)
    logs = "".join(p.read_text() for p in (tmp_path / "stack").glob("devhost*.log"))
    assert "/hook" not in logs and "/data.jsonl" not in logs  # webhook and submitted URLs are never logged


def test_a_devhost_killed_mid_job_create_leaves_one_job_that_the_next_one_finds(tmp_path: Path) -> None:
    """SIGKILL, not a simulated crash: the process dies while its job POST is in flight (the service creates the
    job at once and holds its answer back: fault mode `slow`). The next devhost waits out the dead holder's
    lease, reconciles, finds that job and follows it: one POST in the emulator's log, one job, the run trained."""
    settings = {"TRAINING_POLL_SCHEDULE": "*/1 * * * * *", "LEASE_SECONDS": "3"}
    with Stack(tmp_path / "stack", extra_settings=settings) as stack:
        emulator = stack.emulator_url
        httpx.post(f"{emulator}/_emulator/faults", json={"method": "POST", "path": "/openai/fine_tuning/jobs",
                                                         "mode": "slow", "latency_ms": 3000, "count": 1},
                   ).raise_for_status()
        services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
        services.ensure_storage()
        _, run_id = drop_file(services, str(DATA / "support-train.jsonl"), name="killed.jsonl",
                              metadata={"deploy": "false", "validation_split": "0"})

        def creating() -> bool:
            found = services.store.load(run_id)
            lease = found[0].leases.get("job_create") if found else None
            return lease is not None and lease.holder is not None

        wait_for(creating, "the devhost to hold the job create's lease", 60, 0.05)
        assert stack.devhost is not None
        os.killpg(stack.devhost.pid, signal.SIGKILL)  # mid-request: the answer never reaches anyone
        stack.devhost.wait(10)
        dead = services.store.get(run_id)
        assert dead.job.id is None and dead.leases["job_create"].holder is not None  # died holding it
        stack.start_devhost()
        record = wait_for_run(services, run_id, emulator_url=emulator)
        assert record.state == RunState.TRAINED, record.model_dump_json(indent=1)[:3000]
        jobs = [j for j in services.aoai.jobs.list(limit=100) if j.training_file == record.files.training.file_id]
        assert [j.id for j in jobs] == [record.job.id]  # the dead holder's job, found, not a second one
        log = (tmp_path / "stack" / "emulator.log").read_text()  # the POST was answered seconds ago
        posts = [line for line in log.splitlines() if " POST /openai/fine_tuning/jobs " in line]
        assert len(posts) == 1 and " 201 " in posts[0], posts  # the dead holder's, answered to no one
