"""Strict profiles: `shared.cli profile put|get|list` on real Azurite, a bad profile rejects the run naming the
key, and blob metadata keys match in any case (`Profile`, `Deploy`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main
from shared.runs import RunState
from shared.services import Services
from tests.harness.pipeline import Driver, chat_lines


@pytest.fixture
def settings_file(app_env: dict[str, str], tmp_path: Path) -> str:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": app_env}), "utf-8")
    return str(path)


def test_profile_put_get_list(settings_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"priority": 3, "hyperparameters": {"n_epochs": 2}, "deployment": {"enabled": False}}))
    assert main(["profile", "put", "team-a", str(good), "--settings", settings_file]) == 0
    assert "profile team-a stored as " in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_epochs": 2, "gate_max_full_valid_loss": 0.4}))
    assert main(["profile", "put", "team-b", str(bad), "--settings", settings_file]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'n_epochs' (it belongs at hyperparameters.n_epochs" in err
    assert "gate_max_full_valid_loss" in err
    wrong_value = tmp_path / "wrong.json"
    wrong_value.write_text(json.dumps({"hyperparameters": {"n_epochs": 0}}))
    assert main(["profile", "put", "team-c", str(wrong_value), "--settings", settings_file]) == 1
    assert "hyperparameters.n_epochs = 0" in capsys.readouterr().err
    assert main(["profile", "list", "--settings", settings_file]) == 0
    assert capsys.readouterr().out.split() == ["team-a"]
    assert main(["profile", "get", "team-a", "--settings", settings_file]) == 0
    assert json.loads(capsys.readouterr().out)["priority"] == 3
    assert main(["profile", "get", "nobody", "--settings", settings_file]) == 1


def test_a_flat_profile_rejects_the_run_naming_the_key(driver: Driver, services: Services) -> None:
    services.store.container.upload_blob("profiles/flat.json", json.dumps({"n_epochs": 2}), overwrite=True)
    driver.drop("flat/data.jsonl", chat_lines(20))
    record = driver.blob_event("flat/data.jsonl")
    assert record is not None and record.state == RunState.REJECTED and record.error is not None
    assert record.error.code == "invalid_spec"
    assert "unknown key 'n_epochs' (it belongs at hyperparameters.n_epochs" in record.error.message


def test_metadata_keys_match_in_any_case(driver: Driver, services: Services) -> None:
    services.store.container.upload_blob(
        "profiles/cased.json", json.dumps({"suffix": "cased", "priority": 2}), overwrite=True)
    driver.drop("data.jsonl", chat_lines(20), {"Profile": "cased", "Deploy": "false", "N_Epochs": "2"})
    record = driver.blob_event("data.jsonl")
    assert record is not None and record.spec is not None, record
    assert record.spec.profile == "cased" and record.spec.suffix == "cased" and record.spec.priority == 2
    assert record.spec.deployment.enabled is False and record.spec.hyperparameters.n_epochs == 2
    assert not [w for w in record.warnings if w.code == "unknown_metadata"]
