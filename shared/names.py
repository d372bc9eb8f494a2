"""One check for every name that becomes part of a storage path: blob names, profile names, run ids, artifacts.

Blob storage takes any name, and under the deployed identity a bearer token signs no path: a name such as
`profile=../../other-container/secret` or a run id `..` would let a caller make the app read (and echo)
blobs it was never meant to touch once a client library or a proxy normalises the path. So everything that
builds a path from outside input calls one of these first; each raises `InvalidName` naming what is wrong.

| name | rule |
|---|---|
| blob name | 1-1024 characters, relative (no leading `/`), no `.` `..` or empty segments, no `\\`, no controls |
| profile name | one segment of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, at most 64 characters |
| run id | `a-z 0-9 -`, starting with a letter or digit, at most 80 characters (what `derive_run_id` makes) |
| artifact name | one segment of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, at most 100 characters |
"""

from __future__ import annotations

import re

MAX_BLOB_NAME = 1024  # Azure's limit for a blob name
VALIDATION_SUFFIX = ".validation.jsonl"  # compared case-insensitively, here only
TEST_SUFFIX = ".test.jsonl"  # the held-out test set's companion, likewise
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RUN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_ARTIFACT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class InvalidName(ValueError):
    """A name that must not become part of a storage path; the message says which rule it breaks."""


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")


def check_blob_name(name: str, *, what: str = "blob name") -> str:
    """`name` if it is a safe relative blob name, else InvalidName."""
    if not name:
        raise InvalidName(f"{what} is empty")
    if len(name) > MAX_BLOB_NAME:
        raise InvalidName(f"{what} is {len(name)} characters long; at most {MAX_BLOB_NAME}")
    if _CONTROL.search(name):
        raise InvalidName(f"{what} {_shown(name)} contains a control character")
    if "\\" in name:
        raise InvalidName(f"{what} {_shown(name)} contains a backslash; folders are separated by '/'")
    if name.startswith("/"):
        raise InvalidName(f"{what} {_shown(name)} starts with '/': it must be relative to its container")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty" if not segment else f"a {segment!r}"
            raise InvalidName(f"{what} {_shown(name)} has {shown} path segment")
    return name


def check_profile_name(name: str) -> str:
    if not _PROFILE.fullmatch(name):
        raise InvalidName(
            f"profile name {_shown(name)} must be one name of letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def is_profile_name(name: str) -> bool:
    return _PROFILE.fullmatch(name) is not None


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidName(
            f"run id {_shown(run_id)} is not a run id (lowercase letters, digits and '-', at most 80 characters)"
        )
    return run_id


def check_artifact_name(name: str) -> str:
    if not _ARTIFACT.fullmatch(name):
        raise InvalidName(
            f"artifact name {_shown(name)} must be one name of letters, digits, '.', '_' or '-' (at most 100)"
        )
    return name


def is_validation_companion(blob_name: str) -> bool:
    """`x.validation.jsonl` (any case) is the validation file of `x.jsonl`, never a run of its own."""
    return blob_name.lower().endswith(VALIDATION_SUFFIX)


def is_test_companion(blob_name: str) -> bool:
    """`x.test.jsonl` (any case) is the held-out test set of `x.jsonl`, never a run of its own."""
    return blob_name.lower().endswith(TEST_SUFFIX)


def test_companion_name(blob_name: str) -> str:
    """The test companion's name for a training blob: `team/x.jsonl` -> `team/x.test.jsonl`."""
    stem = blob_name[: -len(".jsonl")] if blob_name.lower().endswith(".jsonl") else blob_name
    return stem + TEST_SUFFIX


def companion_name(blob_name: str) -> str:
    """The validation companion's name for a training blob: `team/x.jsonl` -> `team/x.validation.jsonl`."""
    stem = blob_name[: -len(".jsonl")] if blob_name.lower().endswith(".jsonl") else blob_name
    return stem + VALIDATION_SUFFIX


def is_folder_marker(metadata: dict[str, str] | None) -> bool:
    """A zero-length blob that stands for a folder (hierarchical namespace / ADLS Gen2 tools write these)."""
    return str((metadata or {}).get("hdi_isfolder", "")).lower() == "true"
