"""The timer: advance every run the lifecycle table says it sweeps, by one step per tick.

Per run, in this order:
0. state changes whose events never reached the queue (the process died between the record write and the
   queue write, or the queue was down) are announced now, with their original ids;
1. surplus objects (a fenced-off holder's late answer, a second copy, files of a run that ended early) are
   deleted or cancelled, and the removal is recorded;
2. a run past its state's deadline (shared/lifecycle.py) is ended with the state's code and the reason of
   its last attempt: no run stays anywhere forever;
3. the state's own step: `importing` imports what is missing (each file an effect under a lease), follows the
   files to `processed` and creates the job (an effect); `training` follows the job (one GET per run per tick,
   by the caller); `evaluating` takes one step of the evaluation (shared/evaluate.py: one GET per eval run
   still going); queue-driven states (`succeeded`, `measuring`, `deploying`) get their deploy message
   again when nothing moved for a while and no deployer holds the run's lease.

Active runs come from the blob index tag `active` (derived from the table), never from listing all runs. Work
is spread over a bounded thread pool. Two overlapping ticks are harmless: every write is conditional and
every effect is leased.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from shared import admission, retention
from shared.aoai import AzureOpenAIError, BadRequestError, FineTuningJob, JobState, NotFoundError
from shared.imports import ensure_imports, follow_imports
from shared.lifecycle import QUEUE_DRIVEN_STATES, rule
from shared.runs import RunRecord, RunState, SurplusObject, utcnow
from shared.runstore import ActiveRun
from shared.services import Services
from shared.telemetry import in_run
from shared.training import ensure_job, follow_job, queue_deploy

log = logging.getLogger(__name__)

DEPLOY_LEASE = "deploy"
EVENT_RELAY_AFTER = timedelta(minutes=1)
"""A state change whose event was not queued this long after it is relayed by the timer."""


@dataclass
class TickReport:
    runs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"runs": self.runs, "seconds": round(self.seconds, 3), "outcomes": dict(self.outcomes)}


def tick(services: Services) -> TickReport:
    """One timer tick over every run the timer sweeps."""
    started = time.perf_counter()
    runs = services.store.active_runs()
    report = TickReport(runs=len(runs))
    admitted = _admit(services, runs)
    report.outcomes["admitted"] += admitted
    if runs:
        with ThreadPoolExecutor(max_workers=min(services.settings.tick_concurrency, len(runs))) as pool:
            for outcome in pool.map(lambda run: in_run(run.run_id, run.job_id, _step_safely, services, run), runs):
                report.outcomes[outcome] += 1
    report.seconds = time.perf_counter() - started
    level = logging.INFO if report.runs else logging.DEBUG
    log.log(level, "tick: %s", json.dumps(report.as_dict()))
    return report


def _admit(services: Services, runs: list[ActiveRun]) -> int:
    """Admission (shared/admission.py): one listing of the resource per tick, then waiting runs that have room
    move to `importing` (and are stepped below, in the same tick)."""
    try:
        admitted = admission.admit(services, runs)
    except AzureOpenAIError as exc:
        log.warning("admission: listing the resource failed, retried next tick: %s", exc)
        return 0
    moved = 0
    for run_id in admitted:
        _, ok = services.store.advance(run_id, (RunState.WAITING,), RunState.IMPORTING, "admitted: there is room")
        moved += ok
    return moved


def _step_safely(services: Services, run: ActiveRun) -> str:
    try:
        job = None
        if run.state == RunState.TRAINING and run.job_id:
            job = services.aoai.jobs.get(run.job_id)  # the one job GET of this run in this tick
            if _unchanged(services, run, job):
                return "unchanged"
        return step(services, run.run_id, job=job)
    except AzureOpenAIError as exc:
        log.warning("run %s: service error, will retry next tick: %s", run.run_id, exc)
        _attempt(services, run.run_id, getattr(exc, "code", None) or type(exc).__name__, str(exc)[:300])
        return "service_error"
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the others
        log.exception("run %s: unexpected error, will retry next tick", run.run_id)
        _attempt(services, run.run_id, type(exc).__name__, str(exc)[:300])
        return "error"


def _attempt(services: Services, run_id: str, code: str, message: str) -> None:
    try:
        services.store.note(run_id, code, message, attempt=True)
    except Exception:  # noqa: BLE001 - the storage may be what failed
        log.exception("run %s: could not record the attempt", run_id)


def _unchanged(services: Services, run: ActiveRun, job: FineTuningJob) -> bool:
    """A queued job whose status the index already has, with no warning due and no chores: nothing to read or
    write."""
    if run.chores or job.status != run.job_status or job.state != JobState.PENDING:
        return False
    if run.warned or job.created_at is None:
        return True
    waited_minutes = (time.time() - job.created_at) / 60
    return waited_minutes <= services.settings.queued_warning_minutes


def step(services: Services, run_id: str, *, job: FineTuningJob | None = None) -> str:
    """Move one run on by one step. `job` is the job as just fetched, when the caller has it."""
    found = services.store.load(run_id)
    if found is None:
        return "missing"
    record = found[0]
    if record.unannounced and utcnow() - record.history[-1].at > EVENT_RELAY_AFTER:
        if services.notifier.relay(record):
            services.store.mark_published(record.id, len(record.history), relayed=True)
    if any(s.removed_at is None for s in record.surplus):
        record = remove_surplus(services, record)
        if record.terminal:
            return "surplus_removed"
    if record.terminal:
        return "ended"
    if _past_deadline(record):
        return _end_at_deadline(services, record)
    if record.state in (RunState.RECEIVED, RunState.VALIDATING):
        return "ingesting"  # the blob trigger's (its retries, then the deadline above)
    if record.state == RunState.WAITING:
        return "waiting"  # admitted (or not) at the start of the tick
    if record.state == RunState.IMPORTING:
        return _step_importing(services, record)
    if record.state == RunState.TRAINING:
        return follow_job(services, record, job)
    if record.state == RunState.EVALUATING:
        from shared import evaluate

        return evaluate.step(services, record)
    if record.state in QUEUE_DRIVEN_STATES:
        return _requeue_if_stalled(services, record)
    return "idle"


# --- importing --------------------------------------------------------------------------------------------------
def _step_importing(services: Services, record: RunRecord) -> str:
    record = ensure_imports(services, record.id)
    if record.state != RunState.IMPORTING:
        return record.state.value
    record, processed = follow_imports(services, record)
    if record.state != RunState.IMPORTING:
        return record.state.value
    if not processed:
        return "importing"  # never create the job with only some of its files
    return ensure_job(services, record.id)


# --- queue-driven states ----------------------------------------------------------------------------------------
def _requeue_if_stalled(services: Services, record: RunRecord) -> str:
    """A run waiting on the deploy queue whose message was lost, poisoned, or whose deployer died, gets a new
    message once nothing moved for the state's `requeue_after` and nobody holds its deploy lease."""
    after = rule(record.state).requeue_after
    assert after is not None
    lease = record.leases.get(DEPLOY_LEASE)
    if lease is not None and lease.held(utcnow()):
        return "deploying"
    last = max(
        t for t in (record.deployment.queued_at, record.entered(record.state), record.updated_at) if t is not None
    )
    if utcnow() - last < after:
        return f"awaiting_{record.state.value}"
    queue_deploy(services, record.id)

    def mark(r: RunRecord) -> bool:
        if r.state != record.state:
            return False
        r.deployment.queued_at = utcnow()
        r.warn("deploy_requeued", f"the deploy message was queued again: nothing moved in {record.state.value}")
        return True

    services.store.update(record.id, mark)
    return "deploy_requeued"


