"""pytest plugin: the Azure OpenAI emulator (`python -m emulator`) as a real subprocess over real HTTP.

Fixtures (stable API, used by the pipeline tests too):

- ``emulator`` (session): a running :class:`EmulatorProcess` on a free loopback port, started with an api key
  and a fast clock (``time_scale=0.25``: a small job takes ~1.5 s, a file ~0.25 s, a deployment ~0.5 s;
  ARM operations answer ``Retry-After: 1``). Terminated at the end of the session (and killed with the
  test process on Linux, so it never outlives pytest). Attributes and helpers:

  - ``.base_url`` (``http://127.0.0.1:PORT``; use it as ``azure_endpoint`` and as the ARM ``base_url``),
    ``.api_key``, ``.bearer_token`` (any non-empty token is accepted; this one is handy), ``.port``;
  - ``.arm_deployments_url(name=None, subscription=..., resource_group=..., account=...)``: control-plane URL;
  - ``.inject_fault(method, path, mode, *, rate=1.0, count=None, skip=0, retry_after=1, latency_ms=None)``
    -> the rule (``mode`` in ``429 500 503 drop latency slow``; ``path`` is an fnmatch glob); ``.clear_faults()``,
    ``.faults()``;
  - ``.set_scenario(name, count=1, **options)`` (names: ``rai_failure job_failure stuck_queued
    safety_eval_failure file_error file_import_error deployment_refused deployment_failed deployment_stuck``;
    ``set_scenario("quota", available_capacity=0)``; ``set_scenario("require_training_type")``),
    ``.clear_scenarios()``, ``.scenarios()``;
  - ``.configure(**settings)`` (run-time durations and limits, see docs/emulator.md), ``.reset()`` (forget
    every file, job, deployment, fault and scenario), ``.health()``, ``.admin(method, path, json=None)``;
  - ``.advance_clock(seconds)``: move the emulator's clock forward (drive time; never sleep to wait for it);
    ``.freeze_clock()`` / ``with .frozen_clock():`` stop it so that only ``advance_clock`` moves it (the clean-up
    after each test lets it run again);
  - ``.log_text()``: everything the process printed (one line per request: method, path, status), up to date with
    every request already answered (it waits for a mark request's own line first).

- ``emulator_clean`` (function): the same object; after the test, faults and scenarios are cleared and the
  run-time settings restored. Tests that use ``emulator`` directly get the same clean-up automatically.

- ``start_emulator(**options)`` (a plain function, not a fixture) starts a private instance, e.g. with
  ``state_dir=...`` or ``extra_args=["--fault", "POST /openai/files 500 count=1"]``; use it as a context manager.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TIKTOKEN_DIR = REPO.parent / "shared" / "tiktoken"
READY_RE = re.compile(r"emulator listening on (http://\S+)")
DEFAULT_API_KEY = "emulator-test-key"
DEFAULT_TIME_SCALE = 0.25
_TUNABLE_DEFAULTS: dict[str, Any] = {}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the emulator if the test process dies (no orphan even on a hard kill)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class EmulatorProcess:
    """A running emulator subprocess and helpers for its admin API."""

    def __init__(self, process: subprocess.Popen[str], base_url: str, api_key: str | None) -> None:
        self.process = process
        self.base_url = base_url
        self.api_key = api_key
        self.bearer_token = "emulator-test-token"
        self.port = int(base_url.rsplit(":", 1)[1])
        self._lines: list[str] = []
        self._arrived = threading.Condition()  # notified by the log thread after each line it appends
        self._http = httpx.Client(base_url=base_url, timeout=30)

    # ------------------------------------------------------------------ process
    def log_text(self) -> str:
        """Every request line logged so far, including those of every request already answered: the emulator
        writes a line after its response and a thread reads them, so a mark request is sent and awaited first."""
        token = uuid.uuid4().hex
        if self.process.poll() is None:
            seen = len(self._lines)
            with contextlib.suppress(httpx.HTTPError):
                self._http.post(f"/_emulator/mark/{token}")
                with self._arrived:  # woken by the log thread at each line, not by the clock
                    self._arrived.wait_for(lambda: any(token in line for line in self._lines[seen:]), timeout=10)
        return "".join(self._lines)

    def stop(self, timeout: float = 10) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ admin API
    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        response = self._http.request(method, f"/_emulator/{path.lstrip('/')}", json=json)
        if response.status_code >= 400:
            raise AssertionError(f"admin {method} {path} -> {response.status_code}: {response.text}")
        return response

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "health").json()
        return result

    def reset(self) -> None:
        self.admin("POST", "reset")

    def inject_fault(
        self,
        method: str = "*",
        path: str = "/openai/*",
        mode: str = "429",
        *,
        rate: float = 1.0,
        count: int | None = None,
        skip: int = 0,
        retry_after: int = 1,
        latency_ms: int | None = None,
    ) -> dict[str, Any]:
        rule: dict[str, Any] = {"method": method, "path": path, "mode": mode, "rate": rate, "skip": skip,
                                "retry_after": retry_after}
        if count is not None:
            rule["count"] = count
        if latency_ms is not None:
            rule["latency_ms"] = latency_ms
        added: dict[str, Any] = self.admin("POST", "faults", json=rule).json()["faults"][0]
        return added

    def faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self.admin("GET", "faults").json()["faults"]
        return rules

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def set_scenario(self, name: str, count: int = 1, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("POST", "scenarios", json={"scenario": name, "count": count,
                                                                       **options}).json()
        return result

    def scenarios(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "scenarios").json()
        return result

    def clear_scenarios(self) -> None:
        self.admin("DELETE", "scenarios")

    def configure(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("PATCH", "config", json=settings).json()
        return result

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward (instead of sleeping until a job or deployment moves on)."""
        result: dict[str, Any] = self.admin("POST", "clock", json={"advance_seconds": seconds}).json()
        return float(result["offset_seconds"])

    def freeze_clock(self, frozen: bool = True) -> None:
        """Stop the emulator's clock (only `advance_clock` moves it then), or let it run on: a test that looks at
        an in-between state (a job still queued, a deployment still creating) sees it however slow the machine."""
        self.admin("POST", "clock", json={"frozen": frozen})

    @contextlib.contextmanager
    def frozen_clock(self) -> Iterator[EmulatorProcess]:
        self.freeze_clock()
        try:
            yield self
        finally:
            self.freeze_clock(False)

    def restore_config(self) -> None:
        current = self.admin("GET", "config").json()
        initial = getattr(self, "_initial_config", None)
        if initial is None:
            return
        changed = {k: v for k, v in initial.items() if current.get(k) != v}
        if changed:
            self.configure(**changed)

    def arm_deployments_url(
        self,
        name: str | None = None,
        *,
        subscription: str = "00000000-0000-0000-0000-000000000000",
        resource_group: str = "rg-emulator",
        account: str = "aoai-emulator",
    ) -> str:
        url = (f"{self.base_url}/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
               f"Microsoft.CognitiveServices/accounts/{account}/deployments")
        return f"{url}/{name}" if name else url


