"""Watching a run over HTTP: a long poll, `GET /api/runs/{run_id}/watch?after=<history index>&etag=<etag>&timeout=S`.

The answer comes as soon as the run has history entries past `after`, or its record changed since `etag` (a new
step or loss while training), or it ended; otherwise after `timeout` seconds (at most `MAX_WAIT_SECONDS`) with
`changed: false`. Each answer carries `next_after` and `etag` for the next call, so a client that calls again at
once misses nothing and is never sent the same change twice.

Why a long poll and not a stream: the Python worker streams HTTP only through the FastAPI extension
(azurefunctions-extensions-http-fastapi, `PYTHON_ENABLE_INIT_INDEXING`), and turning streams on moves every HTTP
function of the app to FastAPI request/response types. A long poll is a plain `func.HttpResponse`, the same on the
Functions host, on the devhost and behind any proxy; it is authorized like every other route (function key).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.runs import RunRecord, RunState
from shared.runstore import RunNotFound, RunStore

MAX_WAIT_SECONDS = 25.0
"""Longest hold of one request: far below the 230 s an HTTP-triggered function may take to answer in Azure."""
POLL_SECONDS = 1.0
"""How often the held request reads the record (one blob read)."""


def watch_line(r: RunRecord) -> str:
    """One line of `watch`: the state and, while training, the step and losses."""
    parts = [r.state.value]
    if r.state == RunState.WAITING and r.waiting is not None:
        parts.append(r.waiting.reason)
    m = r.job.latest_metrics
    if m:
        parts.append(f"step {m.get('step')} train_loss {m.get('train_loss')}"
                     + (f" valid_loss {m['valid_loss']}" if m.get("valid_loss") is not None else ""))
    if r.job.id and r.state == RunState.TRAINING:
        parts.append(f"job {r.job.status}")
    if r.error:
        parts.append(f"{r.error.code}: {r.error.message}")
    return "  ".join(parts)


def view(record: RunRecord, etag: str, after: int, changed: bool) -> dict[str, Any]:
    metrics = record.job.latest_metrics or {}
    return {
        "run_id": record.id,
        "state": record.state.value,
        "terminal": record.terminal,
        "changed": changed,
        "line": watch_line(record),
        "history": [h.model_dump(mode="json") for h in record.history[after:]],
        "next_after": len(record.history),
        "etag": etag,
        "job_status": record.job.status,
        "step": metrics.get("step"),
        "train_loss": metrics.get("train_loss"),
        "valid_loss": metrics.get("valid_loss"),
        "error": record.error.model_dump() if record.error else None,
    }


def wait_for_change(
    store: RunStore,
    run_id: str,
    *,
    after: int,
    etag: str | None = None,
    timeout: float = MAX_WAIT_SECONDS,
    poll: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Hold until the run changed past (`after`, `etag`), ended, or `timeout` passed. Raises RunNotFound."""
    deadline = clock() + max(0.0, min(timeout, MAX_WAIT_SECONDS))
    every = POLL_SECONDS if poll is None else poll
    while True:
        found = store.load(run_id)
        if found is None:
            raise RunNotFound(f"no run {run_id!r}")
        record, current = found
        after = max(0, min(after, len(record.history)))
        changed = len(record.history) > after or (etag is not None and etag != current)
        if changed or record.terminal or clock() >= deadline:
            return view(record, current, after, changed)
        sleep(min(every, max(0.0, deadline - clock())))


def follow(base_url: str, run_id: str, *, key: str | None, emit: Callable[[str], None],
           client: Any = None, timeout: float = MAX_WAIT_SECONDS) -> dict[str, Any]:
    """The CLI's `watch --api URL`: call the long poll again and again until the run ends; emit each new line."""
    import httpx

    http = client or httpx.Client(timeout=timeout + 30)
    after, etag, last = 0, None, ""
    try:
        while True:
            params: dict[str, Any] = {"after": after, "timeout": timeout}
            if etag:
                params["etag"] = etag
            headers = {"x-functions-key": key} if key else {}
            response = http.get(f"{base_url.rstrip('/')}/runs/{run_id}/watch", params=params, headers=headers)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            for entry in body["history"]:
                emit(f"{entry['state']}  {entry.get('note', '')}".rstrip())
            if body["line"] != last and not body["history"]:
                emit(body["line"])
            last = body["line"]
            after, etag = body["next_after"], body["etag"]
            if body["terminal"]:
                return body
    finally:
        if client is None:
            http.close()
