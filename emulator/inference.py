"""Inference on a deployment: `/openai/deployments/{name}/chat/completions` and `/completions` (and v1).

A fine-tuned deployment answers with the assistant reply of the training example whose user turn shares the
most words with the request's last user turn (ties: the earlier example). A continuously fine-tuned model also
knows its parent's examples. A base-model deployment gives a generic answer, so that a fine-tuned model beats
its base model on data like its training set. Usage counts tokens with tiktoken.
"""
from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import datafiles
from .catalog import base_model, count_tokens
from .dataplane import context, emu, json_body
from .errors import DEPLOYMENT_NOT_FOUND, ApiError, invalid
from .state import State

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _examples(state: State, job: dict[str, Any] | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while job is not None:
        record = state.files.get(job["training_file"])
        content = state.contents.get(job["training_file"])
        if record is not None and content is not None:
            fmt = record["validation"]["format"]
            pairs += [datafiles.prompt_and_answer(e, fmt) for e in datafiles.read_examples(content)]
        job = state.jobs.get(job["parent_model"]) if job.get("parent_model") else None
    return pairs


def answer(state: State, job: dict[str, Any] | None, question: str) -> str:
    if job is None:
        return f"As a general-purpose assistant, here is a brief answer to your question: {question[:200]}"
    asked = _words(question)
    best, best_score = "", -1.0
    for prompt, reply in _examples(state, job):
        words = _words(prompt)
        union = asked | words
        score = len(asked & words) / len(union) if union else 0.0
        if score > best_score:
            best, best_score = reply, score
    return best


def _deployment(state: State, name: str) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
    state.prune_deleted()
    dep = state.deployments.get(name)
    if dep is None or state.deployment_state(dep) != "Succeeded":
        raise ApiError(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
    resolved = state.resolve_model(dep["model"]["name"])
    job = resolved["job"] if resolved else None
    model = base_model(job["base_model"]) if job else (resolved or {}).get("model")
    return dep, job, model


def _completion_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("|".join(parts).encode()).hexdigest()[:29]


async def _chat(request: Request, name: str) -> Response:
    state = emu(request)
    body = await json_body(request)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array.", "messages")
    if body.get("stream"):
        raise invalid("Streaming is not supported by the emulator.", "stream")
    dep, job, model = _deployment(state, name)
    if model is not None and not model.chat:
        raise ApiError(400, "OperationNotSupported",
                       "The chatCompletion operation does not work with the specified model. Please choose "
                       "different model and try again.")
    users = [datafiles.content_text(m.get("content")) for m in messages if isinstance(m, dict)
             and m.get("role") == "user"]
    question = users[-1] if users else ""
    reply = answer(state, job, question)
    encoding = model.encoding if model else "o200k_base"
    prompt_tokens = datafiles.messages_tokens([m for m in messages if isinstance(m, dict)], encoding)
    completion_tokens = count_tokens(reply, encoding)
    return JSONResponse({
        "id": _completion_id("chatcmpl-", name, question, str(time.time_ns())),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": dep["model"]["name"],
        "system_fingerprint": "fp_emulator",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


async def _completion(request: Request, name: str) -> Response:
    state = emu(request)
    body = await json_body(request)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else None
    if not isinstance(prompt, str):
        raise invalid("'prompt' must be a string.", "prompt")
    dep, job, model = _deployment(state, name)
    reply = answer(state, job, prompt)
    encoding = model.encoding if model else "cl100k_base"
    prompt_tokens = count_tokens(prompt, encoding)
    completion_tokens = count_tokens(reply, encoding)
    return JSONResponse({
        "id": _completion_id("cmpl-", name, prompt, str(time.time_ns())),
        "object": "text_completion",
        "created": int(time.time()),
        "model": dep["model"]["name"],
        "choices": [{"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


async def chat_completions(request: Request) -> Response:
    context(request)
    return await _chat(request, request.path_params["deployment"])


async def completions(request: Request) -> Response:
    context(request)
    return await _completion(request, request.path_params["deployment"])


async def _v1_name(request: Request) -> str:
    body = await json_body(request)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise invalid("'model' (the deployment name) is required.", "model")
    return name


async def v1_chat_completions(request: Request) -> Response:
    context(request)
    return await _chat(request, await _v1_name(request))


async def v1_completions(request: Request) -> Response:
    context(request)
    return await _completion(request, await _v1_name(request))


def routes() -> list[Route]:
    return [
        Route("/openai/deployments/{deployment}/chat/completions", chat_completions, methods=["POST"]),
        Route("/openai/deployments/{deployment}/completions", completions, methods=["POST"]),
        Route("/openai/v1/chat/completions", v1_chat_completions, methods=["POST"]),
        Route("/openai/v1/completions", v1_completions, methods=["POST"]),
    ]
