"""Queue trigger: a succeeded run is measured, gated, deployed and smoke-tested, once.

succeeded -> measuring -> deploying -> deployed, or measuring -> gated | trained (deploy=false).

One deployer at a time: the handler holds the run's `deploy` lease (renewed while it works, shared/effects.py)
for the whole procedure. A copy of the message that finds the lease held does not spend a queue retry: it
re-sends itself to arrive when that lease would expire, and returns. Every step is safe to repeat: the
metrics are written once, the deployment is looked up before any PUT (one that already serves the model is
success; the ARM PUT itself is idempotent by name), and every transition is a guarded conditional write.
Quota and cap errors are retried by the queue (host.json: visibilityTimeout between tries,
maxDequeueCount tries); on the last try the run is failed with the service's words. A refusal that retrying
cannot change (the post-training safety evaluation, a bad request) fails the run at once. The timer sweeps
all three states: a run whose messages were all lost or poisoned gets a new one (shared/advance.py).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from shared import open_weight
from shared.aoai import (
    AzureOpenAIError,
    BadRequestError,
    DeploymentNotReadyError,
    OperationFailedError,
    OperationTimeoutError,
)
from shared.lifecycle import QUEUE_DRIVEN_STATES
from shared.measure import check_gate, ensure_metrics
from shared.metrics import MetricsSummary
from shared.runs import RunError, RunRecord, RunState, SmokeTest, utcnow
from shared.services import Services
from shared.spec import COMPLETION_MODELS
from shared.telemetry import in_run
from shared.training import queue_deploy

log = logging.getLogger(__name__)

DEPLOY_LEASE = "deploy"
SMOKE_PROMPT_BYTES = 256 * 1024


class DeployRetry(RuntimeError):
    """Raised to make the queue deliver the message again later (quota, cap, throttling, outage)."""


def handle_deploy_message(services: Services, body: str, dequeue_count: int = 1) -> RunRecord | None:
    """Deploy the run named by the message. Raises DeployRetry (or anything else) to have the queue try again;
    on the last try (`dequeue_count` = host.json maxDequeueCount) the run is first failed with the reason."""
    try:
        return in_run(_run_id(body), None, _handle, services, body, dequeue_count)
    except Exception as exc:
        if dequeue_count >= services.deploy_attempts and not isinstance(exc, DeployRetry):
            run_id = _run_id(body)
            if run_id is not None:
                reason = f"{type(exc).__name__}: {str(exc)[:400]} (gave up after {dequeue_count} tries)"
                services.store.end(run_id, RunState.FAILED, "deploy_error", reason)
        raise


def _run_id(body: str) -> str | None:
    try:
        return str(json.loads(body)["run_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _handle(services: Services, body: str, dequeue_count: int) -> RunRecord | None:
    run_id = _run_id(body)
    if run_id is None:
        log.error('deploy message is not {"run_id": ...}: dropped (%.80r)', body)
        return None
    store = services.store
    found = store.load(run_id)
    if found is None:
        log.error("deploy message for unknown run %s: dropped", run_id)
        return None
    record = found[0]
    if record.terminal:
        log.info("run %s is %s: deploy message has nothing to do", run_id, record.state.value)
        return record
    if record.state == RunState.EVALUATING:
        log.info("run %s is being evaluated (the timer's): the verdict queues the deploy message", run_id)
        return record
    if record.state not in QUEUE_DRIVEN_STATES:
        # The timer queues the message just before it records `succeeded`: try again shortly.
        raise DeployRetry(f"run {run_id} is still {record.state.value}")
    record, _ = store.advance(run_id, (RunState.SUCCEEDED,), RunState.MEASURING, "measuring")
    max_hold = services.settings.deploy_wait_seconds + 2 * services.aoai.worst_case_seconds()
    with services.effects.hold(
        run_id, DEPLOY_LEASE, wanted=lambda r: r.state in QUEUE_DRIVEN_STATES, max_hold=max_hold
    ) as held:
        if not held.acquired:
            if held.record.terminal:
                return held.record
            # Another deployer is at work: come back when its lease would have expired (no retry spent).
            queue_deploy(services, run_id, delay_seconds=max(1, int(held.retry_after) + 1))
            log.info("run %s is being deployed elsewhere: message re-sent in %.0f s", run_id, held.retry_after)
            return held.record
        return _measure_gate_deploy(services, store.get(run_id), dequeue_count)


def _measure_gate_deploy(services: Services, record: RunRecord, dequeue_count: int) -> RunRecord:
    run_id = record.id
    store = services.store
    assert record.spec is not None
    summary = ensure_metrics(services, record)
    if record.state == RunState.MEASURING:
        gate = check_gate(services, record, summary)
        if gate is not None and not gate.passed:
            return store.end(run_id, RunState.GATED, "quality_gate", "; ".join(gate.reasons))
        if record.spec.evaluation is not None:
            from shared import evaluate

            return evaluate.start(services, store.get(run_id))
        if not record.spec.deployment.enabled:
            return store.advance(
                run_id, (RunState.MEASURING,), RunState.TRAINED, "deploy=false: trained and measured, not deployed"
            )[0]
        if services.deployments is None:
            return store.end(
                run_id,
                RunState.FAILED,
                "deployment_not_configured",
                "set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZURE_OPENAI_ACCOUNT_NAME to deploy",
            )
        record, _ = store.advance(run_id, (RunState.MEASURING,), RunState.DEPLOYING, "gate passed: deploying")
    if record.state != RunState.DEPLOYING:
        return record
    return _deploy(services, record, summary, dequeue_count)


# --- deployment -------------------------------------------------------------------------------------------------
def _deploy(services: Services, record: RunRecord, summary: MetricsSummary | None, dequeue_count: int) -> RunRecord:
    assert record.spec is not None and services.deployments is not None
    spec = record.spec.deployment
    model = record.job.fine_tuned_model
    if spec.target == "best_checkpoint" and summary is not None and summary.best_checkpoint is not None:
        # The checkpoints on the record are those the service lists: the last three epochs, all deployable.
        deployable = {c.id for c in sorted(record.job.checkpoints, key=lambda c: c.step_number)[-3:]}
        chosen = summary.best_checkpoint
        if chosen.id in deployable:
            model = chosen.id
            best_step = (summary.best_full_valid_loss_step if summary.best_checkpoint_basis == "full_valid_loss"
                         else summary.best_valid_loss_step)
            if best_step is not None and best_step != chosen.step_number:
                services.store.note(
                    record.id,
                    "best_checkpoint_not_kept",
                    f"the lowest {summary.best_checkpoint_basis} was at step {best_step}, whose checkpoint the "
                    "service no longer keeps (only the last three epochs are): deploying the best of those kept, "
                    f"step {chosen.step_number}",
                )
        else:
            services.store.note(
                record.id,
                "best_checkpoint_not_deployable",
                "the best checkpoint is older than the last three epochs: deploying the final model",
            )
    if not model:
        return services.store.end(
            record.id, RunState.FAILED, "no_model", "the job succeeded without a fine_tuned_model"
        )
    evaluated = record.evaluation
    if evaluated is not None and evaluated.passed and evaluated.candidate.model:
        model = evaluated.candidate.model  # the candidate the evaluation chose (the best checkpoint, maybe)
    serve_as = record.spec.serve_as
    name = serve_as or spec.name or _default_name(record.id)

    def mark(r: RunRecord) -> bool:
        r.deployment.started_at = r.deployment.started_at or utcnow()
        r.deployment.name = name
        r.deployment.model = model
        r.deployment.sku = spec.sku
        r.deployment.capacity = spec.capacity
        r.deployment.attempts += 1
        return True

    services.store.update(record.id, mark)
    wait = services.settings.deploy_wait_seconds
    try:
        existing = services.deployments.get(name)
        promoting = serve_as is not None and existing is not None and existing.model_name not in (None, model)
        if promoting and existing is not None:
            from shared.promote import note_previous, replace_model

            note_previous(services, record.id, name, existing.model_name)  # the lineage, before the change
            sku = existing.sku.name if existing.sku else spec.sku
            capacity = existing.sku.capacity if existing.sku and existing.sku.capacity else spec.capacity
            existing = replace_model(services, name, model, sku=sku, capacity=capacity)
        if existing is not None and existing.model_name not in (None, model):
            return services.store.end(
                record.id,
                RunState.FAILED,
                "deployment_name_taken",
                f"deployment {name!r} already serves {existing.model_name}; choose another deployment_name",
            )
        if existing is not None and existing.provisioning_state == "Succeeded":
            deployment = existing
            log.info("run %s: deployment %s already serves %s", record.id, name, model)
        else:
            deployment = services.deployments.create_or_update_and_wait(
                name, model_name=model, sku_name=spec.sku, capacity=spec.capacity, source=spec.source, timeout=wait
            )
    except OperationTimeoutError:
        return _still_provisioning(services, record.id, name)
    except (OperationFailedError, BadRequestError) as exc:
        return services.store.end(record.id, RunState.FAILED, exc.code or "deployment_failed", exc.message)
    except AzureOpenAIError as exc:  # quota, the cap, throttling, outages, auth: retried by the queue
        code = getattr(exc, "code", None) or type(exc).__name__
        message = getattr(exc, "message", None) or str(exc)
        if dequeue_count >= services.deploy_attempts:
            services.store.end(record.id, RunState.FAILED, code, f"{message} (gave up after {dequeue_count} tries)")
        else:
            _note_deploy_error(services, record.id, code, message)
        raise DeployRetry(f"run {record.id}: deployment try {dequeue_count} failed: {code}") from exc

    def deployed_state(r: RunRecord) -> bool:
        r.deployment.provisioning_state = deployment.provisioning_state
        r.deployment.last_error = None
        return True

    services.store.update(record.id, deployed_state)
    # After ARM's Succeeded the data plane can answer DeploymentNotReady for minutes: the queue tries again
    # later (the deployment is found Succeeded and only the smoke test is repeated); the last try records it.
    retry = dequeue_count < services.deploy_attempts
    try:
        smoke = smoke_test(services, record, name, retry_not_ready=retry) if services.settings.smoke_test else None
    except DeploymentNotReadyError as exc:
        _note_deploy_error(services, record.id, exc.code or "DeploymentNotReady", exc.message)
        raise DeployRetry(f"run {record.id}: deployment {name} not serving yet (try {dequeue_count})") from exc

    def finish(r: RunRecord) -> None:
        r.deployment.smoke_test = smoke
        if smoke is not None and smoke.status == "failed":
            r.warn("smoke_test_failed", f"smoke test failed: {smoke.error}")

    note = f"deployment {name} serves {model}"
    if serve_as:
        from shared.promote import record_promotion

        record_promotion(services, record.id, name, model)
        note += " (promoted)"
    if smoke is not None:
        note += f"; smoke test {smoke.status} in {smoke.latency_ms} ms"
    return services.store.advance(record.id, (RunState.DEPLOYING,), RunState.DEPLOYED, note, finish)[0]


def _default_name(run_id: str) -> str:
    return f"ft-{run_id}"[:64]


def smoke_test(services: Services, record: RunRecord, deployment: str, *, retry_not_ready: bool = False) -> SmokeTest:
    """One request to the new deployment with a prompt from the validation data (else the training data).

    With `retry_not_ready`, a `DeploymentNotReady` answer is raised (for the queue to try again) instead of
    being recorded as a failed smoke test.
    """
    messages = _sample_prompt(services, record)
    prompt_text = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    started = time.perf_counter()
    try:
        if record.spec is not None and record.spec.model.startswith(COMPLETION_MODELS):
            answer = services.aoai.completions(deployment, prompt_text, max_tokens=200).text
        else:
            entry = open_weight.find(record.spec.model) if record.spec is not None else None
            version = entry.inference_api_version if entry is not None else None  # their serving endpoint
            answer = services.aoai.chat_completions(deployment, messages, max_tokens=200, api_version=version).content
    except AzureOpenAIError as exc:
        if retry_not_ready and isinstance(exc, DeploymentNotReadyError):
            raise
        latency = int((time.perf_counter() - started) * 1000)
        return SmokeTest(prompt=str(prompt_text)[:500], status="failed", latency_ms=latency, error=str(exc)[:500])
    latency = int((time.perf_counter() - started) * 1000)
    ok = bool(answer and answer.strip())
    return SmokeTest(
        prompt=str(prompt_text)[:500],
        answer=(answer or "")[:2000],
        status="passed" if ok else "failed",
        latency_ms=latency,
        error=None if ok else "empty answer",
    )


def _sample_prompt(services: Services, record: RunRecord) -> list[dict[str, Any]]:
    for location in (
        record.files.validation.blob,
        record.files.training.blob,
    ):
        if location is None:
            continue
        head = (
            services.blobs.get_blob_client(location.container, location.name, snapshot=location.snapshot)
            .download_blob(offset=0, length=SMOKE_PROMPT_BYTES)
            .readall()
        )
        first = head.decode("utf-8-sig", errors="replace").splitlines()[0] if head else ""
        try:
            example = json.loads(first)
        except json.JSONDecodeError:
            continue
        if isinstance(example, dict):
            if isinstance(example.get("messages"), list):
                msgs = [m for m in example["messages"] if isinstance(m, dict)]
                # The conversation up to (not including) the first assistant turn.
                prompt: list[dict[str, Any]] = []
                for m in msgs:
                    if m.get("role") == "assistant":
                        break
                    prompt.append({"role": m.get("role"), "content": m.get("content")})
                if prompt:
                    return prompt
            if isinstance(example.get("prompt"), str):
                return [{"role": "user", "content": example["prompt"]}]
            if isinstance(example.get("input"), dict) and isinstance(example["input"].get("messages"), list):
                return [{"role": m.get("role"), "content": m.get("content")} for m in example["input"]["messages"]]
    return [{"role": "user", "content": "Hello"}]


# --- helpers ----------------------------------------------------------------------------------------------------
def _still_provisioning(services: Services, run_id: str, name: str) -> RunRecord:
    """The deployment outlived this invocation (the host's functionTimeout): look again later with a fresh
    message instead of spending the queue's tries, until the state's deadline (shared/lifecycle.py)."""
    queue_deploy(services, run_id, delay_seconds=int(services.settings.deploy_wait_seconds))

    def note(r: RunRecord) -> bool:
        r.deployment.queued_at = utcnow()
        return r.warn("deployment_provisioning", f"deployment {name} is still provisioning: checking again in a while")

    return services.store.update(run_id, note)[0]


def _note_deploy_error(services: Services, run_id: str, code: str, message: str) -> None:
    def mutate(r: RunRecord) -> bool:
        r.deployment.last_error = RunError(code=code, message=message)
        r.attempted(code, message)
        return True

    services.store.update(run_id, mutate)
