"""Retention: what the pipeline deletes on its own once a run no longer needs it, each deletion on the record.

Two parts:

1. **While a run trains** (the timer's tick, shared/training.py): its imported training/validation files are put
   on the run's removal list once its job has ended (`record.surplus`, effect `retention`): they are copies of
   blobs the run keeps and hold places of the resource's 50-file / 1 GB quota that admission needs
   (`RETENTION_DELETE_IMPORTED_FILES`); the tick deletes each with the same leased deletion as below. The test set
   (purpose `evals`) is the evaluation's and stays.
2. **The retention pass** (its own timer, `RETENTION_SCHEDULE`; `python -m shared.cli cleanup --policy`) over the
   ended runs that still hold something: one blob index query on the tag `retain` (a deployment that may serve,
   result files to delete, a run's own `artifacts_days`), one on `prune_from` (when the run ended, for
   `RETENTION_ARTIFACTS_DAYS`), so ended runs with nothing left are never read; one ARM listing of the
   deployments with the service's own clock (the `Date` of that answer):

   - the job's result files on the service, once the metrics are stored (results.csv stays beside the run):
     deleted (`delete_result_files`);
   - an evaluation candidate deployment still on the resource (the evaluation deletes them at its verdict):
     deleted;
   - the run's deployment, created for the run and up `max_hosting_hours` (since ARM `systemData.createdAt`):
     deleted;
   - the run's serving deployment idle (unchanged `serving_days`, since `systemData.lastModifiedAt`) or
     superseded (a later run of the same blob name and profile serves, for `serving_days`): reported, deleted
     with `delete_serving`;
   - the run's deployment replaced (it serves another model now) or gone from the resource: recorded (`gone`);
   - the run's blobs (validation.json, results.csv, metrics, charts, eval files) `artifacts_days` after the run
     ended: deleted (the record stays).

   *Idle* is measured as the time since the deployment last changed, not by traffic: Azure exposes traffic only
   as an Azure Monitor metric (`AzureOpenAIRequests` by `ModelDeploymentName`), which this app does not read.

Records written before the retention tags existed carry neither `retain` nor `prune_from`, and no tag query finds
a blob by a tag it lacks: each pass also takes one bounded page of the run store's sweep for such records
(`RunStore.backfill_tags`, `RETENTION_BACKFILL_BATCH` blobs listed), re-tags them under their ETag and looks at
the ones the two queries would have found, in the same pass. Once the sweep is done it costs one blob read.

Every deletion is an effect under a lease in the run record (shared/effects.py, `retention:<target>:<id>`), so two
passes at once, or one run twice, delete each object once; its result is written in the write that frees the
lease: a `RetentionEntry` on `record.retention` and a history entry. A deleted deployment sets
`deployment.provisioning_state = "Deleted"`, `deleted_at` and `deleted_reason`; the run keeps its end state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from azure.core.exceptions import AzureError

from shared import artifacts
from shared.aoai import AzureOpenAIError, Deployment, NotFoundError
from shared.effects import Effect, EffectOutcome
from shared.runs import HistoryEntry, RetentionEntry, RunRecord, RunState, SurplusObject, utcnow
from shared.runstore import Backfill, RunStoreError, found_by_retention_queries, run_folder
from shared.services import Services
from shared.settings import Settings

log = logging.getLogger(__name__)

EFFECT = "retention"
KINDS = ("training", "validation")
"""The test set (purpose `evals`) is the evaluation's: it is used after the job ended."""

Target = Literal["imported_file", "result_file", "deployment", "candidate_deployment", "artifacts"]
Act = Literal["delete", "report", "gone"]


