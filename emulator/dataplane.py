"""Data plane: `/openai/{files,fine_tuning/jobs,models}` (api-version required) and the same under `/openai/v1`.

Status spellings follow the api-version of the request (see `job_status_for`); the error envelopes are the
service's (`errors.ApiError`). Where the service's exact wording is unknown the message says what is wrong
in the emulator's own words; the codes and the sentences quoted by the wire contract are exact.

The v1 surface (spec `specification/ai/data-plane/OpenAI.v1/azure-v1-v1-generated.*`) differs where its spec
does: creates answer 200 (no `Location`), there is no `POST /files/import` and no `DELETE /fine_tuning/jobs/{id}`
(both 404), a job create takes `metadata` (16 string pairs, keys up to 64 and values up to 512 characters) and
every job shows `metadata` (null when none), `seed` is 0..2147483647, upload purposes are the v1 enum. Large
files: the Uploads API (emulator/uploads.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import clock, limits, reinforcement
from .catalog import BASE_MODELS, base_model
from .config import DATA_PLANE_VERSIONS, LEGACY_VERSIONS, PREVIEW_VERSIONS, V1_VERSIONS
from .errors import ApiError, invalid, not_found
from .state import TERMINAL_JOB, State

log = logging.getLogger("emulator")

NOT_FINE_TUNABLE = "The specified base model does not support fine-tuning."
# Open-weight models without trainingType globalStandard: the SDK's failure as Microsoft's fine-tuning skill quotes
# it ("does not support fine-tuning with Standard TrainingType"); the rest of the sentence is the emulator's.
OPEN_WEIGHT_TRAINING_TYPE = ("The model {model} does not support fine-tuning with {training_type} TrainingType. "
                             "Open-weight models are fine-tuned with trainingType globalStandard.")
FILE_PURPOSES = {"fine-tune", "assistants", "batch", "vision", "user_data", "evals"}
# The upload purposes of the v1 spec (AzureCreateFileRequestMultiPart `purpose` enum).
V1_FILE_PURPOSES = {"assistants", "batch", "fine-tune", "evals"}
# The upload purposes of the GA spec (stable/2024-10-21, Files_Upload `purpose` enum).
GA_FILE_PURPOSES = {"fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch"}
# The job-create body per surface. GA and legacy: FineTuningJobCreation of stable/2024-10-21 exactly;
# preview adds method and integrations (2025-04-01-preview) and Azure's top-level trainingType (the how-to sends
# it with that version). The specs do not say what the service does with other fields: the emulator answers
# 400 (the safe failure), so a client that sends them fails here, not silently on Azure. v1 is not checked.
GA_CREATE_FIELDS = frozenset({"model", "training_file", "validation_file", "hyperparameters", "suffix", "seed"})
PREVIEW_CREATE_FIELDS = GA_CREATE_FIELDS | {"method", "integrations", "trainingType"}
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TRAINING_TYPES = {"standard": "Standard", "globalstandard": "GlobalStandard", "developer": "Developer"}
_background: set[asyncio.Task[None]] = set()


@dataclass
class Ctx:
    surface: str  # ga | preview | legacy | v1
    version: str | None
    prefix: str  # /openai or /openai/v1


def context(request: Request) -> Ctx:
    """Check the api-version of a data-plane request; a wrong or missing one is the gateway's 404."""
    version = request.query_params.get("api-version")
    if request.url.path.startswith("/openai/v1/"):
        if version is not None and version not in V1_VERSIONS:
            raise not_found()
        return Ctx("v1", version, "/openai/v1")
    if version not in DATA_PLANE_VERSIONS:
        raise not_found()
    surface = "preview" if version in PREVIEW_VERSIONS else "legacy" if version in LEGACY_VERSIONS else "ga"
    return Ctx(surface, version, "/openai")


def emu(request: Request) -> State:
    state: State = request.app.state.emu
    return state


def location(request: Request, ctx: Ctx, path: str) -> str:
    query = f"?api-version={ctx.version}" if ctx.version else ""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}{ctx.prefix}{path}{query}"


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def paginate(items: list[dict[str, Any]], request: Request, default_limit: int, max_limit: int = 10_000
             ) -> tuple[list[dict[str, Any]], bool]:
    after = request.query_params.get("after")
    raw = request.query_params.get("limit")
    try:
        limit = default_limit if raw is None else int(raw)
    except ValueError as exc:
        raise invalid("limit must be an integer.", "limit") from exc
    if not 1 <= limit <= max_limit:
        raise invalid(f"limit must be between 1 and {max_limit}.", "limit")
    if after:
        ids = [i["id"] for i in items]
        if after in ids:
            items = items[ids.index(after) + 1:]
    return items[:limit], len(items) > limit


