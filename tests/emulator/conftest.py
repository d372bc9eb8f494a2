"""Shared helpers for the emulator conformance tests: training data, SDK clients, waiting loops."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from openai import AzureOpenAI

from tests.harness.emulator import EmulatorProcess

GA = "2024-10-21"
PREVIEW = "2025-04-01-preview"
LEGACY = "2023-05-15"
TOPICS = [
    ("volcano", "Volcanoes erupt when magma pressure breaks the crust."),
    ("penguin", "Penguins are flightless seabirds of the southern hemisphere."),
    ("bicycle", "A bicycle has two wheels and is powered by pedals."),
    ("saxophone", "The saxophone is a woodwind instrument made of brass."),
    ("glacier", "Glaciers are slow rivers of compacted ice."),
    ("espresso", "Espresso is coffee brewed by forcing hot water through fine grounds."),
    ("lighthouse", "A lighthouse guides ships with a rotating beam of light."),
    ("octopus", "An octopus has eight arms and three hearts."),
    ("telescope", "A telescope gathers light to magnify distant objects."),
    ("cactus", "Cacti store water in thick stems to survive deserts."),
    ("origami", "Origami is the Japanese art of folding paper."),
    ("thunder", "Thunder is the sound of air expanding around lightning."),
]


def chat_lines(n: int = 12, *, marker: str | None = None, system: bool = True) -> list[dict[str, Any]]:
    lines = []
    for i in range(n):
        topic, answer = TOPICS[i % len(TOPICS)]
        messages = [{"role": "system", "content": "You are a concise encyclopedia."}] if system else []
        question = f"Tell me one fact about the {topic}."
        if marker and i == 0:
            question += f" EMULATOR_SCENARIO:{marker}"
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append({"messages": messages})
    return lines


def jsonl(records: list[dict[str, Any]], *, bom: bool = False) -> bytes:
    text = "".join(json.dumps(r) + "\n" for r in records)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def chat_jsonl(n: int = 12, *, marker: str | None = None, bom: bool = False) -> bytes:
    return jsonl(chat_lines(n, marker=marker), bom=bom)


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 20, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value}")
        time.sleep(every)


def make_client(emulator: EmulatorProcess, api_version: str = GA, **kwargs: Any) -> AzureOpenAI:
    kwargs.setdefault("max_retries", 0)
    return AzureOpenAI(azure_endpoint=emulator.base_url, api_key=emulator.api_key, api_version=api_version,
                       **kwargs)


@pytest.fixture
def aoai(emulator: EmulatorProcess) -> AzureOpenAI:
    return make_client(emulator)


def upload(client: AzureOpenAI, content: bytes, name: str = "train.jsonl") -> Any:
    return client.files.create(file=(name, content, "application/jsonl"), purpose="fine-tune")


def wait_file(client: AzureOpenAI, file_id: str) -> Any:
    return wait_for(lambda: client.files.retrieve(file_id), lambda f: f.status in ("processed", "error"))


def processed_file(client: AzureOpenAI, content: bytes | None = None) -> str:
    uploaded = upload(client, content if content is not None else chat_jsonl())
    final = wait_file(client, uploaded.id)
    assert final.status == "processed", final
    return str(final.id)


TERMINAL = ("succeeded", "failed", "cancelled", "canceled")


def wait_job(client: AzureOpenAI, job_id: str, timeout: float = 30) -> Any:
    return wait_for(lambda: client.fine_tuning.jobs.retrieve(job_id), lambda j: j.status in TERMINAL, timeout)


def create_job(client: AzureOpenAI, training_file: str, **kwargs: Any) -> Any:
    """A job create as the GA body allows it (no trainingType: that is a preview-only field)."""
    kwargs.setdefault("model", "gpt-4o-mini-2024-07-18")
    return client.fine_tuning.jobs.create(training_file=training_file, **kwargs)


@pytest.fixture(scope="session")
def trained(emulator: EmulatorProcess) -> dict[str, Any]:
    """One succeeded job (with a validation file and a suffix), shared by the read-only tests."""
    client = make_client(emulator)
    train = processed_file(client, chat_jsonl(12))
    valid = processed_file(client, chat_jsonl(10))
    job = create_job(client, train, validation_file=valid, suffix="shared", seed=7,
                     hyperparameters={"n_epochs": 4, "batch_size": 2})
    final = wait_job(client, job.id)
    assert final.status == "succeeded", final
    return {"job": final, "training_file": train, "validation_file": valid}


ARM = "2024-10-01"


def arm_headers(emulator: EmulatorProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator.bearer_token}"}


def arm_put(emulator: EmulatorProcess, name: str, model: str, capacity: int = 1, **extra: Any) -> Any:
    import httpx

    body = {"sku": {"name": "Standard", "capacity": capacity},
            "properties": {"model": {"format": "OpenAI", "name": model, "version": "1", **extra}}}
    return httpx.put(emulator.arm_deployments_url(name), params={"api-version": ARM}, json=body,
                     headers=arm_headers(emulator))


def arm_get(emulator: EmulatorProcess, name: str) -> Any:
    import httpx

    return httpx.get(emulator.arm_deployments_url(name), params={"api-version": ARM}, headers=arm_headers(emulator))


def arm_delete(emulator: EmulatorProcess, name: str) -> Any:
    import httpx

    return httpx.delete(emulator.arm_deployments_url(name), params={"api-version": ARM},
                        headers=arm_headers(emulator))


def deploy(emulator: EmulatorProcess, name: str, model: str, capacity: int = 1) -> dict[str, Any]:
    """PUT a deployment and wait until it has left Accepted/Creating; returns the final deployment."""
    response = arm_put(emulator, name, model, capacity)
    assert response.status_code in (200, 201), response.text
    final: dict[str, Any] = wait_for(lambda: arm_get(emulator, name).json(),
                                     lambda d: d["properties"]["provisioningState"] not in ("Accepted", "Creating"))
    return final


@pytest.fixture
def deployments(emulator: EmulatorProcess) -> Any:
    """Names of deployments a test creates; each is deleted afterwards (the session emulator is shared)."""
    names: list[str] = []
    yield names
    for name in names:
        arm_delete(emulator, name)
