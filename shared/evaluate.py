"""Evaluating a measured run on its held-out test set, in the service: candidate against baseline.

measuring --deploy queue--> evaluating --timer--> deploying (passed) | trained (passed, deploy=false) | gated

1. **Plan** (deploy queue, leaving `measuring`): the baseline is `compare_to`, else the `serve_as` deployment
   when it serves a model now, else setting `EVAL_BASELINE_DEPLOYMENT` (the base model's deployment). The
   candidate is the final model; with `checkpoints: true` also the other checkpoints of the last three epochs.
   Each candidate gets a temporary deployment `ev<n>-<run_id>` (SKU `EVAL_CANDIDATE_SKU`, Developer by default:
   no hosting fee; the run's SKU where the service refuses it).
2. **Timer, one step per tick**: each candidate deployment is a PUT effect under a lease (shared/effects.py),
   then followed by GET until it serves; the eval (`POST /openai/evals`, the run's graders as testing criteria)
   and each eval run (`POST /evals/{id}/runs`, a `completions` data source over the imported test items, the
   target's deployment as model) are effects too, reconciled by the run id in the eval's metadata and the eval
   run's name; every eval run still going is read once per tick (one GET).
3. **Verdict** once every eval run has ended: the output items are scored (shared/evalgate.py), `eval.json`
   and `eval.png` written beside the run, `record.evaluation` set, and every temporary deployment put on the
   run's surplus list and deleted at once (the timer retries a delete that failed). A failed eval run, a
   candidate deployment that failed, or the state's deadline ends the run `failed`, with the deployments
   deleted the same way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared import artifacts
from shared.aoai import AzureOpenAIError, BadRequestError, NotFoundError
from shared.aoai.evals import Eval, EvalRun, Evals, OutputItem
from shared.effects import Effect
from shared.evalgate import Scored, best_candidate, score_items, verdict
from shared.evalspec import EvalProgress, EvalSide, EvalTarget, Evaluation, testing_criteria
from shared.runs import RunRecord, RunState, SurplusObject, utcnow
from shared.services import Services
from shared.training import queue_deploy

log = logging.getLogger(__name__)

ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "input": {"type": "array"},
        "reference": {"type": "string"},
        "reference_tool_calls": {"type": "array"},
    },
    "required": ["input", "reference"],
}


def _evals(services: Services) -> Evals:
    return Evals(services.aoai)


def _max_hold(services: Services) -> float:
    return services.aoai.worst_case_seconds()


# --- planning (deploy queue) --------------------------------------------------------------------------------------
def candidate_deployment_name(index: int, run_id: str) -> str:
    return f"ev{index}-{run_id}"[:64]


def plan(services: Services, record: RunRecord) -> tuple[EvalProgress | None, str | None]:
    """The targets of the evaluation, or why there can be none."""
    assert record.spec is not None and record.spec.evaluation is not None
    spec = record.spec.evaluation
    if services.deployments is None:
        return None, "an evaluation deploys the candidate: set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and " \
                     "AZURE_OPENAI_ACCOUNT_NAME"
    if not record.files.test.file_id:
        return None, "the run has no imported test set"
    model = record.job.fine_tuned_model
    if not model:
        return None, "the job succeeded without a fine_tuned_model"
    baseline_name = spec.compare_to
    if baseline_name is None and record.spec.serve_as:
        serving = services.deployments.get(record.spec.serve_as)
        if serving is not None and serving.model_name:
            baseline_name = record.spec.serve_as
    baseline_name = baseline_name or services.settings.eval_baseline_deployment or None
    if baseline_name is None:
        return None, ("no baseline to compare with: set evaluation.compare_to, or EVAL_BASELINE_DEPLOYMENT (a "
                      "deployment of the base model)")
    baseline = services.deployments.get(baseline_name)
    if baseline is None or not baseline.model_name:
        return None, f"the baseline deployment {baseline_name!r} does not exist"
    targets = [EvalTarget(role="baseline", key="baseline", model=baseline.model_name, deployment=baseline_name,
                          deployment_state="Succeeded")]
    candidates: list[tuple[str, str]] = []
    if spec.checkpoints:
        checkpoints = sorted(record.job.checkpoints, key=lambda c: c.step_number)
        final_step = checkpoints[-1].step_number if checkpoints else None
        for c in checkpoints[-3:]:
            if c.step_number != final_step:
                candidates.append((f"checkpoint-{c.step_number}", c.fine_tuned_model_checkpoint))
    candidates.append(("final", model))
    for index, (key, name) in enumerate(candidates, start=1):
        targets.append(EvalTarget(role="candidate", key=key, model=name,
                                  deployment=candidate_deployment_name(index, record.id), temporary=True))
    return EvalProgress(test_file_id=record.files.test.file_id, targets=targets), None


def start(services: Services, record: RunRecord) -> RunRecord:
    """measuring -> evaluating, with the plan; or failed when there is nothing to evaluate against."""
    progress, problem = plan(services, record)
    if progress is None:
        return services.store.end(record.id, RunState.FAILED, "evaluation_not_possible", problem or "")
    assert record.spec is not None and record.spec.evaluation is not None
    labels = record.spec.evaluation.labels()

    def begin(r: RunRecord) -> None:
        r.eval = progress
        examples = r.evaluation.test_examples if r.evaluation is not None else 0
        r.evaluation = Evaluation(status="running", graders=labels, test_examples=examples)

    note = f"evaluating {len(progress.targets) - 1} candidate(s) against {progress.targets[0].deployment}"
    return services.store.advance(record.id, (RunState.MEASURING,), RunState.EVALUATING, note, begin)[0]


# --- effects ----------------------------------------------------------------------------------------------------
def _target(r: RunRecord, key: str) -> EvalTarget:
    assert r.eval is not None
    found = r.eval.target(key)
    assert found is not None, key
    return found


def _evaluating(r: RunRecord) -> bool:
    return r.state == RunState.EVALUATING and r.eval is not None


def deployment_effect(services: Services, key: str) -> Effect[str]:
    assert services.deployments is not None
    deployments = services.deployments

    def create(r: RunRecord) -> str:
        t = _target(r, key)
        assert r.spec is not None
        try:
            deployments.begin_create_or_update(
                t.deployment, model_name=t.model, sku_name=services.settings.eval_candidate_sku, capacity=1
            )
        except BadRequestError as exc:
            if exc.code not in ("InvalidResourceProperties", "InvalidSkuName", "SkuNotSupported"):
                raise
            log.info("run %s: SKU %s refused (%s): the run's SKU %s instead", r.id,
                     services.settings.eval_candidate_sku, exc.code, r.spec.deployment.sku)
            deployments.begin_create_or_update(
                t.deployment, model_name=t.model, sku_name=r.spec.deployment.sku, capacity=r.spec.deployment.capacity
            )
        return t.deployment

    def find(r: RunRecord) -> list[str]:
        t = _target(r, key)
        existing = deployments.get(t.deployment)
        return [t.deployment] if existing is not None and existing.model_name == t.model else []

    def record(r: RunRecord, name: str) -> None:
        _target(r, key).deployment_state = "Creating"

    return Effect(
        key=f"eval_deploy:{key}",
        kind="deployment",
        wanted=lambda r: _evaluating(r) and _target(r, key).deployment_state is None,
        recorded=lambda r: _target(r, key).deployment if _target(r, key).deployment_state else None,
        find=find,
        create=create,
        record=record,
        ident=lambda name: name,
    )


def eval_effect(services: Services) -> Effect[Eval]:
    evals = _evals(services)

    def create(r: RunRecord) -> Eval:
        assert r.spec is not None and r.spec.evaluation is not None
        criteria = testing_criteria(r.spec.evaluation, judge=services.settings.eval_grader_deployment)
        return evals.create(name=f"{r.id} held-out", testing_criteria=criteria, item_schema=ITEM_SCHEMA,
                            metadata={"run_id": r.id})

    def find(r: RunRecord) -> list[Eval]:
        found = [e for e in evals.list() if e.metadata.get("run_id") == r.id]
        return sorted(found, key=lambda e: e.created_at or 0)

    def record(r: RunRecord, e: Eval) -> None:
        assert r.eval is not None
        r.eval.eval_id = e.id

    return Effect(
        key="eval_create",
        kind="eval",
        wanted=_evaluating,
        recorded=lambda r: r.eval.eval_id if r.eval else None,
        find=find,
        create=create,
        record=record,
        ident=lambda e: e.id,
    )


def eval_run_effect(services: Services, key: str) -> Effect[EvalRun]:
    evals = _evals(services)

    def create(r: RunRecord) -> EvalRun:
        assert r.eval is not None and r.eval.eval_id and r.eval.test_file_id
        t = _target(r, key)
        return evals.create_run(r.eval.eval_id, name=key, model=t.deployment, file_id=r.eval.test_file_id,
                                metadata={"run_id": r.id, "model": t.model})

    def find(r: RunRecord) -> list[EvalRun]:
        assert r.eval is not None and r.eval.eval_id
        found = [run for run in evals.list_runs(r.eval.eval_id) if run.name == key]
        return sorted(found, key=lambda run: run.created_at or 0)

    def record(r: RunRecord, run: EvalRun) -> None:
        t = _target(r, key)
        t.eval_run_id, t.status = run.id, run.status

    return Effect(
        key=f"eval_run:{key}",
        kind="eval_run",
        wanted=lambda r: _evaluating(r) and bool(r.eval and r.eval.eval_id),
        recorded=lambda r: _target(r, key).eval_run_id,
        find=find,
        create=create,
        record=record,
        ident=lambda run: run.id,
    )


# --- the timer's step -------------------------------------------------------------------------------------------
def step(services: Services, record: RunRecord) -> str:
    """One step of an evaluating run (see the module docstring)."""
    try:
        return _step(services, record)
    except BadRequestError as exc:  # the service refused the eval or a run itself: it will refuse it again
        return _fail(services, record.id, exc.code or "evaluation_refused", exc.message)


def _step(services: Services, record: RunRecord) -> str:
    assert record.eval is not None and services.deployments is not None
    run_id = record.id
    hold = _max_hold(services)
    for t in record.eval.targets:
        if t.temporary and t.deployment_state is None:
            record = services.effects.run(run_id, deployment_effect(services, t.key), max_hold=hold).record
    if record.state != RunState.EVALUATING or record.eval is None:
        return record.state.value
    states: dict[str, str | None] = {}
    for t in record.eval.targets:
        if t.temporary and t.deployment_state not in (None, "Succeeded", "Failed"):
            dep = services.deployments.get(t.deployment)
            states[t.key] = dep.provisioning_state if dep is not None else "Missing"
    if states:
        record = _update_targets(services, run_id, {k: {"deployment_state": v} for k, v in states.items()})
    if record.state != RunState.EVALUATING or record.eval is None:
        return record.state.value
    broken = [t for t in record.eval.targets if t.deployment_state in ("Failed", "Missing", "Canceled")]
    if broken:
        names = ", ".join(f"{t.deployment} ({t.deployment_state})" for t in broken)
        return _fail(services, run_id, "evaluation_deployment_failed", f"candidate deployment failed: {names}")
    if not record.eval.eval_id:
        record = services.effects.run(run_id, eval_effect(services), max_hold=hold).record
        if record.eval is None or not record.eval.eval_id:
            return "evaluating"
    if record.eval is None:
        return record.state.value
    for t in record.eval.targets:
        if t.eval_run_id is None and t.deployment_state == "Succeeded":
            record = services.effects.run(run_id, eval_run_effect(services, t.key), max_hold=hold).record
    if record.state != RunState.EVALUATING or record.eval is None or not record.eval.eval_id:
        return record.state.value
    evals = _evals(services)
    followed: dict[str, dict[str, Any]] = {}
    for t in record.eval.targets:
        if t.eval_run_id and t.status not in ("completed", "failed", "canceled"):
            run = evals.get_run(record.eval.eval_id, t.eval_run_id)  # the one GET of this eval run in this tick
            if run.status != t.status:
                followed[t.key] = {"status": run.status,
                                   "error": f"{run.error.code}: {run.error.message}" if run.error else None}
    if followed:
        record = _update_targets(services, run_id, followed)
    assert record.eval is not None
    if not all(t.status in ("completed", "failed", "canceled") for t in record.eval.targets):
        return "evaluating"
    failed = [t for t in record.eval.targets if t.status != "completed"]
    if failed:
        reasons = "; ".join(f"eval run {t.key} ({t.deployment}) {t.status}: {t.error or 'no reason given'}"
                            for t in failed)
        return _fail(services, run_id, "evaluation_failed", reasons)
    return _conclude(services, record)


def _update_targets(services: Services, run_id: str, changes: dict[str, dict[str, Any]]) -> RunRecord:
    def mutate(r: RunRecord) -> bool:
        if r.eval is None or r.state != RunState.EVALUATING:
            return False
        for key, fields in changes.items():
            t = r.eval.target(key)
            if t is not None:
                for name, value in fields.items():
                    setattr(t, name, value)
        return True

    return services.store.update(run_id, mutate)[0]


# --- the verdict ------------------------------------------------------------------------------------------------
def _conclude(services: Services, record: RunRecord) -> str:
    assert record.eval is not None and record.eval.eval_id and record.spec is not None
    spec = record.spec.evaluation
    assert spec is not None
    evals = _evals(services)
    outputs: dict[str, list[OutputItem]] = {}
    scored: dict[str, Scored] = {}
    for t in record.eval.targets:
        assert t.eval_run_id is not None
        outputs[t.key] = list(evals.output_items(record.eval.eval_id, t.eval_run_id))
        scored[t.key] = score_items(spec, outputs[t.key])
    baseline = next(t for t in record.eval.targets if t.role == "baseline")
    candidates = [t for t in record.eval.targets if t.role == "candidate"]
    chosen = best_candidate({t.key: (i, scored[t.key]) for i, t in enumerate(candidates)})
    candidate = next(t for t in candidates if t.key == chosen)
    result = verdict(spec, scored[baseline.key], scored[chosen])
    base_s, cand_s = scored[baseline.key], scored[chosen]
    evaluation = Evaluation(
        status="completed",
        test_examples=len(base_s.items),
        graders=spec.labels(),
        baseline=EvalSide(model=baseline.model, deployment=baseline.deployment, score=round(base_s.score, 4),
                          pass_rate=round(base_s.pass_rate, 4)),
        candidate=EvalSide(model=candidate.model, deployment=candidate.deployment, score=round(cand_s.score, 4),
                           pass_rate=round(cand_s.pass_rate, 4)),
        improvement=result.improvement,
        ci95=result.ci95,
        passed=result.passed,
        reasons=result.reasons,
    )
    document = eval_document(record, evaluation, scored, outputs, chosen, result.checks, result.lost)
    store = services.store
    store.put_artifact(
        record.id, artifacts.EVAL, json.dumps(document, indent=2), artifacts.content_type(artifacts.EVAL)
    )
    from shared.evalchart import render_eval_chart  # matplotlib: loaded only where the chart is drawn

    png = render_eval_chart(document)
    store.put_artifact(record.id, artifacts.EVAL_CHART, png, artifacts.content_type(artifacts.EVAL_CHART))
    deploy = record.spec.deployment.enabled
    to_state = RunState.GATED if not result.passed else (RunState.DEPLOYING if deploy else RunState.TRAINED)
    if to_state == RunState.DEPLOYING:
        queue_deploy(services, record.id)
    scores = {k: round(v.score, 4) for k, v in scored.items()}

    def finish(r: RunRecord) -> None:
        assert r.eval is not None
        r.evaluation = evaluation
        r.eval.selected = chosen
        r.eval.checks = result.checks
        r.eval.lost = result.lost
        for t in r.eval.targets:
            t.score = scores.get(t.key)
            t.pass_rate = round(scored[t.key].pass_rate, 4) if t.key in scored else None
            t.per_grader = scored[t.key].grader_pass_rates() if t.key in scored else {}
        _release_candidates(r, "evaluation candidate: the verdict is in")
        if to_state == RunState.GATED:
            r.error = None
            r.fail("evaluation_gate", "; ".join(result.reasons), state=RunState.GATED)
        elif to_state == RunState.DEPLOYING:
            r.deployment.queued_at = utcnow()

    verdict_note = (f"evaluation {'passed' if result.passed else 'failed'}: candidate {cand_s.score:.3f} vs "
                    f"baseline {base_s.score:.3f} ({result.improvement:+.3f}, 95% CI [{result.ci95[0]:+.3f}, "
                    f"{result.ci95[1]:+.3f}])")
    record, moved = store.advance(record.id, (RunState.EVALUATING,), to_state, verdict_note, finish)
    _delete_now(services, record)
    return "evaluated" if moved else record.state.value


def _release_candidates(r: RunRecord, reason: str) -> None:
    """Every temporary deployment of the evaluation goes on the surplus list (deleted now, retried by the timer)."""
    if r.eval is None:
        return
    known = {s.id for s in r.surplus}
    for t in r.eval.targets:
        if t.temporary and t.deployment_state is not None and t.deployment not in known:
            r.surplus.append(SurplusObject(kind="deployment", id=t.deployment, effect=f"eval_deploy:{t.key}",
                                           found_at=utcnow(), reason=reason))
    r.eval.cleaned_up = True


def _delete_now(services: Services, record: RunRecord) -> None:
    from shared.advance import remove_surplus  # the timer's own removal, recorded the same way

    try:
        remove_surplus(services, record)
    except AzureOpenAIError:
        log.warning("run %s: candidate deployments not deleted yet; the timer retries", record.id)


def _fail(services: Services, run_id: str, code: str, message: str) -> str:
    def mutate(r: RunRecord) -> bool:
        if r.state != RunState.EVALUATING:
            return False
        if r.evaluation is not None:
            r.evaluation.status = "failed"
            r.evaluation.passed = False
            r.evaluation.reasons = [message]
        _release_candidates(r, f"evaluation ended: {code}")
        r.fail(code, message)
        return True

    record, _ = services.store.update(run_id, mutate)
    _delete_now(services, record)
    return "evaluation_failed"


def candidates_at_deadline(record: RunRecord) -> list[SurplusObject]:
    """What the deadline sweep must delete for an evaluating run (shared/advance.py)."""
    copy = record.model_copy(deep=True)
    copy.surplus = []
    _release_candidates(copy, "run ended at its evaluation deadline")
    return copy.surplus


# --- eval.json --------------------------------------------------------------------------------------------------
def eval_document(
    record: RunRecord,
    evaluation: Evaluation,
    scored: dict[str, Scored],
    outputs: dict[str, list[OutputItem]],
    chosen: str,
    checks: list[Any],
    lost: list[Any],
) -> dict[str, Any]:
    assert record.eval is not None
    by_key = {t.key: t for t in record.eval.targets}

    def side(key: str) -> dict[str, Any]:
        t, s = by_key[key], scored[key]
        return {
            "key": key, "model": t.model, "deployment": t.deployment, "eval_run_id": t.eval_run_id,
            "score": round(s.score, 4), "pass_rate": round(s.pass_rate, 4),
            "graders": {name: {"pass_rate": rate, "score": s.grader_scores().get(name, 0.0),
                               "item_scores": [round(v, 4) for v in s.per_grader_scores.get(name, [])]}
                        for name, rate in s.grader_pass_rates().items()},
        }

    base, cand = scored["baseline"], scored[chosen]
    examples = []
    for index in sorted(cand.items):
        item = cand.items_data.get(index) or {}
        examples.append({
            "item": index,
            "prompt": next((str(m.get("content")) for m in reversed(item.get("input") or [])
                            if isinstance(m, dict) and m.get("role") == "user"), "")[:500],
            "reference": str(item.get("reference", ""))[:500],
            "baseline": {"answer": base.answers.get(index, "")[:500], "score": round(base.items.get(index, 0.0), 4),
                         "passed": base.passed.get(index, False)},
            "candidate": {"answer": cand.answers.get(index, "")[:500], "score": round(cand.items[index], 4),
                          "passed": cand.passed.get(index, False)},
        })
    return {
        "run_id": record.id,
        "eval_id": record.eval.eval_id,
        "evaluation": evaluation.model_dump(mode="json"),
        "baseline": side("baseline"),
        "candidate": side(chosen),
        "candidates": [side(t.key) for t in record.eval.targets if t.role == "candidate"],
        "selected": chosen,
        "checks": [c.model_dump(mode="json") for c in checks],
        "lost": [x.model_dump(mode="json") for x in lost],
        "examples": examples,
    }


def remove_eval_surplus(services: Services, record: RunRecord, kind: str, ident: str) -> None:
    """Delete a surplus eval (a second copy) or eval run (its eval is the run's)."""
    evals = _evals(services)
    try:
        if kind == "eval":
            evals.delete(ident)
        elif record.eval is not None and record.eval.eval_id:
            evals.delete_run(record.eval.eval_id, ident)
    except NotFoundError:
        pass
