"""Pipeline fixtures: app settings pointing at the session's Azurite and emulator, with containers and
queues of the test's own, and helpers that drive the real handlers in-process the way the host does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.services import Services
from shared.settings import settings_from_env
from tests.harness.pipeline import Driver


@pytest.fixture
def app_env(azurite: Any, emulator: Any, unique_name: Callable[[str], str]) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DROP_CONTAINER": unique_name("drop"),
        "RUNS_CONTAINER": unique_name("runs"),
        "STAGING_CONTAINER": unique_name("staging"),
        "DEPLOY_QUEUE": unique_name("deploy"),
        "SUBMIT_QUEUE": unique_name("submit"),
        "AZURE_OPENAI_ENDPOINT": emulator.base_url,
        "AZURE_OPENAI_API_KEY": emulator.api_key,
        "AZURE_MANAGEMENT_ENDPOINT": emulator.base_url,
        "AZURE_MANAGEMENT_TOKEN": emulator.bearer_token,
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "AZURE_RESOURCE_GROUP": "rg-test",
        "AZURE_OPENAI_ACCOUNT_NAME": "aoai-test",
        "LRO_MAX_WAIT_SECONDS": "0.5",
        "LEASE_SECONDS": "1.5",
        "TRAINING_POLL_SCHEDULE": "*/1 * * * * *",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        # The session emulator has no file or job limits and keeps every test's files and jobs: admission
        # must not count them against the real ones (tests/pipeline/test_admission.py sets its own).
        "RESOURCE_MAX_FILES": "1000000",
        "RESOURCE_MAX_FILE_BYTES": str(1 << 50),
        "RESOURCE_MAX_OUTSTANDING_JOBS": "1000000",
        "RESOURCE_MAX_JOBS": "1000000",
    }


@pytest.fixture
def services(app_env: dict[str, str]) -> Iterator[Services]:
    s = Services.from_settings(settings_from_env(app_env), env=app_env)
    s.ensure_storage()
    assert s.deployments is not None
    before = {d.name for d in s.deployments.list()}
    yield s
    # The emulator caps fine-tuned deployments at 5 per resource, as Azure does: leave none behind.
    for deployment in s.deployments.list():
        if deployment.name not in before:
            s.deployments.delete_and_wait(deployment.name, timeout=30)




@pytest.fixture
def driver(services: Services, emulator: Any) -> Iterator[Driver]:
    yield Driver(services, emulator)
