"""The local stack: Azurite + the Azure OpenAI emulator + the development host, on free loopback ports.

    with Stack() as stack:          # starts all three, writes .stack/local.settings.json
        stack.settings_env          # the app settings the devhost runs with
    # everything it started is stopped, whatever happened

Used by `make dev` (`python -m devstack`), `make demo` and the end-to-end tests. Logs go to `.stack/*.log`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from devhost.azurite import Azurite, free_port

if TYPE_CHECKING:
    from shared.services import Services

REPO = Path(__file__).resolve().parents[1]
SHARED_TIKTOKEN = REPO.parent / "shared" / "tiktoken"
HOST = "127.0.0.1"

# Local values of every setting the app reads that differ from the defaults (see local.settings.sample.json).
LOCAL_SETTINGS: dict[str, str] = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "TRAINING_POLL_SCHEDULE": "*/2 * * * * *",
    "AZURE_OPENAI_API_VERSION": "2024-10-21",
    "AZURE_MANAGEMENT_TOKEN": "local-emulator-token",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-local",
    "AZURE_OPENAI_ACCOUNT_NAME": "aoai-local",
    "LRO_MAX_WAIT_SECONDS": "1",
    # Local only: submitted URLs may be http:// on this machine (never link-local, private or metadata addresses).
    "SUBMIT_ALLOW_LOCAL_HTTP": "true",
    # Host.json override, the way Azure app settings override host.json: retry deploys after 5 s locally.
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:05",
}


class StackError(RuntimeError):
    """A part of the local stack did not start."""


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path, *, any_status: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{proc.args!r} exited with {proc.returncode}; log tail:\n{_tail(log)}")
        try:
            response = httpx.get(url, timeout=1.0)
            if any_status or response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StackError(f"{url} not ready after {timeout:.0f} s; log tail:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def deliver_deploy_messages(services: Services, *, max_messages: int = 32) -> int:
    """Deliver what is on the deploy queue in this process, as the host would (a `DeployRetry` makes the message
    visible again at once, a handled one is deleted), for tests and benchmarks that drive the real handlers
    without a devhost; returns the messages handled."""
    from shared.deploy import DeployRetry, handle_deploy_message

    queue = services.queue(services.settings.deploy_queue)
    handled = 0
    for msg in queue.receive_messages(visibility_timeout=30, max_messages=max_messages):
        try:
            handle_deploy_message(services, msg.content, msg.dequeue_count or 1)
        except DeployRetry:
            queue.update_message(msg, visibility_timeout=0)
            continue
        queue.delete_message(msg)
        handled += 1
    return handled


class Stack:
    def __init__(
        self,
        workdir: Path | None = None,
        *,
        emulator_args: tuple[str, ...] = (),
        extra_settings: Mapping[str, str] | None = None,
        with_devhost: bool = True,
        fresh: bool = True,
        event_grid: bool = False,
        event_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir or REPO / ".stack"
        self.emulator_args = emulator_args
        self.extra_settings = dict(extra_settings or {})
        self.with_devhost = with_devhost
        self.fresh = fresh
        self.azurite: Azurite | None = None
        self.emulator: subprocess.Popen[bytes] | None = None
        self.devhost: subprocess.Popen[bytes] | None = None
        self.emulator_url = ""
        self.api_key = secrets.token_hex(16)
        self.http_url = ""
        self.function_key = secrets.token_hex(16)
        self.settings_env: dict[str, str] = {}
        self._extra_devhosts: list[subprocess.Popen[bytes]] = []
        # The production trigger path: the blob trigger on Event Grid events, published from Azurite's writes.
        self.event_grid = event_grid
        self.event_options = dict(event_options or {})
        self.publisher: Any = None
        self.http_port = 0

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        azurite_dir = self.workdir / "azurite"
        if self.fresh and azurite_dir.exists():
            import shutil

            shutil.rmtree(azurite_dir)
        self.azurite = Azurite(azurite_dir).start()
        env = dict(os.environ)
        if SHARED_TIKTOKEN.is_dir():
            env.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN))
        port = free_port()
        self.emulator_url = f"http://{HOST}:{port}"
        log = self.workdir / "emulator.log"
        self.emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulator",
                "--host",
                HOST,
                "--port",
                str(port),
                "--api-key",
                self.api_key,
                *self.emulator_args,
            ],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_http(f"{self.emulator_url}/_emulator/health", 30, self.emulator, log)

        self.settings_env = {
            **LOCAL_SETTINGS,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "AZURE_OPENAI_ENDPOINT": self.emulator_url,
            "AZURE_OPENAI_API_KEY": self.api_key,
            "AZURE_MANAGEMENT_ENDPOINT": self.emulator_url,
            "DEVHOST_FUNCTION_KEY": self.function_key,
            **({"BLOB_TRIGGER_SOURCE": "EventGrid", "DEVHOST_EVENT_GRID": "true"} if self.event_grid else {}),
            **self.extra_settings,
        }
        if "TIKTOKEN_CACHE_DIR" in env:
            self.settings_env["TIKTOKEN_CACHE_DIR"] = env["TIKTOKEN_CACHE_DIR"]
        settings_file = self.workdir / "local.settings.json"
        settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": self.settings_env}, indent=2))
        if self.with_devhost:
            self.start_devhost(env)
            if self.event_grid:
                self.start_publisher()

    def start_publisher(self) -> Any:
        """Azurite's blob writes in the drop container -> BlobCreated events to the first devhost's endpoint."""
        from azure.storage.blob import ContainerClient

        from devhost.eventgrid_publisher import BlobEventPublisher

        assert self.azurite is not None and self.http_port
        drop = self.settings_env.get("DROP_CONTAINER") or "training-data"
        container = ContainerClient.from_connection_string(self.azurite.connection_string, drop)
        if not container.exists():
            container.create_container()
        endpoint = (f"http://{HOST}:{self.http_port}/runtime/webhooks/blobs"
                    f"?functionName=Host.Functions.ingest_dropped_file&code={self.function_key}")
        self.publisher = BlobEventPublisher(container, endpoint, **self.event_options).start()
        return self.publisher

    def start_devhost(self, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start (another) devhost process on this stack; several may run at once (scale-out)."""
        http_port = free_port()
        # devhost.log for the first, devhost2.log, devhost3.log ... for more (whatever an earlier stack left).
        index = 0 if self.devhost is None else len(self._extra_devhosts) + 2
        log = self.workdir / f"devhost{index or ''}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--app",
                "function_app",
                "--settings",
                str(self.workdir / "local.settings.json"),
                "--http-port",
                str(http_port),
            ],
            cwd=REPO,
            env={**(env or os.environ), **self.settings_env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_http(f"http://{HOST}:{http_port}/", 60, proc, log, any_status=True)
        if self.devhost is None:
            self.devhost = proc
            self.http_port = http_port
            self.http_url = f"http://{HOST}:{http_port}/api"
        else:
            self._extra_devhosts.append(proc)
        return proc

    @property
    def dashboard_url(self) -> str:
        """The dashboard's runs page, with the function key (open it in a browser)."""
        return f"{self.http_url}/dashboard?code={self.function_key}"

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        for proc in [*self._extra_devhosts, self.devhost, self.emulator]:
            _stop(proc)
        self._extra_devhosts = []
        self.devhost = self.emulator = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
