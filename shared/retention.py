"""Retention: what the pipeline deletes on its own once a run no longer needs it, each deletion on the record.

Today: a run's imported training/validation files, once its job has ended (succeeded, failed or cancelled).
They are copies of blobs the run keeps (the dropped blob, its snapshot, the staged split), the job no longer
reads them, and they hold places of the resource's 50-file / 1 GB quota that admission needs for the next
runs (shared/admission.py). Each file is put on the run's removal list (`record.surplus`, effect
`retention`); the timer deletes it, records `removed_at` (or the service's refusal) and keeps the run swept
until the list is empty. `RETENTION_DELETE_IMPORTED_FILES=false` keeps them.
"""

from __future__ import annotations

from shared.runs import RunRecord, SurplusObject, utcnow

EFFECT = "retention"
KINDS = ("training", "validation")
"""The test set (purpose `evals`) is the evaluation's: it is used after the job ended."""


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
