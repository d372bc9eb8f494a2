"""HTTP triggers on a local server: ``/<routePrefix>/<route>``, route parameters, methods and auth levels.

Routes: ``items/{id}``, ``{id:int}`` (also ``alpha``, ``guid``, ``bool``, ``long``), optional ``{id?}`` as the
last segment, catch-all ``{*rest}``; matched case-insensitively like the host. A route with no matching
method answers 404, as the host does.

Auth: ``anonymous`` is open; ``function`` needs the function key or the master key, ``admin`` the master key,
in the ``x-functions-key`` header or ``?code=``. Keys come from DEVHOST_FUNCTION_KEY / DEVHOST_MASTER_KEY
(generated and printed when unset; the master key defaults to the function key). Note that ``func start``
does not check keys locally; Azure does, and so does devhost.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from devhost.eventgrid import PATH as WEBHOOK_PATH
from devhost.eventgrid import EventGridEndpoint
from devhost.functions import FunctionSpec
from devhost.runtime import Runtime
from shared.aoai.redact import scrub_text

log = logging.getLogger("devhost")

# The host's limits: "The HTTP request length is limited to 100 MB (104,857,600 bytes), and the URL length is
# limited to 4 KB (4,096 bytes)" (learn.microsoft.com, azure-functions/functions-bindings-http-webhook-trigger#limits).
MAX_REQUEST_BYTES = 104_857_600
MAX_URL_BYTES = 4096
SOCKET_TIMEOUT_SECONDS = 30.0

_CONSTRAINTS = {
    "int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?",
}


def compile_route(route: str) -> re.Pattern[str]:
    """``items/{id:int}/{*rest}`` -> a regex with named groups, matched against the path after the prefix."""
    segments = [s for s in route.strip("/").split("/") if s]
    regex = ""
    for segment in segments:
        m = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}", segment)
        if m is None:
            regex += "/" + re.sub(
                r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}", lambda x: f"(?P<{x.group(1)}>[^/]+?)",
                re.escape(segment).replace(r"\{", "{").replace(r"\}", "}"),
            )
            continue
        star, name, constraint, optional = m.groups()
        body = ".*" if star else _CONSTRAINTS.get((constraint or "").lower(), "[^/]+")
        if star or optional:
            regex += f"(?:/(?P<{name}>{body}))?"
        else:
            regex += f"/(?P<{name}>{body})"
    return re.compile(f"^{regex}/?$", re.IGNORECASE)


@dataclass
class HttpRoute:
    spec: FunctionSpec
    route: str
    regex: re.Pattern[str]
    methods: set[str] | None
    auth_level: str


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpListener:
    """One ThreadingHTTPServer for all HTTP functions."""

    def __init__(self, specs: list[FunctionSpec], rt: Runtime, port: int, function_key: str, master_key: str,
                 bind: str = "127.0.0.1", *, max_request_bytes: int = MAX_REQUEST_BYTES,
                 socket_timeout: float = SOCKET_TIMEOUT_SECONDS) -> None:
        self.rt = rt
        self.max_request_bytes = max_request_bytes
        self.socket_timeout = socket_timeout
        self.prefix = rt.host.route_prefix
        self.function_key = function_key
        self.master_key = master_key
        self.routes = []
        for spec in specs:
            route = str(spec.trigger.get("route") or spec.name)
            methods = spec.trigger.get("methods")
            self.routes.append(HttpRoute(
                spec=spec, route=route, regex=compile_route(route),
                methods={str(m).upper() for m in methods} if methods else None,
                auth_level=str(spec.trigger.get("authLevel") or "function").lower(),
            ))
        self.webhooks: EventGridEndpoint | None = None  # the blobs extension's Event Grid endpoint, when served
        self.server = ThreadingHTTPServer((bind, port), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        prefix = f"/{self.prefix}" if self.prefix else ""
        return f"http://127.0.0.1:{self.port}{prefix}"

    def describe(self) -> list[str]:
        return [
            f"{r.spec.name} <- http {','.join(sorted(r.methods)) if r.methods else 'ANY'} "
            f"{self.base_url}/{r.route} (auth: {r.auth_level})"
            for r in self.routes
        ]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        prefix = f"/{self.prefix}" if self.prefix else ""
        if prefix:
            if not (path.lower() == prefix.lower() or path.lower().startswith(prefix.lower() + "/")):
                return None
            path = path[len(prefix):]
        for route in self.routes:
            m = route.regex.match(path or "/")
            if m and (route.methods is None or method in route.methods):
                return route, {k: v for k, v in m.groupdict().items() if v is not None}
        return None

    def authorized(self, route: HttpRoute, headers: Any, query: dict[str, str]) -> bool:
        if route.auth_level == "anonymous":
            return True
        given = headers.get("x-functions-key") or query.get("code") or ""
        if not given:
            return False
        keys = [self.master_key] if route.auth_level == "admin" else [self.function_key, self.master_key]
        return any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "devhost"
            timeout = listener.socket_timeout  # a client that stops sending is dropped, never waited on forever

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("http: %s", scrub_text(format % args))  # the request line may carry ?code=<key>

            def _serve(self) -> None:
                if len(self.path) > MAX_URL_BYTES:
                    self._refuse(414, "the URL is longer than 4 KB")
                    return
                split = urlsplit(self.path)
                query = dict(parse_qsl(split.query, keep_blank_values=True))
                if listener.webhooks is not None and split.path.rstrip("/").lower() == WEBHOOK_PATH:
                    self._webhook(listener.webhooks, query)
                    return
                found = listener.match(self.command.upper(), split.path)
                if found is None:
                    self._refuse(404, "")
                    return
                route, params = found
                # The key is checked before a byte of the body is read, as the host does.
                if not listener.authorized(route, self.headers, query):
                    log.info("http %s %s -> 401 (%s needs a key)", self.command, split.path, route.spec.name)
                    self._refuse(401, "")
                    return
                try:
                    body = self._body()
                except _BadRequest as exc:
                    log.info("http %s %s -> %s (%s)", self.command, split.path, exc.status, exc)
                    self._refuse(exc.status, str(exc))
                    return
                host = self.headers.get("Host") or f"127.0.0.1:{listener.port}"
                request = func.HttpRequest(
                    method=self.command.upper(), url=f"http://{host}{self.path}",
                    headers={k: v for k, v in self.headers.items()}, params=query, route_params=params, body=body,
                )
                outcome = listener.rt.invoke(route.spec, request, f"http {self.command} {split.path}")
                if not outcome.ok:
                    self._reply(500, b"", {})
                    return
                result = outcome.result
                if isinstance(result, func.HttpResponse):
                    headers = dict(result.headers.items())
                    if not any(k.lower() == "content-type" for k in headers):
                        # As the worker does (azure.functions.http.HttpResponseConverter): a charset for text/* only.
                        mimetype = result.mimetype
                        text = mimetype.startswith("text/")
                        headers["Content-Type"] = f"{mimetype}; charset={result.charset}" if text else mimetype
                    self._reply(result.status_code, result.get_body() or b"", headers)
                elif isinstance(result, str | bytes):
                    data = result.encode() if isinstance(result, str) else result
                    self._reply(200, data, {"Content-Type": "text/plain; charset=utf-8"})
                else:
                    log.error("function %s returned %s, not an HttpResponse: 500", route.spec.name,
                              type(result).__name__)
                    self._reply(500, b"", {})

            def _webhook(self, endpoint: EventGridEndpoint, query: dict[str, str]) -> None:
                try:
                    body = self._body()
                except _BadRequest as exc:
                    self._refuse(exc.status, str(exc))
                    return
                status, headers, data = endpoint.handle(self.command.upper(), query, self.headers, body)
                log.info("http %s %s -> %s (event grid)", self.command, WEBHOOK_PATH, status)
                self._reply(status, data, headers)

            def _body(self) -> bytes:
                """The request body: by Content-Length or chunked, at most max_request_bytes."""
                encoding = (self.headers.get("Transfer-Encoding") or "").lower()
                if encoding:
                    if encoding != "chunked":
                        raise _BadRequest(501, f"Transfer-Encoding {encoding!r} is not supported")
                    return self._chunked()
                declared = self.headers.get_all("Content-Length") or []
                if not declared:
                    return b""
                if len(set(declared)) != 1 or not declared[0].strip().isdigit():
                    raise _BadRequest(400, "bad Content-Length")
                length = int(declared[0])
                if length > listener.max_request_bytes:
                    raise _BadRequest(413, f"the body is larger than {listener.max_request_bytes:,} bytes")
                body = self.rfile.read(length)
                if len(body) != length:
                    raise _BadRequest(400, "the body ended before Content-Length")
                return body

            def _chunked(self) -> bytes:
                parts: list[bytes] = []
                total = 0
                while True:
                    line = self.rfile.readline(1026)
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise _BadRequest(400, "bad chunk size") from None
                    if size == 0:
                        while self.rfile.readline(8194) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    total += size
                    if total > listener.max_request_bytes:
                        raise _BadRequest(413, f"the body is larger than {listener.max_request_bytes:,} bytes")
                    chunk = self.rfile.read(size)
                    if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                        raise _BadRequest(400, "a chunk ended early")
                    parts.append(chunk)

            def _refuse(self, status: int, message: str) -> None:
                """An answer before (or instead of) reading the body: the connection is closed after it."""
                self.close_connection = True
                data = message.encode() if message and status != 401 else b""
                self._reply(status, data, {"Content-Type": "text/plain; charset=utf-8"} if data else {})

            def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        return Handler
