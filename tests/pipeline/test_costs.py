"""Cost before you pay: the estimate from the examples actually trained on, the guard that rejects before any
upload, the actual cost from trained_tokens, and `shared.cli costs` summing them (Azurite + the emulator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import costs
from shared.cli import main
from shared.runs import RunState
from shared.services import Services
from tests.harness.pipeline import Driver, chat_lines

GPT41 = {"model": "gpt-4.1-2025-04-14", "training_type": "GlobalStandard", "deploy": "false", "n_epochs": "2"}


def test_the_shipped_table_names_its_source_and_date() -> None:
    table = costs.price_table()
    assert "fine-tuning-cost-management.md" in table.source and table.date == "2026-02-11"
    assert table.training_price("gpt-4.1-2025-04-14", "globalstandard") == 2.0
    assert table.hosting_price("Standard") == 1.7 and table.hosting_price("Developer") == 0.0
    assert table.training_price("gpt-4o-mini-2024-07-18", "Standard") is None  # not on the page: not guessed


def test_a_run_above_max_training_cost_is_rejected_before_any_upload(
    driver: Driver, services: Services, emulator: object
) -> None:
    log_before = emulator.log_text()  # type: ignore[attr-defined]
    driver.drop("dear.jsonl", chat_lines(40), {**GPT41, "max_training_cost": "0.0001"})
    record = driver.blob_event("dear.jsonl")
    assert record is not None and record.state == RunState.REJECTED and record.error is not None
    assert record.error.code == "cost_limit"
    assert "the estimated training cost is 0.0" in record.error.message and "above max_training_cost 0.0001" in (
        record.error.message)
    assert record.cost is not None and record.cost.estimated_training is not None
    assert record.cost.n_epochs == 2 and record.cost.trained_examples < 40  # the 10 % split is not trained on
    new_log = emulator.log_text()[len(log_before):]  # type: ignore[attr-defined]
    assert "POST /openai/files" not in new_log  # nothing was uploaded


def test_no_price_and_a_limit_is_a_rejection_too(driver: Driver) -> None:
    driver.drop("unpriced.jsonl", chat_lines(20), {"deploy": "false", "max_training_cost": "5"})
    record = driver.blob_event("unpriced.jsonl")
    assert record is not None and record.error is not None and record.error.code == "cost_limit"
    assert "no training price for this model" in record.error.message


def test_estimated_and_actual_cost_are_on_the_record_and_summed(
    driver: Driver, services: Services, app_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    driver.drop("priced.jsonl", chat_lines(40), {**GPT41, "max_training_cost": "10"})
    record = driver.blob_event("priced.jsonl")
    assert record is not None
    final = driver.run(record.id)
    assert final.state == RunState.TRAINED, final.error
    c = final.cost
    assert c is not None and c.estimated_training is not None and c.actual_training is not None
    assert final.job.trained_tokens == c.actual_trained_tokens
    assert c.actual_training == round(c.actual_trained_tokens / 1e6 * 2.0, 4)  # type: ignore[operator]
    # the estimate (examples x epochs) is within a few percent of what the service billed
    assert abs(c.billed_tokens - (final.job.trained_tokens or 0)) / (final.job.trained_tokens or 1) < 0.15
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}), "utf-8")
    assert main(["costs", "--json", "--settings", str(settings)]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["runs"] == 1 and totals["actual_training"] == c.actual_training
    assert main(["costs", "--since", "1", "--settings", str(settings)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("total: 1 runs (1 priced): estimated ")
    assert main(["costs", "--profile", "nobody", "--json", "--settings", str(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["runs"] == 0
    assert main(["status", final.id, "--settings", str(settings)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("  cost"))
    assert line.startswith(f"  cost        estimated {c.estimated_training:.2f} USD ({c.billed_tokens} tokens = ")
    assert f"actual {c.actual_training:.2f} USD" in line
