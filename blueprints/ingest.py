"""Blob trigger: every new blob version in the drop container becomes a run."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.ingest import handle_new_blob
from shared.services import get_services
from shared.settings import get_settings
from shared.telemetry import traced

bp = func.Blueprint()
_settings = get_settings()
_SOURCE = (
    func.BlobSource.EVENT_GRID
    if _settings.blob_trigger_source == "EventGrid"
    else func.BlobSource.LOGS_AND_CONTAINER_SCAN
)


@bp.blob_trigger(
    arg_name="client",
    path=f"{_settings.drop_container}/{{name}}",
    connection=_settings.storage_connection,
    source=_SOURCE,
)
@traced("ingest_dropped_file")
def ingest_dropped_file(client: blob.BlobClient) -> None:
    """Stream the new blob through the validator; valid -> import it; invalid -> a rejected run."""
    handle_new_blob(get_services(), client)
