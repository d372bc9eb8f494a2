"""Queue trigger: deliver run events from the outbox (signed webhooks, Event Grid), with back-off, then poison."""

import azure.functions as func

from shared.services import get_services
from shared.settings import get_settings
from shared.telemetry import traced

bp = func.Blueprint()
_settings = get_settings()


@bp.queue_trigger(arg_name="msg", queue_name=_settings.webhook_outbox_queue, connection=_settings.storage_connection)
@traced("deliver_notifications")
def deliver_notifications(msg: func.QueueMessage) -> None:
    get_services().outbox.deliver(msg.get_body().decode("utf-8"))
