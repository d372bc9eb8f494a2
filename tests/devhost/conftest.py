"""Run devhost as a real subprocess against the session's Azurite, with the fixture app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import Azurite
from shared.connections import StorageConnection
from tests.harness.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
FIXTURE_APP = Path(__file__).resolve().parent / "fixture_app"
ALL_FUNCTIONS = ("blob_client_fn", "blob_stream_fn", "queue_fn", "timer_fn", "daily_fn",
                 "item_fn", "hello_fn", "admin_fn", "boom_fn")
READY_TIMEOUT = 30.0


class DevhostProcess:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=self._log, text=True, start_new_session=True,
        )
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready_line = wait_for(self._ready, f"devhost ready line (log: {log_path})", READY_TIMEOUT)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))

    def _ready(self) -> str | None:
        if self.proc.poll() is not None and not any(x.startswith("devhost ready") for x in self.stdout):
            pytest.fail(f"devhost exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return next((x for x in self.stdout if x.startswith("devhost ready")), None)

    @property
    def base_url(self) -> str:
        return self.ready_line.split(" at ", 1)[1].split(")", 1)[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return int(self.proc.returncode)


@dataclass
class Scenario:
    """Names and settings for one test: its own containers, queue, host id and record folder."""

    azurite: Azurite
    record_dir: Path
    log_dir: Path
    names: dict[str, str]
    host_id: str
    started: list[DevhostProcess] = field(default_factory=list)

    @property
    def connection(self) -> StorageConnection:
        return StorageConnection.from_settings("AzureWebJobsStorage", self.azurite.env())

    def env(self, only: tuple[str, ...], extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobs")}
        env.update(self.azurite.env())
        env.update(self.names)
        env.update({
            "RECORD_DIR": str(self.record_dir),
            "PYTHONPATH": str(REPO),
            "DEVHOST_FUNCTION_KEY": "test-function-key",
        })
        for name in ALL_FUNCTIONS:
            if name not in only:
                env[f"AzureWebJobs.{name}.Disabled"] = "true"
        env.update(extra or {})
        return env

    def start(self, only: tuple[str, ...], *, extra_env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()) -> DevhostProcess:
        log_path = self.log_dir / f"devhost-{len(self.started)}.log"
        proc = DevhostProcess(
            ["--app", "function_app", "--app-dir", str(FIXTURE_APP), "--http-port", "0",
             "--poll-interval", "0.2", "--host-id", self.host_id, *args],
            self.env(only, extra_env), log_path,
        )
        self.started.append(proc)
        return proc

    def records(self, function: str | None = None) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.record_dir.glob("*.json")):
            data = json.loads(path.read_text())
            if function is None or data["function"] == function:
                out.append(data)
        return out


@pytest.fixture
def scenario(azurite: Azurite, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[Scenario]:
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    sc = Scenario(
        azurite=azurite, record_dir=record_dir, log_dir=tmp_path,
        names={
            "BLOB_CONTAINER": unique_name("blobs"),
            "STREAM_CONTAINER": unique_name("streams"),
            "QUEUE_NAME": unique_name("work"),
            "TIMER_SCHEDULE": "*/1 * * * * *",
        },
        host_id=unique_name("host")[:32],
    )
    yield sc
    for proc in sc.started:
        proc.stop()
