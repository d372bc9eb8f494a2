"""The Evals API: `/openai/evals`, eval runs with a `completions` data source, and their output items.

Paths and shapes follow the Azure OpenAI authoring reference (api-version 2025-04-01-preview; also served
under `/openai/v1`): `POST/GET /evals`, `GET/DELETE /evals/{id}`, `POST/GET /evals/{id}/runs`,
`GET/DELETE /evals/{id}/runs/{run_id}`, `GET /evals/{id}/runs/{run_id}/output_items`.

A run's samples are generated when it is created, by the deployment it names answering each item's messages
(the same inference as `/chat/completions`), and graded then (emulator/graders.py); its status is derived
from the emulator clock: `queued`, `in_progress`, then `completed` (or `failed`) after half a job's time.
A run naming a deployment that does not exist, or serving no model yet, ends `failed` with the reason.
Scenario `eval_run_failure` fails the next run.
"""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import clock, datafiles, graders, inference
from .catalog import count_tokens
from .config import PREVIEW_VERSIONS
from .dataplane import context, emu, json_body, listing, paginate
from .errors import ApiError, invalid, not_found
from .state import State


def _check_version(request: Request) -> None:
    ctx = context(request)
    if ctx.surface == "v1":
        return
    if ctx.version not in PREVIEW_VERSIONS:
        raise not_found()  # evals are a preview surface outside /openai/v1


def _eval_or_404(state: State, eval_id: str) -> dict[str, Any]:
    record = state.evals.get(eval_id)
    if record is None:
        raise ApiError(404, "notFound", f"Evaluation with ID {eval_id} not found.")
    return record


def _eval_view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("object", "id", "name", "data_source_config", "testing_criteria", "created_at",
                                   "metadata")}


