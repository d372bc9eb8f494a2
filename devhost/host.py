"""The devhost process: settings, app, listeners, ready line, clean shutdown."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from devhost.blob_trigger import BlobTriggerListener
from devhost.config import ConfigError, HostConfig, default_host_id, load_local_settings
from devhost.eventgrid import EventGridEndpoint
from devhost.functions import FunctionSpec, Invoker, discover, load_app
from devhost.http_trigger import SOCKET_TIMEOUT_SECONDS, HttpListener
from devhost.queue_trigger import QueueTriggerListener
from devhost.runtime import Runtime
from devhost.timer_trigger import TimerTriggerListener
from shared.connections import ConnectionSettingError

log = logging.getLogger("devhost")

SHUTDOWN_GRACE = 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Run a Python v2 Azure Functions app locally against Azurite (a stand-in for `func start`).",
    )
    parser.add_argument("--app", default="function_app", help="app module name or .py path (default: function_app)")
    parser.add_argument("--app-dir", default=".", help="the function app's root: module, host.json (default: .)")
    parser.add_argument("--settings", default=None,
                        help="local.settings.json to load Values from (default: <app-dir>/local.settings.json)")
    parser.add_argument("--http-port", type=int, default=None,
                        help="HTTP port; 0 picks a free one (default: Host.LocalHttpPort or 7071)")
    parser.add_argument("--host-id", default=None,
                        help="id shared by devhosts that scale out one app (receipts, locks, timer status)")
    parser.add_argument("--poll-interval", type=float, default=2.0,
                        help="seconds between blob scans and empty-queue polls (default: 2)")
    parser.add_argument("--log-level", default=os.environ.get("DEVHOST_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


class DevHost:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.app_dir = Path(args.app_dir).resolve()
        settings_path = Path(args.settings) if args.settings else self.app_dir / "local.settings.json"
        if args.settings and not settings_path.is_file():
            raise ConfigError(f"--settings {args.settings}: no such file")
        self.local_settings = load_local_settings(settings_path, os.environ)
        self.host_config = HostConfig.load(self.app_dir / "host.json")
        self.host_id = args.host_id or default_host_id(self.app_dir)
        self.invoker = Invoker(self.app_dir, self.host_config.function_timeout)
        self.rt = Runtime(env=os.environ, host=self.host_config, host_id=self.host_id,
                          poll_interval=args.poll_interval, invoker=self.invoker, app_dir=self.app_dir)
        self.specs: list[FunctionSpec] = []
        self.listeners: list[Any] = []
        self.http: HttpListener | None = None
        self.webhooks: EventGridEndpoint | None = None

    def start(self) -> str:
        app = load_app(self.args.app, self.app_dir)
        self.specs = discover(app, os.environ)
        kinds = Counter(s.kind for s in self.specs)
        for spec in self.specs:
            if spec.kind == "blob":
                self.listeners.append(BlobTriggerListener(spec, self.rt))
            elif spec.kind == "queue":
                self.listeners.append(QueueTriggerListener(spec, self.rt))
            elif spec.kind == "timer":
                self.listeners.append(TimerTriggerListener(spec, self.rt))
        http_specs = [s for s in self.specs if s.kind == "http"]
        event_driven = [x for x in self.listeners if isinstance(x, BlobTriggerListener) and x.event_driven]
        if http_specs or event_driven:
            self.http = self._make_http(http_specs)
        if event_driven and self.http is not None:
            keys = [os.environ.get("DEVHOST_BLOBS_EXTENSION_KEY", ""), self.http.master_key]
            self.webhooks = EventGridEndpoint(keys)
            for listener in event_driven:
                self.webhooks.register(listener.spec.function_id, listener)
            self.http.webhooks = self.webhooks
        for listener in self.listeners:
            listener.start()
            log.info("listening: %s", listener.describe())
        http_part = "none"
        if self.http is not None:
            self.http.start()
            for line in self.http.describe():
                log.info("listening: %s", line)
            http_part = f"{kinds['http']} at {self.http.base_url}"
            if self.webhooks is not None:
                log.info("listening: Event Grid blob events at http://127.0.0.1:%d/runtime/webhooks/blobs",
                         self.http.port)
        return (
            f"devhost ready: {len(self.specs)} functions (blob: {kinds['blob']}, queue: {kinds['queue']}, "
            f"timer: {kinds['timer']}, http: {http_part}) host-id={self.host_id}"
        )

    def _make_http(self, specs: list[FunctionSpec]) -> HttpListener:
        function_key = os.environ.get("DEVHOST_FUNCTION_KEY", "")
        if not function_key:
            function_key = secrets.token_urlsafe(24)
            print(f"devhost: DEVHOST_FUNCTION_KEY not set; generated function key: {function_key}", flush=True)
        master_key = os.environ.get("DEVHOST_MASTER_KEY", "") or function_key
        port = self.args.http_port
        if port is None:
            port = int((self.local_settings.get("Host") or {}).get("LocalHttpPort") or 7071)
        timeout = float(os.environ.get("DEVHOST_HTTP_TIMEOUT_SECONDS") or SOCKET_TIMEOUT_SECONDS)
        return HttpListener(specs, self.rt, port, function_key, master_key, socket_timeout=timeout)

    def stop(self) -> bool:
        """Stop listening, let running invocations finish for up to SHUTDOWN_GRACE s; False if some did not."""
        self.rt.stop.set()
        if self.http is not None:
            self.http.stop()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for listener in self.listeners:
            listener.thread.join(timeout=max(0.1, deadline - time.monotonic()))
        queues = [x for x in self.listeners if isinstance(x, QueueTriggerListener)]
        for queue in queues:
            queue.shutdown(wait=False)
        while any(q.inflight for q in queues) and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = not any(q.inflight for q in queues) and not any(x.thread.is_alive() for x in self.listeners)
        if self.webhooks is not None:
            self.webhooks.close()
        self.invoker.close()
        return drained


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        host = DevHost(args)
        ready = host.start()
    except (ConfigError, ConnectionSettingError) as exc:
        log.error("devhost cannot start: %s", exc)
        return 2
    except Exception:  # noqa: BLE001 - e.g. the app module fails to import: show why, exit non-zero
        log.exception("devhost cannot start")
        return 2
    print(ready, flush=True)
    while not stopping.wait(0.5):
        pass
    if not host.stop():
        log.warning("invocations still running after %.0f s: exiting anyway (their messages/blobs will be "
                    "retried, at-least-once)", SHUTDOWN_GRACE)
        logging.shutdown()
        os._exit(1)
    log.info("devhost stopped")
    return 0
