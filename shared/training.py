"""Timer: advance every active run by one step.

- importing: finish lost imports, follow the files to `processed` (or fail with the service's
  `status_details`), then create the job, under a claim, reconciling a lost answer by training file id;
- training: one job GET per run per tick; new events (only the pages newer than the last one seen) and,
  at the end, checkpoints are recorded; a terminal job ends the run, a succeeded one queues its deployment.

Active runs come from the blob index tag `active`, never from listing all runs. Work is spread over a
bounded thread pool. Two overlapping ticks are harmless: every write is conditional and every create is
claimed first.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.aoai import AzureOpenAIError, BadRequestError, FineTuningJob, JobEvent, JobState
from shared.claims import ClaimOutcome
from shared.ingest import ensure_imports, imports_done
from shared.runs import CheckpointInfo, RunRecord, RunState, utcnow
from shared.runstore import ActiveRun
from shared.services import Services
from shared.telemetry import in_run

log = logging.getLogger(__name__)

STALE_INGEST = timedelta(minutes=30)
IMPORT_DEADLINE = timedelta(hours=2)
DEPLOY_REQUEUE = timedelta(minutes=10)
EVENTS_ARTIFACT = "events.json"


@dataclass
class TickReport:
    runs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"runs": self.runs, "seconds": round(self.seconds, 3), "outcomes": dict(self.outcomes)}


def tick(services: Services) -> TickReport:
    """One timer tick over every active run."""
    started = time.perf_counter()
    runs = services.store.active_runs()
    report = TickReport(runs=len(runs))
    if runs:
        with ThreadPoolExecutor(max_workers=min(services.settings.tick_concurrency, len(runs))) as pool:
            for outcome in pool.map(lambda run: in_run(run.run_id, run.job_id, _advance_safely, services, run), runs):
                report.outcomes[outcome] += 1
    report.seconds = time.perf_counter() - started
    # An idle tick is DEBUG (it runs every few seconds locally); a tick that advanced runs is INFO.
    (log.info if runs else log.debug)("tick: %s", json.dumps(report.as_dict()))
    return report


def _advance_safely(services: Services, run: ActiveRun) -> str:
    try:
        job = None
        if run.state == RunState.TRAINING and run.job_id:
            job = services.aoai.jobs.get(run.job_id)  # the one job GET of this run in this tick
            if _unchanged(services, run, job):
                return "unchanged"
        return advance(services, run.run_id, job=job)
    except AzureOpenAIError as exc:
        log.warning("run %s: service error, will retry next tick: %s", run.run_id, exc)
        note = f"service error (retrying every tick): {str(exc)[:300]}"
        services.store.update(run.run_id, lambda r: r.warn(note) if not r.terminal else False)
        return "service_error"
    except Exception:  # noqa: BLE001 - one broken run must not stop the others
        log.exception("run %s: unexpected error, will retry next tick", run.run_id)
        return "error"


def _unchanged(services: Services, run: ActiveRun, job: FineTuningJob) -> bool:
    """A queued job whose status the index already has, with no warning due: nothing to read or write."""
    if job.status != run.job_status or job.state != JobState.PENDING:
        return False
    if run.warned or job.created_at is None:
        return True
    waited_minutes = (time.time() - job.created_at) / 60
    return waited_minutes <= services.settings.queued_warning_minutes


def advance(services: Services, run_id: str, *, job: FineTuningJob | None = None) -> str:
    """Move one run on by one step. `job` is the job as just fetched, when the caller has it."""
    found = services.store.load(run_id)
    if found is None:
        return "missing"
    record = found[0]
    if record.state in (RunState.RECEIVED, RunState.VALIDATING):
        if utcnow() - record.updated_at > STALE_INGEST:
            last = next((w for w in reversed(record.warnings) if w.startswith("ingest attempt failed")), None)
            reason = f" Last: {last}." if last else ""
            services.store.end(
                run_id,
                RunState.FAILED,
                "ingest_incomplete",
                "the blob trigger did not finish this run (its blob event is in webjobs-blobtrigger-poison)."
                f"{reason} Drop the file again to retry.",
            )
            return "failed"
        return "ingesting"
    if record.state == RunState.IMPORTING:
        return _advance_import(services, record)
    if record.state == RunState.TRAINING:
        return _poll_job(services, record, job)
    if record.awaits_deploy:
        return _requeue_lost_deploy(services, record)
    return "idle"


def _requeue_lost_deploy(services: Services, record: RunRecord) -> str:
    """A succeeded run whose deploy message was lost (or poisoned early) is queued again, at most every so often."""
    last = record.deployment.queued_at or record.entered(RunState.SUCCEEDED) or record.updated_at
    if utcnow() - last < DEPLOY_REQUEUE:
        return "awaiting_deploy"
    services.queue(services.settings.deploy_queue).send_message(json.dumps({"run_id": record.id}))

    def mark(r: RunRecord) -> bool:
        if not r.awaits_deploy:
            return False
        r.deployment.queued_at = utcnow()
        r.warn("the deploy message was queued again: the first one was not acted on")
        return True

    services.store.update(record.id, mark)
    return "deploy_requeued"


# --- importing --------------------------------------------------------------------------------------------------
def _advance_import(services: Services, record: RunRecord) -> str:
    record = ensure_imports(services, record.id)
    if record.state != RunState.IMPORTING:
        return record.state.value
    statuses: dict[str, str] = {}
    for kind in ("training", "validation"):
        file_id = getattr(record.files, f"{kind}_file_id")
        if not file_id:
            continue
        status = getattr(record.files, f"{kind}_status")
        if status != "processed":
            file_obj = services.aoai.files.get(file_id)
            status = file_obj.status
            if status in ("error", "deleted"):
                details = file_obj.status_details or f"the file is {status}; the service gave no details"
                services.store.end(
                    record.id, RunState.FAILED, "file_import_failed", f"{kind} file {file_id}: {details}"
                )
                return "failed"
        statuses[kind] = status
    if not imports_done(record):
        # Never create the job with only some of its files: another instance may still be importing the rest.
        since = record.entered(RunState.IMPORTING) or record.updated_at
        if utcnow() - since > IMPORT_DEADLINE:
            last = next((w for w in reversed(record.warnings) if w.startswith("service error")), "no error recorded")
            services.store.end(
                record.id, RunState.FAILED, "import_incomplete", f"files not imported after {IMPORT_DEADLINE}: {last}"
            )
            return "failed"
        return "importing"

    def note(r: RunRecord) -> bool:
        changed = False
        for kind, status in statuses.items():
            if getattr(r.files, f"{kind}_status") != status:
                setattr(r.files, f"{kind}_status", status)
                changed = True
        return changed

    record, _ = services.store.update(record.id, note)
    if all(s == "processed" for s in statuses.values()):
        return ensure_job(services, record.id)
    return "importing"


def ensure_job(services: Services, run_id: str) -> str:
    """Create the fine-tuning job exactly once."""
    outcome = services.claim(
        run_id, "job_create", wanted=lambda r: r.state == RunState.IMPORTING, done=lambda r: r.job.id is not None
    )
    if outcome not in (ClaimOutcome.WON, ClaimOutcome.TAKEN_OVER):
        return f"job_{outcome.value}"
    record = services.store.get(run_id)
    assert record.spec is not None and record.files.training_file_id is not None
    job = None
    if outcome == ClaimOutcome.TAKEN_OVER:
        job = _find_job(services, record.files.training_file_id)
        if job is not None:
            log.info("run %s: reconciled lost job create -> %s", run_id, job.id)
    if job is None:
        spec = record.spec
        hyper = {k: v for k, v in spec.hyperparameters.model_dump().items() if v is not None}
        method = None
        if spec.method == "dpo":
            dpo_hyper = dict(hyper)
            if spec.dpo_beta is not None:
                dpo_hyper["beta"] = spec.dpo_beta
            method = {"type": "dpo", "dpo": {"hyperparameters": dpo_hyper}}
        try:
            job = services.aoai.jobs.create(
                model=spec.model,
                training_file=record.files.training_file_id,
                validation_file=record.files.validation_file_id,
                hyperparameters=(hyper or None) if method is None else None,
                suffix=spec.suffix,
                seed=spec.seed,
                method=method,
                training_type=spec.training_type,
            )
        except BadRequestError as exc:
            services.store.end(run_id, RunState.FAILED, exc.code or "job_create_rejected", exc.message)
            return "failed"
        log.info("run %s: created job %s", run_id, job.id)
    created = job

    surplus: list[str] = []

    def record_job(r: RunRecord) -> bool:
        if r.job.id is not None:
            if r.job.id != created.id:
                surplus.append(created.id)  # another instance's job won the record: ours must not train on
            return False
        r.job.id = created.id
        r.job.status = created.status
        r.job.created_at = _dt(created.created_at)
        r.claims.pop("job_create", None)
        r.transition(RunState.TRAINING, f"job {created.id}")
        return True

    services.store.update(run_id, record_job)
    for job_id in surplus:
        log.warning("run %s: cancelling surplus job %s (another instance recorded its own)", run_id, job_id)
        services.aoai.jobs.cancel(job_id)
    return "job_created" if not surplus else "job_surplus_cancelled"


def _find_job(services: Services, training_file_id: str) -> FineTuningJob | None:
    for job in services.aoai.jobs.list(limit=100):
        if job.training_file == training_file_id:
            return job
    return None


# --- training ---------------------------------------------------------------------------------------------------
def _poll_job(services: Services, record: RunRecord, job: FineTuningJob | None = None) -> str:
    assert record.job.id is not None
    if job is None or job.id != record.job.id:
        job = services.aoai.jobs.get(record.job.id)
    state = job.state
    new_events: list[JobEvent] = []
    if state != "pending" or job.status != record.job.status:
        new_events = list(services.aoai.jobs.events(job.id, newer_than=record.job.last_event_id))
    events_total = record.job.events_recorded
    if new_events:
        events_total = _merge_events(services, record.id, new_events)
    checkpoints: list[CheckpointInfo] = []
    if state == "succeeded":
        checkpoints = [
            CheckpointInfo(
                id=c.id,
                step_number=c.step_number or 0,
                fine_tuned_model_checkpoint=c.fine_tuned_model_checkpoint or "",
                metrics=dict(c.metrics or {}),
            )
            for c in services.aoai.jobs.checkpoints(job.id)
        ]
        # Queue first, then record: a crash in between re-queues, and the deploy handler is idempotent (a message
        # that arrives before the record says succeeded is retried by the queue).
        services.queue(services.settings.deploy_queue).send_message(json.dumps({"run_id": record.id}))

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
            if waited > timedelta(minutes=services.settings.queued_warning_minutes):
                r.job.queued_warning_sent = True
                r.warn(
                    f"job {job.id} has been queued for {waited.total_seconds() / 60:.0f} minutes "
                    "(a resource runs 1 job at a time and queues 20): check for jobs ahead of it"
                )
        if state == "succeeded":
            r.job.checkpoints = checkpoints
            r.deployment.queued_at = utcnow()
            r.transition(RunState.SUCCEEDED, f"model {job.fine_tuned_model}; deployment queued")
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
    return state


def _dt(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


def _merge_events(services: Services, run_id: str, new_events: list[JobEvent]) -> int:
    """events.json holds every event seen, newest first, deduplicated by id (safe to repeat). Returns the count."""
    raw = services.store.get_artifact(run_id, EVENTS_ARTIFACT)
    known: list[dict[str, object]] = json.loads(raw) if raw else []
    seen = {e.get("id") for e in known}
    fresh = [e.model_dump(mode="json") for e in new_events if e.id not in seen]
    if fresh:
        services.store.put_json(run_id, EVENTS_ARTIFACT, fresh + known)
    return len(fresh) + len(known)
