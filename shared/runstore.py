"""Run records in blob storage, written only conditionally.

Every write of a record carries the ETag it was read with (`If-Match`), and the first write carries
`If-None-Match: *`, so two instances handling the same event can never both win. Each record blob also
carries blob index tags (`active`, `state`) written in the same request as its content: the timer finds the
runs it must advance with one tag query instead of listing every run. `active` is derived from the lifecycle
table (`RunRecord.needs_sweep`).

Nothing is written onto an ended run unless the caller says so (`on_ended=True`: recording the removal of a
surplus object, cleanup): a late writer can never move or change a run that has already ended.

A record written by an earlier version lacks the tags added since (`retain`, `prune_from`: no tag query can find a
blob by a tag it does not have), so `backfill_tags` walks the records a bounded page at a time and rewrites each
one found without them, unchanged, with its tags, under its ETag (see there).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient, ContentSettings
from pydantic import ValidationError

from shared import artifacts
from shared.names import check_artifact_name, check_blob_name, check_run_id
from shared.runs import RunRecord, RunState

log = logging.getLogger(__name__)

RECORD_NAME = artifacts.RECORD
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0


class RunStoreError(RuntimeError):
    """Base of the run store's errors."""


class RunNotFound(RunStoreError):
    pass


class ConcurrentUpdate(RunStoreError):
    """The record changed since it was read (another instance wrote it first)."""


def run_folder(run_id: str) -> str:
    """`runs/<run_id>/`; raises `shared.names.InvalidName` for anything that is not a run id."""
    return f"runs/{check_run_id(run_id)}/"


def _tags(record: RunRecord) -> dict[str, str]:
    """Blob index tags: enough for the timer to skip reading a record whose job has not moved."""
    return {
        # "2": swept and with chores (a queued job's run is then read even though its job has not moved)
        "active": ("2" if record.has_chores else "1") if record.needs_sweep else "0",
        "state": record.state.value,
        "job": record.job.id or "-",
        "job_status": record.job.status or "-",
        "warned": "1" if record.job.queued_warning_sent else "0",
        "created": created_tag(record.created_at),  # the dashboard orders runs by it without reading them
        "retain": "1" if record.retains else "0",  # the retention pass's queries (shared/retention.py)
        "prune_from": (created_tag(ended) if (ended := record.ended_at) is not None and not record.pruned
                       else "never"),  # when its blobs may be pruned from (RETENTION_ARTIFACTS_DAYS)
    }


def _record_run_id(name: str) -> str | None:
    """The run id of a record's blob name (runs/<id>/run.json); None for any other blob."""
    if name.startswith("runs/") and name.endswith("/" + RECORD_NAME):
        return name[len("runs/") : -len(RECORD_NAME) - 1]
    return None


def found_by_retention_queries(record: RunRecord, ended_before: datetime | None) -> bool:
    """Whether the retention pass's tag queries (`retained_run_ids`, `prunable_run_ids(ended_before)`) find this
    record once it carries its tags: the same comparisons on the same tag values."""
    tags = _tags(record)
    return tags["retain"] == "1" or (ended_before is not None and tags["prune_from"] < created_tag(ended_before))


TAG_KEYS = ("active", "created", "job", "job_status", "prune_from", "retain", "state", "warned")
"""The index tags every record of this version carries (`_tags`); one without any of them was written before it."""
BACKFILL = "index/backfill.json"
"""Where the sweep of records written before this version's tags stands (its listing marker), in the runs container."""
BACKFILL_PAGE_MAX = 5000
"""List Blobs returns at most 5,000 blobs per call."""


def _cursor_for(stored: Any, keys: list[str]) -> dict[str, Any]:
    """The stored backfill cursor if it is for these tag keys, else {} (none yet, or a sweep for older keys)."""
    return stored if isinstance(stored, dict) and stored.get("tags") == keys else {}


