"""Inference on deployments: chat completions (SDK), completions, v1, unknown or not-ready deployments."""
from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import tiktoken
from openai import AzureOpenAI, NotFoundError

from tests.emulator.conftest import (
    GA,
    TOPICS,
    arm_put,
    create_job,
    deploy,
    jsonl,
    processed_file,
    wait_job,
)
from tests.harness.emulator import EmulatorProcess


@pytest.fixture
def ft_deployment(emulator: EmulatorProcess, trained: dict[str, Any], deployments: list[str]) -> str:
    name = "chat-" + uuid.uuid4().hex[:8]
    deployments.append(name)
    assert deploy(emulator, name, trained["job"].fine_tuned_model)["properties"]["provisioningState"] == "Succeeded"
    return name


def test_chat_answers_from_the_closest_training_example(aoai: AzureOpenAI, ft_deployment: str,
                                                        trained: dict[str, Any]) -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Could you tell me a fact about the octopus?"}]
    completion = aoai.chat.completions.create(model=ft_deployment, messages=messages)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == dict(TOPICS)["octopus"]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == trained["job"].fine_tuned_model
    enc = tiktoken.get_encoding("o200k_base")
    expected_prompt = 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected_prompt
    assert completion.usage.completion_tokens == len(enc.encode(dict(TOPICS)["octopus"]))
    assert completion.usage.total_tokens == expected_prompt + completion.usage.completion_tokens


def test_v1_chat_uses_the_deployment_as_model(emulator: EmulatorProcess, ft_deployment: str) -> None:
    response = httpx.post(f"{emulator.base_url}/openai/v1/chat/completions",
                          headers={"api-key": emulator.api_key or ""},
                          json={"model": ft_deployment, "messages": [{"role": "user", "content": "glacier fact?"}]})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == dict(TOPICS)["glacier"]


def test_unknown_or_not_ready_deployment_is_404(emulator: EmulatorProcess, aoai: AzureOpenAI,
                                                trained: dict[str, Any], deployments: list[str]) -> None:
    with pytest.raises(NotFoundError) as info:
        aoai.chat.completions.create(model="no-such-deployment", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "DeploymentNotFound"  # type: ignore[index]
    assert info.value.body["message"].startswith("The API deployment for this resource does not exist.")  # type: ignore[index]
    name = "slow-" + uuid.uuid4().hex[:8]
    deployments.append(name)
    assert arm_put(emulator, name, trained["job"].fine_tuned_model).status_code == 201
    with pytest.raises(NotFoundError):  # still Accepted/Creating
        aoai.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])


def test_base_model_deployment_gives_a_generic_answer(emulator: EmulatorProcess, aoai: AzureOpenAI,
                                                      deployments: list[str]) -> None:
    name = "base-" + uuid.uuid4().hex[:8]
    deployments.append(name)
    deploy(emulator, name, "gpt-4o-2024-08-06")
    answer = aoai.chat.completions.create(model=name, messages=[{"role": "user", "content": "octopus fact?"}])
    assert answer.choices[0].message.content != dict(TOPICS)["octopus"]
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_completions_on_a_babbage_fine_tune(emulator: EmulatorProcess, aoai: AzureOpenAI,
                                            deployments: list[str]) -> None:
    records = [{"prompt": f"Capital of {country} ->", "completion": f" {capital}"} for country, capital in
               [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
                ("Egypt", "Cairo"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Canada", "Ottawa"), ("Cuba", "Havana")]]
    job = create_job(aoai, processed_file(aoai, jsonl(records)), model="babbage-002")
    final = wait_job(aoai, job.id)
    assert final.status == "succeeded"
    name = "babbage-" + uuid.uuid4().hex[:8]
    deployments.append(name)
    assert deploy(emulator, name, final.fine_tuned_model)["properties"]["capabilities"] == {"completion": "true"}
    completion = aoai.completions.create(model=name, prompt="Capital of Kenya ->")
    assert completion.choices[0].text == " Nairobi"
    assert completion.usage is not None and completion.usage.prompt_tokens == len(
        tiktoken.get_encoding("cl100k_base").encode("Capital of Kenya ->"))


def test_chat_format_is_rejected_for_babbage(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    response = httpx.post(f"{emulator.base_url}/openai/fine_tuning/jobs", params={"api-version": GA},
                          headers={"api-key": emulator.api_key or ""},
                          json={"model": "babbage-002", "training_file": processed_file(aoai)})
    assert response.status_code == 400
    assert "needs completion format" in response.json()["error"]["message"]
