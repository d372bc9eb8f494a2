"""The Uploads API of the v1 surface: a large file in parts, `/openai/v1/uploads`.

Paths and shapes: the Foundry REST reference (learn.microsoft.com/azure/foundry/reference/rest/uploads-create-upload,
-add-upload-part, -complete-upload) and OpenAI's Uploads API, which it follows; Azure's `azure_block_id` on a
part is from the 2025-04-01-preview example `upload_file_part.json`.

- `POST /uploads` `{filename, purpose, bytes, mime_type, expires_after?}` -> 200 upload, `status: pending`,
  `expires_at` one hour on (or `expires_after.seconds`, 3600..2592000); purposes assistants, batch, fine-tune,
  vision, evals (the reference's enum, plus evals as on `/files`).
- `POST /uploads/{id}/parts` multipart `data` -> 200 `upload.part` (`id`, `upload_id`, `azure_block_id`); a part
  above 64 MB is refused (400), as is a part for an upload that is not pending (400) or has expired (400).
- `POST /uploads/{id}/complete` `{part_ids, md5?}` -> 200 upload `completed` with `file`: the parts in the order
  named (a part may be named by its `id` or its `azure_block_id`, as Azure's example does); the total must equal
  `bytes` and an `md5` given must match, else 400. The file then goes through the same checks as `POST /files`
  (pending, running, processed or error), and counts towards the resource's file limits from then on.
- `POST /uploads/{id}/cancel` -> 200 `cancelled`; a completed upload cannot be cancelled (400).

There is no `GET /uploads/{id}` (the reference has none). Uploads live in memory only: one in flight when the
emulator restarts is gone, as a file import in flight ends in error.
"""
from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import clock, limits
from .dataplane import context, emu, json_body
from .errors import ApiError, invalid, not_found
from .state import State

UPLOAD_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "evals"}
MAX_PART_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_BYTES = 8 * 1024 * 1024 * 1024
DEFAULT_EXPIRY_SECONDS = 3600


def _v1_only(request: Request) -> State:
    if context(request).surface != "v1":
        raise not_found()
    return emu(request)


def _upload_or_404(state: State, upload_id: str) -> dict[str, Any]:
    upload = state.uploads.get(upload_id)
    if upload is None:
        raise ApiError(404, "notFound", f"Upload with id '{upload_id}' was not found.")
    return upload


def _status(upload: dict[str, Any]) -> str:
    if upload["status"] == "pending" and clock.now() >= upload["expires_at"]:
        return "expired"
    return str(upload["status"])


def _view(state: State, upload: dict[str, Any]) -> dict[str, Any]:
    file_record = state.files.get(upload["file_id"]) if upload["file_id"] else None
    return {
        "object": "upload",
        "id": upload["id"],
        "bytes": upload["bytes"],
        "created_at": int(upload["created_at"]),
        "expires_at": int(upload["expires_at"]),
        "filename": upload["filename"],
        "purpose": upload["purpose"],
        "status": _status(upload),
        "file": state.file_view(file_record) if file_record is not None else None,
    }


def _pending(upload: dict[str, Any], verb: str) -> None:
    status = _status(upload)
    if status != "pending":
        raise invalid(f"The upload '{upload['id']}' is {status}; only a pending upload can be {verb}.", "upload_id")


