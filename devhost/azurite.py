"""Start and stop Azurite (the Azure Storage emulator) for tests and local runs.

    with Azurite() as az:
        BlobServiceClient.from_connection_string(az.connection_string)

Each instance gets free loopback ports and its own temporary ``--location`` (unless one is given), runs with
``--silent --skipApiVersionCheck --loose``, and is killed with its whole process group on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from shared.connections import DEVSTORE_ACCOUNT_KEY, DEVSTORE_ACCOUNT_NAME, azurite_connection_string

_REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not become ready."""


def find_azurite() -> str:
    """The azurite executable: ``$AZURITE_BIN``, the repo's node_modules, then PATH."""
    candidates = [os.environ.get("AZURITE_BIN", ""), str(_REPO / "node_modules" / ".bin" / "azurite")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("azurite")
    if found:
        return found
    raise AzuriteError("azurite not found: run `npm ci` in the repo root or set AZURITE_BIN")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Azurite:
    """An Azurite process on free loopback ports; a context manager."""

    account_name = DEVSTORE_ACCOUNT_NAME
    account_key = DEVSTORE_ACCOUNT_KEY

    def __init__(self, location: str | os.PathLike[str] | None = None, *, startup_timeout: float = 30.0,
                 in_memory: bool = False) -> None:
        self._given_location = Path(location) if location is not None else None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.startup_timeout = startup_timeout
        self.in_memory = in_memory
        self.blob_port = 0
        self.queue_port = 0
        self.table_port = 0
        self.location: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -------------------------------------------------------------- endpoints
    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{DEVSTORE_ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{DEVSTORE_ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.table_port}/{DEVSTORE_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.blob_port, self.queue_port, self.table_port, HOST)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Azurite:
        if self.process is not None:
            raise AzuriteError("Azurite already started")
        exe = find_azurite()
        if self._given_location is not None:
            self.location = self._given_location
            self.location.mkdir(parents=True, exist_ok=True)
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="azurite-")
            self.location = Path(self._tmpdir.name)
        last_error = ""
        for _attempt in range(3):  # a freed port can be taken by someone else before azurite binds it
            self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
            if len({self.blob_port, self.queue_port, self.table_port}) < 3:
                continue
            self._log_path = self.location / "azurite.stdout.log"
            args = [
                exe, "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
                "--location", str(self.location),
                "--blobHost", HOST, "--blobPort", str(self.blob_port),
                "--queueHost", HOST, "--queuePort", str(self.queue_port),
                "--tableHost", HOST, "--tablePort", str(self.table_port),
            ]
            if self.in_memory:
                args.append("--inMemoryPersistence")
            with open(self._log_path, "wb") as log:
                self.process = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
            try:
                self._wait_ready()
                return self
            except AzuriteError as exc:
                last_error = str(exc)
                self._kill()
        self._cleanup_dir()
        raise AzuriteError(f"Azurite did not start: {last_error}")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AzuriteError(f"azurite exited with {self.process.returncode}: {self._log_tail()}")
            if all(_port_open(p) for p in (self.blob_port, self.queue_port, self.table_port)):
                return
            time.sleep(0.1)
        raise AzuriteError(f"azurite not ready after {self.startup_timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self._log_path.read_text(errors="replace")[-2000:] if self._log_path else "").strip()
        except OSError:
            return ""

    def _kill(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)

    def _cleanup_dir(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def stop(self) -> None:
        self._kill()
        self._cleanup_dir()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def env(self, name: str = "AzureWebJobsStorage") -> dict[str, str]:
        """App settings pointing connection ``name`` at this Azurite."""
        return {name: self.connection_string}


def main() -> None:
    """``python -m devhost.azurite [--location DIR]``: run Azurite on free ports until Ctrl+C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--location", default=None)
    args = parser.parse_args()
    signals = {signal.SIGINT, signal.SIGTERM}
    with Azurite(args.location) as az:
        # blocked only now (children inherit the mask); sigwait takes them, so the cleanup always runs
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        print(f"azurite ready: {az.connection_string}", flush=True)
        signal.sigwait(signals)


if __name__ == "__main__":
    main()
