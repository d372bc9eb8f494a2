"""Helpers for the shared.aoai unit tests: a scripted ``httpx.MockTransport`` and a recording sleep."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.aoai import AzureOpenAIClient, DeploymentsClient, RetryTransport

ENDPOINT = "https://unit.openai.azure.com"
API_KEY = "unit-test-api-key-0123456789abcdef"
SAS_URL = "https://acct.blob.core.windows.net/c/train.jsonl?sv=2024-08-04&se=2030-01-01&sp=r&sig=SECRETSIG%2Babc%3D"

Step = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport handler answering from a list of steps (responses, exceptions or callables).

    ``requests`` records what was sent; when the steps run out the last one is repeated.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.headers: list[httpx.Headers] = []  # snapshots: an auth flow may mutate a request it resends

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.headers.append(httpx.Headers(request.headers))
        request.read()
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        # fresh copy each time: a Response can only be consumed once
        return httpx.Response(step.status_code, headers=step.headers, content=step.content)

    @property
    def count(self) -> int:
        return len(self.requests)


def jresp(status: int, body: Any = None, **headers: str) -> httpx.Response:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    content = b"" if body is None else json.dumps(body).encode()
    if body is not None:
        hdrs.setdefault("content-type", "application/json")
    return httpx.Response(status, headers=hdrs, content=content)


def err(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return jresp(status, {"error": {"code": code, "message": message}}, **headers)


class Sleeps(list[float]):
    """A recording ``sleep``."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(sleeps: Sleeps) -> Callable[..., tuple[AzureOpenAIClient, Script]]:
    def factory(*steps: Step, max_retries: int = 3, **kwargs: Any) -> tuple[AzureOpenAIClient, Script]:
        script = Script(*steps)
        transport = RetryTransport(httpx.MockTransport(script), max_retries=max_retries, sleep=sleeps, rng=lambda: 0.0)
        kwargs.setdefault("api_key", API_KEY)
        return AzureOpenAIClient(ENDPOINT, transport=transport, **kwargs), script

    return factory


@pytest.fixture
def make_arm(sleeps: Sleeps) -> Callable[..., tuple[DeploymentsClient, Script]]:
    def factory(*steps: Step, **kwargs: Any) -> tuple[DeploymentsClient, Script]:
        script = Script(*steps)
        transport = RetryTransport(httpx.MockTransport(script), max_retries=3, sleep=sleeps, rng=lambda: 0.0)
        kwargs.setdefault("bearer_token", "arm-token-xyz")
        kwargs.setdefault("sleep", sleeps)
        client = DeploymentsClient(
            "https://management.unit",
            subscription_id="sub",
            resource_group="rg",
            account_name="acct",
            transport=transport,
            **kwargs,
        )
        return client, script

    return factory