async def create_upload(request: Request) -> Response:
    state = _v1_only(request)
    body = await json_body(request)
    for key in ("filename", "purpose", "mime_type"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise invalid(f"The '{key}' field is required.", key)
    if body["purpose"] not in UPLOAD_PURPOSES:
        raise invalid(f"The purpose '{body['purpose']}' is not supported for uploads.", "purpose")
    size = body.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_UPLOAD_BYTES:
        raise invalid(f"bytes must be an integer from 1 to {MAX_UPLOAD_BYTES} (8 GB).", "bytes")
    seconds = DEFAULT_EXPIRY_SECONDS
    expires_after = body.get("expires_after")
    if expires_after is not None:
        if not isinstance(expires_after, dict) or expires_after.get("anchor") != "created_at":
            raise invalid("expires_after.anchor must be 'created_at'.", "expires_after.anchor")
        given = expires_after.get("seconds")
        if not isinstance(given, int) or not 3600 <= given <= 2_592_000:
            raise invalid("expires_after.seconds must be between 3600 (1 hour) and 2592000 (30 days).",
                          "expires_after.seconds")
        seconds = given
    now = clock.now()
    upload = {
        "id": f"upload_{uuid.uuid4().hex}",
        "created_at": now,
        "expires_at": now + seconds,
        "filename": body["filename"],
        "purpose": body["purpose"],
        "bytes": size,
        "mime_type": body["mime_type"],
        "status": "pending",
        "parts": {},
        "file_id": None,
    }
    state.uploads[upload["id"]] = upload
    return JSONResponse(_view(state, upload))


async def add_part(request: Request) -> Response:
    state = _v1_only(request)
    upload = _upload_or_404(state, request.path_params["upload_id"])
    _pending(upload, "added to")
    try:
        form = await request.form(max_part_size=MAX_PART_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 - any multipart parse failure (a part too large included) is a 400
        raise invalid(f"The request is not a valid multipart/form-data body with a part of at most 64 MB ({exc}).",
                      "data") from exc
    data = form.get("data")
    if data is None or isinstance(data, str):
        raise invalid("The 'data' field (the part's bytes) is required.", "data")
    content = await data.read()
    if len(content) > MAX_PART_BYTES:
        raise invalid(f"A part is at most {MAX_PART_BYTES} bytes (64 MB); this one is {len(content)}.", "data")
    part_id = f"part_{uuid.uuid4().hex}"
    block_id = base64.b64encode(uuid.uuid4().bytes).decode()
    upload["parts"][part_id] = {"block_id": block_id, "content": content}
    return JSONResponse({"object": "upload.part", "id": part_id, "created_at": int(clock.now()),
                         "upload_id": upload["id"], "azure_block_id": block_id})


async def complete_upload(request: Request) -> Response:
    state = _v1_only(request)
    upload = _upload_or_404(state, request.path_params["upload_id"])
    _pending(upload, "completed")
    body = await json_body(request)
    part_ids = body.get("part_ids")
    if not isinstance(part_ids, list) or not part_ids or not all(isinstance(p, str) for p in part_ids):
        raise invalid("part_ids must be a non-empty array of part ids.", "part_ids")
    by_block = {p["block_id"]: pid for pid, p in upload["parts"].items()}
    chunks = []
    for given in part_ids:
        part_id = given if given in upload["parts"] else by_block.get(given)
        if part_id is None:
            raise invalid(f"The part '{given}' is not a part of upload '{upload['id']}'.", "part_ids")
        chunks.append(upload["parts"][part_id]["content"])
    content = b"".join(chunks)
    if len(content) != upload["bytes"]:
        raise invalid(f"The parts hold {len(content)} bytes; the upload was created for {upload['bytes']}.",
                      "part_ids")
    md5 = body.get("md5")
    if md5 is not None and md5 != hashlib.md5(content).hexdigest():  # noqa: S324 - the API's checksum, not security
        raise invalid("The md5 checksum does not match the bytes uploaded.", "md5")
    limits.check_file_room(state, upload["purpose"], len(content))
    record = state.add_file(upload["filename"], upload["purpose"], content, source="upload")
    limits.note_peaks(state)
    upload.update(status="completed", file_id=record["id"], parts={})
    return JSONResponse(_view(state, upload))


async def cancel_upload(request: Request) -> Response:
    state = _v1_only(request)
    upload = _upload_or_404(state, request.path_params["upload_id"])
    _pending(upload, "cancelled")
    upload.update(status="cancelled", parts={})
    return JSONResponse(_view(state, upload))


def routes() -> list[Route]:
    return [
        Route("/openai/v1/uploads", create_upload, methods=["POST"]),
        Route("/openai/v1/uploads/{upload_id}/parts", add_part, methods=["POST"]),
        Route("/openai/v1/uploads/{upload_id}/complete", complete_upload, methods=["POST"]),
        Route("/openai/v1/uploads/{upload_id}/cancel", cancel_upload, methods=["POST"]),
    ]
