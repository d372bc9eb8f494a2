"""Runs submitted by other systems (HTTP or queue) become drops: a blob in the drop container.

Submitting is idempotent: the blob name comes from the submission (its name, or its idempotency key /
message id) and is written with `If-None-Match: *`, so a retried submission never starts a second run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import IO

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContentSettings

from shared.runs import derive_run_id
from shared.sas import redact_url
from shared.services import Services
from shared.spec import METADATA_FIELDS, OTHER_METADATA

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,250}\.jsonl$")


class SubmissionError(ValueError):
    """A submission that cannot be accepted; the message says what to change."""


class AlreadySubmitted(SubmissionError):
    def __init__(self, blob_name: str, run_id: str) -> None:
        super().__init__(f"{blob_name} was already submitted (run {run_id})")
        self.blob_name = blob_name
        self.run_id = run_id


def check_submission(name: str, metadata: Mapping[str, str]) -> dict[str, str]:
    if not _NAME.match(name) or ".." in name or name.endswith(".validation.jsonl"):
        raise SubmissionError(f"name {name!r} must be a relative blob name ending in .jsonl (letters, digits, . _ - /)")
    known = set(METADATA_FIELDS) | OTHER_METADATA
    unknown = sorted(k for k in metadata if k.lower() not in known)
    if unknown:
        raise SubmissionError(f"unknown spec keys {unknown}; accepted: {sorted(known)}")
    return {k.lower(): str(v) for k, v in metadata.items()}


def submit(
    services: Services, name: str, data: bytes | IO[bytes] | Iterator[bytes], metadata: Mapping[str, str]
) -> tuple[str, str]:
    """Write the drop blob once. Returns (blob name, run id)."""
    meta = check_submission(name, metadata)
    container = services.settings.drop_container
    blob = services.blobs.get_blob_client(container, name)
    try:
        result = blob.upload_blob(
            data,
            overwrite=False,
            metadata=meta,
            content_settings=ContentSettings(content_type="application/jsonl"),
        )
    except ResourceExistsError:
        props = blob.get_blob_properties()
        raise AlreadySubmitted(name, derive_run_id(container, name, props.version_id or str(props.etag))) from None
    version = result.get("version_id") or str(result["etag"])
    return name, derive_run_id(container, name, version)


def submit_from_url(services: Services, url: str, name: str, metadata: Mapping[str, str]) -> tuple[str, str]:
    """Stream a file from any URL readable with GET (e.g. a SAS URL) into the drop container."""
    try:
        with httpx.stream("GET", url, timeout=60.0, follow_redirects=True) as response:
            if response.status_code != 200:
                raise SubmissionError(f"GET {redact_url(url)} answered {response.status_code}")
            return submit(services, name, response.iter_bytes(), metadata)
    except httpx.HTTPError as exc:
        raise SubmissionError(f"could not read {redact_url(url)}: {type(exc).__name__}") from None


def drop_file(
    services: Services,
    path: str,
    *,
    name: str | None = None,
    validation_path: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Upload a local training file (and its validation companion first, if given) into the drop container."""
    from pathlib import Path

    name = name or Path(path).name
    if validation_path:
        companion = (name[: -len(".jsonl")] if name.endswith(".jsonl") else name) + ".validation.jsonl"
        with open(validation_path, "rb") as fh:
            services.blobs.get_blob_client(services.settings.drop_container, companion).upload_blob(
                fh, overwrite=True, content_settings=ContentSettings(content_type="application/jsonl")
            )
    with open(path, "rb") as fh:
        return submit(services, name, fh, metadata or {})
