"""Admission: runs start on the Azure OpenAI resource only when its limits leave room, first come first served.

The resource allows 50 fine-tune files / 1 GB of them, 1 running + 20 queued jobs and 100 jobs in total (the
quotas page; `RESOURCE_MAX_*` settings). A run that would pass one of them waits in `waiting`, validated, with
nothing imported, instead of failing or eating the file quota while it cannot train.

One ETag'd JSON document, `admission/ledger.json` in the runs container, holds:

- `usage`: what the resource holds, from one listing of its files and one of its jobs, taken once per timer
  tick (never per run) when anything waits or is being admitted;
- `reserved`: runs admitted whose files or job the last listing does not show yet (file names are derived from
  the run, so a listing shows which are there); usage + reserved is what admission counts, so two drops at once
  can never both take the last place (every admission is a conditional write of the ledger);
- `queue`: waiting runs with their priority and arrival; admitted in order of `priority` (higher first, per
  profile or metadata, default 0) then arrival, strictly: a run never overtakes the head of the queue.

The blob trigger asks (`request`) right after validation: with room and nobody waiting it imports at once;
otherwise the run waits. Each tick (`admit`) re-lists, frees the reservations the listing now shows, drops
entries of runs that ended, and admits from the head while there is room. A limit error from the service
anyway (another client on the resource, a stale listing) puts the run back in the queue (`requeue`): it waits,
it never fails for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.runs import RunRecord, RunState, WaitInfo, utcnow
from shared.runstore import ActiveRun
from shared.services import Services

log = logging.getLogger(__name__)

LEDGER = "admission/ledger.json"
RELIST_AFTER = timedelta(minutes=10)
"""The blob trigger lists the resource itself when the timer's last listing is older than this (or absent)."""
CEILING_TTL = timedelta(minutes=30)
"""How long a limit the service showed (a limit error) caps admission below the settings."""
ADMITTABLE = frozenset({RunState.VALIDATING, RunState.WAITING})
"""States of a run that may be in the queue (the blob trigger writes the ledger before the record)."""
RESERVING = frozenset({RunState.VALIDATING, RunState.WAITING, RunState.IMPORTING, RunState.TRAINING})
LIMITED_KINDS = frozenset({"training", "validation"})
"""Files under the resource's fine-tune file limits (the test set is imported with purpose `evals`)."""
OUTSTANDING = frozenset({"pending", "running", "pausing", "paused", "resuming"})


@dataclass(frozen=True)
class Need:
    """What a run will add to the resource: the files still to import (run-derived names), bytes, a job."""

    files: tuple[str, ...]
    bytes: int
    job: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"files": list(self.files), "bytes": self.bytes, "job": self.job}


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str
    """Why it waits (the first limit it would pass, or the runs ahead of it); empty when admitted."""
    position: int = 0
    """1-based place in the queue when waiting."""


@dataclass(frozen=True)
class Place:
    """Where a waiting run stands (for `status`)."""

    position: int
    of: int
    reason: str


def need_of(services: Services, record: RunRecord) -> Need:
    files: list[str] = []
    size = 0
    for kind, slot in record.files.slots():
        if kind not in LIMITED_KINDS or not slot.wanted or slot.file_id or slot.filename is None or slot.blob is None:
            continue
        files.append(slot.filename)
        client = services.blobs.get_blob_client(slot.blob.container, slot.blob.name, snapshot=slot.blob.snapshot)
        size += int(client.get_blob_properties().size or 0)
    return Need(tuple(files), size, job=record.job.id is None)


# --- the ledger -------------------------------------------------------------------------------------------------
def _empty() -> dict[str, Any]:
    return {"usage": None, "reserved": {}, "queue": {}, "blocked": "", "ceilings": {}}


def _update(services: Services, mutate: Callable[[dict[str, Any]], bool], attempts: int = 20) -> dict[str, Any]:
    """Read-modify-write of the ledger under its ETag; `mutate` returns False to write nothing."""

    result: dict[str, Any] = {}

    def change(current: Any) -> dict[str, Any] | None:
        nonlocal result
        result = current if isinstance(current, dict) else _empty()
        return result if mutate(result) else None

    services.store.update_document(LEDGER, change, attempts=attempts)
    return dict(result)


def read_ledger(services: Services) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(services.store.container.get_blob_client(LEDGER).download_blob().readall())
        return data
    except ResourceNotFoundError:
        return _empty()


def _order(queue: dict[str, Any]) -> list[str]:
    return sorted(queue, key=lambda rid: (-int(queue[rid]["priority"]), str(queue[rid]["since"]), rid))


