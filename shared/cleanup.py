"""Clean up after a run: its deployment (hosting is billed hourly, used or not) and its uploaded files.

The fine-tuned model itself stays (it can be deployed again); so does the run record, which notes what was
removed. Safe to repeat: what is already gone is skipped.
"""

from __future__ import annotations

import logging

from shared.aoai import NotFoundError
from shared.retention import mark_deployment_deleted
from shared.runs import HistoryEntry, RetentionEntry, RunRecord, utcnow
from shared.services import Services

log = logging.getLogger(__name__)


def cleanup_run(services: Services, run_id: str, *, deployment: bool = True, files: bool = True) -> list[str]:
    """Delete what the run left in Azure OpenAI. Returns what was removed, as sentences."""
    record = services.store.get(run_id)
    done: list[str] = []
    name = record.deployment.name
    if deployment and name and services.deployments is not None and services.deployments.get(name) is not None:
        # (ARM answers a DELETE of a missing deployment with 204 too: look first, to say only what was done.)
        services.deployments.delete_and_wait(name, timeout=services.settings.deploy_wait_seconds)
        done.append(f"deleted deployment {name}")
    if files:
        for file_id in (slot.file_id for _, slot in record.files.slots()):
            if not file_id:
                continue
            try:
                services.aoai.files.delete(file_id)
                done.append(f"deleted file {file_id}")
            except NotFoundError:
                pass
    if done:

        def note(r: RunRecord) -> bool:
            if deployment and name and f"deleted deployment {name}" in done:
                # The run keeps its end state; its deployment reads Deleted (the table, the API, status say so).
                mark_deployment_deleted(r, "cleanup: deleted by request")
                now = utcnow()
                r.retention.append(RetentionEntry(target="deployment", id=name, action="delete",
                                                  reason="cleanup: deleted by request", at=now, removed_at=now))
            r.history.append(HistoryEntry(at=utcnow(), state=r.state, note="cleanup: " + "; ".join(done)))
            r.warn("cleaned_up", "cleaned up: " + "; ".join(done))
            return True

        services.store.update(run_id, note, on_ended=True)
    log.info("run %s: %s", run_id, "; ".join(done) or "nothing to clean up")
    return done