def start_emulator(
    *,
    api_key: str | None = DEFAULT_API_KEY,
    time_scale: float = DEFAULT_TIME_SCALE,
    state_dir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    startup_timeout: float = 30,
) -> EmulatorProcess:
    """Start `python -m emulator` on a free loopback port and wait until it is healthy."""
    args = [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0", "--time-scale", str(time_scale)]
    if api_key:
        args += ["--api-key", api_key]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    args += list(extra_args)
    child_env = dict(os.environ)
    if TIKTOKEN_DIR.is_dir():
        child_env.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_DIR))
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})
    process = subprocess.Popen(
        args,
        cwd=REPO,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
    )
    lines: list[str] = []
    arrived = threading.Condition()
    ready = threading.Event()
    found: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with arrived:
                lines.append(line)
                arrived.notify_all()
            match = READY_RE.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, name="emulator-log", daemon=True).start()
    if not ready.wait(startup_timeout) or not found:
        process.kill()
        process.wait(10)
        raise RuntimeError("the emulator did not start:\n" + "".join(lines))
    emu = EmulatorProcess(process, found[0], api_key)
    emu._lines, emu._arrived = lines, arrived
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            emu.health()
            break
        except (httpx.HTTPError, AssertionError):
            if time.monotonic() > deadline:
                emu.stop()
                raise
            time.sleep(0.05)
    emu._initial_config = emu.admin("GET", "config").json()  # type: ignore[attr-defined]
    return emu


UNLIMITED = {
    "EMULATOR_MAX_RUNNING_JOBS": "0",
    "EMULATOR_MAX_QUEUED_JOBS": "1000000",
    "EMULATOR_MAX_TOTAL_JOBS": "1000000",
    "EMULATOR_MAX_FT_FILES": "1000000",
    "EMULATOR_MAX_FT_FILES_BYTES": str(1 << 50),
}
"""The session emulator serves every test of the session and nothing is deleted between them, so it runs
without the resource's job and file limits (it keeps the 5-deployment cap). Tests of those limits start their
own instance with ``start_emulator()`` (the real limits are its defaults)."""


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    emu = start_emulator(env=UNLIMITED)
    try:
        yield emu
    finally:
        emu.stop()


def _clean(emu: EmulatorProcess) -> None:
    with contextlib.suppress(httpx.HTTPError, AssertionError):
        emu.freeze_clock(False)
        emu.clear_faults()
        emu.clear_scenarios()
        emu.restore_config()


@pytest.fixture
def emulator_clean(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    yield emulator
    _clean(emulator)


@pytest.fixture(autouse=True)
def _emulator_cleanup(request: pytest.FixtureRequest) -> Iterator[None]:
    emu = request.getfixturevalue("emulator") if "emulator" in request.fixturenames else None
    yield
    if emu is not None:
        _clean(emu)