@dataclass
class Backfill:
    """One page of the sweep for records whose index tags predate this version (`RunStore.backfill_tags`)."""

    listed: int = 0
    """Blobs listed in this page (every blob under runs/, the records among them)."""
    found: list[RunRecord] = field(default_factory=list)
    """Records of the page that lacked a tag, as stored now (re-tagged, or written meanwhile by someone else)."""
    retagged: int = 0
    """Rewritten here with their tags (If-Match their ETag)."""
    raced: int = 0
    """Written by someone else between our read and our write (refused with 412): that writer's tags stand."""
    unreadable: list[str] = field(default_factory=list)
    """Records that no longer parse: left as they are (logged), the sweep goes past them."""
    done: bool = False
    """The sweep has passed the last record: a pass from now on costs one read of its cursor."""
    dry_run: bool = False


def created_tag(at: datetime) -> str:
    """A creation time as an index tag value that sorts as text: 20261201T215136.123456Z."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass(frozen=True)
class ActiveRun:
    """What the index says about an active run (may lag the record by one write: the record decides)."""

    run_id: str
    state: str
    job_id: str | None
    job_status: str | None
    warned: bool
    chores: bool = False
    """Surplus objects to delete or events to relay: the timer reads the record even if the job has not moved."""


_ACTIVE_QUERY = "\"active\" > '0' AND \"state\" > '' AND \"job\" > '' AND \"job_status\" > '' AND \"warned\" > ''"


class RunStore:
    """Run records and artifacts under `runs/<run_id>/` in the runs container."""

    def __init__(
        self,
        container: ContainerClient,
        on_change: Callable[[RunRecord, RunState], bool | None] | None = None,
        *,
        track_events: bool = False,
    ) -> None:
        self.container = container
        self.on_change = on_change
        """Called after a write that changed a run's state, with the record and its previous state. With
        `track_events`, True from it marks the change announced (`events_published`); the timer relays the rest."""
        self.track_events = track_events
        """Called after a write that changed a run's state, with the record and its previous state."""

    def ensure(self) -> None:
        try:
            self.container.create_container()
        except ResourceExistsError:
            pass

    # --- records ------------------------------------------------------------------------------------------
    def create(self, record: RunRecord) -> tuple[RunRecord, str, bool]:
        """Write a new record unless one exists. Returns (record as stored, etag, created)."""
        blob = self.container.get_blob_client(run_folder(record.id) + RECORD_NAME)
        if self.track_events and record.events_published is None:
            record.events_published = len(record.history)  # a new run is not announced: its changes are
        try:
            result = blob.upload_blob(
                _dump(record),
                overwrite=False,
                tags=_tags(record),
                content_settings=ContentSettings(content_type="application/json"),
            )
            return record, str(result["etag"]), True
        except ResourceExistsError:
            existing = self.load(record.id)
            if existing is None:  # deleted in between: extremely unlikely; let the caller's retry handle it
                raise ConcurrentUpdate(f"run {record.id} vanished while being created") from None
            return existing[0], existing[1], False

    def load(self, run_id: str) -> tuple[RunRecord, str] | None:
        blob = self.container.get_blob_client(run_folder(run_id) + RECORD_NAME)
        try:
            downloader = blob.download_blob()
        except ResourceNotFoundError:
            return None
        data = downloader.readall()
        return RunRecord.model_validate_json(data), str(downloader.properties.etag)

    def get(self, run_id: str) -> RunRecord:
        found = self.load(run_id)
        if found is None:
            raise RunNotFound(f"no run {run_id!r}")
        return found[0]

    def save(self, record: RunRecord, etag: str) -> str:
        """Write `record` if it is still at `etag`. Returns the new etag; raises ConcurrentUpdate otherwise."""
        blob = self.container.get_blob_client(run_folder(record.id) + RECORD_NAME)
        try:
            result = blob.upload_blob(
                _dump(record),
                overwrite=True,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                tags=_tags(record),
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceModifiedError as exc:
            raise ConcurrentUpdate(f"run {record.id} changed since it was read") from exc
        return str(result["etag"])

    def update(
        self,
        run_id: str,
        mutate: Callable[[RunRecord], bool | None],
        *,
        on_ended: bool = False,
        attempts: int = 10,
    ) -> tuple[RunRecord, str]:
        """Read-modify-write with optimistic concurrency.

        `mutate` changes the record in place and returns False to write nothing. It may be called
        several times (once per conflicting writer, with a jittered back-off in between), so it must only
        decide from the record it is given. An ended run is left alone unless `on_ended`.
        """
        for attempt in range(attempts):
            found = self.load(run_id)
            if found is None:
                raise RunNotFound(f"no run {run_id!r}")
            record, etag = found
            before = record.state
            if record.terminal and not on_ended:
                return record, etag
            if mutate(record) is False:
                return record, etag
            try:
                new_etag = self.save(record, etag)
            except ConcurrentUpdate:
                log.debug("run %s: concurrent update, re-reading", run_id)
                time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))  # back off, then retry
                continue
            if record.state != before:
                self._changed(record, before)
            return record, new_etag
        raise ConcurrentUpdate(f"run {run_id}: gave up after {attempts} conflicting writes")

    def advance(
        self,
        run_id: str,
        from_states: Collection[RunState],
        to_state: RunState,
        note: str = "",
        apply: Callable[[RunRecord], None] | None = None,
    ) -> tuple[RunRecord, bool]:
        """Move a run from one of `from_states` to `to_state` (applying `apply` in the same write).

        Returns (record, moved). A run found in any other state is left as it is: the caller need not
        re-check where the run stands, and nothing ever writes onto an ended run.
        """
        moved = False

        def mutate(r: RunRecord) -> bool:
            nonlocal moved
            moved = False
            if r.state not in from_states:
                return False
            if apply is not None:
                apply(r)
            r.transition(to_state, note)
            moved = True
            return True

        record, _ = self.update(run_id, mutate)
        return record, moved

    def _changed(self, record: RunRecord, before: RunState) -> None:
        log.info("run %s: %s -> %s", record.id, before.value, record.state.value)
        if self.on_change is None:
            return
        try:
            announced = self.on_change(record, before)
        except Exception:  # noqa: BLE001 - a notification never breaks the pipeline
            log.exception("run %s: state-change listener failed", record.id)
            return
        if announced and record.events_published is not None:
            self.mark_published(record.id, len(record.history))

    def mark_published(self, run_id: str, count: int, *, relayed: bool = False) -> None:
        """The first `count` history entries have had their events queued. A change announced after an earlier one
        failed leaves the gap alone (the timer relays from the first unannounced change) unless `relayed`."""

        def mark(r: RunRecord) -> bool:
            if r.events_published is None or r.events_published >= count:
                return False
            if not relayed and r.events_published < count - 1:
                return False
            r.events_published = count
            return True

        try:
            self.update(run_id, mark, on_ended=True)
        except RunStoreError:
            log.warning("run %s: could not mark its events published; the timer relays them", run_id)

    def end(self, run_id: str, state: RunState, code: str, message: str) -> RunRecord:
        """End a run once (rejected, failed, gated, cancelled) with the reason; a no-op if it already ended."""

        def mutate(r: RunRecord) -> None:
            r.fail(code, message, state=state)

        def can_end(r: RunRecord) -> bool:
            from shared.lifecycle import allowed

            return allowed(r.state, state)

        return self.update(run_id, lambda r: mutate(r) if can_end(r) else False)[0]

    def note(self, run_id: str, code: str, message: str, *, attempt: bool = False) -> RunRecord:
        """A warning (once per code), or with `attempt` the reason of this attempt's failure (replaced each time)."""
        return self.update(run_id, lambda r: r.attempted(code, message) if attempt else r.warn(code, message))[0]

    def active_runs(self) -> list[ActiveRun]:
        """Runs the timer must advance, from one blob index query (never a listing of all runs)."""
        found = []
        for blob in self.container.find_blobs_by_tags(_ACTIVE_QUERY):
            run_id = _record_run_id(str(blob.name))
            if run_id is not None:
                tags = blob.tags or {}
                found.append(
                    ActiveRun(
                        run_id=run_id,
                        state=tags.get("state", ""),
                        job_id=None if tags.get("job", "-") == "-" else tags.get("job"),
                        job_status=None if tags.get("job_status", "-") == "-" else tags.get("job_status"),
                        warned=tags.get("warned") == "1",
                        chores=tags.get("active") == "2",
                    )
                )
        return found

    def retained_run_ids(self) -> list[str]:
        """Ended runs that still hold something the retention policy may act on (one blob index query)."""
        return self._run_ids_by_tags("\"retain\"='1'")

    def prunable_run_ids(self, ended_before: datetime) -> list[str]:
        """Ended runs whose blobs are not pruned and that ended before `ended_before` (one blob index query)."""
        return self._run_ids_by_tags(f"\"prune_from\" < '{created_tag(ended_before)}'")

    def _run_ids_by_tags(self, query: str) -> list[str]:
        found = (_record_run_id(str(blob.name)) for blob in self.container.find_blobs_by_tags(query))
        return [run_id for run_id in found if run_id is not None]

    def backfill_tags(self, limit: int = BACKFILL_PAGE_MAX, *, dry_run: bool = False, workers: int = 1) -> Backfill:
        """One page of the sweep that gives records written before this version the index tags they lack.

        Lists at most `limit` blobs under runs/ (List Blobs with their tags, from where the last page stopped: the
        cursor `index/backfill.json`), and rewrites each record among them that lacks one of `TAG_KEYS` with its
        content unchanged and its tags, `If-Match` the ETag the listing showed: a writer since then wins (a
        changed ETag, or 412; its own write carried the tags), so a concurrent state change is never lost and two
        sweeps at once write each record once. The cursor moves on in a conditional write, only from where this
        page started (two sweeps at once move it once). Once past the last record it says `done` and the sweep
        costs one read of it; a change of `TAG_KEYS` (a later version's new tag) starts it again. Its counts are
        those of the pages that moved it (a sweep that lost the race logs its own). `dry_run` reads the same page
        and writes nothing. `workers` records are read and written at once.
        """
        keys = list(TAG_KEYS)
        cursor = _cursor_for(self._backfill_cursor(), keys)
        if cursor.get("done"):
            return Backfill(done=True, dry_run=dry_run)
        start = cursor.get("marker")
        def listing(marker: str | None) -> tuple[Any, list[Any]]:
            pages: Any = self.container.list_blobs(  # azure.core's page iterator: continuation_token is untyped
                name_starts_with="runs/", include=["tags"], results_per_page=max(1, min(limit, BACKFILL_PAGE_MAX))
            ).by_page(continuation_token=marker)
            return pages, list(next(pages, []))

        origin = start  # the cursor as read: it moves on only from there
        try:
            pages, listed = listing(start)
        except HttpResponseError as exc:
            if start is None or exc.status_code != 400:
                raise
            log.warning("index backfill: the stored marker was refused (%s); the sweep starts again", exc.reason)
            start = None
            pages, listed = listing(None)
        marker: str | None = pages.continuation_token or None  # None: this page held the last blob
        page = Backfill(listed=len(listed), done=marker is None, dry_run=dry_run)
        stale = [
            (run_id, str(b.etag))  # a listing's ETag has no quotes
            for b in listed
            if (run_id := _record_run_id(str(b.name))) is not None and not set(keys) <= set(b.tags or {})
        ]
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(stale)))) as pool:
            outcomes = list(pool.map(lambda item: self._retag(*item, dry_run=dry_run), stale))
        for (run_id, _), (outcome, record) in zip(stale, outcomes, strict=True):
            if outcome == "retagged":
                page.retagged += 1
            elif outcome == "raced":
                page.raced += 1
            elif outcome == "unreadable":
                page.unreadable.append(run_id)
            if record is not None:
                page.found.append(record)
        if not dry_run:
            self._move_backfill_cursor(keys, origin, marker, page)
        if page.retagged or page.raced or page.unreadable:
            log.info("index backfill: %d blobs listed, %d records re-tagged, %d written meanwhile, %d unreadable%s",
                     page.listed, page.retagged, page.raced, len(page.unreadable), " (done)" if page.done else "")
        return page

    def _retag(self, run_id: str, listed_etag: str, *, dry_run: bool) -> tuple[str, RunRecord | None]:
        """One record of a backfill page: (retagged | raced | unreadable | gone | read, the record as stored now)."""
        try:
            found = self.load(run_id)
        except ValidationError as exc:
            log.warning("run %s: record does not parse, not re-tagged: %s", run_id, str(exc)[:300])
            return "unreadable", None
        if found is None:  # deleted since the listing
            return "gone", None
        record, etag = found
        if dry_run:
            return "read", record
        if etag.strip('"') != listed_etag.strip('"'):  # written since the listing (so with its tags)
            return "raced", record
        try:
            self.save(record, etag)
        except ConcurrentUpdate:
            again = self.load(run_id)
            return "raced", None if again is None else again[0]
        return "retagged", record

    def _backfill_cursor(self) -> Any:
        raw = self.get_artifact_at(BACKFILL)
        return None if raw is None else json.loads(raw)

    def _move_backfill_cursor(self, keys: list[str], start: str | None, marker: str | None, page: Backfill) -> None:
        def move(current: Any) -> Any:
            was = _cursor_for(current, keys)
            if was and (was.get("done") or was.get("marker") != start):
                return None  # another sweep moved it from here already
            return {
                "tags": keys,
                "marker": marker,
                "done": marker is None,
                "listed": int(was.get("listed", 0)) + page.listed,
                "retagged": int(was.get("retagged", 0)) + page.retagged,
                "unreadable": [*was.get("unreadable", []), *page.unreadable][-100:],
                "started_at": was.get("started_at") or datetime.now(UTC).isoformat(),
                "updated_at": datetime.now(UTC).isoformat(),
            }

        self.update_document(BACKFILL, move)

    def active_run_ids(self) -> list[str]:
        return [run.run_id for run in self.active_runs()]

    def iter_records(self) -> Iterator[RunRecord]:
        """Every run (for the CLI and the HTTP API; the pipeline itself never lists runs)."""
        for props in self.container.list_blobs(name_starts_with="runs/"):
            if props.name.endswith("/" + RECORD_NAME):
                data = self.container.get_blob_client(props.name).download_blob().readall()
                yield RunRecord.model_validate_json(data)

    # --- artifacts ----------------------------------------------------------------------------------------
    def update_json(self, run_id: str, name: str, mutate: Callable[[Any], Any], *, attempts: int = 10) -> Any:
        """Read-modify-write of a run's JSON artifact under an ETag condition (see `update_document`)."""
        return self.update_document(run_folder(run_id) + check_artifact_name(name), mutate, attempts=attempts)

    def update_document(self, blob_name: str, mutate: Callable[[Any], Any], *, attempts: int = 10) -> Any:
        """Read-modify-write of any JSON document in the runs container under an ETag condition (two writers never
        lose each other's part; the first write is `If-None-Match: *`).

        `mutate` gets the current document (None when absent) and returns the new one, or None to write nothing.
        """
        blob = self.container.get_blob_client(blob_name)
        content_type = artifacts.content_type(blob_name.rsplit("/", 1)[-1])
        if content_type == "application/octet-stream":
            content_type = "application/json"
        for attempt in range(attempts):
            try:
                downloader = blob.download_blob()
                current, etag = json.loads(downloader.readall()), str(downloader.properties.etag)
            except ResourceNotFoundError:
                current, etag = None, None
            document = mutate(current)
            if document is None:
                return current
            data = json.dumps(document, indent=2, default=str)
            settings = ContentSettings(content_type=content_type)
            try:
                if etag is None:
                    blob.upload_blob(data, overwrite=False, content_settings=settings)
                else:
                    blob.upload_blob(
                        data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified,
                        content_settings=settings,
                    )
                return document
            except (ResourceModifiedError, ResourceExistsError):
                time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
        raise ConcurrentUpdate(f"{blob_name}: gave up after {attempts} conflicting writes")

    def put_artifact(self, run_id: str, name: str, data: bytes | str, content_type: str) -> str:
        blob_name = run_folder(run_id) + check_artifact_name(name)
        self.container.upload_blob(
            blob_name, data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )
        return blob_name

    def put_json(self, run_id: str, name: str, document: Any) -> str:
        return self.put_artifact(run_id, name, json.dumps(document, indent=2, default=str), "application/json")

    def get_artifact_at(self, blob_name: str) -> bytes | None:
        """Any document in the runs container (profiles live under `profiles/`)."""
        try:
            return self.container.get_blob_client(check_blob_name(blob_name)).download_blob().readall()
        except ResourceNotFoundError:
            return None

    def get_artifact(self, run_id: str, name: str) -> bytes | None:
        try:
            blob_name = run_folder(run_id) + check_artifact_name(name)
            return self.container.get_blob_client(blob_name).download_blob().readall()
        except ResourceNotFoundError:
            return None


def _dump(record: RunRecord) -> bytes:
    return record.model_dump_json(indent=2).encode()
