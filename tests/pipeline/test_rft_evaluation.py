"""RFT with a held-out evaluation, drop to promotion: an o4-mini reinforcement run whose spec has `evaluation`
is trained, evaluated against the base o4-mini on its test companion (eval items made from RFT examples,
docs/evaluation.md), passes the gate and is promoted onto `serve_as`; the candidate deployment is deleted.

One run through the real handlers on Azurite and the emulator; every effect is counted in the emulator's request
log. Time is the emulator's clock, moved by the driver (no sleeps)."""

from __future__ import annotations

import json
from typing import Any

from shared.runs import RunState
from shared.services import Services
from tests.harness.pipeline import Driver
from tests.pipeline.test_engine import RequestLog
from tests.pipeline.test_evaluation import ARM, _candidate_deployments_gone
from tests.pipeline.test_rft_open_weight import GRADER, WORDS, rft_lines

RFT_MODEL = "o4-mini-2025-04-16"
EVAL_GRADERS = [
    {"type": "string_check", "operation": "eq", "name": "exact"},
    {"type": "text_similarity", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.8, "name": "fuzzy"},
]


def asked_again(indices: range, question: str) -> bytes:
    """Questions of `rft_lines` asked another way (so never a training prompt), with the same answers."""
    lines = []
    for i in indices:
        messages = [{"role": "developer", "content": "Answer with the number only."},
                    {"role": "user", "content": question.format(word=WORDS[i], a=i, b=i + 1)}]
        # a field before the one the grader reads: the eval item's reference is the grader's field, not the first
        lines.append(json.dumps({"messages": messages, "puzzle": WORDS[i], "answer": str(2 * i + 1)}))
    return ("\n".join(lines) + "\n").encode()


def test_rft_run_with_evaluation_is_trained_evaluated_and_promoted(
    driver: Driver, services: Services, emulator: Any, unique_name: Any
) -> None:
    assert services.deployments is not None
    baseline, serving = unique_name("o4-base"), unique_name("rft-bot")
    services.deployments.create_or_update_and_wait(baseline, model_name=RFT_MODEL, timeout=30)
    log = RequestLog(emulator)
    # every training example is trained on: a validation file of its own (RFT needs one) rather than a split
    driver.drop("puzzles.validation.jsonl", asked_again(range(18, 30), "Puzzle {word}: what do {a} and {b} make?"))
    driver.drop("puzzles.test.jsonl", asked_again(range(12), "In the {word} puzzle, add {a} and {b}: the sum?"))
    name = driver.drop("puzzles.jsonl", rft_lines(30), {
        "model": RFT_MODEL, "rft_grader": json.dumps(GRADER), "n_epochs": "2", "eval_interval": "2",
        "gate_min_valid_reward": "0.3", "eval_graders": json.dumps(EVAL_GRADERS), "eval_compare_to": baseline,
        "eval_min_improvement": "0.2", "serve_as": serving,
    })
    record = driver.blob_event(name)
    assert record is not None
    assert record.state == RunState.IMPORTING, record.error
    assert record.spec is not None and record.spec.method == "reinforcement"
    assert record.spec.evaluation is not None
    report = json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")
    assert report["test_set"]["examples"] == 12 and report["test_set"]["overlap_with_training"] == 0
    # the eval items are the RFT examples: every message as the prompt, the training grader's field
    # ({{item.answer}}) as the reference
    items_ref = record.files.test.blob
    assert items_ref is not None
    items = [json.loads(line)["item"] for line in services.blobs.get_blob_client(
        items_ref.container, items_ref.name).download_blob().readall().decode().splitlines()]
    assert items[3] == {"input": [{"role": "developer", "content": "Answer with the number only."},
                                  {"role": "user", "content": "In the desert puzzle, add 3 and 4: the sum?"}],
                        "reference": "7", "reference_tool_calls": []}

    record = driver.run(record.id, timeout=120)
    assert record.state == RunState.DEPLOYED, (record.error, record.evaluation)
    states = [h.state for h in record.history]
    assert states[-4:] == [RunState.MEASURING, RunState.EVALUATING, RunState.DEPLOYING, RunState.DEPLOYED]

    # trained once, as RFT, and measured on rewards (the reward gate holds too)
    assert log.count("POST", "/openai/fine_tuning/jobs") == 1
    assert record.gate is not None and record.gate.passed
    assert [c.check for c in record.gate.checks] == ["min_valid_reward"]

    # evaluated: baseline o4-mini against the RFT model on the 12 held-out items, in the service
    ev = record.evaluation
    assert ev is not None and ev.status == "completed" and ev.passed is True and ev.reasons == []
    assert ev.test_examples == 12 and ev.graders == ["exact", "fuzzy"]
    assert (ev.baseline.deployment, ev.baseline.model) == (baseline, RFT_MODEL)
    assert ev.candidate.model == record.job.fine_tuned_model
    assert ev.candidate.score is not None and ev.baseline.score is not None and ev.improvement is not None
    assert ev.candidate.score >= 0.9 and ev.baseline.score <= 0.3 and ev.candidate.pass_rate == 1.0
    assert ev.ci95 is not None and 0 < ev.ci95[0] <= ev.improvement <= ev.ci95[1]
    assert record.eval is not None and all(c.passed for c in record.eval.checks)
    assert log.count("POST", "/openai/evals") == 1
    assert log.count("POST", f"/openai/evals/{record.eval.eval_id}/runs") == 2  # baseline and candidate

    # promoted: one PUT of the serving deployment, which now serves the RFT model
    assert log.count("PUT", ARM + serving) == 1
    found = services.deployments.get(serving)
    assert found is not None and found.model_name == record.job.fine_tuned_model
    assert record.promotion is not None and record.promotion.deployment == serving
    assert record.promotion.model == record.job.fine_tuned_model and record.promotion.previous_model is None
    assert record.deployment.smoke_test is not None and record.deployment.smoke_test.status == "passed"

    # the candidate deployment: made once, deleted once, nothing of the evaluation left deployed
    temporary = [t for t in record.eval.targets if t.temporary]
    assert [t.role for t in temporary] == ["candidate"]
    assert log.count("PUT", ARM + temporary[0].deployment) == 1
    assert log.count("DELETE", ARM + temporary[0].deployment) == 1
    _candidate_deployments_gone(services, record)
