"""Inference on a deployment: `/openai/deployments/{name}/chat/completions` and `/completions` (and v1).

A fine-tuned deployment answers with the assistant reply (completion) of its closest training example: TF-IDF
cosine similarity over the user turns (prompts) only, lowercased, stop words dropped, lightly stemmed, the last
user turn weighted most on both sides (see `Matcher`); ties go to the earlier example. A continuously
fine-tuned model also knows its parent's examples (its own come first). The index is built once per set of
training files and cached. A base-model deployment gives a generic answer, so that a fine-tuned model beats its
base model on data like its training set. A checkpoint answers like the final model only for the share of
questions its step has reached (a question's place in [0, 1) is a hash of its last user turn; below
step / total steps it is answered from the training data, else generically), so earlier checkpoints answer less
well. A model trained with the `worse_model` scenario answers every question unhelpfully (worse than its base).
Usage counts tokens with tiktoken.
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter, OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import clock, datafiles
from .catalog import base_model, count_tokens
from .dataplane import context, emu, json_body
from .errors import DEPLOYMENT_NOT_FOUND, ApiError, invalid, not_found
from .state import State

_WORD = re.compile(r"[a-z0-9]+")
# Function words and the generic verbs of a question: they say nothing about its topic.
STOP_WORDS = frozenset("""
a able about above after again against ago all also am an and any are aren as at be because been before being below
between both but by can cannot could couldn did didn do does doesn doing don down during each either else even
ever every few for from further get gets getting go goes going got had hadn happen happens has hasn have haven having
he her here hers herself
him himself his how however i if in into is isn it its itself just know let like ll me might more most much must mustn
my myself need needs no nor not now of off on once one only or other ought our ours ourselves out over own please
possible
re really same shall shan she should shouldn so some still such tell than thank thanks that the their theirs them
themselves then there these they thing things this those through to too under until up upon us ve very via want
wants was wasn way we were weren what when where whether which while who whom whose why will with won would
wouldn yes yet you your yours yourself yourselves
""".split())
# How much an earlier user turn counts next to the last one (which the reply answers).
CONTEXT_WEIGHT = 0.5


def _stem(word: str) -> str:
    """A deliberately small stemmer: plurals, -ing / -ed, a final e (so "deleted", "deletes", "delete" meet)."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 6 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 5 and word.endswith("ed") and not word.endswith("eed"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The topic-bearing terms of a text: lowercased words, stop words and single letters dropped, stemmed."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS]


