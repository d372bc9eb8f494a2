"""Fault injection: rules that make matching requests fail the way a real gateway sometimes does.

A rule: `{"method": "POST"|"*", "path": "/openai/fine_tuning/jobs*" (fnmatch glob on the path, no query),
"mode": "429"|"500"|"503"|"drop"|"latency"|"slow", "rate": 0..1 (default 1), "count": N (fire at most N times;
omitted = no limit), "skip": N (let the first N matching requests through), "retry_after": seconds (429/503,
default 1), "latency_ms": ms (the added delay for modes latency and slow; with another mode, a delay before
failing)}`.

Modes:
- `429`: throttled, with `Retry-After` (s), `retry-after-ms` and `x-ms-retry-after-ms`; the gateway's envelope
  (`code "429"`) on the data plane, ARM's `TooManyRequests` on the control plane;
- `500` / `503`: `internalFailure` / `serviceUnavailable` (ARM: `InternalServerError` / `ServiceUnavailable`);
- `drop`: the connection is closed without any response (the client sees "server disconnected");
- `latency`: the request is delayed by `latency_ms`, then served normally (a client that gives up first leaves
  nothing done);
- `slow`: the request is served at once and its answer held back `latency_ms`: the service has acted, and a
  client that gives up (or dies) meanwhile never learns it (the ambiguous case the app must reconcile).
The first active rule that matches (in creation order) decides. Rate draws come from a seeded RNG
(`--fault-seed`), so a test run is repeatable. Admin paths (`/_emulator/...`) are never faulted.

CLI form of a rule (`--fault`, repeatable): `METHOD PATH MODE [key=value ...]`, e.g.
`--fault "POST /openai/fine_tuning/jobs 429 count=2 retry_after=1"`.
"""
from __future__ import annotations

import random
import uuid
from fnmatch import fnmatchcase
from typing import Any

MODES = ("429", "500", "503", "drop", "latency", "slow")
_INT_KEYS = ("count", "skip", "retry_after", "latency_ms")


class FaultError(ValueError):
    pass


def normalize(rule: dict[str, Any]) -> dict[str, Any]:
    """Validate a rule from the admin API or the CLI and fill in its defaults."""
    if not isinstance(rule, dict):
        raise FaultError("a fault rule must be an object")
    mode = str(rule.get("mode", ""))
    if mode not in MODES:
        raise FaultError(f"mode must be one of {', '.join(MODES)}")
    path = rule.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise FaultError("path must be a glob starting with '/' (e.g. '/openai/files*')")
    method = str(rule.get("method", "*")).upper()
    rate = rule.get("rate", 1.0)
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise FaultError("rate must be a number between 0 and 1")
    out: dict[str, Any] = {
        "id": rule.get("id") or "fault-" + uuid.uuid4().hex[:12],
        "method": method,
        "path": path,
        "mode": mode,
        "rate": float(rate),
        "count": None,
        "skip": 0,
        "retry_after": 1,
        "latency_ms": 1000 if mode in ("latency", "slow") else 0,
        "matched": 0,
        "fired": 0,
    }
    for key in _INT_KEYS:
        if rule.get(key) is not None:
            value = rule[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FaultError(f"{key} must be a non-negative integer")
            out[key] = value
    return out


def parse_cli(text: str) -> dict[str, Any]:
    """`METHOD PATH MODE [key=value ...]` -> rule."""
    parts = text.split()
    if len(parts) < 3:
        raise FaultError(f"--fault needs 'METHOD PATH MODE [key=value ...]', got {text!r}")
    rule: dict[str, Any] = {"method": parts[0], "path": parts[1], "mode": parts[2]}
    for item in parts[3:]:
        key, _, value = item.partition("=")
        rule[key] = float(value) if key == "rate" else int(value)
    return normalize(rule)


class Faults:
    def __init__(self, seed: int, rules: list[dict[str, Any]] | None = None) -> None:
        self.seed = seed
        self.rules: list[dict[str, Any]] = []
        self._rngs: dict[str, random.Random] = {}
        for rule in rules or []:
            self.add(rule)

    def add(self, rule: dict[str, Any]) -> dict[str, Any]:
        rule = normalize(rule)
        self.rules.append(rule)
        self._rngs[rule["id"]] = random.Random(f"{self.seed}:{len(self.rules)}")
        return rule

    def clear(self) -> None:
        self.rules.clear()
        self._rngs.clear()

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r["id"] != rule_id]
        return len(self.rules) != before

    def match(self, method: str, path: str) -> dict[str, Any] | None:
        for rule in self.rules:
            if rule["count"] is not None and rule["fired"] >= rule["count"]:
                continue
            if rule["method"] not in ("*", method.upper()) or not fnmatchcase(path, rule["path"]):
                continue
            rule["matched"] += 1
            if rule["matched"] <= rule["skip"]:
                continue
            if rule["rate"] < 1 and self._rngs[rule["id"]].random() >= rule["rate"]:
                continue
            rule["fired"] += 1
            return rule
        return None
