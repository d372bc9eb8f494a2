"""Timers: advance every run the lifecycle sweeps (imports, job creation, job status, deadlines, surplus), and
apply the retention policy to ended runs (result files, deployments, max_hosting_hours, artifacts)."""

import logging

import azure.functions as func

from shared.advance import tick
from shared.retention import retention_pass
from shared.services import get_services
from shared.settings import get_settings
from shared.telemetry import traced

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule=get_settings().training_poll_schedule, run_on_startup=False)
@traced("advance_runs")
def advance_runs(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("advance_runs is past due: running now")
    tick(get_services())


@bp.timer_trigger(arg_name="timer", schedule=get_settings().retention_schedule, run_on_startup=False)
@traced("apply_retention")
def apply_retention(timer: func.TimerRequest) -> None:
    retention_pass(get_services())
