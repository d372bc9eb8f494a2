"""The `validate` and `convert` subcommands: output and exit codes (0 valid, 1 invalid, 2 unusable)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main

from .examples import chat, jsonl


@pytest.fixture
def good(tmp_path: Path) -> Path:
    p = tmp_path / "train.jsonl"
    p.write_bytes(jsonl([chat(i) for i in range(12)]))
    return p


def test_validate_valid_summary(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(good), "--price", "25"]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out and "12 examples" in out and "tokens (o200k_base)" in out and "billed tokens" in out


def test_validate_json(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(good), "--json", "--model", "gpt-35-turbo-0125"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["tokens"]["tokenizer"] == "cl100k_base"
    assert set(report) >= {"valid", "format", "encoding", "examples", "errors", "warnings", "tokens", "estimate"}


def test_validate_invalid_lists_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(jsonl([chat(i) for i in range(12)]) + b"{oops\n")
    assert main(["validate", str(p)]) == 1
    assert "line 13: [invalid_json]" in capsys.readouterr().out


def test_validate_with_validation_file_overlap(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(good), "--validation", str(good), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["train_validation_overlap"] == 12
    assert report["warnings"][-1]["file"] == "validation"


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "/no/such/file.jsonl"],
        ["validate"],
        ["validate", "{good}", "--validation", "/no/such"],
        ["validate", "{good}", "--max-bytes", "0"],
        ["frobnicate"],
        ["convert", "/no/such.csv", "out.jsonl"],
        ["convert", "{good}", "x.jsonl", "--split", "1.5"],
    ],
)
def test_unusable_arguments_exit_2(argv: list[str], good: Path) -> None:
    argv = [a.replace("{good}", str(good)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    assert code == 2


def test_convert_and_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "d.csv"
    src.write_text("prompt,completion\n" + "".join(f"q{i},a{i}\n" for i in range(40)), "utf-8")
    out = tmp_path / "train.jsonl"
    assert main(["convert", str(src), str(out), "--split", "0.25"]) == 0
    valid = tmp_path / "train.validation.jsonl"
    assert out.exists() and valid.exists()
    assert len(out.read_bytes().splitlines()) + len(valid.read_bytes().splitlines()) == 40
    assert "validation examples" in capsys.readouterr().out


def test_convert_bad_content_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "d.csv"
    src.write_text("a,b\n1,2\n", "utf-8")
    assert main(["convert", str(src), str(tmp_path / "o.jsonl")]) == 1
    assert "row 2" in capsys.readouterr().err


def test_a_failed_convert_never_destroys_the_existing_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d.csv").write_text("prompt,completion\nq,a\n", "utf-8")
    out = tmp_path / "train.jsonl"
    valid = tmp_path / "valid.jsonl"
    out.write_bytes(b"precious\n")
    valid.write_bytes(b"also precious\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completion": "c"}\n[1, 2]\n', "utf-8")
    assert main(["convert", str(bad), str(out)]) == 1
    assert main(["convert", str(bad), str(out), "--split", "0.5", "--validation-out", str(valid)]) == 1
    assert out.read_bytes() == b"precious\n" and valid.read_bytes() == b"also precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "d.csv", "train.jsonl", "valid.jsonl"]
    assert "Traceback" not in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "p", "completion": "c"}\n', "utf-8")
    assert main(["convert", str(good), str(out)]) == 0
    assert json.loads(out.read_bytes())["messages"][0]["content"] == "p"
    assert (out.stat().st_mode & 0o777) != 0o600  # the rename kept ordinary permissions


@pytest.mark.parametrize(
    "extra",
    [
        ["--split", "0.5", "--validation-out", "{out}"],
        ["--encoding", "no-such-codec"],
    ],
)
def test_convert_refuses_unusable_outputs(tmp_path: Path, extra: list[str]) -> None:
    src = tmp_path / "d.csv"
    src.write_text("prompt,completion\nq,a\n", "utf-8")
    out = tmp_path / "o.jsonl"
    out.write_bytes(b"precious\n")
    argv = ["convert", str(src), str(out), *[a.replace("{out}", str(out)) for a in extra]]
    assert main(argv) == 2
    assert out.read_bytes() == b"precious\n"
    assert main(["convert", str(src), str(tmp_path)]) == 2  # a folder
    assert main(["convert", str(src), str(tmp_path / "no" / "such" / "o.jsonl")]) == 2


def test_convert_system_option(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_text("prompt,completion\nq,a\n", "utf-8")
    out = tmp_path / "o.jsonl"
    assert main(["convert", str(src), str(out), "--system", "You are terse."]) == 0
    assert json.loads(out.read_bytes())["messages"][0] == {"role": "system", "content": "You are terse."}
