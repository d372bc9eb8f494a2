"""Open-weight models in the emulator: the catalogue's wrong flag, globalStandard training, the provider's
`model.format` (a wrong one is ARM's 500) and the preview api-version they are served with."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI

from shared import open_weight
from tests.emulator.conftest import ARM, GA, PREVIEW, arm_get, arm_headers, chat_jsonl, make_client, processed_file
from tests.harness.emulator import EmulatorProcess
from tests.harness.waiting import wait_for

MODEL = "Ministral-3B"


def put(emulator: EmulatorProcess, name: str, model: str, fmt: str | None) -> httpx.Response:
    body: dict[str, Any] = {"sku": {"name": "GlobalStandard", "capacity": 100},
                            "properties": {"model": {"name": model, "version": "1"}}}
    if fmt is not None:
        body["properties"]["model"]["format"] = fmt
    return httpx.put(emulator.arm_deployments_url(name), params={"api-version": ARM}, json=body,
                     headers=arm_headers(emulator))


def puts_answered(emulator: EmulatorProcess, name: str, status: int, since: int) -> int:
    """PUTs of `name` answered `status` since line `since`; the log is read in a thread: wait for the first one."""

    def count() -> int:
        lines = emulator.log_text().splitlines()[since:]
        return sum(1 for line in lines if " PUT " in line and f"/deployments/{name} {status} " in line)

    wait_for(count, f"a PUT of {name} answered {status} in the emulator's log")
    return count()


@pytest.fixture(scope="module")
def trained_open_weight(emulator: EmulatorProcess) -> str:
    client = make_client(emulator, PREVIEW)
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=processed_file(client, chat_jsonl(12)),
                                         suffix="ow", extra_body={"trainingType": "globalStandard"})
    emulator.advance_clock(120)
    final = client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "succeeded", final
    assert final.fine_tuned_model is not None and final.fine_tuned_model.startswith(f"{MODEL}.ft-")
    return final.fine_tuned_model


def test_the_catalogue_says_open_weight_models_cannot_be_fine_tuned(emulator: EmulatorProcess) -> None:
    listed = {m["id"]: m for m in make_client(emulator, GA).models.list().to_dict()["data"]}
    for entry in open_weight.catalogue().models:
        assert listed[entry.id]["capabilities"]["fine_tune"] is False  # the platform gotcha, reproduced


@pytest.mark.parametrize("training_type", [None, "Standard", "Developer"])
def test_open_weight_jobs_need_global_standard(emulator: EmulatorProcess, training_type: str | None) -> None:
    client = make_client(emulator, PREVIEW)
    extra = {"trainingType": training_type} if training_type else {}
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=MODEL, training_file=processed_file(client, chat_jsonl(12)),
                                       extra_body=extra)
    assert f"does not support fine-tuning with {training_type or 'Standard'} TrainingType" in str(caught.value)
    assert caught.value.body["param"] == "trainingType"


def test_open_weight_models_train_supervised_only(emulator: EmulatorProcess) -> None:
    client = make_client(emulator, PREVIEW)
    with pytest.raises(openai.BadRequestError, match="does not support fine-tuning with method 'dpo'"):
        client.fine_tuning.jobs.create(model=MODEL, training_file=processed_file(client, chat_jsonl(12)),
                                       method={"type": "dpo"}, extra_body={"trainingType": "GlobalStandard"})


@pytest.mark.parametrize("fmt", ["OpenAI", "mistral ai", "OpenAI-OSS", None])
def test_a_wrong_model_format_is_an_http_500(emulator: EmulatorProcess, trained_open_weight: str,
                                             fmt: str | None) -> None:
    name = f"ow-bad-{(fmt or 'none').replace(' ', '-').lower()}"
    since = len(emulator.log_text().splitlines())
    response = put(emulator, name, trained_open_weight, fmt)
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "InternalServerError"
    assert arm_get(emulator, name).status_code == 404  # nothing was created
    assert puts_answered(emulator, name, 500, since) == 1


def test_the_provider_format_deploys_and_the_preview_version_serves(
    emulator: EmulatorProcess, trained_open_weight: str, deployments: list[str]
) -> None:
    deployments.append("ow-good")
    response = put(emulator, "ow-good", trained_open_weight, "Mistral AI")
    assert response.status_code == 201, response.text
    emulator.advance_clock(30)
    got = arm_get(emulator, "ow-good").json()
    assert got["properties"]["provisioningState"] == "Succeeded"
    assert got["properties"]["model"]["format"] == "Mistral AI"
    question = [{"role": "user", "content": "Something about the octopus, please."}]
    with pytest.raises(openai.NotFoundError):
        make_client(emulator, GA).chat.completions.create(model="ow-good", messages=question)
    answer = make_client(emulator, PREVIEW).chat.completions.create(model="ow-good", messages=question)
    assert answer.choices[0].message.content == "An octopus has eight arms and three hearts."  # it learned


def test_azure_openai_models_keep_the_openai_format(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    since = len(emulator.log_text().splitlines())
    response = put(emulator, "ow-base-wrong", "gpt-4o-mini-2024-07-18", "Microsoft")
    assert response.status_code == 500
    assert puts_answered(emulator, "ow-base-wrong", 500, since) == 1
