"""Queue trigger: measure, gate, deploy and smoke-test each succeeded run."""

import azure.functions as func

from shared.deploy import handle_deploy_message
from shared.services import get_services
from shared.settings import get_settings
from shared.telemetry import traced

bp = func.Blueprint()
_settings = get_settings()


@bp.queue_trigger(arg_name="msg", queue_name=_settings.deploy_queue, connection=_settings.storage_connection)
@traced("deploy_succeeded_run")
def deploy_succeeded_run(msg: func.QueueMessage) -> None:
    handle_deploy_message(get_services(), msg.get_body().decode("utf-8"), msg.dequeue_count or 1)
