"""`shared.cli runs` against real Azurite: the table tells runs from two folders apart and says what each came to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main
from shared.runs import RunRecord, RunSource, RunSpec, RunState
from shared.services import Services


def _record(services: Services, run_id: str, blob: str, profile: str | None) -> RunRecord:
    record = RunRecord.new(run_id, RunSource(container=services.settings.drop_container, blob_name=blob, etag='"1"'))
    record.spec = RunSpec(model="gpt-4o-mini-2024-07-18", profile=profile)
    return record


def test_runs_table_has_blob_and_profile_and_no_deployed_as_for_a_failed_run(
    services: Services, app_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _record(services, "dispatch-00000000000a", "team-a/dispatch.jsonl", "team-a")
    b = _record(services, "dispatch-00000000000b", "team-b/dispatch.jsonl", None)
    b.transition(RunState.VALIDATING)
    b.transition(RunState.IMPORTING)
    b.deployment.name = "ft-never"
    b.fail("InsufficientQuota", "The specified capacity '1' is bigger than available capacity '0' " * 3)
    for record in (a, b):
        services.store.create(record)
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}), "utf-8")
    assert main(["runs", "--settings", str(settings)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["RUN", "STATE", "AGE", "BLOB", "PROFILE", "EXAMPLES"]
    row_a = next(line for line in out if line.startswith("dispatch-00000000000a"))
    row_b = next(line for line in out if line.startswith("dispatch-00000000000b"))
    assert "team-a/dispatch.jsonl" in row_a and " team-a " in row_a
    assert "team-b/dispatch.jsonl" in row_b and "deployed as" not in row_b
    assert "InsufficientQuota: The specified capacity" in row_b and row_b.endswith(" ...")