def _room(services: Services, doc: dict[str, Any], need: dict[str, Any]) -> str:
    """'' when `need` fits next to what the resource holds and what is reserved; else the limit it would pass."""
    s = services.settings
    ceilings = {k: int(c["value"]) for k, c in doc.get("ceilings", {}).items()}
    max_files = min(s.resource_max_files, ceilings.get("files", s.resource_max_files))
    max_outstanding = min(s.resource_max_outstanding_jobs,
                          ceilings.get("outstanding_jobs", s.resource_max_outstanding_jobs))
    usage = doc["usage"] or {"files": 0, "bytes": 0, "outstanding_jobs": 0, "jobs": 0}
    reserved = doc["reserved"].values()
    files = usage["files"] + sum(len(r["files"]) for r in reserved)
    size = usage["bytes"] + sum(int(r["bytes"]) for r in reserved)
    jobs = sum(1 for r in reserved if r["job"])
    outstanding, total = usage["outstanding_jobs"] + jobs, usage["jobs"] + jobs
    if files + len(need["files"]) > max_files:
        seen = "" if max_files == s.resource_max_files else " (the most the service accepted lately)"
        return (f"file quota: {files} of {max_files}{seen} fine-tune files are on the resource or reserved, "
                f"this run needs {len(need['files'])}")
    if size + int(need["bytes"]) > s.resource_max_file_bytes:
        return (f"file size quota: {size} of {s.resource_max_file_bytes} bytes of fine-tune files are on the "
                f"resource or reserved, this run needs {need['bytes']}")
    if need["job"] and outstanding + 1 > max_outstanding:
        seen = "" if max_outstanding == s.resource_max_outstanding_jobs else " (the most the service accepted lately)"
        return (f"job queue full: {outstanding} of {max_outstanding}{seen} jobs are queued or running "
                "on the resource or about to be")
    if need["job"] and total + 1 > s.resource_max_jobs:
        return (f"job total: the resource holds {total} of {s.resource_max_jobs} jobs; delete old jobs to go on")
    return ""


def _listing(services: Services) -> tuple[dict[str, Any], set[str], set[str]]:
    """One listing of files and one of jobs: (usage, file names shown, names of training files of jobs)."""
    files = [f for f in services.aoai.files.list(purpose="fine-tune") if f.status != "deleted"]
    jobs = list(services.aoai.jobs.list(limit=100))
    names = {f.filename for f in files if f.filename}
    by_id = {f.id: f.filename for f in files if f.filename}
    with_job = {by_id[j.training_file] for j in jobs if j.training_file in by_id}
    usage = {
        "files": len(files),
        "bytes": sum(f.bytes or 0 for f in files),
        "outstanding_jobs": sum(1 for j in jobs if j.state.value in OUTSTANDING),
        "jobs": len(jobs),
        "listed_at": utcnow().isoformat(),
    }
    return usage, names, with_job


def _fresh(doc: dict[str, Any]) -> bool:
    usage = doc.get("usage")
    if not usage:
        return False
    return utcnow() - datetime.fromisoformat(usage["listed_at"]) < RELIST_AFTER


# --- the three moves -------------------------------------------------------------------------------------------
def request(services: Services, record: RunRecord, need: Need) -> Decision:
    """The blob trigger's question for a validated run: import now, or wait? Idempotent per run."""
    listing = None if _fresh(read_ledger(services)) else _listing(services)
    spec_priority = record.spec.priority if record.spec else 0
    decision = Decision(True, "")

    def mutate(doc: dict[str, Any]) -> bool:
        nonlocal decision
        if listing is not None and not _fresh(doc):
            doc["usage"] = listing[0]
        if record.id in doc["reserved"]:
            decision = Decision(True, "")
            return False
        queue = doc["queue"]
        if record.id not in queue:
            room = _room(services, doc, need.as_dict())
            if not room and not queue:
                doc["reserved"][record.id] = {**need.as_dict(), "at": utcnow().isoformat()}
                decision = Decision(True, "")
                return True
            reason = room or f"{len(queue)} run(s) waiting before it: first come, first served"
            queue[record.id] = {**need.as_dict(), "priority": spec_priority, "since": record.created_at.isoformat(),
                                "reason": reason}
        order = _order(queue)
        decision = Decision(False, queue[record.id]["reason"], order.index(record.id) + 1)
        return True

    _update(services, mutate)
    return decision


