"""Importing a run's files into Azure OpenAI: one effect per file, then following each to `processed`.

Each file (training, validation, test) is its own effect (`import:training`, `import:validation`, `import:test`,
the last with purpose `evals`) under its own lease, sent at most once per file, always from exactly the
validated snapshot:

- versioned surface: the files import API, with a read-only SAS URL for the snapshot (the service reads it);
- v1 surface (no files import): the app uploads the snapshot, one ranged read of the blob per part
  (`AZURE_OPENAI_UPLOAD_PART_BYTES`): one `POST /files` for a file of one part, else the Uploads API. The
  blob is never held whole in memory.

A lost answer is reconciled by the file's run-derived name (`<run_id>-<kind>.jsonl`) on both surfaces.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import timedelta

from azure.storage.blob import BlobClient

from shared import admission
from shared.aoai import BadRequestError, ByteSource, FileObject, InsufficientQuotaError
from shared.effects import Effect, EffectOutcome
from shared.runs import ImportSlot, RunRecord, RunState
from shared.sas import blob_read_url
from shared.services import Services

log = logging.getLogger(__name__)


class BlobSnapshotSource(ByteSource):
    """A blob (one snapshot of it) read in ranges: one ranged GET per chunk of `chunk_bytes`, so no more than a
    chunk is in memory (the SDK's own downloader fetches up to 32 MiB in its first request)."""

    CHUNK_BYTES = 4 * 1024 * 1024

    def __init__(self, blob: BlobClient, size: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._blob = blob
        self._size = size
        self._chunk = chunk_bytes

    @classmethod
    def open(cls, services: Services, container: str, name: str, snapshot: str | None) -> BlobSnapshotSource:
        blob = services.blobs.get_blob_client(container, name, snapshot=snapshot)
        return cls(blob, int(blob.get_blob_properties().size))

    @property
    def size(self) -> int:
        return self._size

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        end = offset + length
        for start in range(offset, end, self._chunk):
            yield self._blob.download_blob(offset=start, length=min(self._chunk, end - start)).readall()


def import_effect(services: Services, kind: str) -> Effect[FileObject]:
    purpose = "evals" if kind == "test" else "fine-tune"  # the test set is eval data, never training data
    def slot(r: RunRecord) -> ImportSlot:
        return r.files.slot(kind)

    def create(r: RunRecord) -> FileObject:
        s = slot(r)
        assert s.blob is not None and s.filename is not None
        if services.aoai.surface == "v1":  # no files import on v1: upload the snapshot, one range per part
            source = BlobSnapshotSource.open(services, s.blob.container, s.blob.name, s.blob.snapshot)
            uploaded = services.aoai.files.upload_source(s.filename, source, purpose=purpose)
            log.info("run %s: uploaded %s (%d bytes) as %s", r.id, kind, source.size, uploaded.id)
            return uploaded
        url = blob_read_url(
            services.blobs,
            s.blob.container,
            s.blob.name,
            snapshot=s.blob.snapshot,
            ttl=timedelta(minutes=services.settings.sas_ttl_minutes),
            account_key=services.storage.account_key,
        )
        created = services.aoai.files.import_from_url(s.filename, url, purpose=purpose)
        log.info("run %s: imported %s as %s", r.id, kind, created.id)
        return created

    def find(r: RunRecord) -> list[FileObject]:
        filename = slot(r).filename
        if filename is None:
            return []
        found = [f for f in services.aoai.files.find_by_filename(filename, purpose) if f.status != "deleted"]
        return sorted(found, key=lambda f: f.created_at or 0)  # keep the first one made

    def record(r: RunRecord, f: FileObject) -> None:
        s = slot(r)
        s.file_id, s.status = f.id, f.status

    return Effect(
        key=f"import:{kind}",
        kind="file",
        wanted=lambda r: r.state == RunState.IMPORTING and slot(r).wanted,
        recorded=lambda r: slot(r).file_id,
        find=find,
        create=create,
        record=record,
        ident=lambda f: f.id,
    )


def ensure_imports(services: Services, run_id: str) -> RunRecord:
    """Import every file of the run that is not imported yet (each at most once, whoever calls)."""
    record = services.store.get(run_id)
    for kind, slot in record.files.slots():
        if not slot.wanted or slot.file_id:
            continue
        try:
            result = services.effects.run(run_id, import_effect(services, kind), max_hold=_max_hold(services, record))
        except InsufficientQuotaError as exc:  # a limit of the resource: wait for room, never fail for it
            return admission.back_to_waiting(services, run_id, exc.code or "quotaExceeded", exc.message, "files")
        except BadRequestError as exc:  # the service refused the import itself: it will refuse it again
            return services.store.end(run_id, RunState.FAILED, exc.code or "import_failed", exc.message)
        record = result.record
        if result.outcome == EffectOutcome.HELD:
            log.info("run %s: %s import is in flight elsewhere", run_id, kind)
    return record


def follow_imports(services: Services, record: RunRecord) -> tuple[RunRecord, bool]:
    """Read the status of every imported file that is not `processed` yet. Returns (record, all processed).

    A file the service ends in `error` or `deleted` ends the run with the service's `status_details`.
    """
    changed: dict[str, str] = {}
    for kind, slot in record.files.slots():
        if not slot.file_id or slot.status == "processed":
            continue
        file_obj = services.aoai.files.get(slot.file_id)
        if file_obj.status in ("error", "deleted"):
            details = file_obj.status_details or f"the file is {file_obj.status}; the service gave no details"
            ended = services.store.end(
                record.id, RunState.FAILED, "file_import_failed", f"{kind} file {slot.file_id}: {details}"
            )
            return ended, False
        if file_obj.status is not None and file_obj.status != slot.status:
            changed[kind] = file_obj.status

    if changed:

        def note(r: RunRecord) -> bool:
            for kind, status in changed.items():
                r.files.slot(kind).status = status
            return True

        record, _ = services.store.update(record.id, note)
    processed = record.files.imported and all(
        s.status == "processed" for _, s in record.files.slots() if s.wanted
    )
    return record, processed


def _max_hold(services: Services, record: RunRecord) -> float:
    """The longest one import may hold its lease: one call's worst case, or on v1 one per request of the upload
    (create, a part per range of the dropped file, complete)."""
    per_call = services.aoai.worst_case_seconds()
    if services.aoai.surface != "v1":
        return per_call
    size = record.source.size or 0
    return per_call * (2 + max(1, math.ceil(size / services.aoai.upload_part_bytes)))
