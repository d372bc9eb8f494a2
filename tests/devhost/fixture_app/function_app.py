"""A small app for devhost's tests (not the product): every handler records each invocation it gets.

Records are JSON files in the directory named by the RECORD_DIR setting. Handlers fail on request: a blob or
message whose content starts with ``fail``, the ``boom`` route. Names come from settings (``%SETTING%``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def record(function: str, **fields: Any) -> None:
    folder = os.environ["RECORD_DIR"]
    data = {"function": function, "pid": os.getpid(), **fields}
    tmp = os.path.join(folder, f".{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, os.path.join(folder, f"{function}-{uuid.uuid4().hex}.json"))


@app.blob_trigger(arg_name="client", path="%BLOB_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def blob_client_fn(client: blob.BlobClient) -> None:
    content = client.download_blob().readall().decode()
    record("blob_client_fn", name=client.blob_name, container=client.container_name, content=content,
           type=f"{type(client).__module__}.{type(client).__name__}", etag=client.get_blob_properties().etag)
    if content.startswith("fail"):
        raise RuntimeError(f"told to fail on {client.blob_name}")


@app.blob_trigger(arg_name="stream", path="%STREAM_CONTAINER%/in/{name}.txt", connection="AzureWebJobsStorage",
                  source=func.BlobSource.EVENT_GRID)
def blob_stream_fn(stream: func.InputStream, context: func.Context) -> None:
    data = stream.read()
    record("blob_stream_fn", name=stream.name, uri=stream.uri, length=stream.length, content=data.decode(),
           function_name=context.function_name, metadata=stream.metadata)


@app.queue_trigger(arg_name="msg", queue_name="%QUEUE_NAME%", connection="AzureWebJobsStorage")
def queue_fn(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    record("queue_fn", id=msg.id, body=body, dequeue_count=msg.dequeue_count,
           inserted=str(msg.insertion_time), expires=str(msg.expiration_time), has_pop_receipt=bool(msg.pop_receipt))
    if body.startswith("slow"):
        time.sleep(float(body.split(":", 1)[1]))
        record("queue_fn_slow_done", id=msg.id, dequeue_count=msg.dequeue_count)
    if body.startswith("fail"):
        raise ValueError(f"told to fail on {body}")


@app.timer_trigger(arg_name="timer", schedule="%TIMER_SCHEDULE%", run_on_startup=True)
def timer_fn(timer: func.TimerRequest) -> None:
    record("timer_fn", past_due=timer.past_due, next=timer.schedule_status.get("Next"))


@app.timer_trigger(arg_name="timer", schedule="0 0 3 * * *")
async def daily_fn(timer: func.TimerRequest) -> None:
    record("daily_fn", past_due=timer.past_due, next=timer.schedule_status.get("Next"))


@app.route(route="items/{id:int}", methods=["GET", "POST"])
def item_fn(req: func.HttpRequest) -> func.HttpResponse:
    body = {"id": req.route_params.get("id"), "method": req.method, "q": req.params.get("q"),
            "body": req.get_body().decode()}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.route(route="hello", auth_level=func.AuthLevel.ANONYMOUS)
async def hello_fn(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.params.get('name', 'world')}", status_code=201)


@app.route(route="ops/ping", auth_level=func.AuthLevel.ADMIN)
def admin_fn(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom_fn(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom on purpose")