# --- deadlines --------------------------------------------------------------------------------------------------
def _past_deadline(record: RunRecord) -> bool:
    deadline = rule(record.state).deadline
    since = record.entered(record.state) or record.updated_at
    return deadline is not None and utcnow() - since > deadline


def _end_at_deadline(services: Services, record: RunRecord) -> str:
    r = rule(record.state)
    last = record.last_attempt
    reason = f"last attempt: [{last.code}] {last.message}" if last else "no attempt recorded an error"
    if record.state == RunState.WAITING and record.waiting is not None:
        reason = f"it waited for: {record.waiting.reason}"
    message = f"still {record.state.value} after {r.deadline}: {r.at_deadline}. {reason}"
    if record.state == RunState.RECEIVED or record.state == RunState.VALIDATING:
        message += ". Drop the file again to retry."
    leftovers: list[SurplusObject] = []
    if record.state == RunState.TRAINING and record.job.id:
        leftovers.append(_surplus("job", record.job.id, "run ended at its training deadline"))
    if record.state == RunState.EVALUATING:
        from shared.evaluate import candidates_at_deadline

        leftovers += candidates_at_deadline(record)
    if record.state in (RunState.IMPORTING, RunState.WAITING):
        leftovers += [
            _surplus("file", slot.file_id, "run ended before training")
            for _, slot in record.files.slots()
            if slot.file_id
        ]

    def mutate(rec: RunRecord) -> bool:
        if rec.state != record.state:
            return False
        known = {s.id for s in rec.surplus}
        rec.surplus += [s for s in leftovers if s.id not in known]
        rec.fail(r.deadline_code, message)
        return True

    ended, _ = services.store.update(record.id, mutate)
    if record.state == RunState.EVALUATING:
        remove_surplus(services, ended)  # candidate deployments are billed by the hour: delete them now
    return "deadline"


def _surplus(kind: str, ident: str, reason: str) -> SurplusObject:
    return SurplusObject.model_validate(
        {"kind": kind, "id": ident, "effect": "deadline", "found_at": utcnow(), "reason": reason}
    )


# --- surplus ----------------------------------------------------------------------------------------------------
def remove_surplus(services: Services, record: RunRecord) -> RunRecord:
    """Delete (files, deployments) or cancel (jobs) every object the run does not own; record each removal."""
    results: dict[str, str | None] = {}
    for item in record.surplus:
        if item.removed_at is not None:
            continue
        try:
            if item.kind == "file" and item.effect == retention.EFFECT:
                if not retention.delete_imported_file(services, record.id, item):
                    continue  # another tick holds its deletion: looked at again next tick
            elif item.kind == "file":
                services.aoai.files.delete(item.id)
            elif item.kind == "job":
                services.aoai.jobs.cancel(item.id)
            elif item.kind in ("eval", "eval_run"):
                from shared.evaluate import remove_eval_surplus

                remove_eval_surplus(services, record, item.kind, item.id)
            elif services.deployments is not None:
                services.deployments.begin_delete(item.id)
            results[item.id] = None
            log.info("run %s: surplus %s %s removed (%s)", record.id, item.kind, item.id, item.reason)
        except NotFoundError:
            results[item.id] = None  # already gone
        except BadRequestError as exc:
            # A job that already ended cannot be cancelled: nothing of it runs or bills any more.
            results[item.id] = None if item.kind == "job" else f"{exc.code}: {exc.message}"[:300]
        except AzureOpenAIError as exc:
            log.warning("run %s: removing surplus %s %s failed, retried next tick: %s", record.id, item.kind,
                        item.id, exc)

    if not results:
        return record

    def mark(r: RunRecord) -> bool:
        for item in r.surplus:
            if item.id in results and item.removed_at is None:
                item.removed_at = utcnow()
                item.removal_error = results[item.id]
        return True

    return services.store.update(record.id, mark, on_ended=True)[0]