def requeue(services: Services, record: RunRecord, reason: str, limit: str) -> Decision:
    """A limit error from the service: the run goes back to the queue (keeping its arrival) and waits.

    The resource holds less than the settings say (another user, a lower quota): what it holds now, from a
    fresh listing, becomes a *ceiling* for `limit` (`files` or `outstanding_jobs`), so nothing is sent again
    until the resource holds less, or the ceiling expires (`CEILING_TTL`: one probe, never a blind retry loop).
    """
    need = need_of(services, record)
    priority = record.spec.priority if record.spec else 0
    usage = _listing(services)[0]

    def mutate(doc: dict[str, Any]) -> bool:
        doc["usage"] = usage
        doc.setdefault("ceilings", {})[limit] = {"value": usage[limit], "at": utcnow().isoformat(), "why": reason}
        doc["reserved"].pop(record.id, None)
        doc["queue"][record.id] = {**need.as_dict(), "priority": priority, "since": record.created_at.isoformat(),
                                   "reason": reason}
        return True

    doc = _update(services, mutate)
    return Decision(False, reason, _order(doc["queue"]).index(record.id) + 1)


def admit(services: Services, runs: Iterable[ActiveRun]) -> list[str]:
    """The tick's admission: one listing, then admit from the head of the queue while there is room.

    Returns the waiting runs to move to `importing` now (admitted in this tick or earlier).
    """
    states = {r.run_id: r.state for r in runs}
    ledger = read_ledger(services)
    busy = any(s in (RunState.WAITING, RunState.IMPORTING) for s in states.values())
    if not busy and not ledger["queue"] and not ledger["reserved"]:
        return []
    usage, names, with_job = _listing(services)
    admitted: list[str] = []

    def mutate(doc: dict[str, Any]) -> bool:
        admitted.clear()
        doc["usage"] = usage
        ceilings = doc.setdefault("ceilings", {})
        for limit, ceiling in list(ceilings.items()):
            if utcnow() - datetime.fromisoformat(ceiling["at"]) > CEILING_TTL:
                del ceilings[limit]
        for run_id, entry in list(doc["reserved"].items()):
            if states.get(run_id) not in RESERVING:
                del doc["reserved"][run_id]
                continue
            entry["files"] = [n for n in entry["files"] if n not in names]
            if entry["job"] and f"{run_id}-training.jsonl" in with_job:
                entry["job"] = False
            if not entry["files"] and not entry["job"] and states.get(run_id) != RunState.WAITING:
                del doc["reserved"][run_id]
        queue = doc["queue"]
        for run_id in list(queue):
            if states.get(run_id) not in ADMITTABLE:
                del queue[run_id]
        doc["blocked"] = ""
        for run_id in _order(queue):
            entry = queue[run_id]
            reason = _room(services, doc, entry)
            if reason:
                entry["reason"] = doc["blocked"] = reason
                break
            del queue[run_id]
            doc["reserved"][run_id] = {k: entry[k] for k in ("files", "bytes", "job")} | {"at": utcnow().isoformat()}
        admitted.extend(rid for rid in doc["reserved"] if states.get(rid) == RunState.WAITING)
        return True

    _update(services, mutate)
    return list(admitted)


def place(services: Services, run_id: str) -> Place | None:
    """Where a waiting run stands in the queue and why (None when it is not queued)."""
    return places(services).get(run_id)


def places(services: Services) -> dict[str, Place]:
    """Every queued run's place and why, from one read of the ledger (the runs table, `status`)."""
    doc = read_ledger(services)
    queue = doc["queue"]
    if not queue:
        return {}
    order = _order(queue)
    head = doc.get("blocked") or queue[order[0]]["reason"]
    out: dict[str, Place] = {}
    for index, run_id in enumerate(order):
        reason = head if index == 0 else f"{index} run(s) ahead of it; the first waits for: {head}"
        out[run_id] = Place(index + 1, len(order), reason)
    return out


def back_to_waiting(services: Services, run_id: str, code: str, message: str, limit: str) -> RunRecord:
    """The service refused an import (`limit="files"`) or a job create (`"outstanding_jobs"`) for a limit:
    the run waits (never fails for it)."""
    record = services.store.get(run_id)
    reason = f"the service refused for a limit: [{code}] {message}"[:500]
    decision = requeue(services, record, reason, limit)
    log.warning("run %s: %s; back to waiting at position %d", run_id, reason, decision.position)

    def apply(r: RunRecord) -> None:
        r.waiting = wait_info(decision)
        r.attempted(code, message)

    return services.store.advance(run_id, (RunState.IMPORTING,), RunState.WAITING, reason, apply)[0]


def wait_info(decision: Decision) -> WaitInfo:
    return WaitInfo(since=utcnow(), reason=decision.reason, position=decision.position)


def is_limit_error(exc: BaseException) -> bool:
    from shared.aoai import DeploymentLimitError, InsufficientQuotaError

    return isinstance(exc, InsufficientQuotaError) and not isinstance(exc, DeploymentLimitError)


def log_decision(run_id: str, decision: Decision) -> None:
    if decision.admitted:
        log.info("run %s: admitted", run_id)
    else:
        log.info("run %s: waits (position %d): %s", run_id, decision.position, decision.reason)
