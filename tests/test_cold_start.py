"""Cold starts: heavy modules are imported where first used, not when the app or the CLI starts.

Not timed (the benchmark measures that: `make bench`); these check which modules a fresh interpreter has
loaded, so a top-level import of matplotlib, numpy or tiktoken creeping back fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "numpy", "tiktoken", "shared.validation.validator")
STORAGE = ("azure.storage.blob", "azure.storage.queue", "shared.runs_cli", "shared.services", "matplotlib")


def _loaded(code: str, *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


_REPORT = "import json, sys; print(json.dumps(sorted(m for m in sys.modules)))"


def test_function_app_imports_no_charting_tokenizer_or_numpy() -> None:
    loaded = _loaded("import function_app; " + _REPORT)
    assert "function_app" in loaded
    assert [m for m in HEAVY if m in loaded] == []


def test_validation_package_is_light_until_validate_is_called() -> None:
    loaded = _loaded("import shared.validation; " + _REPORT)
    assert [m for m in HEAVY if m in loaded] == []


def test_cli_validate_imports_no_storage_sdk(tmp_path: Path) -> None:
    data = tmp_path / "ten.jsonl"
    line = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    data.write_text("".join(json.dumps(line) + "\n" for _ in range(10)))
    code = (
        "import contextlib, io, sys\n"
        "from shared import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['validate', sys.argv[1]])\n" + _REPORT
    )
    loaded = _loaded(code, str(data))
    assert "shared.validation.validator" in loaded  # it did validate
    assert [m for m in STORAGE if m in loaded] == []


def test_cli_help_still_lists_the_run_commands() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "shared.cli", "--help"], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    for command in ("validate", "convert", "drop", "runs", "status"):
        assert command in proc.stdout
