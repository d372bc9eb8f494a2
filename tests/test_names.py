"""shared.names: the one check for names that become storage paths."""

from __future__ import annotations

import pytest

from shared.names import (
    InvalidName,
    check_artifact_name,
    check_blob_name,
    check_profile_name,
    check_run_id,
    is_profile_name,
)
from shared.runs import derive_run_id


@pytest.mark.parametrize(
    "name",
    ["data.jsonl", "team-a/data.jsonl", "a/b/c/d.jsonl", "x" * 1024, "sp ace.jsonl", "a..b.jsonl", "\u00e9.jsonl"],
)
def test_blob_names_accepted(name: str) -> None:
    assert check_blob_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * 1025, "1025 characters"),
        ("/abs.jsonl", "starts with '/'"),
        ("../x.jsonl", "'..' path segment"),
        ("a/../x.jsonl", "'..' path segment"),
        ("a/./x.jsonl", "'.' path segment"),
        ("a//x.jsonl", "empty path segment"),
        ("a/", "empty path segment"),
        ("a\\..\\x.jsonl", "backslash"),
        ("a\x00.jsonl", "control character"),
        ("a\r\n.jsonl", "control character"),
        ("a\x85.jsonl", "control character"),
    ],
)
def test_blob_names_refused(name: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        check_blob_name(name)


def test_profile_run_id_and_artifact_rules() -> None:
    assert check_profile_name("team-a_1.v2") == "team-a_1.v2"
    for bad in ("..", ".", ".hidden", "a/b", "", "x" * 65, "a b", "a\\b"):
        assert not is_profile_name(bad)
        with pytest.raises(InvalidName):
            check_profile_name(bad)
    assert check_run_id(derive_run_id("c", "Team/Some File!.jsonl", '"0x1"'))
    assert check_artifact_name("loss.png") == "loss.png"
    for bad in ("../run.json", "a/b.json", ".hidden", ""):
        with pytest.raises(InvalidName):
            check_artifact_name(bad)
