"""Path traversal through names (blob names, profile and validation_blob metadata, run ids) on real Azurite:
each is refused, and nothing from another container is read or echoed."""

from __future__ import annotations

import json

import pytest

from shared.names import InvalidName
from shared.runs import RunState
from shared.services import Services
from tests.harness.pipeline import Driver, chat_lines

SECRET = "TOPSECRET-value-from-another-container"


@pytest.fixture
def other_container(services: Services) -> str:
    """A container the app must never read from, holding a JSON document and a JSONL file."""
    name = services.settings.staging_container  # a real container next to the runs container
    client = services.blobs.get_container_client(name)
    client.upload_blob("secret.json", json.dumps({"model": SECRET}), overwrite=True)
    client.upload_blob("secret.jsonl", chat_lines(12, marker=SECRET), overwrite=True)
    return name


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({"profile": "../../{other}/secret"}, "profile name"),
        ({"profile": "../{other}/secret"}, "profile name"),
        ({"profile": "a/b"}, "profile name"),
        ({"validation_blob": "../{other}/secret.jsonl"}, "'..' path segment"),
        ({"validation_blob": "./x.jsonl"}, "'.' path segment"),
        ({"validation_blob": "/abs.jsonl"}, "starts with '/'"),
    ],
)
def test_traversal_in_metadata_rejects_the_run_and_reads_nothing_elsewhere(
    driver: Driver, services: Services, other_container: str, metadata: dict[str, str], why: str
) -> None:
    meta = {k: v.format(other=other_container) for k, v in metadata.items()}
    name = driver.drop("trav.jsonl", chat_lines(12), meta)
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "invalid_spec" and why in record.error.message
    assert SECRET not in record.model_dump_json()
    assert record.files.training.file_id is None


def test_a_dropped_name_with_an_empty_segment_is_rejected(driver: Driver, services: Services) -> None:
    # (a name with `.` or `..` segments cannot even be written: the SDK's URL normalisation breaks its signature)
    name = driver.drop("team//data.jsonl", chat_lines(12))
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and "empty path segment" in record.error.message


def test_a_folder_that_is_no_profile_name_is_just_a_folder(driver: Driver, services: Services) -> None:
    name = driver.drop("my folder/data.jsonl", chat_lines(12), {"deploy": "false", "validation_split": "0"})
    record = driver.blob_event(name)
    assert record is not None and record.state == RunState.IMPORTING and record.spec is not None
    assert record.spec.profile is None


@pytest.mark.parametrize("run_id", ["..", ".", "../x", "a/b", "", "Run", "x" * 81, "a\nb"])
def test_run_ids_that_are_no_run_ids_never_become_paths(services: Services, run_id: str) -> None:
    with pytest.raises(InvalidName):
        services.store.get(run_id)
    with pytest.raises(InvalidName):
        services.store.get_artifact(run_id, "metrics.json")
    with pytest.raises(InvalidName):
        services.store.get_artifact("data-0123456789ab", "../run.json")
