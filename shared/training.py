"""The fine-tuning job of a run: created once (an effect under a lease), then followed until it ends.

- create: once every file is `processed`; a lost answer is reconciled by the run's training file id (a file
  imported for this run alone, so a job training on it is this run's); on the v1 surface the job carries
  `metadata.run_id` and is reconciled by it, exactly;
- follow: one job GET per run per tick (the caller's); new events only (the pages newer than the last one
  seen), merged into `events.json` under its ETag; at the end, checkpoints; a succeeded job queues the
  deploy message and moves the run to `succeeded`, a failed/cancelled/deleted one ends the run.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import admission, artifacts, costs, retention
from shared.aoai import BadRequestError, FineTuningJob, InsufficientQuotaError, JobEvent
from shared.effects import Effect, EffectOutcome
from shared.runs import CheckpointInfo, RunRecord, RunState, utcnow
from shared.services import Services

log = logging.getLogger(__name__)

JOB_EFFECT = "job_create"
RUN_ID_METADATA = "run_id"
"""The job metadata key (v1) naming the run a job was created for."""


def job_effect(services: Services) -> Effect[FineTuningJob]:
    v1 = services.aoai.surface == "v1"

    def create(r: RunRecord) -> FineTuningJob:
        spec = r.spec
        assert spec is not None and r.files.training.file_id is not None
        hyper = {k: v for k, v in spec.hyperparameters.model_dump().items() if v is not None}
        method = None
        if spec.method == "dpo":
            dpo_hyper = dict(hyper)
            if spec.dpo_beta is not None:
                dpo_hyper["beta"] = spec.dpo_beta
            method = {"type": "dpo", "dpo": {"hyperparameters": dpo_hyper}}
        elif spec.method == "reinforcement":
            assert spec.reinforcement is not None  # RunSpec requires it
            method = spec.reinforcement.method_body(hyper)  # grader and every hyperparameter under the method
        job = services.aoai.jobs.create(
            model=spec.model,
            training_file=r.files.training.file_id,
            validation_file=r.files.validation.file_id,
            hyperparameters=(hyper or None) if method is None else None,
            suffix=spec.suffix,
            seed=spec.seed,
            method=method,
            training_type=spec.training_type,
            metadata={RUN_ID_METADATA: r.id} if v1 else None,
        )
        log.info("run %s: created job %s", r.id, job.id)
        return job

    def find(r: RunRecord) -> list[FineTuningJob]:
        if v1:  # the job says whose it is
            return services.aoai.jobs.find_by_metadata(RUN_ID_METADATA, r.id)
        training_file = r.files.training.file_id
        found = [j for j in services.aoai.jobs.list(limit=100) if j.training_file == training_file]
        return sorted(found, key=lambda j: j.created_at or 0)

    def record(r: RunRecord, job: FineTuningJob) -> None:
        r.job.id = job.id
        r.job.status = job.status
        r.job.created_at = _dt(job.created_at)
        r.transition(RunState.TRAINING, f"job {job.id}")

    return Effect(
        key=JOB_EFFECT,
        kind="job",
        wanted=lambda r: r.state == RunState.IMPORTING and r.files.imported,
        recorded=lambda r: r.job.id,
        find=find,
        create=create,
        record=record,
        ident=lambda j: j.id,
    )


def ensure_job(services: Services, run_id: str) -> str:
    """Create the run's fine-tuning job, at most once whoever calls. Returns what happened."""
    try:
        result = services.effects.run(run_id, job_effect(services), max_hold=services.aoai.worst_case_seconds())
    except InsufficientQuotaError as exc:  # the job limits of the resource: wait for room, never fail for it
        admission.back_to_waiting(services, run_id, exc.code or "quotaExceeded", exc.message, "outstanding_jobs")
        return "waiting"
    except BadRequestError as exc:  # the service refused the job (bad hyperparameters, model)
        services.store.end(run_id, RunState.FAILED, exc.code or "job_create_rejected", exc.message)
        return "failed"
    if result.outcome in (EffectOutcome.CREATED, EffectOutcome.RECONCILED):
        return "job_created"
    return f"job_{result.outcome.value}"


