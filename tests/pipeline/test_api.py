"""The HTTP API's handlers called with real `func.HttpRequest`s against Azurite: size caps before storing,
metadata values that blob storage cannot carry, error envelopes, the state filter, timestamps, traversal."""

from __future__ import annotations

import json
import re

import azure.functions as func
import pytest

from shared.runs import RunRecord, RunSource
from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import chat_lines

_ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def api(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    import blueprints.api as module

    env = {**app_env, "MAX_FILE_BYTES": "20000"}
    services = Services.from_settings(settings_from_env(env), env=env)
    services.ensure_storage()
    monkeypatch.setattr(module, "get_services", lambda: services)
    return services


def _post(params: dict[str, str], body: bytes, headers: dict[str, str] | None = None) -> func.HttpResponse:
    import blueprints.api as module

    request = func.HttpRequest("POST", "http://localhost/api/runs", params=params, headers=headers or {}, body=body)
    return module.submit_run(request)


def _get(route: str, route_params: dict[str, str], params: dict[str, str] | None = None) -> func.HttpResponse:
    import blueprints.api as module

    request = func.HttpRequest(
        "GET", f"http://localhost/api/{route}", params=params or {}, route_params=route_params, body=b""
    )
    handler = {"runs": module.list_runs, "run": module.get_run, "artifact": module.get_artifact}[route]
    return handler(request)


def _error(response: func.HttpResponse) -> dict[str, str]:
    document = json.loads(response.get_body())
    assert set(document) == {"error"}, document
    return dict(document["error"])


def _stored(services: Services, name: str) -> bool:
    return bool(services.blobs.get_blob_client(services.settings.drop_container, name).exists())


def test_oversize_body_is_refused_before_storing(api: Services) -> None:
    big = chat_lines(200)
    assert len(big) > api.settings.max_file_bytes
    declared = _post({"name": "declared.jsonl"}, b"", {"Content-Length": str(10**9)})
    assert declared.status_code == 413 and _error(declared)["code"] == "file_too_large"
    actual = _post({"name": "actual.jsonl"}, big)
    assert actual.status_code == 413 and "20,000" in _error(actual)["message"]
    assert not _stored(api, "declared.jsonl") and not _stored(api, "actual.jsonl")
    ok = _post({"name": "ok.jsonl"}, chat_lines(12))
    assert ok.status_code == 202 and _stored(api, "ok.jsonl")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("suffix", "a\r\nx-ms-meta-evil: 1"),
        ("suffix", "line\nbreak"),
        ("deployment_name", "caf\u00e9"),
        ("seed", "\u2603"),
    ],
)
def test_metadata_values_blob_storage_cannot_carry_are_a_400_naming_the_key(
    api: Services, key: str, value: str
) -> None:
    response = _post({"name": "meta.jsonl", key: value}, chat_lines(12))
    assert response.status_code == 400
    assert repr(key) in _error(response)["message"]
    assert not _stored(api, "meta.jsonl")


@pytest.mark.parametrize("name", ["../escape.jsonl", "a/./b.jsonl", "/abs.jsonl", "a//b.jsonl", "tab\there.jsonl"])
def test_traversal_in_the_submitted_name_is_refused(api: Services, name: str) -> None:
    response = _post({"name": name}, chat_lines(12))
    assert response.status_code == 400 and _error(response)["code"] == "invalid_submission"
    assert not list(api.blobs.get_container_client(api.settings.drop_container).list_blobs())


def test_state_filter_timestamps_and_envelopes(api: Services) -> None:
    record = RunRecord.new("data-0123456789ab", RunSource(container="c", blob_name="data.jsonl", etag='"0x1"'))
    api.store.create(record)
    listed = _get("runs", {}, {"state": "received"})
    rows = json.loads(listed.get_body())
    assert [r["id"] for r in rows] == ["data-0123456789ab"]
    assert _ISO_Z.match(rows[0]["created_at"]) and _ISO_Z.match(rows[0]["updated_at"])
    one = json.loads(_get("run", {"run_id": "data-0123456789ab"}).get_body())
    assert _ISO_Z.match(one["created_at"]) and _ISO_Z.match(one["history"][0]["at"])
    bad = _get("runs", {}, {"state": "nonsense"})
    assert bad.status_code == 400 and "received" in _error(bad)["message"]
    missing = _get("run", {"run_id": "nope-000000000000"})
    assert missing.status_code == 404 and _error(missing)["code"] == "notFound"
    for run_id in ("..", "../profiles", "a/b", "%2e%2e"):
        refused = _get("run", {"run_id": run_id})
        assert refused.status_code == 400 and _error(refused)["code"] == "invalid_run_id"
        refused = _get("artifact", {"run_id": run_id, "artifact": "metrics.json"})
        assert refused.status_code == 400


def test_png_has_no_charset_and_text_keeps_one(api: Services) -> None:
    run_id = "data-0123456789ab"
    api.store.create(RunRecord.new(run_id, RunSource(container="c", blob_name="data.jsonl", etag='"0x1"')))
    api.store.put_artifact(run_id, "loss.png", b"\x89PNG\r\n\x1a\n", "image/png")
    api.store.put_json(run_id, "metrics.json", {"a": 1})
    png = _get("artifact", {"run_id": run_id, "artifact": "loss.png"})
    assert png.headers["Content-Type"] == "image/png"
    document = _get("artifact", {"run_id": run_id, "artifact": "metrics.json"})
    assert document.headers["Content-Type"] == "application/json; charset=utf-8"
