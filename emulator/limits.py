"""The resource's fine-tuning limits: counts that refuse a request, and one job running at a time.

From the quotas page (MicrosoftDocs/azure-ai-docs, articles/ai-services/openai/quotas-limits.md, ms.date
11/11/2024): max simultaneous running training jobs per resource 1, max training jobs queued 20, total number
of training jobs per resource 100, max files per resource (fine-tuning) 50, total size of all files per
resource (fine-tuning) 1 GB, max fine-tuned model deployments 5 (the last is enforced in `controlplane`).

- Files: `purpose=fine-tune` files count (results files do not). An upload or import past the count, or an
  upload that would take the total size past the limit, is refused; an import whose content turns out to push
  the total past the limit ends in `error` with `status_details` saying so (its size is only known then).
- Jobs: a create is refused when 21 (1 running + 20 queued) are outstanding, or when 100 jobs exist (a
  deleted job no longer counts).
- Scheduling: jobs *train* one at a time (`max_running_jobs`) in creation order. A job that would start
  while an earlier one still trains waits (status `queued`, the "Waiting for jobs ahead to complete" event)
  until that one ends, is cancelled or fails; its own durations are unchanged, so the wait follows the time scale
  of the jobs ahead.
  The wait is derived from the jobs and the clock on every read (`schedule`), like every other status here.

The error shapes are *inferred* (no published source shows them): HTTP 429 with code `quotaExceeded` and a
message naming the limit, no `Retry-After` (a limit, not a throttle). docs/emulator.md says so.
"""
from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

from . import training
from .errors import ApiError

if TYPE_CHECKING:
    from .state import State

QUOTA_CODE = "quotaExceeded"
LIMITED_PURPOSE = "fine-tune"
_NO_SLOT = ("rai_failure", "stuck_queued")
"""Scenarios whose job never trains (refused at validation, or stuck in the queue by design): no slot."""


def _refuse(message: str, param: str | None = None) -> ApiError:
    return ApiError(429, QUOTA_CODE, message, param)


def counted_files(state: State) -> list[dict[str, Any]]:
    return [f for f in state.files.values() if f["purpose"] == LIMITED_PURPOSE and f["source"] != "results"]


def file_usage(state: State) -> tuple[int, int]:
    """(number of fine-tune files, their total bytes; a file still importing counts 0 bytes)."""
    files = counted_files(state)
    return len(files), sum(f["bytes"] or 0 for f in files)


def check_file_room(state: State, purpose: str, size: int | None) -> None:
    """Refuse a new fine-tune file past the count, or (when its size is known) past the total size."""
    if purpose != LIMITED_PURPOSE:
        return
    cfg = state.config
    count, total = file_usage(state)
    if count >= cfg.max_ft_files:
        raise _refuse(
            f"The number of fine-tuning files on this resource has reached the limit of {cfg.max_ft_files}. "
            "Delete files you no longer need and try again.", "file")
    if size is not None and total + size > cfg.max_ft_files_bytes:
        raise _refuse(
            f"The total size of fine-tuning files on this resource would be {total + size} bytes, above the limit "
            f"of {cfg.max_ft_files_bytes} bytes. Delete files you no longer need and try again.", "file")


def import_over_size(state: State, record: dict[str, Any], size: int) -> str | None:
    """The `status_details` of an imported file whose content takes the total size past the limit."""
    if record["purpose"] != LIMITED_PURPOSE:
        return None
    cfg = state.config
    others = sum(f["bytes"] or 0 for f in counted_files(state) if f["id"] != record["id"])
    if others + size > cfg.max_ft_files_bytes:
        return (f"File import failed: the total size of fine-tuning files on this resource would be {others + size} "
                f"bytes, above the limit of {cfg.max_ft_files_bytes} bytes.")
    return None


def job_usage(state: State) -> tuple[int, int]:
    """(outstanding jobs: queued, running or paused; every job that is not deleted)."""
    live = [j for j in state.jobs.values() if not j.get("deleted")]
    outstanding = sum(1 for j in live if state.job_status(j) not in ("succeeded", "failed", "cancelled"))
    return outstanding, len(live)


def check_job_room(state: State) -> None:
    cfg = state.config
    outstanding, total = job_usage(state)
    cap = cfg.max_running_jobs + cfg.max_queued_jobs
    if outstanding >= cap:
        raise _refuse(
            f"This resource already has {outstanding} fine-tuning jobs queued or running; the limit is {cap} "
            f"({cfg.max_running_jobs} running and {cfg.max_queued_jobs} queued). Wait for a job to finish or "
            "cancel one, then try again.")
    if total >= cfg.max_total_jobs:
        raise _refuse(
            f"This resource has {total} fine-tuning jobs; the limit is {cfg.max_total_jobs}. Delete jobs you no "
            "longer need and try again.")


def schedule(state: State) -> None:
    """Set each job's `plan["wait_s"]`: how long it waits in the queue for the jobs ahead of it to end.

    Jobs are taken in creation order, each into the running slot that frees first (`max_running_jobs` slots,
    1 on Azure; 0 = no limit, every job starts as if alone). A slot is free when its job ends (its outcome,
    or its cancellation); a paused job keeps its slot. A pure function of the jobs and the clock.
    """
    slots = state.config.max_running_jobs
    free_at: list[float] = [-math.inf] * slots
    # sorted() is stable and state.jobs keeps insertion order: jobs created at the same instant stay in order
    for job in sorted(state.jobs.values(), key=lambda j: j["created_at"]):
        plan = job["plan"]
        plan["wait_s"] = 0.0
        if not slots or plan.get("scenario") in _NO_SLOT:
            continue
        base = plan["validate_s"] + plan["queue_s"]  # when it would start with nobody ahead (no pause before)
        first_free = heapq.heappop(free_at)
        wait = max(0.0, first_free - (job["created_at"] + base))
        plan["wait_s"] = wait
        cancelled = job["cancel_offset"]
        if cancelled is not None and cancelled < base + wait:
            heapq.heappush(free_at, first_free)  # cancelled before it started: it never held the slot
            continue
        end = training.outcome(plan)[1]
        if cancelled is not None:
            end = min(end, cancelled)
        heapq.heappush(free_at, state.real_time(job, end))


def note_peaks(state: State) -> None:
    """Remember the most of each count held at once (after every file or job created, and import fetched)."""
    files, size = file_usage(state)
    outstanding, total = job_usage(state)
    for key, value in (("files", files), ("file_bytes", size), ("outstanding_jobs", outstanding), ("jobs", total)):
        state.peaks[key] = max(state.peaks.get(key, 0), value)


def usage(state: State) -> dict[str, Any]:
    """What the admin API shows: each limit with its use now and the most used at once (`peak`)."""
    cfg = state.config
    files, size = file_usage(state)
    outstanding, total = job_usage(state)
    now = {"files": (files, cfg.max_ft_files), "file_bytes": (size, cfg.max_ft_files_bytes),
           "outstanding_jobs": (outstanding, cfg.max_running_jobs + cfg.max_queued_jobs),
           "jobs": (total, cfg.max_total_jobs)}
    return {k: {"used": used, "limit": limit, "peak": max(used, state.peaks.get(k, 0))}
            for k, (used, limit) in now.items()}