# --- following the job ----------------------------------------------------------------------------------------
def follow_job(services: Services, record: RunRecord, job: FineTuningJob | None = None) -> str:
    """One step for a training run: record the job's status and new events; end or hand over when it ended."""
    assert record.job.id is not None
    if job is None or job.id != record.job.id:
        job = services.aoai.jobs.get(record.job.id)
    state = job.state
    new_events: list[JobEvent] = []
    if state != "pending" or job.status != record.job.status:
        new_events = list(services.aoai.jobs.events(job.id, newer_than=record.job.last_event_id))
    events_total = record.job.events_recorded
    if new_events:
        events_total = merge_events(services, record.id, new_events)
    checkpoints: list[CheckpointInfo] = []
    # "Job succeeded." comes minutes before the results file: measuring now would find no metrics. The timer
    # looks again on its next tick (a succeeded job is always followed), for RESULTS_FILE_WAIT at most.
    results_pending = state == "succeeded" and not job.result_files and not _results_wait_over(job)
    handed_over = state == "succeeded" and not results_pending
    if handed_over:
        checkpoints = [
            CheckpointInfo(
                id=c.id,
                step_number=int(c.step_number or 0),
                fine_tuned_model_checkpoint=c.fine_tuned_model_checkpoint or "",
                metrics=dict(c.metrics or {}),
            )
            for c in services.aoai.jobs.checkpoints(job.id)
        ]
        # Queue first, then record: a crash in between re-queues (the sweeper), and the deploy handler is
        # idempotent (a message that arrives before the record says succeeded is retried by the queue).
        queue_deploy(services, record.id)
    warned_minutes = services.settings.queued_warning_minutes

    def mutate(r: RunRecord) -> bool:
        if r.state != RunState.TRAINING:
            return False
        before = r.model_dump_json()
        r.job.status = job.status
        r.job.fine_tuned_model = job.fine_tuned_model
        r.job.trained_tokens = job.trained_tokens
        r.job.result_files = list(job.result_files or [])
        r.job.estimated_finish = _dt(job.estimated_finish)
        r.job.finished_at = _dt(job.finished_at)
        if new_events and r.job.last_event_id == record.job.last_event_id:  # not already moved on by another tick
            r.job.last_event_id = new_events[0].id
            r.job.events_recorded = events_total
            metrics = next((e.data for e in new_events if e.type == "metrics" and e.data), None)
            if metrics:
                r.job.latest_metrics = dict(metrics)
        if state == "pending" and r.job.created_at is not None and not r.job.queued_warning_sent:
            waited = utcnow() - r.job.created_at
            if waited > timedelta(minutes=warned_minutes):
                r.job.queued_warning_sent = True
                r.warn(
                    "job_queued_long",
                    f"job {job.id} has been queued for {waited.total_seconds() / 60:.0f} minutes "
                    "(a resource runs 1 job at a time and queues 20): check for jobs ahead of it",
                )
        if results_pending and not any(w.code == "results_file_pending" for w in r.warnings):
            r.warn("results_file_pending", f"job {job.id} read succeeded before its results file existed: measuring "
                   f"waits for the file (it follows 'Job succeeded.'; at most {RESULTS_FILE_WAIT})")
        if job.state.is_terminal and services.settings.retention_delete_imported_files:
            retention.release_imported_files(r, f"job {job.id} ended ({state}); the run keeps its blobs")
        if handed_over and r.cost is not None:
            costs.actual(r.cost, job.trained_tokens)
        if handed_over:
            r.job.checkpoints = checkpoints
            r.deployment.queued_at = utcnow()
            r.transition(RunState.SUCCEEDED, f"model {job.fine_tuned_model}; deploy message queued")
        elif state == "failed":
            err = job.error
            r.fail(
                (err.code if err and err.code else "job_failed"),
                (err.message if err and err.message else "the fine-tuning job failed without a message"),
            )
        elif state == "cancelled":
            r.fail("job_cancelled", f"job {job.id} was cancelled", state=RunState.CANCELLED)
        elif state == "deleted":
            r.fail("job_deleted", f"job {job.id} was deleted before it finished")
        return r.model_dump_json() != before

    services.store.update(record.id, mutate)
    return "results_pending" if results_pending else state


RESULTS_FILE_WAIT = timedelta(hours=1)
"""How long a succeeded job may go without its results file before the run is measured without it."""


def _results_wait_over(job: FineTuningJob) -> bool:
    finished = _dt(job.finished_at) or _dt(job.created_at)
    return finished is not None and utcnow() - finished > RESULTS_FILE_WAIT


def queue_deploy(services: Services, run_id: str, *, delay_seconds: int = 0) -> None:
    """Queue (again) the message that makes the deploy queue measure, gate and deploy the run."""
    services.queue(services.settings.deploy_queue).send_message(
        json.dumps({"run_id": run_id}), visibility_timeout=delay_seconds or None
    )


def merge_events(services: Services, run_id: str, new_events: list[JobEvent]) -> int:
    """events.json holds every event seen, newest first, deduplicated by id; written under its ETag, so two
    ticks merging at once lose nothing. Returns the count."""
    total = 0

    def mutate(known: Any) -> Any:
        nonlocal total
        current: list[dict[str, Any]] = known if isinstance(known, list) else []
        seen = {e.get("id") for e in current}
        fresh = [e.model_dump(mode="json") for e in new_events if e.id not in seen]
        total = len(fresh) + len(current)
        return fresh + current if fresh else None

    services.store.update_json(run_id, artifacts.EVENTS, mutate)
    return total


def _dt(timestamp: int | float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None
