"""HTTP API and submission queue: other systems submit runs and read their state.

- `POST /api/runs?name=data.jsonl&model=...` body = JSONL (spec keys as query parameters)
- `GET  /api/runs` (newest first), `GET /api/runs/{run_id}`, `GET /api/runs/{run_id}/{artifact}`
- `POST /api/runs/{run_id}/promote[?deployment=NAME]`, `POST /api/deployments/{name}/rollback`,
  `GET /api/deployments/{name}/lineage`
- `POST /api/runs/{run_id}/cancel`, `/redeploy`, `/pause`, `/resume` (day-2 commands, shared/run_commands.py)
- `GET  /api/runs/{run_id}/watch?after=N&etag=E&timeout=S` (long poll until the run changes, shared/watch.py)
- queue `SUBMIT_QUEUE`: `{"url": "...", "name": "data.jsonl", "spec": {...}}`
"""

import json
import logging
from datetime import UTC, datetime

import azure.functions as func

from shared import artifacts
from shared.names import InvalidName
from shared.runs import RunState
from shared.runstore import RunNotFound
from shared.services import get_services
from shared.settings import get_settings
from shared.submissions import AlreadySubmitted, SubmissionError, TooLarge, check_size, submit, submit_from_url
from shared.summary import run_summary
from shared.telemetry import traced

bp = func.Blueprint()
log = logging.getLogger(__name__)
_settings = get_settings()
STATES = [s.value for s in RunState]
ARTIFACTS = frozenset(artifacts.ARTIFACTS)


def _json(document: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document, default=_iso), status_code=status, mimetype="application/json")