def release_imported_files(record: RunRecord, why: str) -> int:
    """Queue the run's imported files for deletion (once each). Returns how many were added."""
    known = {s.id for s in record.surplus}
    added = 0
    for kind, slot in record.files.slots():
        if kind in KINDS and slot.file_id and slot.file_id not in known:
            record.surplus.append(
                SurplusObject.model_validate(
                    {"kind": "file", "id": slot.file_id, "effect": EFFECT, "found_at": utcnow(),
                     "reason": f"imported {kind} file: {why}"}
                )
            )
            added += 1
    return added


def delete_imported_file(services: Services, run_id: str, item: SurplusObject) -> bool:
    """The timer's removal of an imported file put on the list by `release_imported_files`: the same leased
    deletion as the pass's (one DELETE however many ticks overlap), recorded as a retention entry. True when the
    file is gone (deleted now or before); False when another holder is at it (the next tick looks again)."""
    row = _delete(services, Action(run_id, "imported_file", item.id, "delete", item.reason))
    return row.outcome in ("deleted", "already gone", "already deleted")


# --- the policy -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    delete_result_files: bool
    serving_days: float
    delete_serving: bool
    artifacts_days: float | None


def policy_for(record: RunRecord, settings: Settings) -> Policy:
    """The app's `RETENTION_*` settings, overridden by what the run's spec (profile, metadata) says."""
    own = record.spec.retention if record.spec is not None else None

    def pick(name: str, default: object) -> object:
        value = getattr(own, name, None) if own is not None else None
        return default if value is None else value

    artifacts_days = pick("artifacts_days", settings.retention_artifacts_days or None)
    return Policy(
        delete_result_files=bool(pick("delete_result_files", settings.retention_delete_result_files)),
        serving_days=float(pick("serving_days", settings.retention_serving_days)),  # type: ignore[arg-type]
        delete_serving=bool(pick("delete_serving", settings.retention_delete_serving)),
        artifacts_days=None if artifacts_days is None else float(artifacts_days),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Action:
    """One thing the policy does to one object of one run (a row of `cleanup --policy`)."""

    run_id: str
    target: Target
    id: str
    act: Act
    reason: str
    deployment_deleted: bool = False
    """The run's own deployment stops serving (its record then reads Deleted)."""


@dataclass(frozen=True)
class Resource:
    """What the pass saw on the resource: every deployment, and the service's time then."""

    deployments: dict[str, Deployment]
    now: datetime


def look(services: Services) -> Resource | None:
    if services.deployments is None:
        return None
    listed, now = services.deployments.list_with_time()
    return Resource({d.name: d for d in listed}, now)


def _done(record: RunRecord, target: str, ident: str) -> bool:
    return any(e.target == target and e.id == ident and e.removed_at is not None for e in record.retention)


def _reported(record: RunRecord, target: str, ident: str, reason: str) -> bool:
    return any(e.target == target and e.id == ident and e.action == "report" and e.reason == reason
               for e in record.retention)


def ended_at(record: RunRecord) -> datetime:
    """When the run reached its end state (the first entry in it: later ones are notes, retention's own too)."""
    return record.ended_at or record.updated_at


def deployed_at(record: RunRecord) -> datetime | None:
    return next((h.at for h in record.history if h.state == RunState.DEPLOYED), None)


def lineage_key(record: RunRecord) -> tuple[str | None, str]:
    """Runs of the same drop name and profile: a later one that serves supersedes an earlier one."""
    return (record.spec.profile if record.spec else None, record.source.blob_name)


def serving_now(record: RunRecord, resource: Resource | None) -> bool:
    name, model = record.deployment.name, record.deployment.model
    if not name or not model or record.deployment.deleted_at is not None or resource is None:
        return False
    found = resource.deployments.get(name)
    return found is not None and found.model_name == model


def plan(record: RunRecord, policy: Policy, resource: Resource | None,
         latest: dict[tuple[str | None, str], RunRecord] | None = None) -> list[Action]:
    """What the policy does to this ended run now (nothing is changed here)."""
    if not record.terminal:
        return []
    actions: list[Action] = []
    rid = record.id
    if policy.delete_result_files and record.metrics is not None:
        for file_id in record.job.result_files:
            if not _done(record, "result_file", file_id):
                actions.append(Action(rid, "result_file", file_id, "delete",
                                      f"metrics stored; results.csv is kept at {run_folder(rid)}{artifacts.RESULTS}"))
    if resource is not None and record.eval is not None:
        removed = {s.id for s in record.surplus if s.removed_at is not None}
        for target in record.eval.targets:
            name = target.deployment
            if target.temporary and name and name not in removed and name in resource.deployments \
                    and not _done(record, "candidate_deployment", name):
                actions.append(Action(rid, "candidate_deployment", name, "delete",
                                      "evaluation candidate still on the resource after the verdict"))
    actions += _serving(record, policy, resource, latest or {})
    folder = run_folder(rid)
    if policy.artifacts_days is not None and not _done(record, "artifacts", folder):
        age = utcnow() - ended_at(record)
        if age >= timedelta(days=policy.artifacts_days):
            actions.append(Action(rid, "artifacts", folder, "delete",
                                  f"ended {age.days} days ago (artifacts_days {policy.artifacts_days:g})"))
    return actions


def _serving(record: RunRecord, policy: Policy, resource: Resource | None,
             latest: dict[tuple[str | None, str], RunRecord]) -> list[Action]:
    d = record.deployment
    if resource is None or not d.name or not d.model or d.deleted_at is not None:
        return []
    rid, name = record.id, d.name
    found = resource.deployments.get(name)
    if found is None:
        return [Action(rid, "deployment", name, "gone", "not on the resource any more (deleted outside the "
                       "pipeline, or by Azure: a fine-tuned deployment without calls for 15 days is deleted)",
                       deployment_deleted=True)]
    if found.model_name != d.model:
        return [Action(rid, "deployment", name, "gone", f"superseded: {name} serves {found.model_name} now "
                       "(a later promotion, a rollback or another run); not deleted, it serves that model",
                       deployment_deleted=True)]
    spec = record.spec
    created = found.system_time("createdAt")
    made_for_run = record.promotion is None or not record.promotion.previous_model
    if spec is not None and spec.max_hosting_hours is not None and made_for_run and created is not None:
        hours = (resource.now - created).total_seconds() / 3600
        if hours >= spec.max_hosting_hours:
            since = created.strftime("%Y-%m-%d %H:%M")
            return [Action(rid, "deployment", name, "delete", f"up {hours:.1f} hours (since {since} UTC), "
                           f"max_hosting_hours {spec.max_hosting_hours:g}", deployment_deleted=True)]
    act: Act = "delete" if policy.delete_serving else "report"
    later = latest.get(lineage_key(record))
    later_at = deployed_at(later) if later is not None and later.id != record.id else None
    mine = deployed_at(record)
    if later is not None and later_at is not None and mine is not None and later_at > mine:
        days = (utcnow() - later_at).total_seconds() / 86400
        if days >= policy.serving_days:
            return [Action(rid, "deployment", name, act, f"superseded by run {later.id} ({later.deployment.name}, "
                           f"serving for {days:.1f} days; serving_days {policy.serving_days:g})",
                           deployment_deleted=act == "delete")]
    changed = found.system_time("lastModifiedAt") or created
    if changed is not None:
        days = (resource.now - changed).total_seconds() / 86400
        if days >= policy.serving_days:
            return [Action(rid, "deployment", name, act, f"idle: unchanged for {days:.1f} days (last deployed or "
                           f"promoted {changed:%Y-%m-%d %H:%M} UTC; serving_days {policy.serving_days:g})",
                           deployment_deleted=act == "delete")]
    return []


# --- applying it ------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the report: what was (or, dry, would be) done."""

    action: Action
    outcome: str
    """would delete / would report / would record / deleted / already gone / reported / recorded / held / failed."""
    error: str | None = None


@dataclass
class PassReport:
    runs: int = 0
    rows: list[Row] = field(default_factory=list)
    backfill: Backfill | None = None
    """This pass's page of the sweep for records without the retention tags (None when given run ids)."""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.outcome] = out.get(row.outcome, 0) + 1
        return out


