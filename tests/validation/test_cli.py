"""The `validate` and `convert` subcommands: output and exit codes (0 valid, 1 invalid, 2 unusable)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main

from .examples import chat, jsonl

REPO = Path(__file__).resolve().parents[2]


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


# ---- what a new user trips over ------------------------------------------------------------------------------


def _cli(*argv: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *argv], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, **(env or {})}, timeout=120, **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize("lines", [12, 5000], ids=["small", "large: the counting process fails first"])
def test_offline_without_encodings_is_one_sentence_not_a_traceback(lines: int, tmp_path: Path) -> None:
    good = tmp_path / "train.jsonl"
    good.write_bytes(jsonl([chat(i) for i in range(lines)]))
    empty = tmp_path / "no-encodings"
    empty.mkdir()
    # An unreachable proxy makes the download fail the same way on any machine, with or without internet;
    # no cache of parsed ranks either (encodings.py), which would otherwise serve them.
    env = {
        "TIKTOKEN_CACHE_DIR": str(empty),
        "BPE_RANKS_CACHE_DIR": "",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    result = _cli("validate", str(good), env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert "o200k_base" in result.stderr and "TIKTOKEN_CACHE_DIR" in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("data.csv", b"prompt,completion\nq,a\n", "CSV"),
        ("data.txt", b"prompt;completion\nq;a\n", "CSV"),
        ("data.tsv", b"prompt\tcompletion\nq\ta\n", "TSV"),
        ("data.json", b'\xef\xbb\xbf  [{"prompt": "q", "completion": "a"}]', "a JSON array"),
        ("data.xlsx", b"PK\x03\x04rest-of-a-workbook", "an XLSX workbook"),
    ],
)
def test_validate_says_use_convert_for_other_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, kind: str
) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    assert main(["validate", str(p)]) == 1
    captured = capsys.readouterr()
    assert f"this is {kind}, not JSONL" in captured.err and "shared.cli convert" in captured.err
    assert "invalid_json" not in captured.out


def test_a_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_repeated_warnings_are_grouped_by_code_with_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "pii.jsonl"
    p.write_bytes(jsonl([chat(i) for i in range(3)] + [
        {"messages": [{"role": "user", "content": f"mail me at person{i}@example.com"},
                      {"role": "assistant", "content": "ok"}]} for i in range(300)
    ]))
    assert main(["validate", str(p)]) == 0
    out = capsys.readouterr().out
    grouped = [x for x in out.splitlines() if "[possible_pii]" in x]
    assert len(grouped) == 1 and "300 times, lines 4, 5, 6, 7, 8, ..." in grouped[0]


def test_progress_is_written_only_when_enabled(good: Path) -> None:
    from shared.cli import Progress

    stream = io.StringIO()
    with Progress(good, enabled=True, stream=stream, every=0.0) as f:
        while f.read(100):
            pass
    assert "100%" in stream.getvalue() and stream.getvalue().endswith("\r\x1b[K")
    quiet = io.StringIO()
    with Progress(good, enabled=False, stream=quiet, every=0.0) as f:
        f.read()
    assert quiet.getvalue() == ""


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"{oops\n" * 20000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "validate", str(p), "--json", "--max-listed", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # what `| head` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1) and "Traceback" not in err and "BrokenPipe" not in err
