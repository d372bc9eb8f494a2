"""Settings that must agree with host.json are checked at start-up, never copied by hand."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.hostconfig import HostConfig
from shared.settings import ConfigurationError, Settings, check_configuration

REPO = Path(__file__).resolve().parents[1]


def test_deploy_attempts_come_from_host_json_and_its_app_setting_override() -> None:
    assert HostConfig.load(env={}).max_dequeue_count == 5  # host.json
    overridden = HostConfig.load(env={"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3"})
    assert overridden.max_dequeue_count == 3


def test_a_deploy_wait_at_or_above_the_function_timeout_is_refused() -> None:
    host = HostConfig.load(env={})
    assert host.function_timeout == 600
    check_configuration(Settings(deploy_wait_seconds=420), host)
    with pytest.raises(ConfigurationError, match=r"DEPLOY_WAIT_SECONDS=600 must be below host.json functionTimeout"):
        check_configuration(Settings(deploy_wait_seconds=600), host)
    shorter = HostConfig.load(env={"AzureFunctionsJobHost__functionTimeout": "00:05:00"})
    with pytest.raises(ConfigurationError, match=r"functionTimeout \(300 s\)"):
        check_configuration(Settings(deploy_wait_seconds=420), shorter)


def test_the_app_refuses_to_start_with_the_reason() -> None:
    env = {**os.environ, "DEPLOY_WAIT_SECONDS": "900", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", "import function_app"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr and "DEPLOY_WAIT_SECONDS=900" in result.stderr


def test_no_file_carries_a_copy_of_a_derived_value() -> None:
    for path in ("infra/main.bicep", "local.settings.sample.json", "devstack/__init__.py"):
        text = (REPO / path).read_text(encoding="utf-8")
        for derived in ("DEPLOY_MAX_ATTEMPTS", "CLAIM_TIMEOUT_SECONDS"):
            assert derived not in text, f"{path} carries {derived}"


def _bicep_app_settings() -> dict[str, str]:
    """The literal and parameter entries of infra/main.bicep's appSettings object: NAME -> value as written."""
    text = (REPO / "infra" / "main.bicep").read_text(encoding="utf-8")
    block = text[text.index("var appSettings = union("):]
    block = block[: block.index("\n)\n")]
    return dict(re.findall(r"^\s+([A-Z][A-Z0-9_]*): (.+?)\s*$", block, flags=re.M))


def test_bicep_sets_no_api_version_and_no_copy_of_a_default() -> None:
    """One source for each default: shared/settings.py. A copy in the Bicep goes stale (it once pinned the ARM
    api-version to 2024-10-01, which refuses the Developer tier the evaluation deploys candidates on)."""
    entries = _bicep_app_settings()
    assert {"DROP_CONTAINER", "AZURE_OPENAI_ENDPOINT", "TRAINING_POLL_SCHEDULE"} <= entries.keys()  # read at all
    assert not [name for name in entries if name.endswith("_API_VERSION")]
    fields = Settings.model_fields
    for name, value in entries.items():
        assert name.lower() in fields, f"infra/main.bicep sets {name}, which the app does not read"
        if value.startswith("'"):  # a literal: must say something the default does not
            default = fields[name.lower()].default
            assert value.strip("'") != str(default), f"infra/main.bicep copies the default of {name} ({default})"


def test_bicep_passes_the_evaluation_deployments_when_given() -> None:
    text = (REPO / "infra" / "main.bicep").read_text(encoding="utf-8")
    for setting, param in (("EVAL_BASELINE_DEPLOYMENT", "evalBaselineDeployment"),
                           ("EVAL_GRADER_DEPLOYMENT", "evalGraderDeployment")):
        assert f"param {param} string = ''" in text
        assert f"empty({param}) ? {{}} : {{ {setting}: {param} }}" in text
