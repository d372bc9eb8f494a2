"""run_summary: the one reading of a record shared by the API, the CLI, the dashboard and the events."""

from __future__ import annotations

import json
from pathlib import Path

from shared.gate import GateResult
from shared.metrics import MetricsSummary
from shared.runs import RunRecord, RunSource, RunSpec, RunState, SmokeTest, ValidationSummary
from shared.summary import run_summary

DEMO_RECORD = Path(__file__).resolve().parent / "data" / "records" / "schema1-deployed.json"


def _record() -> RunRecord:
    source = RunSource(container="training-data", blob_name="team/a.jsonl", etag="e")
    return RunRecord.new("support-0123456789ab", source)


def test_a_new_run_has_only_its_source() -> None:
    summary = run_summary(_record())
    assert (summary.id, summary.state, summary.terminal) == ("support-0123456789ab", "received", False)
    assert (summary.container, summary.blob) == ("training-data", "team/a.jsonl")
    assert summary.examples is None and summary.cost_estimate is None and summary.verdict is None
    assert summary.last_note == "blob training-data/team/a.jsonl"


def test_a_deployed_run_carries_tokens_cost_verdict_and_smoke_test() -> None:
    record = _record()
    record.spec = RunSpec(model="gpt-4o-mini-2024-07-18", profile="support")
    record.validation = ValidationSummary(valid=True, format="chat", examples=69, billed_tokens=30_000)
    for state in (RunState.VALIDATING, RunState.IMPORTING, RunState.TRAINING, RunState.SUCCEEDED,
                  RunState.MEASURING, RunState.DEPLOYING):
        record.transition(state)
    record.job.id, record.job.status, record.job.trained_tokens = "ftjob-1", "succeeded", 28_608
    record.job.fine_tuned_model = "gpt-4o-mini.ft-1"
    measured = json.loads(DEMO_RECORD.read_bytes())["metrics"]  # a real metrics.json
    record.metrics = MetricsSummary.model_validate(
        measured | {"final_train_loss": 0.2, "final_full_valid_loss": 0.0, "final_valid_loss": 0.3}
    )
    record.gate = GateResult(passed=True, reasons=[])
    record.deployment.name, record.deployment.provisioning_state = "support", "Succeeded"
    record.deployment.smoke_test = SmokeTest(prompt="hi", answer="hello", status="passed", latency_ms=4)
    record.transition(RunState.DEPLOYED, "smoke test passed")

    summary = run_summary(record, price_per_million_tokens=3.0)
    assert summary.state == "deployed" and summary.terminal
    assert (summary.profile, summary.base_model, summary.examples) == ("support", "gpt-4o-mini-2024-07-18", 69)
    assert summary.cost_estimate == round(28_608 * 3.0 / 1e6, 4)  # trained tokens win over the estimate
    assert summary.verdict == "passed" and summary.smoke_test == "passed" and summary.deployment == "support"
    assert summary.final_valid_loss == 0.0  # the full-validation value, even when it is zero
    assert summary.last_note == "smoke test passed"


def test_a_failed_run_keeps_the_services_words_and_the_estimate_prices_billed_tokens() -> None:
    record = _record()
    record.validation = ValidationSummary(valid=True, examples=10, billed_tokens=1_000_000)
    record.gate = GateResult(passed=False, reasons=["valid_loss 0.9 is above the limit 0.5"])
    record.fail("InsufficientQuota", "The specified capacity '120' is bigger than available capacity '0'.")
    summary = run_summary(record, price_per_million_tokens=2.5)
    assert summary.state == "failed" and summary.terminal and summary.verdict == "failed"
    assert summary.error is not None and summary.error.code == "InsufficientQuota"
    assert "available capacity '0'" in summary.error.message
    assert summary.cost_estimate == 2.5
