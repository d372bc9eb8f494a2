"""The run commands' failures and the runs table: one line on stderr and the README's exit codes, no tracebacks."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from shared.runs_cli import outcome
from shared.summary import RunSummary, SummaryError

DOWN = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1"
)


def _code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


def test_a_missing_settings_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _code(["runs", "--settings", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot read settings file" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    assert _code(["status", "x-0123456789ab", "--settings", str(bad)]) == 2


def test_storage_out_of_reach_fails_fast_naming_the_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": DOWN}}), "utf-8")
    assert _code(["runs", "--settings", str(settings)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach blob storage at http://127.0.0.1:9/devstoreaccount1" in err and "make dev" in err


def test_storage_that_hangs_up_is_tried_once_not_retried_for_a_minute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accepted: list[int] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()  # hang up without answering

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": DOWN.replace(":9/", f":{port}/")}}), "utf-8")
    try:
        assert _code(["runs", "--settings", str(settings)]) == 2
    finally:
        server.close()
    assert len(accepted) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "--state", "nonsense"],
        ["status", "../profiles"],
        ["drop", "/no/such/file.jsonl"],
        ["drop", "{file}", "--meta", "novalue"],
        ["drop", "{file}", "--name", "../escape.jsonl"],
        ["drop", "{file}", "--meta", "suffix=caf\u00e9"],
    ],
)
def test_unusable_run_command_arguments_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n", "utf-8")
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": DOWN}}), "utf-8")
    argv = [a.replace("{file}", str(data)) for a in argv] + ["--settings", str(settings)]
    assert _code(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def _summary(**fields: Any) -> RunSummary:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "id": "d-0123456789ab", "state": "deployed", "terminal": True, "created_at": now, "updated_at": now,
        "container": "training-data", "blob": "team-a/dispatch.jsonl",
    }
    return RunSummary(**{**base, **fields})


def test_the_outcome_column_says_what_the_run_came_to() -> None:
    assert outcome(_summary(deployment="ft-x", deployment_state="Succeeded")) == "deployed as ft-x"
    failed = _summary(state="failed", deployment="ft-x", error=SummaryError(code="InsufficientQuota", message="no"))
    assert outcome(failed) == "InsufficientQuota: no"
    deploying = _summary(state="deploying", terminal=False, deployment="ft-x", deployment_state="Creating")
    assert outcome(deploying) == "deploying ft-x (Creating)"
    cleaned = _summary(deployment="ft-x", deployment_state="Deleted", fine_tuned_model="gpt.ft-1")
    assert outcome(cleaned) == "deployment ft-x deleted (model gpt.ft-1 stays)"
    long = _summary(state="rejected", error=SummaryError(code="validation_failed", message="word " * 40))
    cut = outcome(long)
    assert cut.endswith(" ...") and len(cut) <= 90 and cut.removesuffix(" ...").endswith("word")