async def create_eval(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    body = await json_body(request)
    config = body.get("data_source_config")
    if not isinstance(config, dict) or config.get("type") not in ("custom", "stored_completions"):
        raise invalid("data_source_config.type must be 'custom' or 'stored_completions'.", "data_source_config")
    criteria = body.get("testing_criteria")
    if not isinstance(criteria, list) or not criteria:
        raise invalid("testing_criteria must be a non-empty array.", "testing_criteria")
    try:
        checked = [graders.check(c, i) for i, c in enumerate(criteria)]
    except graders.GraderError as exc:
        raise invalid(str(exc), "testing_criteria") from None
    names = [c["name"] for c in checked]
    if len(set(names)) != len(names):
        raise invalid("testing_criteria names must be unique.", "testing_criteria")
    properties: dict[str, Any] = {"item": config.get("item_schema") or {"type": "object"}}
    required = ["item"]
    if config.get("include_sample_schema"):
        properties["sample"] = {"type": "object"}
        required.append("sample")
    schema = {"type": "object", "properties": properties, "required": required}
    record: dict[str, Any] = {
        "object": "eval",
        "id": f"eval_{uuid.uuid4().hex}",
        "name": str(body.get("name") or ""),
        "data_source_config": {"type": config["type"], "schema": schema},
        "testing_criteria": checked,
        "created_at": int(clock.now()),
        "metadata": body.get("metadata") or {},
    }
    state.evals[record["id"]] = record
    state.save()
    # The v1 spec's createEval answers 200 (its createEvalRun 201, as everywhere)
    return JSONResponse(_eval_view(record), status_code=200 if context(request).surface == "v1" else 201)


async def list_evals(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    items = sorted(state.evals.values(), key=lambda e: e["created_at"])
    if request.query_params.get("order", "asc") == "desc":
        items.reverse()
    page, more = paginate([_eval_view(e) for e in items], request, 20, 100)
    return listing(page, more)


async def get_eval(request: Request) -> Response:
    _check_version(request)
    return JSONResponse(_eval_view(_eval_or_404(emu(request), request.path_params["eval_id"])))


async def delete_eval(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    eval_id = request.path_params["eval_id"]
    _eval_or_404(state, eval_id)
    del state.evals[eval_id]
    for run_id in [r for r, run in state.eval_runs.items() if run["eval_id"] == eval_id]:
        del state.eval_runs[run_id]
    state.save()
    return JSONResponse({"object": "eval.deleted", "deleted": True, "eval_id": eval_id})


# ------------------------------------------------------------------------------------------------ runs
def _items(state: State, source: Any) -> list[dict[str, Any]]:
    if not isinstance(source, dict):
        raise invalid("data_source.source is required.", "data_source.source")
    if source.get("type") == "file_content":
        rows = source.get("content")
        if not isinstance(rows, list):
            raise invalid("data_source.source.content must be an array.", "data_source.source.content")
    elif source.get("type") == "file_id":
        file_id = source.get("id")
        record = state.files.get(file_id) if isinstance(file_id, str) else None
        if record is None or not isinstance(file_id, str):
            raise ApiError(404, "notFound", f"File with id '{file_id}' was not found.")
        if record["purpose"] != "evals":
            raise invalid(f"The file '{file_id}' has purpose '{record['purpose']}'; eval data needs 'evals'.",
                          "data_source.source.id")
        if state.file_status(record) != "processed" or state.contents.get(file_id) is None:
            raise invalid(f"The file '{file_id}' is not processed yet.", "data_source.source.id")
        rows = datafiles.read_examples(state.contents[file_id])
    else:
        raise invalid("data_source.source.type must be 'file_id' or 'file_content'.", "data_source.source.type")
    return [r["item"] if isinstance(r, dict) and isinstance(r.get("item"), dict) else r for r in rows]


def _messages(input_messages: Any, item: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(input_messages, dict):
        raise invalid("data_source.input_messages is required.", "data_source.input_messages")
    if input_messages.get("type") == "item_reference":
        ref = str(input_messages.get("item_reference", ""))
        found = graders.lookup(ref, {"item": item})
        return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else []
    if input_messages.get("type") == "template":
        template = input_messages.get("template")
        if not isinstance(template, list):
            raise invalid("data_source.input_messages.template must be an array.", "data_source.input_messages")
        return [{"role": m.get("role", "user"), "content": graders.render(m.get("content", ""), {"item": item})}
                for m in template if isinstance(m, dict)]
    raise invalid("data_source.input_messages.type must be 'template' or 'item_reference'.",
                  "data_source.input_messages.type")


def _deployment_model(state: State, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """(what the deployment serves, why it cannot answer)."""
    state.prune_deleted()
    dep = state.deployments.get(name)
    if dep is None or state.deployment_state(dep) != "Succeeded":
        return None, f"The deployment '{name}' does not exist or is not ready."
    resolved = state.resolve_model(dep["model"]["name"])
    if resolved is None:
        return None, f"The model of deployment '{name}' is no longer available."
    return resolved, None


def _tool_calls(state: State, resolved: dict[str, Any], users: list[str], step: int | None,
                cache: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The tool calls of the training example a fine-tuned model answers with (none for a base model, a
    `worse_model`, or a checkpoint that has not reached the question): a model that learnt to call a tool calls it."""
    job = resolved["job"]
    if job is None or job["plan"].get("scenario") == "worse_model":
        return []
    total = int(job["plan"].get("total_steps") or 0)
    if step is not None and step < total and not inference.reached(users[-1] if users else "", step, total):
        return []
    if job["id"] not in cache:
        examples: list[dict[str, Any]] = []
        for file_id in inference.training_files(state, job):  # the matcher's own order
            examples += datafiles.read_examples(state.contents[file_id])
        cache[job["id"]] = examples
    index = inference.matcher_for(state, job).best(users)
    examples = cache[job["id"]]
    if index is None or index >= len(examples):
        return []
    messages = examples[index].get("messages") or []
    replies = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    return list(replies[-1].get("tool_calls") or []) if replies else []


def _sample(state: State, resolved: dict[str, Any], model: str, messages: list[dict[str, Any]],
            cache: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    users = [datafiles.content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    step = resolved.get("step") if resolved["kind"] == "checkpoint" else None
    reply = inference.answer(state, resolved["job"], users, step=step)
    tools = _tool_calls(state, resolved, users, step, cache)
    encoding = "o200k_base"
    prompt_tokens = datafiles.messages_tokens(messages, encoding)
    completion_tokens = count_tokens(reply, encoding)
    return {
        "input": messages,
        "output": [{"role": "assistant", "content": reply, **({"tool_calls": tools} if tools else {})}],
        "output_text": reply,
        "output_tools": tools,
        "finish_reason": "stop",
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens, "cached_tokens": 0},
        "error": None,
        "temperature": 1.0,
        "max_completion_tokens": None,
        "top_p": 1.0,
        "seed": 0,
    }


async def create_run(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    record = _eval_or_404(state, request.path_params["eval_id"])
    body = await json_body(request)
    source = body.get("data_source")
    if not isinstance(source, dict) or source.get("type") != "completions":
        raise invalid("data_source.type must be 'completions'.", "data_source.type")
    model = source.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("data_source.model (a deployment name) is required.", "data_source.model")
    items = _items(state, source.get("source"))
    now = clock.now()
    run_id = f"evalrun_{uuid.uuid4().hex}"
    resolved, problem = _deployment_model(state, model)
    scenario = state.take_scenario("eval_run")
    if scenario is not None:
        problem = "The evaluation run failed (scenario eval_run_failure)."
    outputs: list[dict[str, Any]] = []
    if problem is None:
        assert resolved is not None

        def judge(name: str) -> bool:
            return _deployment_model(state, name)[1] is None

        cache: dict[str, list[dict[str, Any]]] = {}
        for index, item in enumerate(items):
            messages = _messages(source.get("input_messages"), item)
            sample = _sample(state, resolved, model, messages, cache)
            results = [graders.grade(c, item, sample, judge) for c in record["testing_criteria"]]
            errored = any(r.get("error") for r in results)
            outputs.append({
                "object": "eval.run.output_item",
                "id": f"outputitem_{uuid.uuid4().hex}",
                "run_id": run_id,
                "eval_id": record["id"],
                "created_at": int(now),
                "status": "error" if errored else ("pass" if all(r["passed"] for r in results) else "fail"),
                "datasource_item_id": index,
                "datasource_item": item,
                "results": results,
                "sample": sample,
            })
    run = {
        "object": "eval.run",
        "id": run_id,
        "eval_id": record["id"],
        "name": str(body.get("name") or ""),
        "model": model,
        "data_source": source,
        "metadata": body.get("metadata") or {},
        "created_at": int(now),
        "started_at": now + min(0.2, state.config.scaled(state.config.job_seconds) / 10),
        "ready_at": now + state.config.scaled(state.config.job_seconds) / 2,
        "error": None if problem is None else {"code": "EvalRunFailed", "message": problem},
        "outputs": outputs,
    }
    state.eval_runs[run_id] = run
    state.save()
    return JSONResponse(_run_view(run), status_code=201)


def run_status(run: dict[str, Any], now: float | None = None) -> str:
    now = clock.now() if now is None else now
    if now < run["started_at"]:
        return "queued"
    if now < run["ready_at"]:
        return "in_progress"
    return "failed" if run["error"] else "completed"


def _run_view(run: dict[str, Any]) -> dict[str, Any]:
    status = run_status(run)
    view: dict[str, Any] = {
        "object": "eval.run",
        "id": run["id"],
        "eval_id": run["eval_id"],
        "name": run["name"],
        "model": run["model"],
        "status": status,
        "created_at": run["created_at"],
        "data_source": run["data_source"],
        "metadata": run["metadata"],
        "report_url": f"https://ai.azure.com/resource/evaluation/{run['eval_id']}/{run['id']}",
        "error": run["error"] if status == "failed" else None,
        "result_counts": {"total": 0, "errored": 0, "failed": 0, "passed": 0},
        "per_model_usage": [],
        "per_testing_criteria_results": [],
    }
    if status == "completed":
        outputs = run["outputs"]
        view["result_counts"] = {
            "total": len(outputs),
            "errored": sum(1 for o in outputs if o["status"] == "error"),
            "failed": sum(1 for o in outputs if o["status"] == "fail"),
            "passed": sum(1 for o in outputs if o["status"] == "pass"),
        }
        names = [r["name"] for r in outputs[0]["results"]] if outputs else []
        view["per_testing_criteria_results"] = [
            {"testing_criteria": name,
             "passed": sum(1 for o in outputs for r in o["results"] if r["name"] == name and r["passed"]),
             "failed": sum(1 for o in outputs for r in o["results"] if r["name"] == name and not r["passed"])}
            for name in names
        ]
        usage = [o["sample"]["usage"] for o in outputs]
        view["per_model_usage"] = [{
            "model_name": run["model"], "invocation_count": len(usage),
            "prompt_tokens": sum(u["prompt_tokens"] for u in usage),
            "completion_tokens": sum(u["completion_tokens"] for u in usage),
            "total_tokens": sum(u["total_tokens"] for u in usage), "cached_tokens": 0,
        }]
    return view


def _run_or_404(state: State, eval_id: str, run_id: str) -> dict[str, Any]:
    run = state.eval_runs.get(run_id)
    if run is None or run["eval_id"] != eval_id:
        raise ApiError(404, "notFound", f"Evaluation run with ID {run_id} not found.")
    return run


async def list_runs(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    eval_id = request.path_params["eval_id"]
    _eval_or_404(state, eval_id)
    runs = sorted((r for r in state.eval_runs.values() if r["eval_id"] == eval_id), key=lambda r: r["created_at"])
    page, more = paginate([_run_view(r) for r in runs], request, 20, 100)
    return listing(page, more)


async def get_run(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    return JSONResponse(_run_view(_run_or_404(state, request.path_params["eval_id"], request.path_params["run_id"])))


async def delete_run(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    run = _run_or_404(state, request.path_params["eval_id"], request.path_params["run_id"])
    del state.eval_runs[run["id"]]
    state.save()
    return JSONResponse({"object": "eval.run.deleted", "deleted": True, "run_id": run["id"]})


async def list_output_items(request: Request) -> Response:
    _check_version(request)
    state = emu(request)
    run = _run_or_404(state, request.path_params["eval_id"], request.path_params["run_id"])
    outputs = run["outputs"] if run_status(run) == "completed" else []
    wanted = request.query_params.get("status")
    if wanted in ("pass", "fail"):
        outputs = [o for o in outputs if o["status"] == wanted]
    page, more = paginate(outputs, request, 20, 100)
    return listing(page, more)


def routes() -> list[Route]:
    out = []
    for prefix in ("/openai", "/openai/v1"):
        out += [
            Route(f"{prefix}/evals", create_eval, methods=["POST"]),
            Route(f"{prefix}/evals", list_evals, methods=["GET"]),
            Route(f"{prefix}/evals/{{eval_id}}", get_eval, methods=["GET"]),
            Route(f"{prefix}/evals/{{eval_id}}", delete_eval, methods=["DELETE"]),
            Route(f"{prefix}/evals/{{eval_id}}/runs", create_run, methods=["POST"]),
            Route(f"{prefix}/evals/{{eval_id}}/runs", list_runs, methods=["GET"]),
            Route(f"{prefix}/evals/{{eval_id}}/runs/{{run_id}}", get_run, methods=["GET"]),
            Route(f"{prefix}/evals/{{eval_id}}/runs/{{run_id}}", delete_run, methods=["DELETE"]),
            Route(f"{prefix}/evals/{{eval_id}}/runs/{{run_id}}/output_items", list_output_items, methods=["GET"]),
        ]
    return out