def _iso(value: object) -> str:
    """Timestamps as ISO 8601 with Z, the form the records use (pydantic's)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _error(status: int, code: str, message: str) -> func.HttpResponse:
    return _json({"error": {"code": code, "message": message}}, status)


@bp.route(route="runs", methods=["POST"])
@traced("submit_run")
def submit_run(req: func.HttpRequest) -> func.HttpResponse:
    params = dict(req.params)
    params.pop("code", None)  # the function key, when passed as ?code=
    name = params.pop("name", "") or req.headers.get("Idempotency-Key", "")
    name = name if name.endswith(".jsonl") or not name else name + ".jsonl"
    services = get_services()
    max_bytes = services.settings.max_file_bytes
    try:
        declared = req.headers.get("Content-Length")
        check_size(int(declared) if declared and declared.isdigit() else None, max_bytes)
        body = req.get_body()
        check_size(len(body), max_bytes)
        blob_name, run_id = submit(services, name, body, params)
    except AlreadySubmitted as exc:
        return _json({"run_id": exc.run_id, "blob_name": exc.blob_name, "status": "already_submitted"}, 200)
    except TooLarge as exc:
        return _error(413, "file_too_large", str(exc))
    except SubmissionError as exc:
        return _error(400, "invalid_submission", str(exc))
    return _json({"run_id": run_id, "blob_name": blob_name, "status": "submitted"}, 202)


@bp.route(route="runs", methods=["GET"])
@traced("list_runs")
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    state = req.params.get("state")
    if state is not None and state not in STATES:
        return _error(400, "invalid_state", f"state {state!r} is not a run state; one of: {', '.join(STATES)}")
    records = sorted(get_services().store.iter_records(), key=lambda r: r.created_at, reverse=True)
    price = _settings.price_per_million_training_tokens
    summaries = [run_summary(r, price_per_million_tokens=price) for r in records]
    return _json([s.model_dump(mode="json") for s in summaries if not state or s.state == state])


@bp.route(route="runs/{run_id}", methods=["GET"])
@traced("get_run")
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    try:
        record = get_services().store.get(req.route_params["run_id"])
    except InvalidName as exc:
        return _error(400, "invalid_run_id", str(exc))
    except RunNotFound as exc:
        return _error(404, "notFound", str(exc))
    return func.HttpResponse(record.model_dump_json(indent=2), mimetype="application/json")


@bp.route(route="runs/{run_id}/watch", methods=["GET"])
@traced("watch_run")
def watch_run(req: func.HttpRequest) -> func.HttpResponse:
    """Long poll (shared/watch.py): `?after=<history index>&etag=<etag>&timeout=<seconds, at most 25>`. Registered
    before `runs/{run_id}/{artifact}`: the host prefers the literal segment, the devhost the first match."""
    from shared.watch import wait_for_change

    try:
        after = int(req.params.get("after") or 0)
        timeout = float(req.params.get("timeout") or 20)
    except ValueError:
        return _error(400, "invalid_parameter", "after must be a whole number and timeout a number of seconds")
    try:
        return _json(wait_for_change(get_services().store, req.route_params["run_id"], after=after,
                                     etag=req.params.get("etag") or None, timeout=timeout))
    except InvalidName as exc:
        return _error(400, "invalid_run_id", str(exc))
    except RunNotFound as exc:
        return _error(404, "notFound", str(exc))


@bp.route(route="runs/{run_id}/{artifact}", methods=["GET"])
@traced("get_artifact")
def get_artifact(req: func.HttpRequest) -> func.HttpResponse:
    artifact = req.route_params["artifact"]
    if artifact not in ARTIFACTS:
        return _error(404, "notFound", f"artifacts: {sorted(ARTIFACTS)}")
    try:
        data = get_services().store.get_artifact(req.route_params["run_id"], artifact)
    except InvalidName as exc:
        return _error(400, "invalid_run_id", str(exc))
    if data is None:
        return _error(404, "notFound", f"{artifact} does not exist (yet)")
    mimetype = artifacts.content_type(artifact)
    # Binary content (image/png, octet-stream) has no charset; text and JSON say utf-8.
    textual = mimetype.startswith("text/") or mimetype == "application/json"
    headers = {"Content-Type": f"{mimetype}; charset=utf-8" if textual else mimetype}
    return func.HttpResponse(data, headers=headers)


@bp.route(route="runs/{run_id}/promote", methods=["POST"])
@traced("promote_run")
def promote_run(req: func.HttpRequest) -> func.HttpResponse:
    from shared.promote import PromotionError, promote

    try:
        return _json(promote(get_services(), req.route_params["run_id"], req.params.get("deployment") or None))
    except InvalidName as exc:
        return _error(400, "invalid_run_id", str(exc))
    except RunNotFound as exc:
        return _error(404, "notFound", str(exc))
    except PromotionError as exc:
        return _error(409, "cannot_promote", str(exc))


@bp.route(route="deployments/{name}/rollback", methods=["POST"])
@traced("rollback_deployment")
def rollback_deployment(req: func.HttpRequest) -> func.HttpResponse:
    from shared.promote import PromotionError, rollback

    try:
        return _json(rollback(get_services(), req.route_params["name"]))
    except PromotionError as exc:
        return _error(409, "cannot_roll_back", str(exc))


@bp.route(route="deployments/{name}/lineage", methods=["GET"])
@traced("deployment_lineage")
def deployment_lineage(req: func.HttpRequest) -> func.HttpResponse:
    from shared.promote import PromotionError, lineage

    try:
        return _json(lineage(get_services(), req.route_params["name"]))
    except PromotionError as exc:
        return _error(400, "invalid_deployment", str(exc))


def _run_command(req: func.HttpRequest, command: str) -> func.HttpResponse:
    """A day-2 command: idempotent, recorded in the run's history.
    200 `{"run_id", "command", "changed", "message", "state"}`; 409 when the command cannot apply."""
    from shared.run_commands import CommandRefused, cancel, pause, redeploy, resume

    run_id = req.route_params["run_id"]
    services = get_services()
    try:
        services.store.get(run_id)
        commands = {"cancel": cancel, "redeploy": redeploy, "pause": pause, "resume": resume}
        outcome = commands[command](services, run_id, by="http")
    except InvalidName as exc:
        return _error(400, "invalid_run_id", str(exc))
    except RunNotFound as exc:
        return _error(404, "notFound", str(exc))
    except CommandRefused as exc:
        return _error(409, "command_refused", str(exc))
    return _json({"run_id": run_id, "command": command, "changed": outcome.changed, "message": outcome.message,
                  "state": outcome.record.state.value})


@bp.route(route="runs/{run_id}/cancel", methods=["POST"])
@traced("cancel_run")
def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    return _run_command(req, "cancel")


@bp.route(route="runs/{run_id}/pause", methods=["POST"])
@traced("pause_run")
def pause_run(req: func.HttpRequest) -> func.HttpResponse:
    return _run_command(req, "pause")


@bp.route(route="runs/{run_id}/resume", methods=["POST"])
@traced("resume_run")
def resume_run(req: func.HttpRequest) -> func.HttpResponse:
    return _run_command(req, "resume")


@bp.route(route="runs/{run_id}/redeploy", methods=["POST"])
@traced("redeploy_run")
def redeploy_run(req: func.HttpRequest) -> func.HttpResponse:
    return _run_command(req, "redeploy")


@bp.queue_trigger(arg_name="msg", queue_name=_settings.submit_queue, connection=_settings.storage_connection)
@traced("submit_run_from_queue")
def submit_run_from_queue(msg: func.QueueMessage) -> None:
    try:
        body = json.loads(msg.get_body())
        url = body["url"]
        name = body.get("name") or f"submitted/{msg.id}.jsonl"
        spec = body.get("spec") or {}
        if not isinstance(url, str) or not isinstance(name, str) or not isinstance(spec, dict):
            raise TypeError("url and name must be strings, spec an object")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Retrying a message that cannot be read changes nothing: say why once, and let it go.
        log.error("submission %s refused: not {\"url\", \"name\", \"spec\"} JSON (%s)", msg.id, type(exc).__name__)
        return
    try:
        blob_name, run_id = submit_from_url(get_services(), url, name, spec)
        log.info("submission %s -> %s (run %s)", msg.id, blob_name, run_id)
    except AlreadySubmitted as exc:
        log.info("submission %s was already accepted as run %s", msg.id, exc.run_id)
    except SubmissionError as exc:
        if exc.retryable:
            raise  # the host retries it (visibilityTimeout), then poisons it
        log.error("submission %s refused: %s", msg.id, exc)
