"""Queue trigger: a succeeded run is measured, gated, deployed and smoke-tested, once.

succeeded -> deploying -> deployed | gated | failed.

Every step is safe to repeat: the metrics are rewritten with the same content, the deployment PUT is
idempotent (a deployment that already serves the same model is success), and the run's transitions are
conditional writes. Quota and cap errors are retried by the queue (host.json: visibilityTimeout between
tries, maxDequeueCount tries); on the last try the run is marked failed with the service's words and the
message goes to the poison queue. A refusal that retrying cannot change (the post-training safety
evaluation, a bad request) fails the run at once.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

from shared.aoai import AzureOpenAIError, BadRequestError, OperationFailedError, OperationTimeoutError
from shared.charts import chart_marks, render_charts
from shared.claims import ClaimOutcome
from shared.gate import evaluate_gate
from shared.metrics import MetricsSummary, ResultsParseError, parse_results, summarize
from shared.runs import ACTIVE_STATES, RunError, RunRecord, RunState, SmokeTest, utcnow
from shared.services import Services
from shared.spec import COMPLETION_MODELS
from shared.telemetry import in_run

log = logging.getLogger(__name__)

DEPLOY_GIVE_UP = timedelta(hours=24)
SMOKE_PROMPT_BYTES = 256 * 1024


class DeployRetry(RuntimeError):
    """Raised to make the queue deliver the message again later (quota, cap, throttling, outage)."""


def handle_deploy_message(services: Services, body: str, dequeue_count: int = 1) -> RunRecord | None:
    """Deploy the run named by the message. Raises DeployRetry (or anything else) to have the queue try again;
    on the last try (`dequeue_count` = DEPLOY_MAX_ATTEMPTS) the run is first failed with the reason."""
    try:
        return in_run(_run_id(body), None, _handle, services, body, dequeue_count)
    except Exception as exc:
        if dequeue_count >= services.settings.deploy_max_attempts and not isinstance(exc, DeployRetry):
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
    try:
        run_id = str(json.loads(body)["run_id"])
    except (ValueError, KeyError, TypeError):
        log.error('deploy message is not {"run_id": ...}: dropped (%.80r)', body)
        return None
    store = services.store
    found = store.load(run_id)
    if found is None:
        log.error("deploy message for unknown run %s: dropped", run_id)
        return None
    record = found[0]
    if record.state in ACTIVE_STATES:
        # The timer queues the message just before it records `succeeded`: try again shortly.
        raise DeployRetry(f"run {run_id} is still {record.state.value}")
    if record.state == RunState.SUCCEEDED:
        if record.spec is not None and not record.spec.deployment.enabled and record.metrics is not None:
            return record

        def start(r: RunRecord) -> bool:
            if r.state != RunState.SUCCEEDED:
                return False
            r.transition(RunState.DEPLOYING, "measuring")
            return True

        record, _ = store.update(run_id, start)
    if record.state != RunState.DEPLOYING:
        log.info("run %s is %s: deploy message has nothing to do", run_id, record.state.value)
        return record
    # One instance at a time works on a run's deployment; a concurrent copy of the message tries again later.
    outcome = services.claim(run_id, "deploy", wanted=lambda r: r.state == RunState.DEPLOYING, done=lambda r: False)
    if outcome == ClaimOutcome.HELD:
        raise DeployRetry(f"run {run_id} is being deployed by another instance")
    if outcome == ClaimOutcome.GONE:
        return store.get(run_id)
    try:
        return _measure_gate_deploy(services, store.get(run_id), dequeue_count)
    finally:
        store.update(run_id, lambda r: r.claims.pop("deploy", None) is not None)


def _measure_gate_deploy(services: Services, record: RunRecord, dequeue_count: int) -> RunRecord:
    run_id = record.id
    store = services.store
    assert record.spec is not None
    summary = ensure_metrics(services, record)
    gate_spec = record.spec.gate
    if gate_spec is not None:
        if summary is None:
            return services.store.end(run_id, RunState.GATED, "quality_gate", "no metrics: results.csv was unavailable")
        result = evaluate_gate(gate_spec, summary)

        def keep_gate(r: RunRecord) -> bool:
            r.gate = result.model_dump(mode="json")
            return True

        store.update(run_id, keep_gate)
        if not result.passed:
            return services.store.end(run_id, RunState.GATED, "quality_gate", "; ".join(result.reasons))

    if not record.spec.deployment.enabled:

        def done(r: RunRecord) -> bool:
            if r.state != RunState.DEPLOYING:
                return False
            r.transition(RunState.SUCCEEDED, "deploy=false: trained and measured, not deployed")
            return True

        return store.update(run_id, done)[0]
    if services.deployments is None:
        return services.store.end(
            run_id,
            RunState.FAILED,
            "deployment_not_configured",
            "set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZURE_OPENAI_ACCOUNT_NAME to deploy",
        )
    record = store.get(run_id)
    return _deploy(services, record, summary, dequeue_count)


# --- metrics ----------------------------------------------------------------------------------------------------
def ensure_metrics(services: Services, record: RunRecord) -> MetricsSummary | None:
    """results.csv, metrics.json and the charts, written beside the run (idempotent)."""
    if record.metrics is not None:
        return MetricsSummary.model_validate(record.metrics)
    if not record.job.result_files:
        _warn(services, record.id, "the job has no result file: no metrics")
        return None
    data = services.aoai.files.content(record.job.result_files[0])
    store = services.store
    store.put_artifact(record.id, "results.csv", data, "text/csv")
    try:
        table = parse_results(data)
    except ResultsParseError as exc:
        _warn(services, record.id, f"results.csv could not be read: {exc}")
        return None
    summary = summarize(
        table,
        checkpoints=[c.model_dump() for c in record.job.checkpoints],
        trained_tokens=record.job.trained_tokens,
        started_at=record.job.created_at,
        finished_at=record.job.finished_at,
    )
    store.put_artifact(record.id, "metrics.json", summary.model_dump_json(indent=2), "application/json")
    for name, png in render_charts(
        table, title=record.id, subtitle=record.job.fine_tuned_model or "", marks=chart_marks(record, table)
    ).items():
        store.put_artifact(record.id, name, png, "image/png")
    metrics = summary.model_dump(mode="json")

    def keep(r: RunRecord) -> bool:
        r.metrics = metrics
        return True

    store.update(record.id, keep)
    return summary


# --- deployment -------------------------------------------------------------------------------------------------
def _deploy(services: Services, record: RunRecord, summary: MetricsSummary | None, dequeue_count: int) -> RunRecord:
    assert record.spec is not None and services.deployments is not None
    spec = record.spec.deployment
    model = record.job.fine_tuned_model
    if spec.target == "best_checkpoint" and summary is not None and summary.best_checkpoint is not None:
        deployable = {c.id for c in sorted(record.job.checkpoints, key=lambda c: c.step_number)[-3:]}
        if summary.best_checkpoint.id in deployable:
            model = summary.best_checkpoint.id
        else:
            _warn(
                services,
                record.id,
                "the best checkpoint is older than the last three epochs: deploying the final model",
            )
    if not model:
        return services.store.end(
            record.id, RunState.FAILED, "no_model", "the job succeeded without a fine_tuned_model"
        )
    name = spec.name or _default_name(record.id)

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
        last = dequeue_count >= services.settings.deploy_max_attempts
        if last:
            services.store.end(record.id, RunState.FAILED, code, f"{message} (gave up after {dequeue_count} tries)")
        else:
            _note_deploy_error(services, record.id, code, message)
        raise DeployRetry(f"run {record.id}: deployment try {dequeue_count} failed: {code}") from exc

    def deployed_state(r: RunRecord) -> bool:
        r.deployment.provisioning_state = deployment.provisioning_state
        r.deployment.last_error = None
        return True

    services.store.update(record.id, deployed_state)
    smoke = smoke_test(services, record, name) if services.settings.smoke_test else None

    def finish(r: RunRecord) -> bool:
        if r.state != RunState.DEPLOYING:
            return False
        r.deployment.smoke_test = smoke
        note = f"deployment {name} serves {model}"
        if smoke is not None:
            note += f"; smoke test {smoke.status} in {smoke.latency_ms} ms"
            if smoke.status == "failed":
                r.warn(f"smoke test failed: {smoke.error}")
        r.transition(RunState.DEPLOYED, note)
        return True

    return services.store.update(record.id, finish)[0]


def _default_name(run_id: str) -> str:
    return f"ft-{run_id}"[:64]


def smoke_test(services: Services, record: RunRecord, deployment: str) -> SmokeTest:
    """One request to the new deployment with a prompt from the validation data (else the training data)."""
    messages = _sample_prompt(services, record)
    prompt_text = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    started = time.perf_counter()
    try:
        if record.spec is not None and record.spec.model.startswith(COMPLETION_MODELS):
            answer = services.aoai.completions(deployment, prompt_text, max_tokens=200).text
        else:
            answer = services.aoai.chat_completions(deployment, messages, max_tokens=200).content
    except AzureOpenAIError as exc:
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
    for location, snapshot in (
        (record.files.validation_blob, record.files.validation_snapshot),
        (record.files.training_blob, record.files.training_snapshot),
    ):
        if not location:
            continue
        container, blob_name = location.split("/", 1)
        head = (
            services.blobs.get_blob_client(container, blob_name, snapshot=snapshot)
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
    message instead of spending the queue's tries, until it has been provisioning for a day."""
    record = services.store.get(run_id)
    started = record.deployment.started_at or utcnow()
    if utcnow() - started > DEPLOY_GIVE_UP:
        return services.store.end(
            run_id, RunState.FAILED, "deployment_stuck", f"deployment {name} was still not ready after {DEPLOY_GIVE_UP}"
        )
    services.queue(services.settings.deploy_queue).send_message(
        json.dumps({"run_id": run_id}), visibility_timeout=int(services.settings.deploy_wait_seconds)
    )

    def note(r: RunRecord) -> bool:
        r.deployment.queued_at = utcnow()
        return r.warn(f"deployment {name} is still provisioning: checking again in a while")

    return services.store.update(run_id, note)[0]


def _note_deploy_error(services: Services, run_id: str, code: str, message: str) -> None:
    def mutate(r: RunRecord) -> bool:
        r.deployment.last_error = RunError(code=code, message=message)
        return True

    services.store.update(run_id, mutate)


def _warn(services: Services, run_id: str, message: str) -> None:
    def mutate(r: RunRecord) -> bool:
        r.warn(message)
        return True

    services.store.update(run_id, mutate)
