"""devhost's pure parts: NCRONTAB, routes, blob paths, host.json, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devhost.blob_trigger import compile_path
from devhost.config import ConfigError, HostConfig, load_local_settings, resolve_expressions
from devhost.http_trigger import compile_route
from devhost.ncrontab import Schedule

T0 = datetime(2024, 1, 31, 23, 59, 58, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("expression", "first", "second"),
    [
        ("*/5 * * * * *", datetime(2024, 2, 1, 0, 0, 0, tzinfo=UTC), datetime(2024, 2, 1, 0, 0, 5, tzinfo=UTC)),
        ("0 */5 * * * *", datetime(2024, 2, 1, 0, 0, tzinfo=UTC), datetime(2024, 2, 1, 0, 5, tzinfo=UTC)),
        ("0 30 9 * * 1-5", datetime(2024, 2, 1, 9, 30, tzinfo=UTC), datetime(2024, 2, 2, 9, 30, tzinfo=UTC)),
        ("0 0 12 * * SUN", datetime(2024, 2, 4, 12, tzinfo=UTC), datetime(2024, 2, 11, 12, tzinfo=UTC)),
        ("0 0 0 29 FEB *", datetime(2024, 2, 29, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        ("10,20 0 0 * * *", datetime(2024, 2, 1, 0, 0, 10, tzinfo=UTC), datetime(2024, 2, 1, 0, 0, 20, tzinfo=UTC)),
        ("00:00:30", T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)),
    ],
)
def test_ncrontab_next_occurrences(expression: str, first: datetime, second: datetime) -> None:
    schedule = Schedule(expression)
    assert schedule.next_after(T0) == first
    assert schedule.next_after(first) == second


def test_ncrontab_day_of_month_and_week_must_both_match() -> None:
    # the 13th that is a Friday: NCrontab ANDs the two day fields
    assert Schedule("0 0 0 13 * FRI").next_after(T0) == datetime(2024, 9, 13, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["* * * * *", "60 * * * * *", "* * * * * 8", "*/0 * * * * *", "5-1 * * * * *"])
def test_ncrontab_rejects_bad_expressions(bad: str) -> None:
    with pytest.raises(ConfigError):
        Schedule(bad)


def test_routes() -> None:
    r = compile_route("items/{id:int}")
    assert r.match("/items/42") and r.match("/ITEMS/42/")
    assert r.match("/items/42").groupdict() == {"id": "42"}  # type: ignore[union-attr]
    assert not r.match("/items/abc") and not r.match("/items/42/x")
    opt = compile_route("runs/{run}/{part?}")
    assert opt.match("/runs/a") and opt.match("/runs/a/b").group("part") == "b"  # type: ignore[union-attr]
    rest = compile_route("files/{*path}")
    assert rest.match("/files/a/b/c.txt").group("path") == "a/b/c.txt"  # type: ignore[union-attr]
    assert compile_route("report.{fmt}").match("/report.csv").group("fmt") == "csv"  # type: ignore[union-attr]


def test_blob_paths() -> None:
    prefix, regex = compile_path("in/{name}.jsonl")
    assert prefix == "in/"
    assert regex.match("in/a/b.jsonl").group("name") == "a/b"  # type: ignore[union-attr]
    assert not regex.match("out/a.jsonl") and not regex.match("in/a.json")
    prefix, regex = compile_path("{name}")
    assert prefix == "" and regex.match("x/y").group("name") == "x/y"  # type: ignore[union-attr]


def test_host_config() -> None:
    cfg = HostConfig.from_dict({
        "functionTimeout": "00:10:00",
        "extensions": {"http": {"routePrefix": ""}, "queues": {"maxDequeueCount": 3, "visibilityTimeout": "00:00:30",
                                                              "messageEncoding": "none", "batchSize": 64}},
    })
    assert cfg.route_prefix == "" and cfg.function_timeout == 600 and cfg.max_dequeue_count == 3
    assert cfg.visibility_timeout == 30 and cfg.message_encoding == "none" and cfg.batch_size == 32
    default = HostConfig.from_dict({})
    assert (default.route_prefix, default.max_dequeue_count, default.message_encoding) == ("api", 5, "base64")
    with pytest.raises(ConfigError, match="messageEncoding"):
        HostConfig.from_dict({"extensions": {"queues": {"messageEncoding": "utf8"}}})


def test_settings_file_values_and_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file"}}), encoding="utf-8-sig")
    env = {"A": "env"}
    load_local_settings(path, env)
    assert env == {"A": "env", "B": "file"}
    assert resolve_expressions("%B%/in/{name}", env, where="x") == "file/in/{name}"
    with pytest.raises(ConfigError, match="%MISSING%"):
        resolve_expressions("%MISSING%", env, where="x")
