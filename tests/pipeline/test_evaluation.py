"""The evaluation gate against real Azurite and the emulator's Evals API: held-out test set, baseline against
candidate, verdict, candidate deployments deleted, promotion onto `serve_as`, rollback and promote.

Effects are counted in the emulator's request log; time is driven (the emulator clock, age_run), never slept.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from shared.advance import tick
from shared.promote import lineage, promote, rollback
from shared.retention import look, plan, policy_for
from shared.runs import RunRecord, RunState
from shared.services import Services
from shared.summary import run_summary
from tests.harness.pipeline import Driver, age_run, chat_lines
from tests.pipeline.test_engine import RequestLog

BASE_MODEL = "gpt-4o-mini-2024-07-18"
BASELINE = "base-4o-mini"
JUDGE = "judge-4o-mini"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARM = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-test/providers/"
       "Microsoft.CognitiveServices/accounts/aoai-test/deployments/")
GRADERS = [
    {"type": "string_check", "operation": "eq", "name": "exact"},
    {"type": "text_similarity", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.8, "name": "fuzzy"},
    {"type": "text_similarity", "evaluation_metric": "rouge_l", "pass_threshold": 0.6, "name": "rouge"},
]


@pytest.fixture
def app_env(app_env: dict[str, str]) -> dict[str, str]:
    return {**app_env, "EVAL_BASELINE_DEPLOYMENT": BASELINE, "EVAL_GRADER_DEPLOYMENT": JUDGE}


@pytest.fixture
def base_deployments(services: Services) -> None:
    assert services.deployments is not None
    for name in (BASELINE, JUDGE):
        if services.deployments.get(name) is None:
            services.deployments.create_or_update_and_wait(name, model_name=BASE_MODEL, timeout=30)


def _meta(graders: list[dict[str, Any]] | None = None, **extra: str) -> dict[str, str]:
    return {"eval_graders": json.dumps(graders or GRADERS), **extra}


def _drop(driver: Driver, name: str, data: bytes, test: bytes | None, metadata: dict[str, str]) -> RunRecord:
    if test is not None:
        driver.drop(name.replace(".jsonl", ".test.jsonl"), test)
    driver.drop(name, data, metadata)
    record = driver.blob_event(name)
    assert record is not None
    return record


def _candidate_deployments_gone(services: Services, record: RunRecord) -> None:
    assert record.eval is not None and services.deployments is not None
    temporary = [t for t in record.eval.targets if t.temporary]
    assert temporary
    for t in temporary:
        assert any(s.id == t.deployment and s.removed_at is not None for s in record.surplus), t.deployment
        found = services.deployments.get(t.deployment)
        assert found is None or found.provisioning_state == "Deleting", (t.deployment, found)
    # So the retention policy finds no candidate deployment left to delete for the run (shared/retention.py).
    resource = look(services)
    assert [a for a in plan(record, policy_for(record, services.settings), resource)
            if a.target == "candidate_deployment"] == []


def test_better_candidate_passes_and_is_promoted_onto_serve_as(
    driver: Driver, services: Services, emulator: Any, base_deployments: None
) -> None:
    log = RequestLog(emulator)
    record = _drop(driver, "eval-ok.jsonl", chat_lines(40), chat_lines(12, tag="b"),
                   _meta(serve_as="support-bot", eval_min_improvement="0.2", validation_split="0"))
    assert record.state == RunState.IMPORTING
    report = json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")
    assert report["test_set"]["examples"] == 12
    assert report["test_set"]["overlap_with_training"] == 0  # same answers, different questions
    record = driver.run(record.id, timeout=120)
    assert record.state == RunState.DEPLOYED, (record.error, record.evaluation)

    ev = record.evaluation
    assert ev is not None and ev.status == "completed" and ev.passed is True and ev.reasons == []
    assert ev.test_examples == 12 and ev.graders == ["exact", "fuzzy", "rouge"]
    assert ev.baseline.deployment == BASELINE and ev.baseline.model == BASE_MODEL
    assert ev.candidate.model == record.job.fine_tuned_model
    assert ev.baseline.score is not None and ev.candidate.score is not None
    # answered from the training data (10 of 12 exactly: the nearest question is not always the same project)
    # against generic answers
    assert ev.candidate.score >= 0.9 and ev.baseline.score <= 0.3
    assert ev.improvement == pytest.approx(ev.candidate.score - ev.baseline.score, abs=1e-3)
    assert ev.ci95 is not None and 0 < ev.ci95[0] <= ev.improvement <= ev.ci95[1]
    assert record.eval is not None and all(c.passed for c in record.eval.checks)
    assert {c.name for c in record.eval.checks} >= {"min_score", "min_improvement", "no_regression:exact"}

    document = json.loads(services.store.get_artifact(record.id, "eval.json") or b"{}")
    assert document["evaluation"]["passed"] is True and len(document["examples"]) == 12
    assert document["candidate"]["graders"]["exact"]["pass_rate"] >= 0.8
    assert document["baseline"]["graders"]["exact"]["pass_rate"] == 0.0
    png = services.store.get_artifact(record.id, "eval.png") or b""
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000

    # promoted: the serving deployment serves the new model; nothing of the evaluation is left deployed
    assert services.deployments is not None
    serving = services.deployments.get("support-bot")
    assert serving is not None and serving.model_name == record.job.fine_tuned_model
    assert record.deployment.name == "support-bot"
    assert record.promotion is not None and record.promotion.model == record.job.fine_tuned_model
    _candidate_deployments_gone(services, record)
    assert log.count("POST", "/openai/evals") == 1
    assert log.count("POST", f"/openai/evals/{record.eval.eval_id}/runs") == 2
    assert log.count("DELETE", ARM + str(ev.candidate.deployment)) == 1
    states = [h.state for h in record.history]
    assert states[-4:] == [RunState.MEASURING, RunState.EVALUATING, RunState.DEPLOYING, RunState.DEPLOYED]
    summary = run_summary(record)  # what the HTTP API lists and the state-change events carry
    assert summary.evaluation == "passed" and summary.promoted_to == "support-bot"
    assert (summary.baseline_score, summary.candidate_score) == (ev.baseline.score, ev.candidate.score)


def test_worse_candidate_is_gated_with_reasons_and_nothing_promoted(
    driver: Driver, services: Services, emulator: Any, base_deployments: None
) -> None:
    emulator.set_scenario("worse_model")
    record = _drop(driver, "eval-worse.jsonl", chat_lines(40, tag="w"), chat_lines(12, tag="wb"),
                   _meta(serve_as="worse-bot"))
    record = driver.run(record.id, timeout=120)
    assert record.state == RunState.GATED, record.error
    ev = record.evaluation
    assert ev is not None and ev.passed is False and ev.status == "completed"
    assert ev.candidate.score is not None and ev.baseline.score is not None
    assert ev.candidate.score < ev.baseline.score
    assert any("improvement" in r for r in ev.reasons)
    assert record.error is not None and record.error.code == "evaluation_gate"
    assert record.eval is not None and record.eval.lost  # the examples lost most on
    assert record.eval.lost[0].candidate_score < record.eval.lost[0].baseline_score
    assert services.deployments is not None and services.deployments.get("worse-bot") is None
    assert record.promotion is None
    _candidate_deployments_gone(services, record)


def test_model_judge_grader_scores_on_the_judge_deployment(
    driver: Driver, services: Services, base_deployments: None
) -> None:
    graders = [{"type": "score_model", "name": "judge", "range": [0, 10], "pass_threshold": 7}]
    record = _drop(driver, "eval-judge.jsonl", chat_lines(40, tag="j"), chat_lines(10, tag="jb"),
                   _meta(graders, deploy="false"))
    record = driver.run(record.id, timeout=120)
    assert record.state == RunState.TRAINED, record.error
    ev = record.evaluation
    assert ev is not None and ev.passed is True and ev.graders == ["judge"]
    assert ev.candidate.score is not None and ev.baseline.score is not None
    # the emulator's judge: token-set similarity to the reference, on the judge deployment's scale (0-10)
    assert ev.candidate.score >= 0.8 and ev.baseline.score <= 0.6
    assert ev.candidate.pass_rate == 1.0 and ev.baseline.pass_rate == 0.0
    _candidate_deployments_gone(services, record)


def test_checkpoints_are_evaluated_and_the_best_one_is_the_candidate(
    driver: Driver, services: Services, base_deployments: None
) -> None:
    record = _drop(driver, "eval-ckpt.jsonl", chat_lines(40, tag="c"), chat_lines(12, tag="cb"),
                   _meta(eval_checkpoints="true", n_epochs="3", deploy="false"))
    record = driver.run(record.id, timeout=180)
    assert record.state == RunState.TRAINED, record.error
    assert record.eval is not None
    candidates = [t for t in record.eval.targets if t.role == "candidate"]
    assert [t.key for t in candidates][-1] == "final" and len(candidates) == 3
    scores = [t.score for t in candidates]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores)  # earlier checkpoints answer less well
    assert record.eval.selected == "final"
    assert record.evaluation is not None and record.evaluation.candidate.model == record.job.fine_tuned_model
    _candidate_deployments_gone(services, record)


def test_failed_eval_run_fails_the_run_and_still_deletes_the_candidate(
    driver: Driver, services: Services, emulator: Any, base_deployments: None
) -> None:
    emulator.set_scenario("eval_run_failure", count=2)
    record = _drop(driver, "eval-fail.jsonl", chat_lines(40, tag="f"), chat_lines(10, tag="fb"), _meta())
    record = driver.run(record.id, timeout=120)
    assert record.state == RunState.FAILED
    assert record.error is not None and record.error.code == "evaluation_failed"
    assert record.evaluation is not None and record.evaluation.status == "failed"
    _candidate_deployments_gone(services, record)


def test_evaluation_deadline_deletes_the_candidate(
    driver: Driver, services: Services, base_deployments: None
) -> None:
    record = _drop(driver, "eval-late.jsonl", chat_lines(40, tag="l"), chat_lines(10, tag="lb"), _meta())
    record = driver.run(record.id, until=lambda r: r.state == RunState.EVALUATING and r.eval is not None
                        and any(t.deployment_state for t in r.eval.targets if t.temporary), timeout=120)
    age_run(services, record.id, timedelta(days=2))
    tick(services)
    record = services.store.get(record.id)
    assert record.state == RunState.FAILED and record.error is not None
    assert record.error.code == "evaluation_incomplete"
    _candidate_deployments_gone(services, record)


def test_evaluation_without_a_test_set_is_rejected_before_upload(driver: Driver, services: Services) -> None:
    files_before = {f.id for f in services.aoai.files.list()}
    record = _drop(driver, "eval-none.jsonl", chat_lines(30), None, _meta())
    assert record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "test_set_missing"
    assert "test.jsonl" in record.error.message and "test_split" in record.error.message
    assert {f.id for f in services.aoai.files.list()} == files_before


def test_test_split_is_disjoint_from_training_and_validation(driver: Driver, services: Services) -> None:
    record = _drop(driver, "eval-split.jsonl", chat_lines(200), None, _meta(test_split="0.1", deploy="false"))
    assert record.state == RunState.IMPORTING, record.error
    report = json.loads(services.store.get_artifact(record.id, "validation.json") or b"{}")
    held = report["test_set"]["examples"]
    assert 10 <= held <= 40

    def lines(slot: str) -> set[str]:
        ref = getattr(record.files, slot).blob
        data = services.blobs.get_blob_client(ref.container, ref.name).download_blob().readall()
        return {line for line in data.decode().splitlines() if line.strip()}

    training, validation = lines("training"), lines("validation")
    items = [json.loads(line)["item"] for line in lines("test")]
    prompts = {json.dumps(i["input"][-1]["content"]) for i in items}
    for line in training | validation:
        assert json.dumps(next(m["content"] for m in json.loads(line)["messages"] if m["role"] == "user")) \
            not in prompts
    assert len(training) + len(validation) + held == 200


def test_invalid_test_file_rejects_the_run(driver: Driver) -> None:
    record = _drop(driver, "eval-badtest.jsonl", chat_lines(30), b'{"messages": "nope"}\n', _meta())
    assert record.state == RunState.REJECTED
    assert record.error is not None and "test file" in record.error.message


def test_duplicate_ticks_and_messages_make_one_eval_run_each_and_one_promotion(
    driver: Driver, services: Services, emulator: Any, base_deployments: None
) -> None:
    record = _drop(driver, "eval-dup.jsonl", chat_lines(40, tag="d"), chat_lines(10, tag="db"),
                   _meta(serve_as="dup-bot"))
    log = RequestLog(emulator)

    def step_twice(r: RunRecord) -> bool:
        if r.state == RunState.EVALUATING:
            tick(services)  # a second, overlapping timer
            driver.deliver_deploy_messages()  # a stray deploy message while evaluating does nothing
        return r.terminal

    record = driver.run(record.id, until=step_twice, timeout=120)
    assert record.state == RunState.DEPLOYED, record.error
    assert record.eval is not None
    assert log.count("POST", "/openai/evals") == 1
    assert log.count("POST", f"/openai/evals/{record.eval.eval_id}/runs") == 2
    for t in record.eval.targets:
        if t.temporary:
            assert log.count("PUT", ARM + t.deployment) == 1
    history = lineage(services, "dup-bot")["history"]
    assert [h["run_id"] for h in history] == [record.id]
    # a repeated deploy message after the promotion changes nothing
    from shared.training import queue_deploy

    queue_deploy(services, record.id)
    driver.deliver_deploy_messages()
    assert [h["run_id"] for h in lineage(services, "dup-bot")["history"]] == [record.id]


def test_rollback_serves_the_previous_model_and_promote_serves_a_chosen_run(
    driver: Driver, services: Services, emulator: Any, base_deployments: None
) -> None:
    assert services.deployments is not None
    services.deployments.create_or_update_and_wait("rb-bot", model_name=BASE_MODEL, timeout=30)
    record = _drop(driver, "eval-rb.jsonl", chat_lines(40, tag="r"), chat_lines(10, tag="rb"),
                   _meta(serve_as="rb-bot"))
    record = driver.run(record.id, timeout=120)
    assert record.state == RunState.DEPLOYED, record.error
    # the baseline was the model serving there now
    assert record.evaluation is not None and record.evaluation.baseline.deployment == "rb-bot"
    assert record.promotion is not None and record.promotion.previous_model == BASE_MODEL
    assert services.deployments.get("rb-bot").model_name == record.job.fine_tuned_model  # type: ignore[union-attr]

    emulator.set_scenario("model_change_refused")  # ARM refusing an in-place model change: delete, create again
    log = RequestLog(emulator)
    back = rollback(services, "rb-bot")
    # the refused PUT (400) is not counted: one DELETE, then one PUT that creates it again
    assert log.count("DELETE", ARM + "rb-bot") == 1 and log.count("PUT", ARM + "rb-bot") == 1
    assert back["model"] == BASE_MODEL and back["previous_model"] == record.job.fine_tuned_model
    assert services.deployments.get("rb-bot").model_name == BASE_MODEL  # type: ignore[union-attr]

    again = promote(services, record.id)
    assert again["model"] == record.job.fine_tuned_model and again["previous_model"] == BASE_MODEL
    assert services.deployments.get("rb-bot").model_name == record.job.fine_tuned_model  # type: ignore[union-attr]
    actions = [h["action"] for h in lineage(services, "rb-bot")["history"]]
    assert actions == ["found", "promote", "rollback", "promote"]
