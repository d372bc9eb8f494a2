"""HTTP: the dashboard, served by the function app itself (function key as `?code=`, like the API).

- `GET /api/dashboard?code=KEY[&state=&profile=&page=]`: the runs page
- `GET /api/dashboard/runs/{run_id}?code=KEY`: a run's page
- `GET /api/dashboard/runs/{run_id}/charts/{loss.png|accuracy.png}?code=KEY`: its charts
"""

import azure.functions as func

from shared.dashboard import Page, chart_response, run_response, runs_response
from shared.services import get_services
from shared.telemetry import traced

bp = func.Blueprint()


def _reply(page: Page) -> func.HttpResponse:
    return func.HttpResponse(page.body, status_code=page.status, mimetype=page.content_type, headers=page.headers)


@bp.route(route="dashboard", methods=["GET"])
@traced("dashboard_runs")
def dashboard_runs(req: func.HttpRequest) -> func.HttpResponse:
    return _reply(runs_response(get_services(), dict(req.params)))


@bp.route(route="dashboard/runs/{run_id}", methods=["GET"])
@traced("dashboard_run")
def dashboard_run(req: func.HttpRequest) -> func.HttpResponse:
    return _reply(run_response(get_services(), req.route_params["run_id"], dict(req.params)))


@bp.route(route="dashboard/runs/{run_id}/charts/{name}", methods=["GET"])
@traced("dashboard_chart")
def dashboard_chart(req: func.HttpRequest) -> func.HttpResponse:
    return _reply(chart_response(get_services(), req.route_params["run_id"], req.route_params["name"]))
