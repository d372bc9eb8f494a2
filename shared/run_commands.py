"""Day-2 commands on a run: cancel, redeploy, pause and resume (the CLI and the HTTP API call these), and watch.

Each is idempotent (a second call changes nothing and says so) and recorded in the run's history:

- `cancel`: a run that has not ended is moved to `cancelled` in one guarded write that also puts what it holds
  on its removal list (`surplus`: the job, which is cancelled; imported files and a deployment still being
  made, which are deleted); the removals are done at once and, if a call fails, by the next tick (each one
  recorded with `removed_at`). The fine-tuned model of a trained run stays. A deployer or importer still at
  work finds the run ended: whatever it creates goes to the removal list too (shared/effects.py).
- `redeploy`: a run whose model was trained but is not served (its deploy failed, the gate was overridden by
  hand, or it ran with deploy=false) gets its deployment: the ARM PUT is idempotent by name and one that
  already serves the model is success. The run keeps its end state; the deployment and a history entry
  `redeploy: ...` are written on it.
- `pause` / `resume`: the training run's job is paused (the service keeps a checkpoint and stops billing
  compute) or resumed; the run stays `training` and the timer follows the job as before. The service pauses only
  a running job that has trained at least one step, and resumes only a paused one: its refusal is the command's
  (409, the service's words). Needs the v1 surface or a preview api-version (AZURE_OPENAI_PREVIEW_API_VERSION).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.aoai import AzureOpenAIError, BadRequestError, ConflictError, JobState, UnsupportedFeatureError
from shared.runs import HistoryEntry, RunRecord, RunState, SurplusObject, utcnow
from shared.services import Services

log = logging.getLogger(__name__)

REDEPLOYABLE = frozenset({RunState.FAILED, RunState.TRAINED, RunState.CANCELLED, RunState.GATED})


@dataclass(frozen=True)
class Outcome:
    changed: bool
    message: str
    record: RunRecord


class CommandRefused(ValueError):
    """The command cannot apply to the run as it stands (the message says why)."""


def _leftovers(r: RunRecord, reason: str) -> list[SurplusObject]:
    items: list[tuple[str, str]] = []
    if r.job.id and r.state in (RunState.TRAINING, RunState.IMPORTING):
        items.append(("job", r.job.id))
    items += [("file", slot.file_id) for _, slot in r.files.slots() if slot.file_id]
    if r.state == RunState.DEPLOYING and r.deployment.name:
        items.append(("deployment", r.deployment.name))
    known = {s.id for s in r.surplus}
    return [
        SurplusObject.model_validate(
            {"kind": kind, "id": ident, "effect": "cancel", "found_at": utcnow(), "reason": reason})
        for kind, ident in items if ident not in known
    ]


def cancel(services: Services, run_id: str, *, by: str = "cli") -> Outcome:
    from shared.advance import remove_surplus

    reason = f"cancelled by request ({by})"
    did = False

    def mutate(r: RunRecord) -> bool:
        nonlocal did
        r.surplus += _leftovers(r, reason)
        r.fail("cancelled_by_request", reason, state=RunState.CANCELLED)
        did = True
        return True

    record, _ = services.store.update(run_id, mutate)  # an ended run is left as it is: mutate never runs
    if not did:
        return Outcome(False, f"run {run_id} already ended: {record.state.value}", record)
    record = remove_surplus(services, record)
    removed = [f"{s.kind} {s.id}" for s in record.surplus if s.effect == "cancel" and s.removed_at is not None]
    log.info("run %s: %s; removed %s", run_id, reason, removed)
    return Outcome(True, f"run {run_id} cancelled" + (f"; removed {', '.join(removed)}" if removed else ""), record)


def redeploy(services: Services, run_id: str, *, by: str = "cli") -> Outcome:
    record = services.store.get(run_id)
    model = record.job.fine_tuned_model
    if services.deployments is None:
        raise CommandRefused("deploying is not configured (AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, "
                             "AZURE_OPENAI_ACCOUNT_NAME)")
    if record.state == RunState.DEPLOYED:
        return Outcome(False, f"run {run_id} is deployed already ({record.deployment.name})", record)
    if record.state not in REDEPLOYABLE or not model:
        raise CommandRefused(f"run {run_id} is {record.state.value} with no trained model to deploy"
                             if not model else f"run {run_id} is {record.state.value}: it has not ended yet")
    assert record.spec is not None
    spec = record.spec.deployment
    name = record.deployment.name or spec.name or f"ft-{run_id}"[:64]
    existing = services.deployments.get(name)
    if existing is not None and existing.provisioning_state == "Succeeded" and existing.model_name == model:
        changed = record.deployment.provisioning_state != "Succeeded"
        message = f"deployment {name} already serves {model}"
    else:
        try:
            existing = services.deployments.create_or_update_and_wait(
                name, model_name=model, sku_name=spec.sku, capacity=spec.capacity, source=spec.source,
                timeout=services.settings.deploy_wait_seconds,
            )
        except AzureOpenAIError as exc:
            raise CommandRefused(f"the deployment was refused: {exc}") from exc
        changed, message = True, f"deployment {name} serves {model}"
    state = existing.provisioning_state if existing is not None else None

    def note(r: RunRecord) -> bool:
        r.deployment.name, r.deployment.model = name, model
        r.deployment.sku, r.deployment.capacity = spec.sku, spec.capacity
        r.deployment.provisioning_state = state
        r.history.append(HistoryEntry(at=utcnow(), state=r.state, note=f"redeploy ({by}): {message}"))
        return True

    if changed:
        record, _ = services.store.update(run_id, note, on_ended=True)
    return Outcome(changed, message, record)


def pause(services: Services, run_id: str, *, by: str = "cli") -> Outcome:
    return _pause_or_resume(services, run_id, "pause", by)


def resume(services: Services, run_id: str, *, by: str = "cli") -> Outcome:
    return _pause_or_resume(services, run_id, "resume", by)


_ALREADY = {"pause": (JobState.PAUSING, JobState.PAUSED), "resume": (JobState.RESUMING, JobState.RUNNING)}


def _pause_or_resume(services: Services, run_id: str, command: str, by: str) -> Outcome:
    record = services.store.get(run_id)
    job_id = record.job.id
    if record.state != RunState.TRAINING or not job_id:
        raise CommandRefused(f"run {run_id} is {record.state.value}: only a training run's job can {command}")
    job = services.aoai.jobs.get(job_id)
    if job.state in _ALREADY[command]:
        return Outcome(False, f"job {job_id} of run {run_id} is {job.status} already", record)
    try:
        answered = (services.aoai.jobs.pause if command == "pause" else services.aoai.jobs.resume)(job_id)
    except UnsupportedFeatureError as exc:
        raise CommandRefused(str(exc)) from exc
    except (BadRequestError, ConflictError) as exc:  # not running (or not paused): the service's words
        raise CommandRefused(f"the service refused to {command} job {job_id}: {exc.message}") from exc
    message = f"job {job_id} {answered.status}"

    def note(r: RunRecord) -> bool:
        if r.state != RunState.TRAINING:
            return False
        r.job.status = answered.status
        r.history.append(HistoryEntry(at=utcnow(), state=r.state, note=f"{command} ({by}): {message}"))
        return True

    record, _ = services.store.update(run_id, note)
    log.info("run %s: %s", run_id, message)
    return Outcome(True, message, record)
