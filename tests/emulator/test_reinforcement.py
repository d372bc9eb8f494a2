"""Reinforcement fine-tuning in the emulator: the create's rules, the RFT file format and the reward curve."""

from __future__ import annotations

import csv
import io
from typing import Any

import openai
import pytest
from openai import AzureOpenAI

from tests.emulator.conftest import PREVIEW, chat_jsonl, jsonl, make_client, processed_file
from tests.harness.emulator import EmulatorProcess

O4_MINI = "o4-mini-2025-04-16"
GRADER = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}"}


WORDS = ["apple", "bridge", "candle", "desert", "orange", "forest", "garden", "harbor", "island", "jungle",
         "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quartz", "river", "saddle", "tunnel",
         "valley", "walnut", "yellow", "zephyr"]


def rft_lines(n: int, *, field: str = "answer", system: bool = False) -> bytes:
    records = []
    for i in range(n):
        first = {"role": "system" if system else "developer", "content": "Answer with the number only."}
        question = {"role": "user", "content": f"What is {i} plus {i + 1} in the {WORDS[i]} puzzle?"}
        records.append({"messages": [first, question], field: str(2 * i + 1)})
    return jsonl(records)


@pytest.fixture
def preview(emulator: EmulatorProcess) -> AzureOpenAI:
    return make_client(emulator, PREVIEW)


def create(client: AzureOpenAI, training: str, validation: str | None, **method: Any) -> Any:
    inner = {"grader": GRADER, **method}
    return client.fine_tuning.jobs.create(
        model=O4_MINI, training_file=training, validation_file=validation,
        method={"type": "reinforcement", "reinforcement": inner},
        extra_body={"trainingType": "GlobalStandard"})


def test_an_rft_job_trains_with_a_rising_reward(emulator: EmulatorProcess, preview: AzureOpenAI) -> None:
    training, validation = processed_file(preview, rft_lines(24)), processed_file(preview, rft_lines(12))
    job = create(preview, training, validation,
                 hyperparameters={"n_epochs": 2, "reasoning_effort": "low", "eval_interval": 2, "eval_samples": 5,
                                  "compute_multiplier": 1.5})
    assert job.method.type == "reinforcement"
    assert job.method.reinforcement.grader.type == "string_check"
    emulator.advance_clock(120)
    final = preview.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "succeeded"
    rows = list(csv.DictReader(io.StringIO(preview.files.content(final.result_files[0]).text)))
    assert {"train_reward_mean", "valid_reward_mean", "train_sample_parse_error_count"} <= set(rows[0])
    rewards = [float(r["train_reward_mean"]) for r in rows]
    quarter = max(1, len(rewards) // 4)
    assert sum(rewards[-quarter:]) / quarter > sum(rewards[:quarter]) / quarter + 0.15  # it learns
    assert all(0.0 <= r <= 1.0 for r in rewards)
    events = list(preview.fine_tuning.jobs.list_events(job.id, limit=100))
    assert any("train_reward_mean=" in e.message for e in events if e.type == "metrics")
    checkpoint = next(iter(preview.fine_tuning.jobs.checkpoints.list(job.id)))
    assert checkpoint.metrics.to_dict().get("train_mean_reward") is not None


def test_a_grader_reading_a_field_the_data_lacks_scores_zero_silently(
    emulator: EmulatorProcess, preview: AzureOpenAI
) -> None:
    training = processed_file(preview, rft_lines(12, field="solution"))
    validation = processed_file(preview, rft_lines(10, field="solution"))
    job = create(preview, training, validation)  # reads {{item.answer}}: absent; the service does not say so
    emulator.advance_clock(120)
    final = preview.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "succeeded"
    rows = list(csv.DictReader(io.StringIO(preview.files.content(final.result_files[0]).text)))
    assert {float(r["train_reward_mean"]) for r in rows} == {0.0}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"grader": {**GRADER, "type": "python", "source": "def grade(s, i): return 1"}}, "grader.type"),
        ({"grader": None}, "method.reinforcement.grader"),
        ({"grader": {"type": "multi", "name": "m", "graders": {"a": {"type": "python", "name": "p", "source": ""}},
                     "calculate_output": "a"}}, "graders.a.type"),
        ({"hyperparameters": {"reasoning_effort": "extreme"}}, "reasoning_effort"),
        ({"hyperparameters": {"eval_samples": 0}}, "eval_samples"),
        ({"hyperparameters": {"compute_multiplier": -1}}, "compute_multiplier"),
    ],
)
def test_bad_rft_method_bodies_are_refused(preview: AzureOpenAI, change: dict[str, Any], param: str) -> None:
    training, validation = processed_file(preview, rft_lines(12)), processed_file(preview, rft_lines(10))
    with pytest.raises(openai.BadRequestError) as caught:
        create(preview, training, validation, **change)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "invalidPayload" and param in error["param"]


def test_rft_needs_a_validation_file_rft_data_and_no_system_message(preview: AzureOpenAI) -> None:
    training = processed_file(preview, rft_lines(12))
    with pytest.raises(openai.BadRequestError, match="validation file"):
        create(preview, training, None)
    chat = processed_file(preview, chat_jsonl(12))
    with pytest.raises(openai.BadRequestError, match="needs reinforcement format"):
        create(preview, chat, chat)  # SFT data (an assistant reply) is not RFT data
    system = processed_file(preview, rft_lines(12, system=True))
    with pytest.raises(openai.BadRequestError, match="system messages"):
        create(preview, system, system)


def test_rft_only_on_models_that_support_it_and_o4_mini_only_with_rft(preview: AzureOpenAI) -> None:
    training, validation = processed_file(preview, rft_lines(12)), processed_file(preview, rft_lines(10))
    with pytest.raises(openai.BadRequestError) as caught:
        preview.fine_tuning.jobs.create(
            model="gpt-4o-mini-2024-07-18", training_file=training, validation_file=validation,
            method={"type": "reinforcement", "reinforcement": {"grader": GRADER}},
            extra_body={"trainingType": "Standard"})
    assert caught.value.body["param"] == "method.type"
    assert "does not support fine-tuning with method 'reinforcement'" in str(caught.value)
    with pytest.raises(openai.BadRequestError, match="only be fine-tuned with method 'reinforcement'"):
        preview.fine_tuning.jobs.create(model=O4_MINI, training_file=processed_file(preview, chat_jsonl(12)),
                                        extra_body={"trainingType": "GlobalStandard"})


def test_a_fine_tuned_rft_model_answers_with_the_reference(
    emulator: EmulatorProcess, preview: AzureOpenAI, deployments: list[str]
) -> None:
    from tests.emulator.conftest import deploy

    training, validation = processed_file(preview, rft_lines(12)), processed_file(preview, rft_lines(10))
    job = create(preview, training, validation)
    emulator.advance_clock(120)
    model = preview.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model is not None
    deployments.append("rft-answers")
    assert deploy(emulator, "rft-answers", model)["properties"]["provisioningState"] == "Succeeded"
    emulator.advance_clock(5)
    reply = preview.chat.completions.create(model="rft-answers", messages=[
        {"role": "user", "content": "And the orange puzzle?"}])
    assert reply.choices[0].message.content == "9"