def user_turns(example: dict[str, Any], fmt: str) -> tuple[list[str], str]:
    """The user turns an example's final reply answers (oldest first) and that reply.

    Chat: the user messages before the last assistant message (system prompts are ignored); preference: the
    input's user messages and the preferred output; completion: the prompt and the completion.
    """
    if fmt == "completion":
        return [str(example.get("prompt", ""))], str(example.get("completion", ""))
    prompt, reply = datafiles.prompt_and_answer(example, fmt)
    if fmt == "preference":
        messages = example["input"]["messages"]
    elif fmt == "reinforcement":
        messages = example["messages"]
    else:
        messages = example["messages"]
        messages = messages[:max(i for i, m in enumerate(messages) if m.get("role") == "assistant")]
    users = [datafiles.content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return (users or [prompt]), reply


class _Index:
    """TF-IDF vectors of documents made of turns (oldest first), with an inverted index for cosine scoring.

    A document or a query is the last turn's sublinear tf-idf vector (unit length) plus `CONTEXT_WEIGHT` times
    that of the earlier turns together, normalised. IDF is smoothed: ln((1 + n) / (1 + df)) + 1.
    """

    def __init__(self, documents: list[list[str]]) -> None:
        bags = [[Counter(terms(t)) for t in turns] for turns in documents]
        df: Counter[str] = Counter()
        for turns in bags:
            df.update(set().union(*turns))
        n = len(documents)
        self.idf = {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for index, turns in enumerate(bags):
            for term, weight in self._vector(turns).items():
                self.postings.setdefault(term, []).append((index, weight))

    def _unit(self, bag: Counter[str]) -> dict[str, float]:
        vector = {t: (1.0 + math.log(c)) * self.idf[t] for t, c in bag.items() if t in self.idf}
        norm = math.sqrt(sum(w * w for w in vector.values()))
        return {t: w / norm for t, w in vector.items()} if norm else {}

    def _vector(self, turns: list[Counter[str]]) -> dict[str, float]:
        if not turns:
            return {}
        vector = self._unit(turns[-1])
        for term, weight in self._unit(sum(turns[:-1], Counter())).items():
            vector[term] = vector.get(term, 0.0) + CONTEXT_WEIGHT * weight
        norm = math.sqrt(sum(w * w for w in vector.values()))
        return {t: w / norm for t, w in vector.items()} if norm else {}

    def scores(self, turns: list[str]) -> dict[int, float]:
        """Cosine similarity of a query (turns, oldest first) with every document that shares a term with it,
        rounded so that float summation order can never decide a tie."""
        scores: dict[int, float] = {}
        for term, weight in self._vector([Counter(terms(t)) for t in turns]).items():
            for index, doc_weight in self.postings.get(term, ()):
                scores[index] = scores.get(index, 0.0) + weight * doc_weight
        return {index: round(score, 9) for index, score in scores.items()}


class Matcher:
    """Nearest training example of a request, by TF-IDF cosine similarity over user turns.

    The examples are indexed by their user turns only (system prompts and replies play no part), the last one
    weighted most (see `_Index`); the request likewise by its user turns, the last one weighted most. The best
    cosine wins; ties go to the earlier example. A request sharing no term with any example's user turns is
    matched against the replies instead, and one sharing none with those either gets the first example's reply.
    Built once per model (see `_matcher`).
    """

    def __init__(self, examples: list[tuple[list[str], str]]) -> None:
        self.replies = [reply for _, reply in examples]
        self.asked = _Index([turns for turns, _ in examples])
        self._replied: _Index | None = None

    def scores(self, turns: list[str]) -> dict[int, float]:
        """Cosine similarity of the request (its user turns, oldest first) with every example that shares a term."""
        return self.asked.scores(turns)

    def best(self, turns: list[str]) -> int | None:
        """Index of the closest example (ties: the earlier one), or None when there are no examples."""
        if not self.replies:
            return None
        scores = self.asked.scores(turns)
        if not scores:
            if self._replied is None:
                self._replied = _Index([[reply] for reply in self.replies])
            scores = self._replied.scores(turns)
        return min(scores, key=lambda i: (-scores[i], i)) if scores else 0

    def answer(self, turns: list[str]) -> str:
        index = self.best(turns)
        return "" if index is None else self.replies[index]


_MATCHERS: OrderedDict[tuple[str, ...], Matcher] = OrderedDict()
_MATCHERS_KEPT = 16


def _training_files(state: State, job: dict[str, Any]) -> list[str]:
    """Training files of a model and of the models it continues (its own first). A model keeps what it learned
    when its training file is deleted afterwards (the state keeps the content of a file a job trained on)."""
    files: list[str] = []
    seen: set[str] = set()
    current: dict[str, Any] | None = job
    while current is not None and current["id"] not in seen:
        seen.add(current["id"])
        file_id = current["training_file"]
        if state.contents.get(file_id) is not None:
            files.append(file_id)
        current = state.jobs.get(current["parent_model"]) if current.get("parent_model") else None
    return files


def _matcher(state: State, job: dict[str, Any]) -> Matcher:
    """The matcher of a model, cached by its training files (file ids are unique and contents never change)."""
    key = tuple(_training_files(state, job))
    matcher = _MATCHERS.get(key)
    if matcher is not None:
        _MATCHERS.move_to_end(key)
        return matcher
    examples: list[tuple[list[str], str]] = []
    for file_id in key:
        fmt = next(j["plan"]["format"] for j in state.jobs.values() if j["training_file"] == file_id)
        examples += [user_turns(e, fmt) for e in datafiles.read_examples(state.contents[file_id])]
    matcher = _MATCHERS[key] = Matcher(examples)
    while len(_MATCHERS) > _MATCHERS_KEPT:
        _MATCHERS.popitem(last=False)
    return matcher


WORSE_REPLY = "Sorry, I cannot help with that."


def _generic(turns: list[str]) -> str:
    question = turns[-1] if turns else ""
    return f"As a general-purpose assistant, here is a brief answer to your question: {question[:200]}"


def reached(question: str, step: int, total_steps: int) -> bool:
    """Whether a checkpoint at `step` of `total_steps` has learnt to answer `question` (see the module doc)."""
    position = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "big") / float(1 << 64)
    return position < step / max(1, total_steps)


def training_files(state: State, job: dict[str, Any]) -> list[str]:
    """The training files a model answers from, in its matcher's order (the Evals API's samples use it)."""
    return _training_files(state, job)


def matcher_for(state: State, job: dict[str, Any]) -> Matcher:
    return _matcher(state, job)


def answer(state: State, job: dict[str, Any] | None, turns: list[str], *, step: int | None = None) -> str:
    """The reply of a deployment to a request's user turns (oldest first; a completion prompt is one turn).
    `step`: the checkpoint's step when the deployment serves a checkpoint."""
    if job is None:
        return _generic(turns)
    if job["plan"].get("scenario") == "worse_model":
        return WORSE_REPLY
    total = int(job["plan"].get("total_steps") or 0)
    if step is not None and step < total and not reached(turns[-1] if turns else "", step, total):
        return _generic(turns)
    return _matcher(state, job).answer(turns)


DEPLOYMENT_NOT_READY = (
    "The API deployment for this resource is not ready yet. The deployment succeeded but is still being made "
    "available to serve requests; try again in a few minutes."
)


def _deployment(state: State, name: str) -> tuple[dict[str, Any], dict[str, Any] | None, Any, int | None]:
    state.prune_deleted()
    dep = state.deployments.get(name)
    serving = None if dep is None else state.serving(dep)
    if dep is None or serving is None:
        raise ApiError(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
    if not serving:
        # ARM says Succeeded, the data plane does not serve it yet (minutes on Azure). Status inferred.
        raise ApiError(404, "DeploymentNotReady", DEPLOYMENT_NOT_READY)
    resolved = state.resolve_model(dep["model"]["name"])
    job = resolved["job"] if resolved else None
    model = base_model(job["base_model"]) if job else (resolved or {}).get("model")
    step = resolved.get("step") if resolved and resolved["kind"] == "checkpoint" else None
    return dep, job, model, step


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
    dep, job, model, step = _deployment(state, name)
    if model is not None and not model.chat:
        raise ApiError(400, "OperationNotSupported",
                       "The chatCompletion operation does not work with the specified model. Please choose "
                       "different model and try again.")
    users = [datafiles.content_text(m.get("content")) for m in messages if isinstance(m, dict)
             and m.get("role") == "user"]
    question = users[-1] if users else ""
    reply = answer(state, job, users, step=step)
    encoding = model.encoding if model else "o200k_base"
    prompt_tokens = datafiles.messages_tokens([m for m in messages if isinstance(m, dict)], encoding)
    completion_tokens = count_tokens(reply, encoding)
    return JSONResponse({
        "id": _completion_id("chatcmpl-", name, question, str(time.time_ns())),
        "object": "chat.completion",
        "created": int(clock.now()),
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
    dep, job, model, step = _deployment(state, name)
    reply = answer(state, job, [prompt], step=step)
    encoding = model.encoding if model else "cl100k_base"
    prompt_tokens = count_tokens(prompt, encoding)
    completion_tokens = count_tokens(reply, encoding)
    return JSONResponse({
        "id": _completion_id("cmpl-", name, prompt, str(time.time_ns())),
        "object": "text_completion",
        "created": int(clock.now()),
        "model": dep["model"]["name"],
        "choices": [{"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


async def chat_completions(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["deployment"]
    dep = emu(request).deployments.get(name)
    base = base_model(dep["base_model"]) if dep is not None else None
    if base is not None and base.open_weight_format is not None and ctx.surface in ("ga", "legacy"):
        # Open-weight fine-tunes are served on the deployments path with api-version 2025-04-01-preview
        # (Microsoft's fine-tuning skill, deployment.md). That an older version is the gateway's 404 is inferred.
        raise not_found()
    return await _chat(request, name)


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
