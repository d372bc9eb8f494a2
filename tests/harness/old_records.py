"""Run records as the version before retention wrote them (no retention fields, no `retain`/`prune_from` tags):
what an upgrade finds in the runs container."""

from __future__ import annotations

from azure.storage.blob import ContentSettings

from shared.runs import RunRecord
from shared.runstore import RunStore, _tags

BEFORE_RETENTION = ("active", "state", "job", "job_status", "warned", "created")
"""The tags the version before retention wrote (shared/runstore.py before 5a83a11)."""


def write_as_before_retention(store: RunStore, record: RunRecord, tags: tuple[str, ...] = BEFORE_RETENTION) -> str:
    """Overwrite the record's blob the way the previous version wrote it. Returns its ETag."""
    data = record.model_dump_json(indent=2, exclude={"retention": True, "spec": {"retention"},
                                                     "deployment": {"deleted_at", "deleted_reason"}})
    assert '"retention"' not in data and '"deleted_reason"' not in data
    result = store.container.get_blob_client(f"runs/{record.id}/run.json").upload_blob(
        data, overwrite=True, tags={k: v for k, v in _tags(record).items() if k in tags},
        content_settings=ContentSettings(content_type="application/json"))
    return str(result["etag"])