def listing(data: list[dict[str, Any]], has_more: bool) -> JSONResponse:
    return JSONResponse({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    })


# ------------------------------------------------------------------------------------------------ files
def _file_or_404(state: State, file_id: str) -> dict[str, Any]:
    record = state.files.get(file_id)
    if record is None:
        raise ApiError(404, "notFound", f"File with id '{file_id}' was not found.")
    return record


async def upload_file(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    try:
        form = await request.form(max_part_size=state.config.max_file_bytes + 1024 * 1024)
    except Exception as exc:  # noqa: BLE001 - any multipart parse failure is the client's payload
        raise invalid(f"The request is not a valid multipart/form-data body ({exc}).") from exc
    purpose = form.get("purpose")
    upload = form.get("file")
    if not isinstance(purpose, str) or not purpose:
        raise invalid("The 'purpose' field is required.", "purpose")
    if purpose not in _purposes(ctx):
        raise invalid(f"The purpose '{purpose}' is not supported for uploads.", "purpose")
    if upload is None or isinstance(upload, str):
        raise invalid("The 'file' field is required.", "file")
    expires = _expires_after(form) if ctx.surface == "v1" else None
    content = await upload.read()
    limits.check_file_room(state, purpose, len(content))
    record = state.add_file(upload.filename or "upload.jsonl", purpose, content, source="upload")
    if expires is not None:
        record["expires_at"] = int(record["created_at"]) + expires
    limits.note_peaks(state)
    return created(request, ctx, state.file_view(record), f"/files/{record['id']}")


def _purposes(ctx: Ctx) -> set[str]:
    if ctx.surface == "v1":
        return V1_FILE_PURPOSES
    return GA_FILE_PURPOSES if ctx.surface in ("ga", "legacy") else FILE_PURPOSES


def created(request: Request, ctx: Ctx, view: dict[str, Any], path: str) -> JSONResponse:
    """A create's answer: 201 with `Location` on the versioned surface, 200 on v1 (the v1 spec's responses)."""
    if ctx.surface == "v1":
        return JSONResponse(view, status_code=200)
    return JSONResponse(view, status_code=201, headers={"Location": location(request, ctx, path)})


def _expires_after(form: Any) -> int | None:
    """v1 `expires_after` (multipart `expires_after[anchor]`, `expires_after[seconds]`): seconds after created_at.

    The v1 spec marks it required; the official client sends it only when asked (and Microsoft's own samples
    upload without it), so absent is accepted. Echoed as `expires_at`; the emulator deletes nothing for it."""
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise invalid("expires_after.anchor must be 'created_at'.", "expires_after.anchor")
    try:
        value = int(str(seconds))
    except ValueError as exc:
        raise invalid("expires_after.seconds must be an integer.", "expires_after.seconds") from exc
    if not 3600 <= value <= 2_592_000:
        raise invalid("expires_after.seconds must be between 3600 (1 hour) and 2592000 (30 days).",
                      "expires_after.seconds")
    return value


def _safe_url(url: str) -> str:
    """The URL without its query string (a SAS token is a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def import_file(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    body = await json_body(request)
    for key in ("purpose", "filename", "content_url"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise invalid(f"The '{key}' field is required.", key)
    if body["purpose"] not in _purposes(ctx):
        raise invalid(f"The purpose '{body['purpose']}' is not supported for imports.", "purpose")
    url = body["content_url"]
    if urlsplit(url).scheme not in ("http", "https"):
        raise invalid("The content_url must be an http(s) URL.", "content_url")
    limits.check_file_room(state, body["purpose"], None)
    record = state.add_file(body["filename"], body["purpose"], None, source="import")
    limits.note_peaks(state)
    forced = state.take_scenario("import")
    task = asyncio.get_running_loop().create_task(_fetch(state, record, url, bool(forced)))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return created(request, ctx, state.file_view(record), f"/files/{record['id']}")


async def _fetch(state: State, record: dict[str, Any], url: str, forced_error: bool) -> None:
    shown = _safe_url(url)
    try:
        async with httpx.AsyncClient(timeout=60, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        log.info("import %s from %s failed: %s", record["id"], shown, type(exc).__name__)
        state.import_failed(record, f"File import failed: the content URL {shown} could not be read "
                                    f"({type(exc).__name__}).")
        return
    if record["id"] not in state.files:
        return
    if response.status_code != 200:
        log.info("import %s from %s answered %s", record["id"], shown, response.status_code)
        state.import_failed(record, f"File import failed: the content URL {shown} answered HTTP "
                                    f"{response.status_code}.")
        return
    content = response.content
    error = None
    if forced_error or "EMULATOR_SCENARIO:file_import_error" in content.decode("utf-8", "replace"):
        error = f"File import failed: the content at {shown} could not be imported (scenario file_import_error)."
    error = error or limits.import_over_size(state, record, len(content))
    state.set_content(record, content, import_error=error)
    limits.note_peaks(state)
    state.save()


async def get_file(request: Request) -> Response:
    context(request)
    state = emu(request)
    return JSONResponse(state.file_view(_file_or_404(state, request.path_params["file_id"])))


async def list_files(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    purpose = request.query_params.get("purpose")
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("order must be 'asc' or 'desc'.", "order")
    records = [r for r in state.files.values() if purpose in (None, r["purpose"])]
    records.sort(key=lambda r: r["created_at"], reverse=order == "desc")
    if ctx.surface in ("ga", "legacy"):
        # The GA FileList is {object, data}: no paging, no has_more.
        return JSONResponse({"object": "list", "data": [state.file_view(r) for r in records]})
    page, more = paginate([state.file_view(r) for r in records], request, 10_000)
    return listing(page, more)


async def delete_file(request: Request) -> Response:
    context(request)
    state = emu(request)
    record = _file_or_404(state, request.path_params["file_id"])
    if record["source"] == "results":
        state.jobs[record["job_id"]]["results_deleted"] = True
    state.delete_file(record["id"])
    return JSONResponse({"object": "file", "deleted": True, "id": record["id"]})


async def file_content(request: Request) -> Response:
    context(request)
    state = emu(request)
    record = _file_or_404(state, request.path_params["file_id"])
    return Response(state.file_content(record), media_type="application/octet-stream")


# ------------------------------------------------------------------------------------------------ jobs
def job_status_for(status: str, ctx: Ctx) -> str:
    """Spell a canonical status the way the request's api-version does."""
    if ctx.surface == "v1":
        return status
    if ctx.surface == "legacy":
        return {"validating_files": "notRunning", "queued": "notRunning", "paused": "notRunning",
                "cancelled": "canceled"}.get(status, status)
    if status in ("validating_files", "queued"):
        return "pending"
    if status == "paused" and ctx.surface == "ga":
        return "pending"
    return status


def job_view(state: State, job: dict[str, Any], ctx: Ctx, status_override: str | None = None) -> dict[str, Any]:
    plan = job["plan"]
    now = clock.now()
    status = state.job_status(job, now)
    final, end, error = _outcome(job)
    started = state.active(job, now) >= _started(job)
    results = status == "succeeded" and state.results_ready(job, now)
    resolved = {
        "n_epochs": plan["n_epochs"],
        "batch_size": plan["batch_size"],
        "learning_rate_multiplier": plan["learning_rate_multiplier"],
    }
    if plan.get("beta") is not None or job["method_type"] == "dpo":
        resolved["beta"] = plan.get("beta") if plan.get("beta") is not None else 0.1
    if job["method_type"] == "reinforcement":  # the RFT how-to: reasoning_effort defaults to medium
        requested_rft = job["requested_hyperparameters"]
        for key in ("eval_interval", "eval_samples", "compute_multiplier", "reasoning_effort"):
            value = requested_rft.get(key, "auto")
            resolved[key] = "medium" if key == "reasoning_effort" and value in ("auto", "default") else value
    if started:
        hyper: dict[str, Any] = resolved
    elif ctx.surface == "v1":
        hyper = dict(job["requested_hyperparameters"])
    else:
        # Before the run starts Azure shows what was asked, and n_epochs -1 when it is left to the service
        # (the 2025-04-01-preview create example answers {"n_epochs": -1}); other auto values are not shown.
        requested = job["requested_hyperparameters"]
        hyper = {k: v for k, v in requested.items() if v != "auto"}
        hyper.setdefault("n_epochs", -1)
    finished_at = None
    if status in TERMINAL_JOB:
        offset = job["cancel_offset"] if status == "cancelled" else end
        finished_at = int(state.real_time(job, offset))
    estimated = None
    if status == "running":
        estimated = int(state.real_time(job, end))
    if status == "succeeded":
        result_files: list[str] | None = [job["result_file_id"]] if results else []
    else:
        result_files = [] if ctx.surface == "v1" else None
    view: dict[str, Any] = {
        "object": "fine_tuning.job",
        "id": job["id"],
        "created_at": int(job["created_at"]),
        "status": status_override or job_status_for(status, ctx),
        "model": job["model"],
        "fine_tuned_model": plan["fine_tuned_model"] if status == "succeeded" else None,
        "training_file": job["training_file"],
        "validation_file": job["validation_file"],
        "result_files": result_files,
        "finished_at": finished_at,
        "trained_tokens": plan["trained_tokens"] if results else None,
        "error": error if status == "failed" else None,
        "estimated_finish": estimated,
        "hyperparameters": hyper,
        "seed": job["seed"],
        "integrations": job.get("integrations"),
    }
    if ctx.surface == "v1":
        view["organization_id"] = "org-emulator"
        view["user_provided_suffix"] = job["suffix"]
        view["metadata"] = job.get("metadata")
    else:
        view["organisation_id"] = "org-emulator"  # the spelling of the Azure specs (GA and preview)
        view["suffix"] = job["suffix"]
    if ctx.surface in ("preview", "v1"):
        if job.get("training_type"):
            view["trainingType"] = job["training_type"]
        method_hyper = {k: v for k, v in hyper.items()}
        view["method"] = {"type": job["method_type"], job["method_type"]: {"hyperparameters": method_hyper,
                                                                          **(job.get("method_extra") or {})}}
    return view


def _outcome(job: dict[str, Any]) -> tuple[str, float, dict[str, Any] | None]:
    from .training import outcome

    return outcome(job["plan"])


def _started(job: dict[str, Any]) -> float:
    from .training import phases

    return phases(job["plan"]).started


def _job_or_404(state: State, job_id: str) -> dict[str, Any]:
    job = state.jobs.get(job_id)
    if job is None or job.get("deleted"):
        raise ApiError(404, "notFound", f"The fine-tuning job '{job_id}' was not found.")
    return job


def _check_hyperparameters(hp: Any, where: str) -> None:
    if hp is None:
        return
    if not isinstance(hp, dict):
        raise invalid(f"{where} must be an object.", where)
    bounds = {"n_epochs": (1, 50, int), "batch_size": (1, 256, int)}
    for key, (low, high, _) in bounds.items():
        value = hp.get(key)
        if value is None or value == "auto":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise invalid(f"{where}.{key} must be an integer between {low} and {high} or 'auto'.", f"{where}.{key}")
    lr = hp.get("learning_rate_multiplier")
    if lr is not None and lr != "auto":
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not 0 < lr <= 10:
            raise invalid(f"{where}.learning_rate_multiplier must be a number in (0, 10] or 'auto'.",
                          f"{where}.learning_rate_multiplier")
    beta = hp.get("beta")
    if beta is not None and beta != "auto":
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0 < beta <= 2:
            raise invalid(f"{where}.beta must be a number in (0, 2] or 'auto'.", f"{where}.beta")


def _check_file(state: State, file_id: Any, param: str, need_format: str, base: str, method: str) -> None:
    if not isinstance(file_id, str) or not file_id:
        raise invalid(f"The '{param}' field must be a file id.", param)
    record = state.files.get(file_id)
    if record is None:
        raise invalid(f"The file '{file_id}' given as {param} does not exist.", param)
    if record["purpose"] != "fine-tune":
        raise invalid(f"The file '{file_id}' has purpose '{record['purpose']}'; fine-tuning needs 'fine-tune'.",
                      param)
    status = state.file_status(record)
    if status != "processed":
        raise invalid(
            f"The input file '{file_id}' is in '{status}' state. Only files with status 'Processed' are accepted",
            param,
        )
    fmt = record["validation"]["format"]
    if fmt != need_format:
        raise invalid(
            f"The file '{file_id}' is in {fmt} format, but fine-tuning {base} with method '{method}' needs "
            f"{need_format} format.",
            param,
        )


def _check_fields(body: dict[str, Any], ctx: Ctx) -> None:
    """400 for a field the request's api-version does not define (see GA_CREATE_FIELDS)."""
    if ctx.surface == "v1":
        return
    allowed = PREVIEW_CREATE_FIELDS if ctx.surface == "preview" else GA_CREATE_FIELDS
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(
            f"The field '{unknown[0]}' is not part of the fine-tuning job create body of api-version "
            f"{ctx.version}; it is accepted with {PREVIEW_VERSIONS[0]}."
            if unknown[0] in PREVIEW_CREATE_FIELDS
            else f"The field '{unknown[0]}' is not part of the fine-tuning job create body of api-version "
            f"{ctx.version}.",
            unknown[0],
        )


async def create_job(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    body = await json_body(request)
    _check_fields(body, ctx)
    model_name = body.get("model")
    if not isinstance(model_name, str) or not model_name:
        raise invalid("The 'model' field is required.", "model")
    if not body.get("training_file"):
        raise invalid("The 'training_file' field is required.", "training_file")
    training_type = body.get("trainingType", body.get("training_type"))
    if training_type is None and state.require_training_type:
        raise invalid(NOT_FINE_TUNABLE, "model")
    if training_type is not None and str(training_type).lower() not in TRAINING_TYPES:
        raise invalid(
            f"The trainingType '{training_type}' is not supported; use one of Standard, GlobalStandard, Developer.",
            "trainingType",
        )
    parent = None
    base = base_model(model_name)
    if base is None:
        parent_job = state.fine_tuned_models().get(model_name)
        if parent_job is not None:
            parent = parent_job["id"]
            base = base_model(parent_job["base_model"])
    if base is None or not base.trainable:
        raise invalid(NOT_FINE_TUNABLE, "model")
    if base.open_weight_format is not None and str(training_type or "standard").lower() != "globalstandard":
        shown = TRAINING_TYPES.get(str(training_type or "standard").lower(), str(training_type))
        raise invalid(OPEN_WEIGHT_TRAINING_TYPE.format(model=base.id, training_type=shown), "trainingType")
    suffix = body.get("suffix")
    if suffix == "":
        body["suffix"] = suffix = None
    if suffix is not None and (not isinstance(suffix, str) or not SUFFIX_RE.match(suffix)):
        raise invalid("The suffix must be 1 to 40 characters of a-z, A-Z, 0-9, '-' and '_'.", "suffix")
    seed = body.get("seed")
    low = 0 if ctx.surface == "v1" else -(2**31)  # the v1 spec: minimum 0, maximum 2147483647
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not low <= seed < 2**31):
        raise invalid(f"The seed must be an integer from {low} to 2147483647.", "seed")
    if ctx.surface == "v1":
        _check_metadata(body.get("metadata"))
    _check_hyperparameters(body.get("hyperparameters"), "hyperparameters")
    method = body.get("method")
    method_type = "supervised"
    if method is not None:
        if not isinstance(method, dict) or method.get("type") not in ("supervised", "dpo", "reinforcement"):
            raise invalid("method.type must be one of supervised, dpo, reinforcement.", "method.type")
        method_type = method["type"]
        inner = method.get(method_type) or {}
        if not isinstance(inner, dict):
            raise invalid(f"method.{method_type} must be an object.", f"method.{method_type}")
        _check_hyperparameters(inner.get("hyperparameters"), f"method.{method_type}.hyperparameters")
        if method_type == "reinforcement" and "reinforcement" in base.methods:
            reinforcement.check_method(inner, body)
    if method_type not in base.methods:
        if method_type == "supervised" and base.methods == ("reinforcement",):
            raise invalid(f"The model {base.id} can only be fine-tuned with method 'reinforcement'.", "method.type")
        raise invalid(f"The model {base.id} does not support fine-tuning with method '{method_type}'.",
                      "method.type")
    need = {"dpo": "preference", "reinforcement": "reinforcement"}.get(
        method_type, "completion" if base.completion else "chat")
    _check_file(state, body["training_file"], "training_file", need, base.id, method_type)
    if body.get("validation_file"):
        _check_file(state, body["validation_file"], "validation_file", need, base.id, method_type)
    if method_type == "reinforcement":
        for param in ("training_file", "validation_file"):
            reinforcement.check_examples(state.examples(body[param]), param)
    if training_type is not None:
        body["trainingType"] = TRAINING_TYPES[str(training_type).lower()]
    limits.check_job_room(state)
    job = state.create_job(body, base=base.id, api_version=ctx.version or "v1", parent=parent)
    limits.note_peaks(state)
    return created(request, ctx, job_view(state, job, ctx), f"/fine_tuning/jobs/{job['id']}")


def _check_metadata(metadata: Any) -> None:
    """The v1 spec's `metadata`: up to 16 pairs, string keys of at most 64 characters, string values of at most 512."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise invalid("metadata must be an object of string keys and string values.", "metadata")
    if len(metadata) > 16:
        raise invalid(f"metadata holds at most 16 key-value pairs; got {len(metadata)}.", "metadata")
    for key, value in metadata.items():
        if not 1 <= len(key) <= 64:
            raise invalid(f"metadata keys are 1 to 64 characters; '{key[:70]}' is {len(key)}.", "metadata")
        if not isinstance(value, str) or len(value) > 512:
            raise invalid(f"metadata.{key} must be a string of at most 512 characters.", f"metadata.{key}")


async def list_jobs(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    jobs = sorted((j for j in state.jobs.values() if not j.get("deleted")), key=lambda j: j["created_at"],
                  reverse=True)
    views = [job_view(state, j, ctx) for j in jobs]
    page, more = paginate(views, request, 20)
    return listing(page, more)


async def get_job(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    return JSONResponse(job_view(state, _job_or_404(state, request.path_params["job_id"]), ctx))


async def delete_job(request: Request) -> Response:
    context(request)
    state = emu(request)
    job = _job_or_404(state, request.path_params["job_id"])
    status = state.job_status(job)
    if status not in TERMINAL_JOB:
        raise ApiError(400, "unexpectedEntityState",
                       f"The job '{job['id']}' is in status '{status}'; only a finished job can be deleted. "
                       "Cancel it first.")
    job["deleted"] = True
    state.save()
    return Response(status_code=204)


async def cancel_job(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    job = _job_or_404(state, request.path_params["job_id"])
    now = clock.now()
    status = state.job_status(job, now)
    if status in TERMINAL_JOB:
        raise ApiError(400, "unexpectedEntityState",
                       f"The job '{job['id']}' is in status '{job_status_for(status, ctx)}' and cannot be cancelled.")
    if job["pauses"] and job["pauses"][-1]["real_end"] is None:
        job["pauses"][-1]["real_end"] = now
    job["cancel_offset"] = state.active(job, now)
    state.save()
    return JSONResponse(job_view(state, job, ctx))


def _job_in_status(request: Request, required: str, verb: str) -> tuple[Any, Any, dict[str, Any], float]:
    """Pause/resume preamble: preview surfaces only, and the job must be `required` (else the service's 400)."""
    ctx = context(request)
    if ctx.surface not in ("preview", "v1"):
        raise not_found()
    state = emu(request)
    job = _job_or_404(state, request.path_params["job_id"])
    now = clock.now()
    status = state.job_status(job, now)
    if status != required:
        raise ApiError(400, "unexpectedEntityState",
                       f"The job '{job['id']}' is in status '{job_status_for(status, ctx)}'; only a {required} job "
                       f"can be {verb}.")
    return ctx, state, job, now


async def pause_job(request: Request) -> Response:
    ctx, state, job, now = _job_in_status(request, "running", "paused")
    job["pauses"].append({"at": state.active(job, now), "real_start": now, "real_end": None})
    state.save()
    return JSONResponse(job_view(state, job, ctx, status_override="pausing"))


async def resume_job(request: Request) -> Response:
    ctx, state, job, now = _job_in_status(request, "paused", "resumed")
    job["pauses"][-1]["real_end"] = now
    state.save()
    return JSONResponse(job_view(state, job, ctx, status_override="resuming"))


async def list_events(request: Request) -> Response:
    ctx = context(request)
    state = emu(request)
    job = _job_or_404(state, request.path_params["job_id"])
    events = list(reversed(state.job_events(job)))
    views = []
    for event in events:
        level = "warn" if ctx.surface == "v1" and event["level"] == "warning" else event["level"]
        views.append({"object": "fine_tuning.job.event", **event, "level": level})
    page, more = paginate(views, request, 20)
    return listing(page, more)


async def list_checkpoints(request: Request) -> Response:
    context(request)
    state = emu(request)
    job = _job_or_404(state, request.path_params["job_id"])
    views = [
        {
            "object": "fine_tuning.job.checkpoint",
            "id": c["id"],
            "created_at": c["created_at"],
            "fine_tuned_model_checkpoint": c["fine_tuned_model_checkpoint"],
            "step_number": c["step_number"],
            "metrics": c["metrics"],
            "fine_tuning_job_id": job["id"],
        }
        for c in reversed(state.job_checkpoints(job))
    ]
    page, more = paginate(views, request, 10)
    return listing(page, more)


# ------------------------------------------------------------------------------------------------ models
def fine_tuned_model_view(state: State, name: str, job: dict[str, Any]) -> dict[str, Any]:
    base = base_model(job["base_model"])
    assert base is not None
    created = int(state.real_time(job, _outcome(job)[1]))
    return {
        "object": "model",
        "id": name,
        "created_at": created,
        "created": created,
        "owned_by": "organization-owner",
        "status": "succeeded",
        "model": job["base_model"],
        "fine_tune": job["id"],
        # As the spec's GET /models example shows a fine-tuned model: fine_tune false, although continuous
        # fine-tuning from it is documented (fine-tuning how-to, "Continuous fine-tuning").
        "capabilities": {
            "fine_tune": False,
            "inference": True,
            "completion": base.completion,
            "chat_completion": base.chat,
            "embeddings": False,
        },
        "lifecycle_status": "generally-available",
        "deprecation": {"inference": created + 365 * 86400},
    }


def _model_views(state: State) -> list[dict[str, Any]]:
    views = [{**m.as_model(), "created": m.as_model()["created_at"], "owned_by": "system"} for m in BASE_MODELS]
    views += [fine_tuned_model_view(state, n, j) for n, j in state.fine_tuned_models().items()]
    return views


async def list_models(request: Request) -> Response:
    context(request)
    return JSONResponse({"object": "list", "data": _model_views(emu(request))})


async def get_model(request: Request) -> Response:
    context(request)
    model_id = request.path_params["model_id"]
    for view in _model_views(emu(request)):
        if view["id"] == model_id:
            return JSONResponse(view)
    raise ApiError(404, "notFound", f"The model '{model_id}' was not found.")


def routes() -> list[Route]:
    # The versioned surface only (the v1 spec has neither): the files import, and deleting a job.
    out = [
        Route("/openai/files/import", import_file, methods=["POST"]),
        Route("/openai/fine_tuning/jobs/{job_id}", delete_job, methods=["DELETE"]),
    ]
    for prefix in ("/openai", "/openai/v1"):
        out += [
            Route(f"{prefix}/files", upload_file, methods=["POST"]),
            Route(f"{prefix}/files", list_files, methods=["GET"]),
            Route(f"{prefix}/files/{{file_id}}", get_file, methods=["GET"]),
            Route(f"{prefix}/files/{{file_id}}", delete_file, methods=["DELETE"]),
            Route(f"{prefix}/files/{{file_id}}/content", file_content, methods=["GET"]),
            Route(f"{prefix}/fine_tuning/jobs", create_job, methods=["POST"]),
            Route(f"{prefix}/fine_tuning/jobs", list_jobs, methods=["GET"]),
            Route(f"{prefix}/fine_tuning/jobs/{{job_id}}", get_job, methods=["GET"]),
            Route(f"{prefix}/fine_tuning/jobs/{{job_id}}/cancel", cancel_job, methods=["POST"]),
            Route(f"{prefix}/fine_tuning/jobs/{{job_id}}/pause", pause_job, methods=["POST"]),
            Route(f"{prefix}/fine_tuning/jobs/{{job_id}}/resume", resume_job, methods=["POST"]),
            Route(f"{prefix}/fine_tuning/jobs/{{job_id}}/events", list_events, methods=["GET"]),
            Route(f"{prefix}/fine_tuning/jobs/{{job_id}}/checkpoints", list_checkpoints, methods=["GET"]),
            Route(f"{prefix}/models", list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", get_model, methods=["GET"]),
        ]
    return out

