"""HTTP API and submission queue: other systems submit runs and read their state.

- `POST /api/runs?name=data.jsonl&model=...` body = JSONL (spec keys as query parameters)
- `GET  /api/runs` (newest first), `GET /api/runs/{run_id}`, `GET /api/runs/{run_id}/{artifact}`
- queue `SUBMIT_QUEUE`: `{"url": "...", "name": "data.jsonl", "spec": {...}}`
"""

import json
import logging

import azure.functions as func

from shared.runstore import RunNotFound
from shared.services import get_services
from shared.settings import get_settings
from shared.submissions import AlreadySubmitted, SubmissionError, submit, submit_from_url
from shared.summary import run_summary

bp = func.Blueprint()
log = logging.getLogger(__name__)
_settings = get_settings()
ARTIFACTS = {"validation.json", "metrics.json", "results.csv", "events.json", "loss.png", "accuracy.png"}


def _json(document: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document, default=str), status_code=status, mimetype="application/json")


@bp.route(route="runs", methods=["POST"])
def submit_run(req: func.HttpRequest) -> func.HttpResponse:
    params = dict(req.params)
    params.pop("code", None)  # the function key, when passed as ?code=
    name = params.pop("name", "") or req.headers.get("Idempotency-Key", "")
    name = name if name.endswith(".jsonl") or not name else name + ".jsonl"
    try:
        blob_name, run_id = submit(get_services(), name, req.get_body(), params)
    except AlreadySubmitted as exc:
        return _json({"run_id": exc.run_id, "blob_name": exc.blob_name, "status": "already_submitted"}, 200)
    except SubmissionError as exc:
        return _json({"error": {"code": "invalid_submission", "message": str(exc)}}, 400)
    return _json({"run_id": run_id, "blob_name": blob_name, "status": "submitted"}, 202)


@bp.route(route="runs", methods=["GET"])
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    records = sorted(get_services().store.iter_records(), key=lambda r: r.created_at, reverse=True)
    state = req.params.get("state")
    price = _settings.price_per_million_training_tokens
    summaries = [run_summary(r, price_per_million_tokens=price) for r in records]
    return _json([s.model_dump(mode="json") for s in summaries if not state or s.state == state])


@bp.route(route="runs/{run_id}", methods=["GET"])
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    try:
        record = get_services().store.get(req.route_params["run_id"])
    except RunNotFound as exc:
        return _json({"error": {"code": "notFound", "message": str(exc)}}, 404)
    return func.HttpResponse(record.model_dump_json(indent=2), mimetype="application/json")


@bp.route(route="runs/{run_id}/{artifact}", methods=["GET"])
def get_artifact(req: func.HttpRequest) -> func.HttpResponse:
    artifact = req.route_params["artifact"]
    if artifact not in ARTIFACTS:
        return _json({"error": {"code": "notFound", "message": f"artifacts: {sorted(ARTIFACTS)}"}}, 404)
    data = get_services().store.get_artifact(req.route_params["run_id"], artifact)
    if data is None:
        return _json({"error": {"code": "notFound", "message": f"{artifact} does not exist (yet)"}}, 404)
    mimetype = {"png": "image/png", "csv": "text/csv"}.get(artifact.rsplit(".", 1)[-1], "application/json")
    return func.HttpResponse(data, mimetype=mimetype)


@bp.queue_trigger(arg_name="msg", queue_name=_settings.submit_queue, connection=_settings.storage_connection)
def submit_run_from_queue(msg: func.QueueMessage) -> None:
    body = json.loads(msg.get_body())
    name = body.get("name") or f"submitted/{msg.id}.jsonl"
    try:
        blob_name, run_id = submit_from_url(get_services(), body["url"], name, body.get("spec", {}))
        log.info("submission %s -> %s (run %s)", msg.id, blob_name, run_id)
    except AlreadySubmitted as exc:
        log.info("submission %s was already accepted as run %s", msg.id, exc.run_id)