def retention_pass(services: Services, *, dry_run: bool = False, run_ids: Iterable[str] | None = None) -> PassReport:
    """Apply (or with `dry_run` only show) the retention policy to every ended run that still holds something."""
    backfill: Backfill | None = None
    if run_ids is not None:
        ids = list(run_ids)
    else:
        ids = services.store.retained_run_ids()
        days = services.settings.retention_artifacts_days
        if days:
            seen = set(ids)
            ids += [i for i in services.store.prunable_run_ids(utcnow() - timedelta(days=days)) if i not in seen]
        try:
            backfill = services.store.backfill_tags(services.settings.retention_backfill_batch, dry_run=dry_run,
                                                    workers=services.settings.tick_concurrency)
        except (AzureError, RunStoreError, ValueError):  # the sweep is extra: the tagged runs are handled anyway
            log.exception("retention: the index backfill failed; the next pass tries its page again")
    resource = look(services)
    workers = max(1, min(services.settings.tick_concurrency, len(ids)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        loaded = list(pool.map(services.store.load, ids))
    records = [found[0] for found in loaded if found is not None]
    if backfill is not None:
        known = {r.id for r in records}
        records += [r for r in backfill.found if r.id not in known and _queried(r, services.settings)]
    latest: dict[tuple[str | None, str], RunRecord] = {}
    for r in records:
        key = lineage_key(r)
        at = deployed_at(r)
        held = latest.get(key)
        if at is not None and serving_now(r, resource) and (held is None or at > (deployed_at(held) or at)):
            latest[key] = r
    report = PassReport(runs=len(records), backfill=backfill)
    work = [(a, r) for r in records for a in plan(r, policy_for(r, services.settings), resource, latest)]
    if dry_run:
        report.rows = [Row(a, {"delete": "would delete", "report": "would report", "gone": "would record"}[a.act])
                       for a, _ in work]
        return report
    with ThreadPoolExecutor(max_workers=max(1, min(services.settings.tick_concurrency, len(work)))) as pool:
        report.rows = list(pool.map(lambda item: _apply(services, item[0]), work))
    if report.rows:
        log.info("retention: %d runs, %s", report.runs, report.counts())
    return report


def _queried(record: RunRecord, settings: Settings) -> bool:
    """Whether the pass's two tag queries find this record once it carries its tags (`retain`, `prune_from`)."""
    days = settings.retention_artifacts_days
    return found_by_retention_queries(record, utcnow() - timedelta(days=days) if days else None)


def _apply(services: Services, action: Action) -> Row:
    try:
        if action.act == "delete":
            return _delete(services, action)
        return _note(services, action)
    except AzureOpenAIError as exc:
        log.warning("retention: run %s %s %s failed, retried next pass: %s", action.run_id, action.target,
                    action.id, exc)
        return Row(action, "failed", str(exc)[:300])


def _entry(action: Action, *, removed: bool, deleted: list[str] | None = None) -> RetentionEntry:
    now = utcnow()
    return RetentionEntry(target=action.target, id=action.id, action=action.act, reason=action.reason, at=now,
                          removed_at=now if removed else None, deleted=deleted or [])


def _write_down(r: RunRecord, action: Action, entry: RetentionEntry, note: str) -> None:
    r.retention.append(entry)
    if r.terminal:  # a live run's history is its moves (its deadlines count from them): the entry says it all
        r.history.append(HistoryEntry(at=entry.at, state=r.state, note=f"retention: {note}"[:500]))
    if action.deployment_deleted and r.deployment.name == action.id:
        mark_deployment_deleted(r, action.reason, at=entry.at)


def mark_deployment_deleted(r: RunRecord, reason: str, *, at: datetime | None = None) -> None:
    """The run's deployment no longer serves its model: the record says so (its end state stays)."""
    r.deployment.provisioning_state = "Deleted"
    r.deployment.deleted_at = at or utcnow()
    r.deployment.deleted_reason = reason[:300]


def _note(services: Services, action: Action) -> Row:
    """A report (kept, said once per reason) or an object found gone: one conditional write, no service call."""
    changed = False

    def mutate(r: RunRecord) -> bool:
        nonlocal changed
        if action.act == "report" and _reported(r, action.target, action.id, action.reason):
            return False
        if action.act == "gone" and _done(r, action.target, action.id):
            return False
        verb = "reported" if action.act == "report" else "gone"
        _write_down(r, action, _entry(action, removed=action.act == "gone"),
                    f"{action.target} {action.id} {verb}: {action.reason}")
        changed = True
        return True

    services.store.update(action.run_id, mutate, on_ended=True)
    if not changed:
        return Row(action, "already " + ("reported" if action.act == "report" else "recorded"))
    return Row(action, "reported" if action.act == "report" else "recorded")


def _delete(services: Services, action: Action) -> Row:
    """The deletion as a leased effect (shared/effects.py): sent once however many passes run at once."""
    deleted: list[str] = []

    def exists(_: RunRecord) -> list[str]:
        return [] if _still_there(services, action) else [action.id]  # reconcile: gone already, nothing to send

    def create(_: RunRecord) -> str:
        deleted.extend(_remove(services, action))
        return action.id

    def record(r: RunRecord, _: str) -> None:
        detail = f"{len(deleted)} blobs" if action.target == "artifacts" else action.id
        _write_down(r, action, _entry(action, removed=True, deleted=deleted if action.target == "artifacts" else None),
                    f"deleted {action.target} {detail}: {action.reason}")

    effect: Effect[str] = Effect(
        key=f"retention:{action.target}:{action.id}",
        kind="deployment" if "deployment" in action.target else "file",
        wanted=lambda r: True,
        recorded=lambda r: action.id if _done(r, action.target, action.id) else None,
        find=exists,
        create=create,
        record=record,
        ident=lambda ident: ident,
        on_ended=True,
        creates=False,
    )
    result = services.effects.run(action.run_id, effect, max_hold=services.aoai.worst_case_seconds())
    outcome = {
        EffectOutcome.CREATED: "deleted",
        EffectOutcome.RECONCILED: "already gone",
        EffectOutcome.DONE: "already deleted",
        EffectOutcome.HELD: "held",
        EffectOutcome.GONE: "skipped",
        EffectOutcome.FENCED: "fenced",
    }[result.outcome]
    return Row(action, outcome)


def _still_there(services: Services, action: Action) -> bool:
    if action.target in ("result_file", "imported_file"):
        try:
            services.aoai.files.get(action.id)
            return True
        except NotFoundError:
            return False
    if action.target == "artifacts":
        return bool(_artifact_blobs(services, action.id))
    return services.deployments is not None and services.deployments.get(action.id) is not None


def _artifact_blobs(services: Services, folder: str) -> list[str]:
    container = services.store.container
    return [str(b.name) for b in container.list_blobs(name_starts_with=folder)
            if not str(b.name).endswith("/" + artifacts.RECORD)]


def _remove(services: Services, action: Action) -> list[str]:
    """One deletion on the service (or the run's blobs). A 404 means someone else removed it: the same end."""
    if action.target in ("result_file", "imported_file"):
        try:
            services.aoai.files.delete(action.id)
        except NotFoundError:
            pass
        return []
    if action.target == "artifacts":
        names = _artifact_blobs(services, action.id)
        for name in names:
            services.store.container.delete_blob(name)
        return names
    if services.deployments is not None:
        services.deployments.begin_delete(action.id)
    return []
